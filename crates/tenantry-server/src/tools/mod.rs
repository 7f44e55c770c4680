//! The tool gateway's state in the server: the target catalogue (kept in the store), the Cedar
//! policy engine (its sets kept in the store), the credential vault, and the `ToolGateway` of
//! `tenantry-tools` wired to them; the HTTP surface is in `routes::tenant::mcp` (`/mcp`) and
//! `routes::admin::{tool_targets, policies, credentials}` (the control plane).
//!
//! Targets and policy sets change at run time without a restart: a change through this
//! replica applies at once, and every replica re-reads both from the store every
//! `REGISTRY_TTL` and applies them when they changed, so a change through one replica reaches
//! the others within that time (credential rotations within the vault's own cache time).
//! A stored target or policy set that no longer loads is reported in the log; a policy set
//! that does not load denies its scope everything (fail closed).

mod credentials;
mod hosted;
pub mod meter;
mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tenantry_core::{TenantId, UserId};
use tenantry_identity::ActorIssuer;
use tenantry_policy::{PolicyEngine, PolicySetRecord};
use tenantry_store::{Store, StoreError, ToolTargetRecord};
use tenantry_tools::{Catalog, GatewayConfig, TargetName, TargetSpec, ToolGateway};
use tenantry_vault::{MasterKey, Vault, VaultError};

use crate::config::Config;
use crate::ledger::Ledger;
use crate::registry::{REGISTRY_TTL, RegistryCache};

pub use credentials::VaultCredentials;
pub use hosted::HostedSessions;
pub use policy::CedarPolicy;

/// How long an agent's actor token is valid, and how long before its end it is replaced.
const ACTOR_TOKEN_TTL: Duration = Duration::from_secs(900);
const ACTOR_TOKEN_REUSE: Duration = Duration::from_secs(600);

/// Why the tool gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ToolsStartError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("cannot read the tool targets or policy sets from the store: {0}")]
    Store(#[from] StoreError),
    #[error("the tool gateway cannot be set up: {0}")]
    Setup(String),
}

type ActorKey = (TenantId, String);

#[derive(Debug)]
struct Shared {
    store: Store,
    catalog: Arc<Catalog>,
    policy: Arc<CedarPolicy>,
    vault: Vault,
    gateway: Arc<ToolGateway>,
    actor: ActorIssuer,
    /// Actor tokens per (tenant, session), reused while fresh so token exchanges stay cached.
    actors: Mutex<HashMap<ActorKey, (String, Instant)>>,
    /// The stored targets as last applied (name, updated_at).
    applied_targets: Mutex<Vec<(String, i64)>>,
    /// The active policy sets as last applied.
    applied_policies: Mutex<Vec<PolicySetRecord>>,
}

/// Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Tools {
    shared: Arc<Shared>,
}

/// The vault's master key: `TENANTRY_VAULT_MASTER_KEY`, else the key file, created (0600) if
/// it does not exist yet, like the workload secret.
pub fn master_key(config: &Config) -> Result<MasterKey, VaultError> {
    let env = config.vault.master_key_env.get();
    let path = &config.vault.master_key_file;
    if env.is_none() && !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                VaultError::MasterKey(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        MasterKey::generate_file(path)?;
        tracing::info!(path = %path.display(), "created the vault master key");
    }
    MasterKey::load(env, path)
}

/// Decodes the stored targets; the ones that do not decode are reported and left out.
fn decode_targets(records: Vec<ToolTargetRecord>) -> Vec<TargetSpec> {
    records
        .into_iter()
        .filter_map(
            |r| match serde_json::from_value::<TargetSpec>(r.body.clone()) {
                Ok(spec) if spec.name.as_str() == r.name && spec.tenant == r.tenant => Some(spec),
                Ok(_) => {
                    tracing::error!(target_name = %r.name, "a stored tool target names another target or owner; it is not loaded");
                    None
                }
                Err(e) => {
                    tracing::error!(target_name = %r.name, error = %e, "a stored tool target does not decode; it is not loaded");
                    None
                }
            },
        )
        .collect()
}

fn stamp(records: &[ToolTargetRecord]) -> Vec<(String, i64)> {
    records
        .iter()
        .map(|r| (r.name.clone(), r.updated_at))
        .collect()
}

impl Tools {
    /// Opens the vault, loads the targets and the active policy sets from the store, and
    /// starts their refresh. Must be called within a Tokio runtime.
    pub async fn start(
        config: &Config,
        store: Store,
        registry: Arc<RegistryCache>,
        guardrails: crate::guardrails::Guardrails,
        limiter: tenantry_limits::Limiter,
        ledger: Ledger,
        actor: ActorIssuer,
    ) -> Result<Self, ToolsStartError> {
        let vault = Vault::new(store.clone(), master_key(config)?)?;
        let engine = PolicyEngine::new().map_err(|e| ToolsStartError::Setup(e.to_string()))?;
        let policy = Arc::new(CedarPolicy::new(engine));
        let catalog = Arc::new(
            Catalog::new()
                .map_err(|e| ToolsStartError::Setup(e.to_string()))?
                .with_tools_ttl(Duration::from_secs(config.tools.tools_cache_seconds)),
        );
        let guard = crate::guardrails::traffic::ToolGuardrails::new(guardrails, registry.clone());
        let meter = meter::LedgerMeter::new(store.clone(), registry, limiter, ledger);
        let gateway = Arc::new(
            ToolGateway::new(
                catalog.clone(),
                policy.clone(),
                Arc::new(VaultCredentials::new(vault.clone())),
            )
            .with_meter(Arc::new(meter))
            .with_guard(Arc::new(guard))
            .with_config(GatewayConfig {
                session_idle_timeout: Duration::from_secs(
                    config.tools.session_idle_timeout_seconds,
                ),
                max_body_bytes: config.tools.max_body_bytes,
                ..GatewayConfig::default()
            }),
        );
        let shared = Arc::new(Shared {
            store,
            catalog,
            policy,
            vault,
            gateway,
            actor,
            actors: Mutex::new(HashMap::new()),
            applied_targets: Mutex::new(Vec::new()),
            applied_policies: Mutex::new(Vec::new()),
        });
        let tools = Self { shared };
        tools.reload_targets(true).await?;
        tools.reload_policies(true).await?;
        tracing::info!(
            targets = tools.shared.catalog.specs().len(),
            vault_master_key = tools.shared.vault.master_key_id(),
            "tool gateway ready"
        );
        tokio::spawn(refresh(Arc::downgrade(&tools.shared)));
        Ok(tools)
    }

    pub fn gateway(&self) -> Arc<ToolGateway> {
        self.shared.gateway.clone()
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.shared.catalog
    }

    /// Where tool policy decisions are recorded.
    pub fn set_audit(&self, audit: crate::audit::Audit) {
        self.shared.policy.set_audit(audit);
    }

    pub fn engine(&self) -> &PolicyEngine {
        self.shared.policy.engine()
    }

    pub fn vault(&self) -> &Vault {
        &self.shared.vault
    }

    /// After a target was added, replaced or removed through this replica: forget what the
    /// policy knew of its tools, and remember the store's state as applied.
    pub async fn target_changed(&self, name: &TargetName) {
        self.shared.policy.forget_target(name.as_str());
        if let Ok(records) = self.shared.store.list_tool_targets().await {
            *self
                .shared
                .applied_targets
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = stamp(&records);
        }
    }

    /// Loads the targets and policy sets from the store now (after a tenant was deleted through
    /// this replica, its own are gone), rather than at the next poll.
    pub async fn reload_now(&self) {
        if let Err(e) = self.reload_targets(true).await {
            tracing::warn!(error = %e, "cannot reload tool targets");
        }
        if let Err(e) = self.reload_policies(true).await {
            tracing::warn!(error = %e, "cannot reload policy sets");
        }
    }

    /// Re-reads the targets from the store and loads them when they changed (or `force`).
    async fn reload_targets(&self, force: bool) -> Result<(), StoreError> {
        let s = &self.shared;
        let records = s.store.list_tool_targets().await?;
        let stamps = stamp(&records);
        {
            let applied = s
                .applied_targets
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !force && *applied == stamps {
                return Ok(());
            }
        }
        let before: Vec<TargetName> = s.catalog.specs().into_iter().map(|t| t.name).collect();
        for failure in s.catalog.load(decode_targets(records)) {
            tracing::error!(target_name = %failure.name, error = %failure.error,
                "a stored tool target cannot be loaded; it is left out");
        }
        for name in before {
            s.policy.forget_target(name.as_str());
        }
        *s.applied_targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = stamps;
        Ok(())
    }

    /// Re-reads the active policy sets and installs them when they changed (or `force`).
    pub async fn reload_policies(&self, force: bool) -> Result<(), StoreError> {
        let s = &self.shared;
        let records = s.store.list_active_policy_sets().await?;
        let mut applied = s
            .applied_policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !force && *applied == records {
            return Ok(());
        }
        let report = s.policy.engine().replace_all(&records);
        for e in &report.unloadable {
            tracing::error!(error = %e, "a stored policy set cannot be loaded; its scope is denied everything");
        }
        *applied = records;
        Ok(())
    }

    /// The actor token of an agent's session (the agent's identity in a token exchange),
    /// minted once and reused while fresh, so exchanged tokens stay cached.
    pub fn actor_token(
        &self,
        tenant: &TenantId,
        user: &UserId,
        session: &str,
        runtime: &str,
    ) -> Option<String> {
        let key = (tenant.clone(), session.to_owned());
        let mut actors = self
            .shared
            .actors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((token, at)) = actors.get(&key)
            && at.elapsed() < ACTOR_TOKEN_REUSE
        {
            return Some(token.clone());
        }
        if actors.len() > 100_000 {
            actors.retain(|_, (_, at)| at.elapsed() < ACTOR_TOKEN_REUSE);
        }
        match self
            .shared
            .actor
            .mint(tenant, user, session, runtime, ACTOR_TOKEN_TTL)
        {
            Ok(token) => {
                actors.insert(key, (token.clone(), Instant::now()));
                Some(token)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot mint an actor token");
                None
            }
        }
    }
}

/// Re-reads targets and policy sets every `REGISTRY_TTL` until the gateway is dropped.
async fn refresh(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(REGISTRY_TTL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let tools = Tools { shared };
        if let Err(e) = tools.reload_targets(false).await {
            tracing::warn!(error = %e, "cannot re-read the tool targets");
        }
        if let Err(e) = tools.reload_policies(false).await {
            tracing::warn!(error = %e, "cannot re-read the policy sets");
        }
    }
}
