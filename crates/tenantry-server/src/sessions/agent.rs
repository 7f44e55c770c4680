//! Talking to a session's agent: kept-alive connections through the sandbox's agent bridge,
//! `/ping`, the response body that returns its connection to the pool, and how a failed
//! exchange is classified.

use super::*;

pub(super) fn agent_unavailable(message: impl Into<String>) -> SessionError {
    SessionError::AgentUnavailable(message.into())
}

/// The error for a sandbox that is no longer running.
pub(super) fn ended_error(exit: SandboxExit, output: &[String]) -> SessionError {
    let tail = output
        .iter()
        .rev()
        .take(3)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join(" | ");
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("; last output: {tail}")
    };
    match exit {
        SandboxExit::OutOfMemory => SessionError::OutOfMemory,
        SandboxExit::Exited { code } => {
            agent_unavailable(format!("the agent exited with code {code}{tail}"))
        }
        SandboxExit::Signaled { signal } => {
            agent_unavailable(format!("the agent was killed by signal {signal}{tail}"))
        }
        SandboxExit::Stopped => agent_unavailable("the session's sandbox was stopped"),
    }
}

/// Classifies a failed exchange with the agent. A connection that drops mid-request is often
/// the kernel killing the agent: give the sandbox a moment to report how it ended.
pub(super) async fn forward_error(live: &Live, e: hyper::Error) -> SessionError {
    let too_large =
        std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
    if too_large {
        return SessionError::BodyPastLimit;
    }
    let handle = &live.sandbox.handle;
    if !e.is_parse() && !e.is_parse_status() {
        let _ = tokio::time::timeout(Duration::from_secs(1), handle.wait()).await;
    }
    if let SandboxStatus::Ended(exit) = handle.status() {
        return ended_error(exit, &handle.recent_output());
    }
    if handle.usage().oom_kills > 0 {
        return ended_error(SandboxExit::OutOfMemory, &[]);
    }
    if e.is_parse() || e.is_parse_status() {
        return SessionError::AgentError(format!(
            "the agent answered with something that is not HTTP: {e}"
        ));
    }
    agent_unavailable(format!(
        "the agent closed the connection without answering: {e}"
    ))
}

pub(super) type AgentSender = hyper::client::conn::http1::SendRequest<Body>;

/// Kept-alive connections to one session's agent; more than this are closed after use.
pub(super) const MAX_POOLED_CONNECTIONS: usize = 8;

/// A connection to the session's agent: a kept-alive one from its pool if one is ready,
/// otherwise a new one through the sandbox's agent bridge. Reusing connections spares a round
/// trip to the sandbox's init (which connects each new one) per invocation.
pub(super) async fn agent_connection(live: &Live) -> Result<AgentSender, SessionError> {
    loop {
        let pooled = live.connections.lock().ok().and_then(|mut p| p.pop());
        let Some(mut sender) = pooled else { break };
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let handle = &live.sandbox.handle;
    let stream = handle
        .connect_agent()
        .await
        .map_err(|e| match handle.status() {
            SandboxStatus::Ended(exit) => ended_error(exit, &handle.recent_output()),
            SandboxStatus::Running => agent_unavailable(format!("cannot reach the agent: {e}")),
        })?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SessionError::AgentError(format!("the agent's connection failed: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `GET /ping` on a new connection to the agent: the answer's body and the connection, kept
/// alive for the next request. `None` when the agent does not answer within 2 s.
pub(super) async fn ping(handle: &SandboxHandle) -> Option<(AgentSender, Bytes)> {
    let attempt = async {
        let stream = handle.connect_agent().await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get("/ping")
            .header(
                axum::http::header::HOST,
                format!("127.0.0.1:{}", handle.agent_port()),
            )
            .body(Body::empty())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((sender, bytes))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// Asks the agent's `/ping` whether it is busy. Anything but a clear `HealthyBusy` is "not busy".
pub(super) async fn ping_busy(handle: &SandboxHandle) -> bool {
    ping(handle)
        .await
        .and_then(|(_, bytes)| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("HealthyBusy"))
}

/// Counts an invocation as in flight until its response body is finished or dropped, and
/// holds its concurrency permit that long.
pub(super) struct InFlight {
    pub(super) live: Arc<Live>,
    pub(super) epoch: Instant,
    pub(super) _permit: Option<tenantry_limits::Permit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.live.touch(self.epoch);
        self.live.in_flight.fetch_sub(1, Ordering::SeqCst);
        // Storage on an image cannot grow past its size. A directory is measured after each
        // invocation; the next one is refused if it is over.
        if self.live.sandbox.image.is_some() {
            return;
        }
        let dir = self.live.sandbox.storage_dir.clone();
        let limit = self.live.storage_limit;
        let flag = self.live.over_quota.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                flag.store(measure_storage(dir).await > limit, Ordering::Relaxed);
            });
        }
    }
}

/// The agent's response body on its way to the caller. Once it has been read to its end, the
/// connection it came on goes back to the session's pool for the next invocation. A body of
/// known length is at its end after its last byte: the server sending it on stops polling
/// there (`is_end_stream`), without the empty read that would say so.
pub(super) struct Tracked {
    pub(super) inner: Pin<Box<hyper::body::Incoming>>,
    pub(super) connection: Option<AgentSender>,
    pub(super) ended: bool,
    pub(super) _guard: InFlight,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if (self.ended || http_body::Body::is_end_stream(&*self.inner))
            && let Some(sender) = self.connection.take()
            && !sender.is_closed()
            && let Ok(mut pool) = self._guard.live.connections.lock()
            && pool.len() < MAX_POOLED_CONNECTIONS
        {
            pool.push(sender);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
