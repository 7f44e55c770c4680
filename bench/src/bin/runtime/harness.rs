//! The benchmark's hold on the server: the agents it measures, tokens, the control-plane calls
//! that create and delete runtimes, and the calls every phase makes (invoke, stop a session,
//! wait for sandboxes). It never reaches into the server's internals: what it knows of
//! sandboxes comes from the API or from the host (see `host`).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Agent {
    Rust,
    Python,
}

impl Agent {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Agent::Rust => "rust",
            Agent::Python => "python",
        }
    }
}

pub(crate) struct Bench {
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) issuer: tenantry_identity::DevIssuer,
    pub(crate) http: BodyClient,
    pub(crate) helper: PathBuf,
    /// `tenantry-sandbox` next to this benchmark, when built: the baseline then also shows
    /// what the helper binary's size costs.
    pub(crate) small_helper: Option<PathBuf>,
    pub(crate) rust_dir: PathBuf,
    pub(crate) py_dir: Option<PathBuf>,
    pub(crate) state_dir: PathBuf,
    pub(crate) started: StartedLog,
    pub(crate) memory_mount: Option<(PathBuf, bool)>,
    pub(crate) resources: tenantry_core::SandboxResources,
}

pub(crate) fn session_id(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "bench-{tag}-{nanos:024x}-{:06}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Bench {
    pub(crate) fn token(&self, tenant: &str, user: &str) -> Result<String> {
        Ok(self.issuer.mint(
            &tenantry_core::TenantId::new(tenant)?,
            &tenantry_core::UserId::new(user)?,
            &[],
            Duration::from_secs(4 * 3600),
        )?)
    }

    pub(crate) async fn admin(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut c = Call::new(method, format!("{}{path}", self.base)).bearer(&self.admin);
        if let Some(b) = body {
            c = c
                .header("content-type", "application/json")
                .body(Bytes::from(b.to_string()));
        }
        let a = call(&self.http, &c)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("calling {path}"))?;
        ensure!(
            a.status.is_success(),
            "{path} answered {}: {}",
            a.status,
            a.text()
        );
        Ok(a.json())
    }

    pub(crate) async fn create_runtime(
        &self,
        name: &str,
        agent: Agent,
        warm_pool: u32,
    ) -> Result<()> {
        let (command, workdir) = match agent {
            Agent::Rust => (
                vec![self.rust_dir.join("example-agent").display().to_string()],
                self.rust_dir.clone(),
            ),
            Agent::Python => (
                vec!["python3".to_string(), "agent.py".to_string()],
                self.py_dir.clone().context("no Python agent")?,
            ),
        };
        self.admin(
            http::Method::POST,
            "/v1/admin/runtimes",
            Some(json!({
                "name": name, "protocol": "http", "command": command, "workdir": workdir,
                "warm_pool": warm_pool,
                "lifecycle": {"idle_timeout_seconds": 3600, "max_lifetime_seconds": 28800},
            })),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn delete_runtime(&self, name: &str) -> Result<()> {
        self.admin(
            http::Method::DELETE,
            &format!("/v1/admin/runtimes/{name}"),
            None,
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn invoke(
        &self,
        runtime: &str,
        token: &str,
        session: &str,
        body: &Value,
    ) -> Result<Answer, String> {
        let c = Call::post_json(
            format!("{}/v1/runtimes/{runtime}/invocations", self.base),
            body,
        )
        .bearer(token)
        .header("x-tenantry-session-id", session);
        call(&self.http, &c).await
    }

    pub(crate) async fn stop_session(&self, token: &str, session: &str) -> Result<(), String> {
        let c = Call::new(
            http::Method::DELETE,
            format!("{}/v1/sessions/{session}", self.base),
        )
        .bearer(token);
        let a = call(&self.http, &c).await?;
        if a.status.is_success() && a.json()["was_running"] == json!(true) {
            Ok(())
        } else {
            Err(format!("stop answered {}: {}", a.status, a.text()))
        }
    }

    pub(crate) fn init_pids(&self) -> BTreeSet<u32> {
        host::init_pids(&self.helper)
    }

    /// Waits until exactly `want` sandboxes exist and every one's agent listens.
    pub(crate) async fn wait_sandboxes(&self, want: usize, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let s = host::sandboxes(&self.helper);
            if s.len() == want
                && s.iter()
                    .all(|(_, init)| tenantry_runtime::port_listening_in(*init, AGENT_PORT))
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "waited {timeout:?} for {want} ready sandboxes; there are {}",
                    s.len()
                );
            }
            // Each look reads every process's `stat`: not too often, it competes for the CPU.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
