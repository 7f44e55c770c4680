//! The host's end of the agent bridge: a connection to the sandbox's bridge socket is answered
//! by the sandbox's init with a TCP socket already connected to the agent's port inside the
//! sandbox (see `helper::forward`). The host then speaks HTTP to the agent on that socket with
//! nothing in between.
//!
//! Delayed acknowledgements: an agent that writes its response head and body in two writes
//! without `TCP_NODELAY` (Python's `http.server` does, as do many hand-written servers) has its
//! body held back by Nagle's algorithm until the head is acknowledged, and a kept-alive
//! connection in request/response rhythm acknowledges only after the delayed-ACK timer (40 ms).
//! The host therefore asks for an immediate acknowledgement (`TCP_QUICKACK`, which the kernel
//! clears again by itself) after each read that brought data: the agent's body follows one
//! round trip after its head, whatever the agent does.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::net::{AddressFamily, RecvFlags, SocketType};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::protocol::AGENT_SOCKET_TAG;
use crate::sys;

/// How long the init may take to connect to the agent and pass the socket. On a loopback
/// interface this takes microseconds; only an agent whose accept queue stays full waits this
/// long.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a new connection to the agent behind the bridge socket at `path`.
pub(crate) async fn connect(path: &Path) -> io::Result<AgentStream> {
    let bridge = UnixStream::connect(path).await?;
    let fd = tokio::time::timeout(HAND_OVER_TIMEOUT, receive(&bridge))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the sandbox did not pass a connection to the agent within {HAND_OVER_TIMEOUT:?}"
                ),
            )
        })??;
    check_tcp(&fd)?;
    let stream = std::net::TcpStream::from(fd);
    stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(stream)?;
    stream.set_nodelay(true)?;
    Ok(AgentStream { inner: stream })
}

/// A connection to an agent (see `ProcessInstance::connect_agent`): a TCP socket of the
/// sandbox's network namespace, with no delay on what the host writes and an immediate
/// acknowledgement of what it reads (see the module's notes on delayed acknowledgements).
#[derive(Debug)]
pub struct AgentStream {
    inner: TcpStream,
}

impl AgentStream {
    /// The TCP socket itself.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }
}

impl AsyncRead for AgentStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Sends the acknowledgement the kernel would otherwise delay, and leaves its
            // "interactive" mode until the host next writes. Failing changes nothing but speed.
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.inner, true);
        }
        polled
    }
}

impl AsyncWrite for AgentStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Waits for the init's answer on `bridge`: the tag byte with one socket attached.
async fn receive(bridge: &UnixStream) -> io::Result<OwnedFd> {
    loop {
        bridge.readable().await?;
        match bridge.try_io(Interest::READABLE, || receive_now(bridge.as_fd())) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn receive_now(bridge: impl AsFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    // Every descriptor that arrived is owned here and closed unless it is the one expected.
    let (n, mut fds) = sys::recv_with_fds(bridge, &mut byte, RecvFlags::DONTWAIT)?;
    match (n, fds.len()) {
        (0, _) => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "the agent does not accept connections on its port",
        )),
        (1, 1) if byte[0] == AGENT_SOCKET_TAG => fds.pop().ok_or_else(|| unexpected("no socket")),
        _ => Err(unexpected("an answer that is not one socket")),
    }
}

/// The socket must be a TCP one (IPv4 or IPv6 stream): anything else is refused rather than
/// handed to an HTTP client.
fn check_tcp(fd: &OwnedFd) -> io::Result<()> {
    let kind = rustix::net::sockopt::socket_type(fd)?;
    let family = rustix::net::sockopt::socket_domain(fd)?;
    if kind == SocketType::STREAM
        && (family == AddressFamily::INET || family == AddressFamily::INET6)
    {
        Ok(())
    } else {
        Err(unexpected("a descriptor that is not a TCP socket"))
    }
}

fn unexpected(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the sandbox's agent bridge sent {what}"),
    )
}
