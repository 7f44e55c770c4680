//! Launching a sandbox for a session or a warm pool: the bridge, the spec, the wait for the
//! agent.

use super::*;

impl SessionManager {
    /// Starts a sandbox for the runtime and waits until its agent listens.
    pub(super) async fn launch(
        &self,
        runtime: &Runtime,
        tenant: &TenantId,
        tier: &Tier,
        label: &str,
        storage: &Path,
    ) -> Result<Sandboxed, SessionError> {
        let backend = &self.inner.backend;
        backend.check().map_err(SessionError::NoSandboxes)?;
        let image = self
            .prepare_storage(storage, tier.sandbox.storage_mb)
            .await?;
        let run_dir = self
            .inner
            .instance_run
            .join("bridges")
            .join(uuid::Uuid::new_v4().simple().to_string());
        tenantry_runtime::storage::create_private_dir(&run_dir)
            .map_err(|e| SessionError::internal("creating a run directory", e))?;
        let socket = run_dir.join("platform.sock");
        let listener = tokio::net::UnixListener::bind(&socket)
            .map_err(|e| SessionError::internal("binding the platform bridge", e))?;
        let bridge_secret = format!("tsbx_{}", uuid::Uuid::new_v4().simple());
        let binding = Arc::new(Mutex::new(Binding::default()));
        let app = self.inner.app.get().cloned().ok_or_else(|| {
            SessionError::internal("starting a sandbox", "the session manager was not started")
        })?;
        let bridged = app.layer(axum::middleware::from_fn_with_state(
            (bridge_secret.clone(), binding.clone()),
            bridge_auth,
        ));
        let bridge_task = tokio::spawn(async move {
            let _ = axum::serve(listener, bridged).await;
        });

        let platform = PlatformBridge::new(&socket);
        let endpoint = platform.endpoint();
        let mut spec = SandboxSpec::new(
            label.to_string(),
            tenant.clone(),
            runtime.spec.command.clone(),
            runtime.spec.workdir.clone(),
            storage.to_path_buf(),
        );
        spec.env = runtime.spec.env.clone();
        spec.env
            .insert("OPENAI_BASE_URL".into(), format!("{endpoint}/v1"));
        spec.env
            .insert("OPENAI_API_KEY".into(), bridge_secret.clone());
        // AWS SDKs (boto3's AgentCore clients) sign with dummy keys whose secret is the
        // sandbox's; the bridge turns a valid signature into the session's identity.
        for (name, value) in crate::aws::sandbox_env(&endpoint, &bridge_secret) {
            spec.env.insert(name.into(), value);
        }
        spec.mount_path = runtime.spec.storage.mount_path.clone();
        spec.resources = tier.sandbox.clone();
        spec.agent_port = runtime.spec.protocol.port();
        spec.platform = Some(platform);
        spec.storage_image = image.clone();
        let sandboxed = |handle| Sandboxed {
            handle,
            binding,
            bridge_task,
            run_dir,
            storage_dir: storage.to_path_buf(),
            image,
            primed: None,
            times: LaunchTimes::default(),
        };
        let launched = Instant::now();
        let handle = backend
            .launch(spec)
            .await
            .map_err(|e| SessionError::launch_failed(&runtime.name, e))?;
        let mut started = sandboxed(handle);
        started.times.start = launched.elapsed();
        let waited = Instant::now();
        if let Err(e) = started
            .handle
            .wait_for_agent(self.inner.ready_timeout)
            .await
        {
            let status = started.handle.status();
            let output = started.handle.recent_output();
            let _ = started.handle.stop().await;
            return Err(match status {
                SandboxStatus::Ended(exit) => ended_error(exit, &output),
                SandboxStatus::Running => agent_unavailable(format!(
                    "the agent did not listen on port {} within {} s: {e}",
                    runtime.spec.protocol.port(),
                    self.inner.ready_timeout.as_secs()
                )),
            });
        }
        started.times.listen = waited.elapsed();
        Ok(started)
    }
}
