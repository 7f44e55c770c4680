//! The backend of a host that cannot run sandboxes (no helper configured, the process backend
//! refused by the kernel, session storage that cannot be provided): every launch is refused
//! with the reason, so the platform still serves everything else. It must never start
//! anything.

use crate::SandboxError;
use crate::sandbox::{BackendKind, Sandbox, StartFuture};
use crate::spec::SandboxSpec;

/// A backend that refuses every launch, saying why.
#[derive(Debug, Clone)]
pub struct UnavailableSandbox {
    reason: String,
}

impl UnavailableSandbox {
    /// `reason` says what is missing and, where it can, how to fix it.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn refusal(&self) -> SandboxError {
        SandboxError::NoBackend(self.reason.clone())
    }
}

impl Sandbox for UnavailableSandbox {
    fn kind(&self) -> BackendKind {
        BackendKind::Unavailable
    }

    fn check(&self) -> Result<(), SandboxError> {
        Err(self.refusal())
    }

    fn launch(&self, _spec: SandboxSpec) -> StartFuture<'_> {
        let refused = self.refusal();
        Box::pin(async move { Err(refused) })
    }
}

#[cfg(test)]
mod tests {
    use tenantry_core::{ErrorCode, TenantId};

    use super::*;

    #[tokio::test]
    async fn every_launch_is_refused_with_the_reason() {
        let backend = UnavailableSandbox::new("no sandbox helper is configured");
        let checked = backend.check().expect_err("refused");
        assert_eq!(checked.code(), ErrorCode::Unavailable);
        assert_eq!(
            checked.to_string(),
            "this server cannot start sandboxes: no sandbox helper is configured"
        );
        let spec = SandboxSpec::new(
            "s",
            TenantId::new("acme").expect("tenant id"),
            vec!["/bin/true".into()],
            "/",
            "/tmp",
        );
        let launched = backend.launch(spec).await.expect_err("refused");
        assert_eq!(launched.to_string(), checked.to_string());
    }
}
