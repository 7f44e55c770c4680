//! Stopping sessions (explicitly, on idle timeout, maximum lifetime or shutdown), metering
//! them while they run and when they stop, and the storage-expiry sweep.

use super::*;
use start::Vacate;

impl SessionManager {
    pub(super) fn live_sessions(&self) -> Vec<(LiveKey, Arc<Live>)> {
        let entries: Vec<_> = self
            .inner
            .sessions
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        entries
            .into_iter()
            .filter_map(|(k, entry)| entry.live().map(|l| (k, l)))
            .collect()
    }

    /// Stops a tenant's session at the caller's request; `false` if it was not running.
    pub async fn stop(&self, tenant: &TenantUid, session: &SessionId, reason: &str) -> bool {
        self.stop_key(&(tenant.clone(), session.clone()), reason)
            .await
    }

    pub(super) async fn stop_key(&self, key: &LiveKey, reason: &str) -> bool {
        self.stop_if(key, reason, |_| true).await
    }

    /// Stops the session only if `instance` is still its sandbox (not one started since).
    pub(super) async fn stop_instance(&self, key: &LiveKey, instance: &str, reason: &str) -> bool {
        self.stop_if(key, reason, |live| live.instance == instance)
            .await
    }

    async fn stop_if(&self, key: &LiveKey, reason: &str, which: impl Fn(&Live) -> bool) -> bool {
        let Some(entry) = self.entry(key) else {
            return false;
        };
        let _lock = entry.lock.clone().lock_owned().await;
        let _vacate = Vacate {
            manager: self,
            key: key.clone(),
            entry: entry.clone(),
        };
        match entry.live() {
            Some(live) if which(&live) => {
                entry.set(None);
                self.finish(key, live, reason).await;
                true
            }
            Some(_) | None => false,
        }
    }

    /// Stops a sandbox that left the live map, meters what it used since its last sample, and
    /// records why the session stopped.
    pub(super) async fn finish(&self, key: &LiveKey, live: Arc<Live>, reason: &str) {
        let report = live.sandbox.handle.stop().await;
        let session = &key.1;
        if let Ok(report) = &report {
            self.meter(&live, session.as_str(), report.usage, report.exit.as_str())
                .await;
        }
        let scope = TenantScope::for_operator(self.inner.system, live.tenant.clone());
        self.record_stopped(&scope, session, reason).await;
        tracing::info!(tenant.id = %live.tenant, session.id = %session, reason, "session stopped");
    }

    /// Marks the session stopped in the store (logged, not returned, when that fails: the
    /// start-up reconciliation of this node corrects a row left `active`).
    pub(super) async fn record_stopped(
        &self,
        scope: &TenantScope,
        session: &SessionId,
        reason: &str,
    ) {
        if let Err(e) = self
            .inner
            .store
            .set_session_status(
                scope,
                session.as_str(),
                SessionStatus::Stopped,
                Some(reason),
                unix_now(),
            )
            .await
        {
            tracing::error!(error = %e, tenant.id = %scope.tenant(), session.id = %session,
                "cannot record that a session stopped");
        }
    }

    /// Writes to the ledger the compute `usage` (the sandbox's totals so far) adds to what is
    /// there already: a `compute` entry with status `status` (`running` for a sample, the
    /// sandbox's exit for its last one).
    async fn meter(&self, live: &Live, session: &str, usage: ComputeUsage, status: &str) {
        let delta = {
            let Ok(mut metered) = live.metered.lock() else {
                return;
            };
            let (before, _) = *metered;
            let now = Metered {
                cpu_seconds: usage.cpu_seconds.max(before.cpu_seconds),
                memory_gb_seconds: usage.memory_gb_seconds.max(before.memory_gb_seconds),
                wall_seconds: usage.wall_seconds.max(before.wall_seconds),
            };
            *metered = (now, Instant::now());
            Metered {
                cpu_seconds: now.cpu_seconds - before.cpu_seconds,
                memory_gb_seconds: now.memory_gb_seconds - before.memory_gb_seconds,
                wall_seconds: now.wall_seconds - before.wall_seconds,
            }
        };
        let record = UsageRecord {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: live.tenant.clone(),
            user_id: Some(live.user.clone()),
            runtime: Some(live.runtime.name.clone()),
            session_id: Some(session.to_string()),
            kind: UsageKind::Compute,
            resource: None,
            provider: None,
            input_tokens: 0,
            output_tokens: 0,
            cpu_ms: (delta.cpu_seconds * 1000.0).round() as i64,
            memory_mb_ms: (delta.memory_gb_seconds * 1024.0 * 1000.0).round() as i64,
            calls: 0,
            cost: tenantry_core::Money::ZERO,
            latency_ms: Some((delta.wall_seconds * 1000.0).round() as i64),
            ttft_ms: None,
            status: status.to_string(),
            at: unix_now(),
        };
        let scope = TenantScope::for_operator(self.inner.system, live.tenant.clone());
        // No answer waits for a compute sample: it is queued, and `Ledger::drain` writes it at
        // shutdown.
        self.inner.ledger.submit(scope, record).await;
    }

    /// One pass of the lifecycle: idle timeout (unless the agent says `HealthyBusy`), maximum
    /// lifetime, sandboxes that ended on their own, and the compute samples that are due.
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
            let due = live
                .metered
                .lock()
                .map(|m| m.1.elapsed() >= self.inner.compute_every)
                .unwrap_or(false);
            if due {
                self.meter(
                    &live,
                    key.1.as_str(),
                    live.sandbox.handle.usage(),
                    "running",
                )
                .await;
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

    /// Deletes the storage of sessions unused for longer than their runtime's expiry. Each
    /// one under its session's lock, so a resume racing the sweep waits for it (and then finds
    /// no storage and no session: it starts afresh), or the sweep finds the session running
    /// and leaves it.
    pub(super) async fn sweep_storage(&self) {
        let grant = self.inner.system;
        let store = &self.inner.store;
        let candidates = match store.sessions_idle_before(grant, unix_now(), 500).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sessions for storage expiry");
                return;
            }
        };
        let mut expiry: HashMap<RuntimeName, u64> = HashMap::new();
        let mut uids: HashMap<TenantId, TenantUid> = HashMap::new();
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
            let uid = match uids.get(&tenant) {
                Some(uid) => uid.clone(),
                None => match store.get_tenant(&tenant).await {
                    Ok(Some(t)) => {
                        uids.insert(tenant.clone(), t.uid.clone());
                        t.uid
                    }
                    Ok(None) | Err(_) => continue,
                },
            };
            let key = (uid, session);
            let Ok((entry, _lock)) = self.lock_entry(&key).await else {
                continue;
            };
            let _vacate = Vacate {
                manager: self,
                key: key.clone(),
                entry: entry.clone(),
            };
            if entry.live().is_some() {
                continue;
            }
            let scope = TenantScope::for_operator(grant, tenant.clone());
            let Ok(Some(record)) = store.get_session(&scope, key.1.as_str()).await else {
                continue;
            };
            let secs = (secs / u64::from(self.inner.time_divisor)) as i64;
            if record.status == SessionStatus::Active || record.last_active_at + secs > unix_now() {
                continue;
            }
            let dir = self.storage_dir(&key.0, &key.1);
            if let Err(e) = remove_storage(&dir) {
                tracing::warn!(error = %e, "cannot delete expired session storage");
                continue;
            }
            logs::remove_log(&dir);
            let _ = store.delete_session(&scope, key.1.as_str()).await;
            tracing::info!(tenant.id = %tenant, session.id = %key.1, "session storage expired");
        }
        self.sweep_orphaned_storage().await;
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
        // Every sandbox of this process is gone: so is its run directory.
        let _ = std::fs::remove_dir_all(&self.inner.instance_run);
    }

    /// Runs an expiry sweep now (tests and operators; the loop runs it every 30 s).
    pub async fn sweep_now(&self) {
        self.sweep_storage().await;
    }
}
