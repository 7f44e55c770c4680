//! Stopping sessions (explicitly, on idle timeout, maximum lifetime or shutdown), metering
//! them when they stop, and the storage-expiry sweep.

use super::*;

impl SessionManager {
    pub(super) fn live_sessions(&self) -> Vec<(LiveKey, Arc<Live>)> {
        let slots: Vec<_> = self
            .inner
            .live
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        slots
            .into_iter()
            .filter_map(|(k, slot)| slot.try_lock().ok().and_then(|g| g.clone()).map(|l| (k, l)))
            .collect()
    }

    /// Stops a tenant's session at the caller's request; `false` if it was not running.
    pub async fn stop(&self, tenant: &TenantId, session: &str, reason: &str) -> bool {
        self.stop_key(&(tenant.clone(), session.to_string()), reason)
            .await
    }

    pub(super) async fn stop_key(&self, key: &LiveKey, reason: &str) -> bool {
        let slot = match self.inner.live.lock() {
            Ok(m) => m.get(key).cloned(),
            Err(_) => None,
        };
        let Some(slot) = slot else { return false };
        let live = slot.lock().await.take();
        match live {
            Some(live) => {
                self.finish(key, live, reason).await;
                true
            }
            None => false,
        }
    }

    /// Stops a sandbox that left the live map, meters it, and records why the session stopped.
    pub(super) async fn finish(&self, key: &LiveKey, live: Arc<Live>, reason: &str) {
        if let Ok(mut m) = self.inner.live.lock() {
            m.remove(key);
        }
        self.finish_keep_slot(key, live, reason).await;
    }

    /// `finish`, for a caller that holds the session's slot and goes on using it.
    pub(super) async fn finish_keep_slot(&self, key: &LiveKey, live: Arc<Live>, reason: &str) {
        if let Ok(mut subjects) = self.inner.subjects.lock() {
            subjects.remove(key);
        }
        let report = live.sandbox.handle.stop().await;
        let (tenant, session) = key;
        let scope = TenantScope::for_operator(OperatorGrant::verified(), tenant.clone());
        let now = unix_now();
        if let Ok(report) = &report {
            let usage = report.usage;
            let record = UsageRecord {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: tenant.clone(),
                user_id: Some(live.user.clone()),
                runtime: Some(live.runtime.name.clone()),
                session_id: Some(session.clone()),
                kind: UsageKind::Compute,
                resource: None,
                provider: None,
                input_tokens: 0,
                output_tokens: 0,
                cpu_ms: (usage.cpu_seconds * 1000.0).round() as i64,
                memory_mb_ms: (usage.memory_gb_seconds * 1024.0 * 1000.0).round() as i64,
                calls: 0,
                cost: tenantry_core::Money::ZERO,
                latency_ms: Some((usage.wall_seconds * 1000.0).round() as i64),
                ttft_ms: None,
                status: report.exit.as_str().to_string(),
                at: now,
            };
            if let Err(e) = self.inner.store.record_usage(&scope, &record).await {
                tracing::error!(error = %e, tenant.id = %tenant, session.id = %session, "cannot record compute usage");
            }
        }
        if let Err(e) = self
            .inner
            .store
            .set_session_status(&scope, session, SessionStatus::Stopped, Some(reason), now)
            .await
        {
            tracing::error!(error = %e, "cannot record that a session stopped");
        }
        tracing::info!(tenant.id = %tenant, session.id = %session, reason, "session stopped");
    }

    /// One pass of the lifecycle: idle timeout (unless the agent says `HealthyBusy`), maximum
    /// lifetime, and sandboxes that ended on their own.
    pub(super) async fn lifecycle_tick(&self) {
        let now_ms = self.inner.epoch.elapsed().as_millis() as u64;
        let divisor = u64::from(self.inner.time_divisor);
        for (key, live) in self.live_sessions() {
            let lifecycle = live.runtime.spec.lifecycle;
            let max_lifetime =
                Duration::from_millis(lifecycle.max_lifetime_seconds * 1000 / divisor);
            if live.started.elapsed() >= max_lifetime {
                self.stop_key(&key, "max_lifetime").await;
                continue;
            }
            if let SandboxStatus::Ended(exit) = live.sandbox.handle.status() {
                if live.in_flight.load(Ordering::SeqCst) == 0 {
                    self.stop_key(&key, exit.as_str()).await;
                }
                continue;
            }
            let idle_ms = now_ms.saturating_sub(live.last_active_ms.load(Ordering::Relaxed));
            if live.in_flight.load(Ordering::SeqCst) > 0
                || idle_ms < lifecycle.idle_timeout_seconds * 1000 / divisor
            {
                continue;
            }
            if ping_busy(&live.sandbox.handle).await {
                live.touch(self.inner.epoch);
                continue;
            }
            self.stop_key(&key, "idle_timeout").await;
        }
    }

    /// Deletes the storage of sessions unused for longer than their runtime's expiry.
    pub(super) async fn sweep_storage(&self) {
        let grant = OperatorGrant::verified();
        let store = &self.inner.store;
        let candidates = match store.sessions_idle_before(grant, unix_now(), 500).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sessions for storage expiry");
                return;
            }
        };
        let mut expiry: HashMap<RuntimeName, u64> = HashMap::new();
        for (tenant, session, runtime) in candidates {
            let secs = match expiry.get(&runtime) {
                Some(s) => *s,
                None => {
                    let s = match store.get_runtime(&runtime).await {
                        Ok(Some(r)) => Runtime::from_record(r)
                            .map(|r| r.spec.storage.idle_expiry_seconds)
                            .unwrap_or(0),
                        // A deleted runtime's sessions can never resume: expire them now.
                        Ok(None) => 0,
                        Err(_) => continue,
                    };
                    expiry.insert(runtime.clone(), s);
                    s
                }
            };
            let scope = TenantScope::for_operator(grant, tenant.clone());
            let Ok(Some(record)) = store.get_session(&scope, &session).await else {
                continue;
            };
            let secs = (secs / u64::from(self.inner.time_divisor)) as i64;
            if record.status == SessionStatus::Active || record.last_active_at + secs > unix_now() {
                continue;
            }
            let dir = self.storage_dir(&tenant, &session);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, "cannot delete expired session storage");
                continue;
            }
            let _ = store.delete_session(&scope, &session).await;
            tracing::info!(tenant.id = %tenant, session.id = %session, "session storage expired");
        }
    }

    /// Stops every session (server shutdown).
    pub async fn shutdown(&self) {
        for (key, _) in self.live_sessions() {
            self.stop_key(&key, "platform_shutdown").await;
        }
        let warm: Vec<Sandboxed> = self
            .inner
            .warm
            .lock()
            .map(|mut w| w.drain().flat_map(|(_, v)| v).collect())
            .unwrap_or_default();
        for s in warm {
            s.discard().await;
        }
    }

    /// Runs an expiry sweep now (tests and operators; the loop runs it every 30 s).
    pub async fn sweep_now(&self) {
        self.sweep_storage().await;
    }
}
