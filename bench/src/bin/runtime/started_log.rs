//! The server's own account of when each session started: a tracing layer that notes the
//! instant of each `session started` event and the steps it reports (prepare, launch, listen).
//! It only listens to the server's log; it never changes what the server does.

use super::*;

/// Notes the instant of each `session started` event (logged by the session manager once the
/// sandbox is bound to the session, before the first request is forwarded to the agent), and
/// the steps it reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct StartedLog(Arc<Mutex<HashMap<String, (Instant, ServerSteps)>>>);

/// The session manager's own account of a start, in microseconds: before the sandbox (session
/// row, storage), the backend's launch, the wait for the agent to listen, and all of it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerSteps {
    pub(crate) prepare_us: u64,
    pub(crate) launch_us: u64,
    pub(crate) listen_us: u64,
    pub(crate) total_us: u64,
}

impl StartedLog {
    pub(crate) fn take(&self, session: &str) -> Option<(Instant, ServerSteps)> {
        self.0.lock().ok()?.remove(session)
    }
}

#[derive(Debug, Default)]
pub(crate) struct EventFields {
    pub(crate) message: Option<String>,
    pub(crate) session: Option<String>,
    pub(crate) steps: ServerSteps,
}

impl tracing::field::Visit for EventFields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "prepare_us" => self.steps.prepare_us = value,
            "launch_us" => self.steps.launch_us = value,
            "listen_us" => self.steps.listen_us = value,
            "total_us" => self.steps.total_us = value,
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "session.id" => self.session = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            "session.id" => self.session = Some(value.to_string()),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StartedLog {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let at = Instant::now();
        let mut fields = EventFields::default();
        event.record(&mut fields);
        if fields.message.as_deref() == Some("session started")
            && let Some(session) = fields.session
            && let Ok(mut m) = self.0.lock()
        {
            m.insert(session, (at, fields.steps));
        }
    }
}
