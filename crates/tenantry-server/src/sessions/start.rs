//! Starting a session (new, or resumed on its storage): on a task of its own, so that a caller
//! that goes away mid-start cannot leave half a start behind. The task always runs to its end;
//! if nobody waits for it any more, the session it started is stopped again. Until then the
//! session's entry stands in the live map as a reservation that every path releases, so the
//! tier's `concurrent_sessions` counts only sandboxes that exist or are being launched.

use super::*;

/// Removes a session's entry from the map when it is left empty (a start that failed, a stop,
/// a sweep), if the map still holds that very entry. On drop, so a panic cleans up too.
pub(super) struct Vacate<'a> {
    pub(super) manager: &'a SessionManager,
    pub(super) key: LiveKey,
    pub(super) entry: Arc<Entry>,
}

impl Drop for Vacate<'_> {
    fn drop(&mut self) {
        if self.entry.live().is_none()
            && let Ok(mut map) = self.manager.inner.sessions.lock()
            && map
                .get(&self.key)
                .is_some_and(|e| Arc::ptr_eq(e, &self.entry))
        {
            map.remove(&self.key);
        }
    }
}

/// The first invocation of a session it started: if its caller goes away before the exchange
/// with the agent is over, the session is stopped (reason `cancelled`), so an abandoned start
/// leaves no sandbox running.
pub(super) struct FirstCall {
    manager: SessionManager,
    key: LiveKey,
    instance: String,
    armed: bool,
}

impl FirstCall {
    pub(super) fn answered(mut self) {
        self.armed = false;
    }
}

impl Drop for FirstCall {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let manager = self.manager.clone();
        let key = self.key.clone();
        let instance = std::mem::take(&mut self.instance);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                manager.stop_instance(&key, &instance, "cancelled").await;
            });
        }
    }
}

impl SessionManager {
    pub(super) fn first_call(&self, session: &SessionId, live: &Live) -> FirstCall {
        FirstCall {
            manager: self.clone(),
            key: (live.tenant_uid.clone(), session.clone()),
            instance: live.instance.clone(),
            armed: true,
        }
    }

    /// The session's entry, created if missing, with its lock held. If the entry left the map
    /// while this waited for its lock (its session stopped), the wait starts again on the
    /// entry the map holds now.
    pub(super) async fn lock_entry(
        &self,
        key: &LiveKey,
    ) -> Result<(Arc<Entry>, tokio::sync::OwnedMutexGuard<()>), SessionError> {
        loop {
            let entry = {
                let mut map = self
                    .inner
                    .sessions
                    .lock()
                    .map_err(|_| SessionError::internal("locking sessions", "poisoned"))?;
                map.entry(key.clone()).or_default().clone()
            };
            let guard = entry.lock.clone().lock_owned().await;
            let current = self
                .inner
                .sessions
                .lock()
                .map(|m| m.get(key).is_some_and(|e| Arc::ptr_eq(e, &entry)))
                .unwrap_or(false);
            if current {
                return Ok((entry, guard));
            }
        }
    }

    /// The live session for this caller: running already, or resumed or created on a task of
    /// its own; `true` with it when this call started it.
    pub(super) async fn session(
        &self,
        ctx: &TenantContext,
        tier: &Tier,
        runtime: &Runtime,
        session_id: &SessionId,
    ) -> Result<(Arc<Live>, bool), SessionError> {
        let key = (ctx.tenant_uid.clone(), session_id.clone());
        // A running session is answered from memory: its owner and runtime are known.
        if let Some(live) = self.live(&key)
            && live.running()
        {
            if live.user != ctx.user_id || live.runtime.name != runtime.name {
                return Err(SessionError::NotFound);
            }
            return Ok((live, false));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let manager = self.clone();
        let (ctx, tier, runtime) = (ctx.clone(), tier.clone(), runtime.clone());
        tokio::spawn(async move {
            let started = manager.start_session(&ctx, &tier, &runtime, &key).await;
            if let Err(Ok((live, true))) = tx.send(started) {
                // Nobody waits for this start any more: undo it.
                manager
                    .stop_instance(&key, &live.instance, "cancelled")
                    .await;
            }
        });
        rx.await.map_err(|_| {
            SessionError::internal("starting a session", "the start ended without an answer")
        })?
    }

    async fn start_session(
        &self,
        ctx: &TenantContext,
        tier: &Tier,
        runtime: &Runtime,
        key: &LiveKey,
    ) -> Result<(Arc<Live>, bool), SessionError> {
        let session_id = &key.1;
        let (entry, _lock) = self.lock_entry(key).await?;
        let _vacate = Vacate {
            manager: self,
            key: key.clone(),
            entry: entry.clone(),
        };
        if let Some(live) = entry.live() {
            if live.running() {
                if live.user != ctx.user_id || live.runtime.name != runtime.name {
                    return Err(SessionError::NotFound);
                }
                return Ok((live, false));
            }
            // The sandbox ended on its own (crash, OOM; the invocation that saw it was told).
            // Meter it and start a fresh sandbox on the same storage.
            entry.set(None);
            let exit = match live.sandbox.handle.status() {
                SandboxStatus::Ended(exit) => exit,
                SandboxStatus::Running => SandboxExit::Stopped,
            };
            self.finish(key, live, exit.as_str()).await;
        }
        let entered = Instant::now();
        let store = &self.inner.store;
        let scope = ctx.scope();
        let record = store.get_session(&scope, session_id.as_str()).await?;
        if let Some(r) = &record
            && (r.user_id != ctx.user_id || r.runtime != runtime.name)
        {
            // Another user's (or another runtime's) session does not exist for this caller.
            return Err(SessionError::NotFound);
        }
        if let Some(max) = tier.limits.concurrent_sessions
            && self.others_running(key) >= max as usize
        {
            return Err(SessionError::TooManySessions {
                tenant: ctx.tenant_id.clone(),
                max,
                tier: tier.name.clone(),
            });
        }
        let storage = self.storage_dir(&ctx.tenant_uid, session_id);
        let storage_limit = u64::from(tier.sandbox.storage_mb) * 1024 * 1024;
        if record.is_some()
            && self.image_for(&storage).is_none()
            && measure_storage(storage.clone()).await > storage_limit
        {
            return Err(storage_exceeded(storage_limit));
        }
        let now = unix_now();
        let resumed = match record {
            None => {
                let record = SessionRecord {
                    id: session_id.clone(),
                    tenant_id: ctx.tenant_id.clone(),
                    user_id: ctx.user_id.clone(),
                    runtime: runtime.name.clone(),
                    status: SessionStatus::Active,
                    created_at: now,
                    last_active_at: now,
                    stopped_at: None,
                    stop_reason: None,
                    node: self.inner.node.clone(),
                };
                store.insert_session(&scope, &record).await?;
                false
            }
            Some(_) => {
                store
                    .resume_session(&scope, session_id.as_str(), &self.inner.node, now)
                    .await?;
                true
            }
        };
        let prepared = entered.elapsed();
        let warm = self.take_warm(runtime, &ctx.tenant_uid, &storage, resumed);
        let from_pool = warm.is_some();
        let mut sandbox = match warm {
            Some(s) => s,
            None => match self
                .launch(runtime, &ctx.tenant_id, tier, session_id.as_str(), &storage)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    self.record_stopped(&scope, session_id, "start_failed")
                        .await;
                    return Err(e);
                }
            },
        };
        let primed: Vec<AgentSender> = sandbox.primed.take().into_iter().collect();
        let times = if from_pool {
            LaunchTimes::default()
        } else {
            sandbox.times
        };
        let live = Arc::new(Live {
            sandbox,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            tenant: ctx.tenant_id.clone(),
            tenant_uid: ctx.tenant_uid.clone(),
            runtime: runtime.clone(),
            user: ctx.user_id.clone(),
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            storage_limit,
            over_quota: Arc::new(AtomicBool::new(false)),
            connections: Mutex::new(primed),
            persisted_touch: std::sync::atomic::AtomicI64::new(now),
            subject: Mutex::new(None),
            metered: Mutex::new((Metered::default(), Instant::now())),
        });
        // Bind: from now on the bridge secret stands for this instance's workload token.
        let lifetime = Duration::from_secs(runtime.spec.lifecycle.max_lifetime_seconds);
        let token = match self.mint_token(ctx, &live, session_id.as_str(), lifetime) {
            Ok(t) => t,
            Err(e) => {
                self.finish(key, live, "start_failed").await;
                return Err(e);
            }
        };
        if let Ok(mut b) = live.sandbox.binding.lock() {
            b.token = Some(token);
        }
        live.touch(self.inner.epoch);
        self.keep_log(&live, session_id, tier);
        entry.set(Some(live.clone()));
        // Where the start-up time went: before the sandbox (session row, storage), and for a
        // sandbox launched for this session, its start and the wait for the agent to listen.
        tracing::info!(
            tenant.id = %ctx.tenant_id,
            session.id = %session_id,
            runtime = %runtime.name,
            resumed,
            from_pool,
            prepare_us = micros(prepared),
            launch_us = micros(times.start),
            listen_us = micros(times.listen),
            total_us = micros(entered.elapsed()),
            "session started"
        );
        if let Some(metrics) = self.inner.metrics.get() {
            let kind = if from_pool {
                tenantry_telemetry::SandboxStart::Warm
            } else {
                tenantry_telemetry::SandboxStart::Cold
            };
            metrics.sandbox_started(ctx.tenant_id.as_str(), kind, entered.elapsed());
        }
        self.fill_warm_pool(
            runtime.clone(),
            ctx.tenant_id.clone(),
            ctx.tenant_uid.clone(),
            tier.clone(),
        );
        Ok((live, true))
    }
}
