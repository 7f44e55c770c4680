//! The audit log's writer: control-plane changes (recorded by the ingress for every mutating
//! request to `/v1/admin/...` and `/v1/api-keys...`, with the before/after a handler attaches)
//! and every tool policy decision, appended to the store by one background task in batches.
//!
//! Recording never waits: events go to a bounded queue (a full queue is an error in the log and
//! the event is lost, counted, rather than a control-plane call or a tool call held up). The
//! writer drains the queue on shutdown. Retention deletes events older than
//! `telemetry.audit_retention_days`, checked hourly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::Method;
use serde_json::Value;
use tenantry_core::{CredentialKind, TenantContext, TenantId, unix_now};
use tenantry_store::{AuditEvent, Store};
use tokio::sync::{mpsc, oneshot};

use crate::error::current_request_id;

/// Events waiting to be written.
const QUEUE: usize = 65_536;
/// Most events written in one transaction.
const BATCH: usize = 512;

#[derive(Debug)]
enum Msg {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// What a handler adds to its answer for the audit log: the tenant concerned when the path
/// does not name it, and before/after or other detail (never a secret).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub tenant: Option<TenantId>,
    pub target: Option<String>,
    pub detail: Value,
}

/// A handle on the audit writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    lost: Arc<AtomicU64>,
}

impl Audit {
    /// Starts the writer (and the retention sweep, unless `retention_days` is 0) on the current
    /// Tokio runtime.
    pub fn start(store: Store, retention_days: u32) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let writer_store = store.clone();
        tokio::spawn(async move {
            let mut batch: Vec<AuditEvent> = Vec::new();
            let mut flushes = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Event(e) => batch.push(*e),
                        Msg::Flush(done) => flushes.push(done),
                    }
                    if batch.len() < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                write(&writer_store, std::mem::take(&mut batch)).await;
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        if retention_days > 0 {
            tokio::spawn(async move {
                let keep = i64::from(retention_days) * 86_400;
                let mut every = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    every.tick().await;
                    match store.delete_audit_events_before(unix_now() - keep).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "audit events past retention deleted"),
                        Err(e) => tracing::warn!(error = %e, "cannot apply the audit retention"),
                    }
                }
            });
        }
        Self {
            tx,
            lost: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an event; never waits.
    pub fn record(&self, event: AuditEvent) {
        if let Err(e) = self.tx.try_send(Msg::Event(Box::new(event))) {
            let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "the queue is full",
                mpsc::error::TrySendError::Closed(_) => "the writer has stopped",
            };
            tracing::error!(lost_total = lost, reason, "an audit event was lost");
        }
    }

    /// Waits (at most `limit`) until every event queued before this call is written.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(())))
    }
}

async fn write(store: &Store, batch: Vec<AuditEvent>) {
    if batch.is_empty() || store.insert_audit_events(&batch).await.is_ok() {
        return;
    }
    // One bad event must not lose the others.
    for event in batch {
        if let Err(e) = store
            .insert_audit_events(std::slice::from_ref(&event))
            .await
        {
            tracing::error!(error = %e, audit.action = %event.action,
                tenant.id = ?event.tenant.as_ref().map(TenantId::as_str),
                "cannot write an audit event");
        }
    }
}

/// A new event stamped with an id, the time and the current request's id.
pub fn event(
    tenant: Option<TenantId>,
    actor: String,
    action: impl Into<String>,
    target: Option<String>,
    outcome: impl Into<String>,
    detail: Value,
) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        tenant,
        at: unix_now(),
        actor,
        action: action.into(),
        target,
        outcome: outcome.into(),
        request_id: Some(current_request_id()).filter(|r| !r.is_empty()),
        detail,
    }
}

/// How a tenant principal appears in the audit log.
pub fn actor_of(ctx: &TenantContext) -> String {
    match &ctx.credential {
        CredentialKind::ApiKey { key_id } => format!("key:{key_id} ({})", ctx.user_id),
        CredentialKind::AccessKey { key_id } => {
            format!("access-key:{key_id} ({})", ctx.user_id)
        }
        CredentialKind::Workload { session_id, .. } => {
            format!("workload:{session_id} ({})", ctx.user_id)
        }
        CredentialKind::Jwt { .. } => format!("user:{}", ctx.user_id),
    }
}

/// Whether a request is a control-plane change the ingress records.
pub fn is_audited(method: &Method, route: &str) -> bool {
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    changes
        && (route.starts_with("/v1/admin/")
            || route.starts_with("/v1/api-keys")
            || route.starts_with("/v1/access-keys"))
}

/// The action name of a route: `PATCH /v1/admin/tenants/{id}` → `PATCH tenants/{id}`.
pub fn action_of(method: &Method, route: &str) -> String {
    let path = route
        .strip_prefix("/v1/admin/")
        .or_else(|| route.strip_prefix("/v1/"))
        .unwrap_or(route);
    format!("{method} {path}")
}

/// The tenant a control-plane path names: `/v1/admin/tenants/{id}/...`, or a scope
/// `tenant:ID` (`/v1/admin/policies/tenant:acme/rollback`).
pub fn tenant_in_path(route: &str, path: &str) -> Option<TenantId> {
    if route.starts_with("/v1/admin/tenants/{id}") {
        let id = path.strip_prefix("/v1/admin/tenants/")?.split('/').next()?;
        return TenantId::new(id).ok();
    }
    if route.contains("{scope}") {
        let scope = path.split('/').find_map(|s| s.strip_prefix("tenant:"))?;
        return TenantId::new(scope).ok();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_changes_are_recognised_and_named() {
        assert!(is_audited(&Method::PATCH, "/v1/admin/tenants/{id}"));
        assert!(is_audited(&Method::DELETE, "/v1/api-keys/{key_id}"));
        assert!(!is_audited(&Method::GET, "/v1/admin/tenants/{id}"));
        assert!(!is_audited(&Method::POST, "/v1/chat/completions"));
        assert_eq!(
            action_of(&Method::PUT, "/v1/admin/tiers/{name}"),
            "PUT tiers/{name}"
        );
        assert_eq!(
            tenant_in_path(
                "/v1/admin/tenants/{id}/api-keys",
                "/v1/admin/tenants/acme/api-keys"
            ),
            Some(TenantId::new("acme").unwrap())
        );
        assert_eq!(
            tenant_in_path("/v1/admin/tiers/{name}", "/v1/admin/tiers/x"),
            None
        );
        assert_eq!(
            tenant_in_path(
                "/v1/admin/policies/{scope}/rollback",
                "/v1/admin/policies/tenant:acme/rollback"
            ),
            Some(TenantId::new("acme").unwrap())
        );
    }
}
