//! The guardrails in the server: the active profiles (kept in the store, compiled once), which
//! profile applies to a caller, the leak index of all tenants' protected identifiers, the
//! remote checks' I/O, and the decisions' counters and audit lines. Applying them to traffic
//! is `traffic`; the HTTP surface is `routes::admin::guardrails` and `routes::tenant::guardrails`.
//!
//! Which profile applies: the tenant's own override if it has an active one (with its tier's
//! checks first when it says `inherit`), else the profile its tier names, else none. A tier
//! that names a profile with no active version refuses the traffic (`unavailable`): a
//! guardrail that cannot be decided fails closed.
//!
//! Profiles change at run time like policy sets: at once on this replica, and on the others
//! within `REGISTRY_TTL` (each replica re-reads the active versions and recompiles what
//! changed). One tenant's profile and identifiers are never shown to another; the leak index
//! answers only "not yours".

pub mod remote;
pub mod traffic;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use tenantry_core::{ErrorCode, TenantId, Tier, unix_now};
use tenantry_guardrails::{Action, Context, Found, Guard, LeakIndex, Profile, Stage, merged};
use tenantry_store::{GuardrailRecord, GuardrailScope, Store, StoreError};

use crate::error::ApiError;
use crate::registry::REGISTRY_TTL;

/// Most (tenant, category, action, stage) counters kept; beyond, new tenants count under
/// `_other` so the label set stays bounded.
const MAX_COUNTERS: usize = 10_000;

/// A tenant's override as compiled with one tier profile (by name).
type OverrideKey = (TenantId, Option<String>);

/// The active profiles as loaded.
#[derive(Debug, Default)]
struct Loaded {
    records: Vec<GuardrailRecord>,
    named: HashMap<String, (Profile, Arc<Guard>)>,
    tenants: HashMap<TenantId, (Profile, i64)>,
    /// Tenants' compiled overrides, per the tier profile they were merged with.
    compiled: Mutex<HashMap<OverrideKey, Arc<Guard>>>,
    leak: Arc<LeakIndex>,
}

type CounterKey = (String, String, Action, Stage);

#[derive(Debug)]
struct Shared {
    store: Store,
    loaded: RwLock<Arc<Loaded>>,
    counters: Mutex<BTreeMap<CounterKey, u64>>,
    remote: remote::ServerRemote,
    /// Where decisions go besides the counters: the audit log and the metrics.
    observers: std::sync::OnceLock<(crate::audit::Audit, Arc<tenantry_telemetry::Metrics>)>,
}

/// Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Guardrails {
    shared: Arc<Shared>,
}

/// The profile that applies to one caller, compiled.
#[derive(Debug, Clone)]
pub struct Applied {
    pub guard: Arc<Guard>,
    pub leak: Arc<LeakIndex>,
}

/// Why the guardrails cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GuardrailsStartError {
    #[error("cannot read the guardrail profiles from the store: {0}")]
    Store(#[from] StoreError),
    #[error("the guardrail profile {name} of the configuration cannot be stored: {message}")]
    Seed { name: String, message: String },
}

fn load(records: Vec<GuardrailRecord>) -> Loaded {
    let mut named = HashMap::new();
    let mut tenants = HashMap::new();
    let mut identifiers: Vec<(TenantId, Vec<String>)> = Vec::new();
    for r in &records {
        let profile = match Profile::from_json(&r.body) {
            Ok(p) => p,
            Err(e) => {
                // Left out, so a tier naming it refuses its traffic (fail closed).
                tracing::error!(scope = %r.scope, version = r.version, error = %e,
                    "a stored guardrail profile does not load; it is not applied");
                continue;
            }
        };
        match &r.scope {
            GuardrailScope::Profile(name) => {
                match Guard::compile(r.scope.to_string(), r.version, &profile) {
                    Ok(g) => {
                        named.insert(name.clone(), (profile, Arc::new(g)));
                    }
                    Err(e) => tracing::error!(scope = %r.scope, error = %e,
                        "a stored guardrail profile does not compile; it is not applied"),
                }
            }
            GuardrailScope::Tenant(t) => {
                identifiers.push((t.clone(), profile.protected_identifiers.clone()));
                tenants.insert(t.clone(), (profile, r.version));
            }
        }
    }
    let leak = LeakIndex::new(identifiers.iter().map(|(t, ids)| (t, &ids[..])));
    Loaded {
        records,
        named,
        tenants,
        compiled: Mutex::new(HashMap::new()),
        leak: Arc::new(leak),
    }
}

impl Guardrails {
    /// Seeds the profiles of the configuration that the store does not have yet, loads the
    /// active ones and starts their refresh. Must be called within a Tokio runtime.
    pub async fn start(
        seeds: &BTreeMap<String, Profile>,
        store: Store,
        gateway: crate::models::Gateway,
    ) -> Result<Self, GuardrailsStartError> {
        for (name, profile) in seeds {
            let scope = GuardrailScope::Profile(name.clone());
            if store.list_guardrail_profiles(&scope).await?.is_empty() {
                let body =
                    serde_json::to_string(profile).map_err(|e| GuardrailsStartError::Seed {
                        name: name.clone(),
                        message: e.to_string(),
                    })?;
                store
                    .put_guardrail_profile(&scope, &body, unix_now())
                    .await?;
                tracing::info!(profile = %name, "guardrail profile created from config");
            }
        }
        let records = store.list_active_guardrail_profiles().await?;
        let shared = Arc::new(Shared {
            store,
            loaded: RwLock::new(Arc::new(load(records))),
            counters: Mutex::new(BTreeMap::new()),
            observers: std::sync::OnceLock::new(),
            remote: remote::ServerRemote::new(gateway),
        });
        tokio::spawn(refresh(Arc::downgrade(&shared)));
        Ok(Self { shared })
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.shared
            .loaded
            .read()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Re-reads the active profiles and recompiles them when they changed (or `force`).
    pub async fn reload(&self, force: bool) -> Result<(), StoreError> {
        reload(&self.shared, force).await
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The profile that applies to `tenant` on `tier`; `None` if no profile applies. A tier
    /// naming a profile that has no active version is refused (`unavailable`).
    pub fn applied(&self, tenant: &TenantId, tier: &Tier) -> Result<Option<Applied>, ApiError> {
        let loaded = self.loaded();
        let tier_profile = match &tier.guardrail_profile {
            None => None,
            Some(name) => match loaded.named.get(name) {
                Some(p) => Some((name, p)),
                None => {
                    return Err(ApiError::new(
                        ErrorCode::Unavailable,
                        format!(
                            "the guardrail profile {name:?} of tier {} is not defined, so the \
                             request cannot be checked; the operator must upload it \
                             (tenantry guardrail set --profile {name} --file FILE)",
                            tier.name
                        ),
                    ));
                }
            },
        };
        let guard = match loaded.tenants.get(tenant) {
            Some((own, version)) => {
                let key = (tenant.clone(), tier_profile.map(|(n, _)| n.clone()));
                let mut compiled = loaded
                    .compiled
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match compiled.get(&key) {
                    Some(g) => g.clone(),
                    None => {
                        let profile = merged(tier_profile.map(|(_, (p, _))| p), own);
                        let g = Guard::compile(format!("tenant:{tenant}"), *version, &profile)
                            .map_err(|e| {
                                ApiError::new(
                                    ErrorCode::Unavailable,
                                    format!(
                                        "the tenant's guardrail profile cannot be applied: {e}"
                                    ),
                                )
                            })?;
                        let g = Arc::new(g);
                        compiled.insert(key, g.clone());
                        g
                    }
                }
            }
            None => match tier_profile {
                Some((_, (_, g))) => g.clone(),
                None => return Ok(None),
            },
        };
        Ok(Some(Applied {
            guard,
            leak: loaded.leak.clone(),
        }))
    }

    /// A named profile, compiled, if it is active (for the apply endpoint's `profile`).
    pub fn named(&self, name: &str) -> Option<Applied> {
        let loaded = self.loaded();
        loaded.named.get(name).map(|(_, g)| Applied {
            guard: g.clone(),
            leak: loaded.leak.clone(),
        })
    }

    /// The context of a check for `tenant`.
    pub fn context<'a>(&'a self, tenant: &'a TenantId, leak: &'a LeakIndex) -> Context<'a> {
        Context {
            tenant,
            leak,
            remote: Some(&self.shared.remote),
        }
    }

    /// Sends decisions to the audit log and the metrics too.
    pub fn set_observers(
        &self,
        audit: crate::audit::Audit,
        metrics: Arc<tenantry_telemetry::Metrics>,
    ) {
        let _ = self.shared.observers.set((audit, metrics));
    }

    /// Counts a decision's findings per tenant and category, and writes each to the audit log.
    pub fn record(&self, tenant: &TenantId, stage: Stage, guard: &Guard, findings: &[Found]) {
        if findings.is_empty() {
            return;
        }
        let mut counters = self
            .shared
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for f in findings {
            tracing::info!(target: "audit", event = "guardrail_decision", tenant = %tenant,
                stage = stage.as_str(), category = %f.category, action = f.action.as_str(),
                profile = %guard.source, version = guard.version, "guardrail decision");
            if let Some((audit, metrics)) = self.shared.observers.get() {
                metrics.guardrail_decision(
                    tenant.as_str(),
                    stage.as_str(),
                    &f.category,
                    f.action.as_str(),
                );
                audit.record(crate::audit::event(
                    Some(tenant.clone()),
                    "guardrails".to_string(),
                    "guardrail.decision",
                    Some(f.category.clone()),
                    f.action.as_str(),
                    serde_json::json!({"stage": stage.as_str(), "profile": guard.source,
                        "version": guard.version}),
                ));
            }
            let mut key = (tenant.to_string(), f.category.clone(), f.action, stage);
            if counters.len() >= MAX_COUNTERS && !counters.contains_key(&key) {
                key.0 = "_other".into();
            }
            *counters.entry(key).or_default() += 1;
        }
    }

    /// The decision counters: tenant, category, action, stage, count.
    pub fn counters(&self) -> Vec<(String, String, Action, Stage, u64)> {
        self.shared
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((t, c, a, s), n)| (t.clone(), c.clone(), *a, *s, *n))
            .collect()
    }

    /// The active version of every scope.
    pub fn active(&self) -> Vec<GuardrailRecord> {
        self.loaded().records.clone()
    }
}

async fn reload(shared: &Shared, force: bool) -> Result<(), StoreError> {
    let records = shared.store.list_active_guardrail_profiles().await?;
    let current = shared.loaded.read().map(|l| l.clone()).unwrap_or_default();
    if !force && current.records == records {
        return Ok(());
    }
    let loaded = Arc::new(load(records));
    if let Ok(mut l) = shared.loaded.write() {
        *l = loaded;
    }
    Ok(())
}

/// Re-reads the active profiles every `REGISTRY_TTL` until the guardrails are dropped.
async fn refresh(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(REGISTRY_TTL).await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        if let Err(e) = reload(&s, false).await {
            tracing::warn!(error = %e, "cannot re-read the guardrail profiles");
        }
    }
}
