//! The policy engine: the schema (base file plus one action per catalogued tool), the active
//! policy set of the platform, of each tier and of each tenant, and decisions over them.
//!
//! The engine holds an immutable snapshot behind a lock that is only taken to swap it, so a
//! decision never waits for an update and never sees half of one. The policy sets that apply
//! to a caller are merged once per (tier, tenant) and cached in the snapshot.
//!
//! Texts are made into policies in `compile`, the schema is built in `schema`, and a call is
//! put to Cedar (and its answer read) in `request`; this module holds what is in force and
//! decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, PolicySet, Request, RequestBuilder, Schema,
    SchemaFragment, ValidationMode, Validator,
};
use serde_json::{Map, Value, json};
use tenantry_core::{TenantId, TierName, UserId};
use tenantry_store::{PolicySetRecord, Store};

use crate::compile::{CompiledSet, compile, deny_all, on_cedar_stack, parse, set_id};
use crate::input::InputType;
use crate::request::{Uids, allows, entities, utc_parts};
use crate::schema::{BASE_SCHEMA, build_schema, generated_fragment};
use crate::{Decision, Mode, PolicyDiagnostic, PolicyError, PolicyScope};

/// The platform set of a fresh state: every caller may call every tool it is offered (shared
/// tools, and its own tenant's tools, which only it is offered). Policies are opt-in
/// restrictions (`forbid`) on top of it, until the operator replaces it with a platform set
/// of their own (an empty one leaves only what tier and tenant sets permit).
pub const STARTER_POLICY: &str = r#"// The starter platform policy: every tier may call every tool it is offered.
@id("starter")
permit (principal, action in Tenantry::Action::"CallTool", resource);
"#;

/// A tool of the catalogue, as the tools gateway registers it with the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// `target___tool`.
    pub full_name: String,
    /// The tool's JSON Schema for its input (MCP's `inputSchema`).
    pub input_schema: Value,
}

/// The tool of one call or listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRef {
    /// `target___tool`.
    pub full_name: String,
    pub target: String,
    /// Whether the tool's target belongs to one tenant (silo): the gateway offers such a tool
    /// only to that tenant.
    pub tenant_owned: bool,
}

/// The verified caller, as Cedar's principal.
#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalAttrs {
    pub tenant: TenantId,
    pub tier: TierName,
    pub user: UserId,
    pub roles: Vec<String>,
    /// The claims of the caller's verified token (empty for API keys and workload tokens
    /// without claims). Cedar sees them as the principal's tags.
    pub claims: Map<String, Value>,
}

/// One tool call to decide.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    pub principal: &'a PrincipalAttrs,
    pub tool: &'a ToolRef,
    /// The call's `arguments`.
    pub input: &'a Value,
    /// When the call is made (injected, so tests can fix the clock).
    pub now: SystemTime,
}

/// What a valid policy set upload looks like to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// How many policies the set has.
    pub policies: usize,
    /// The validator's warnings (the set is accepted anyway).
    pub warnings: Vec<PolicyDiagnostic>,
}

/// What `reload` did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Active sets loaded.
    pub loaded: usize,
    /// Stored sets that could not be compiled: their scopes deny everything until fixed.
    pub unloadable: Vec<PolicyError>,
}

/// The sets that apply to one (tier, tenant), merged.
#[derive(Debug)]
struct Merged {
    /// Every applicable set.
    all: PolicySet,
    /// The enforce-mode sets only.
    enforced: PolicySet,
    log_only: bool,
}

#[derive(Debug)]
struct Snapshot {
    schema: Schema,
    tools: HashMap<String, InputType>,
    /// `None`: no stored platform set is active, the starter applies.
    platform: Option<Arc<CompiledSet>>,
    starter: Arc<CompiledSet>,
    tiers: HashMap<TierName, Arc<CompiledSet>>,
    tenants: HashMap<TenantId, Arc<CompiledSet>>,
    merged: Mutex<HashMap<MergeKey, Arc<Merged>>>,
}

/// A caller's tier, and its tenant when that tenant has a set of its own.
type MergeKey = (TierName, Option<TenantId>);

impl Snapshot {
    /// A copy with the same schema and sets and an empty merge cache.
    fn with(&self, change: impl FnOnce(&mut SnapshotParts)) -> Snapshot {
        let mut parts = SnapshotParts {
            schema: self.schema.clone(),
            tools: self.tools.clone(),
            platform: self.platform.clone(),
            tiers: self.tiers.clone(),
            tenants: self.tenants.clone(),
        };
        change(&mut parts);
        Snapshot {
            schema: parts.schema,
            tools: parts.tools,
            platform: parts.platform,
            starter: Arc::clone(&self.starter),
            tiers: parts.tiers,
            tenants: parts.tenants,
            merged: Mutex::new(HashMap::new()),
        }
    }

    fn merged(&self, tier: &TierName, tenant: &TenantId) -> Arc<Merged> {
        let tenant_set = self.tenants.get(tenant);
        let key = (tier.clone(), tenant_set.map(|_| tenant.clone()));
        let mut cache = self.merged.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = cache.get(&key) {
            return Arc::clone(m);
        }
        let platform = self.platform.as_ref().unwrap_or(&self.starter);
        let sets = [Some(platform), self.tiers.get(tier), tenant_set];
        let mut all = PolicySet::new();
        let mut enforced = PolicySet::new();
        let mut log_only = false;
        for set in sets.into_iter().flatten() {
            log_only |= set.mode == Mode::LogOnly;
            for p in &set.policies {
                // Ids are unique across scopes (they start with the scope), so adding cannot
                // fail; if it ever did, the policy would be missing, so fail closed instead.
                if all.add(p.clone()).is_err() {
                    let _ = all.add(deny_all(&format!("{}-duplicate", p.id())));
                }
                if set.mode == Mode::Enforce && enforced.add(p.clone()).is_err() {
                    let _ = enforced.add(deny_all(&format!("{}-duplicate", p.id())));
                }
            }
        }
        let merged = Arc::new(Merged {
            all,
            enforced,
            log_only,
        });
        cache.insert(key, Arc::clone(&merged));
        merged
    }
}

struct SnapshotParts {
    schema: Schema,
    tools: HashMap<String, InputType>,
    platform: Option<Arc<CompiledSet>>,
    tiers: HashMap<TierName, Arc<CompiledSet>>,
    tenants: HashMap<TenantId, Arc<CompiledSet>>,
}

/// Decides tool calls with Cedar. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct PolicyEngine {
    state: Arc<RwLock<Arc<Snapshot>>>,
    /// Serialises updates, so two updates never build on the same old snapshot.
    update: Arc<Mutex<()>>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("PolicyEngine")
            .field("tools", &s.tools.len())
            .field("platform_set", &s.platform.is_some())
            .field("tier_sets", &s.tiers.len())
            .field("tenant_sets", &s.tenants.len())
            .finish()
    }
}

impl PolicyEngine {
    /// An engine with the base schema, no tools, and the starter platform set.
    pub fn new() -> Result<Self, PolicyError> {
        let schema = build_schema(&HashMap::new())?;
        let starter = compile(&PolicyScope::Platform, 0, Mode::Enforce, STARTER_POLICY)
            .map_err(|e| PolicyError::Schema(format!("the starter policy: {e}")))?;
        let snapshot = Snapshot {
            schema,
            tools: HashMap::new(),
            platform: None,
            starter: Arc::new(starter),
            tiers: HashMap::new(),
            tenants: HashMap::new(),
            merged: Mutex::new(HashMap::new()),
        };
        Ok(Self {
            state: Arc::new(RwLock::new(Arc::new(snapshot))),
            update: Arc::new(Mutex::new(())),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn apply(&self, change: impl FnOnce(&mut SnapshotParts)) {
        let _serial = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let next = Arc::new(self.snapshot().with(change));
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    // ---- the tool catalogue --------------------------------------------------------------

    /// Replaces the tool catalogue: one Cedar action per tool, whose context's `input` is typed
    /// from the tool's input schema (see the `input` module for the mapping). Call it whenever
    /// the gateway's catalogue changes; a tool not in the catalogue is denied and hidden.
    pub fn set_tools(&self, tools: impl IntoIterator<Item = ToolSpec>) -> Result<(), PolicyError> {
        let tools: HashMap<String, InputType> = tools
            .into_iter()
            .map(|t| (t.full_name, InputType::from_json_schema(&t.input_schema)))
            .collect();
        let schema = build_schema(&tools)?;
        self.apply(|s| {
            s.schema = schema;
            s.tools = tools;
        });
        Ok(())
    }

    /// The schema in force, in Cedar's schema syntax (the base file and the generated tool
    /// actions), for operators writing policies.
    pub fn schema_text(&self) -> String {
        let s = self.snapshot();
        match generated_fragment(&s.tools).and_then(|f| {
            SchemaFragment::from_json_value(f)
                .map_err(|e| PolicyError::Schema(e.to_string()))
                .and_then(|f| {
                    f.to_cedarschema()
                        .map_err(|e| PolicyError::Schema(e.to_string()))
                })
        }) {
            Ok(generated) => {
                format!("{BASE_SCHEMA}\n// Generated from the tool catalogue.\n{generated}")
            }
            Err(e) => format!("{BASE_SCHEMA}\n// The tool actions cannot be shown: {e}\n"),
        }
    }

    // ---- policy sets ---------------------------------------------------------------------

    /// Checks an upload for `scope` against the schema in force: it must parse, hold only
    /// static policies with distinct `@id`s, and validate (strict mode: unknown actions,
    /// attributes or types are errors). Every problem is reported with its line and column.
    pub fn validate(&self, text: &str) -> Result<Validated, PolicyError> {
        let snap = self.snapshot();
        on_cedar_stack(|| {
            let pset = parse(text)?;
            let result =
                Validator::new(snap.schema.clone()).validate(&pset, ValidationMode::Strict);
            let errors: Vec<PolicyDiagnostic> = result
                .validation_errors()
                .map(|e| PolicyDiagnostic::from_miette(e, text))
                .collect();
            if !errors.is_empty() {
                return Err(PolicyError::Invalid {
                    diagnostics: errors,
                });
            }
            Ok(Validated {
                policies: pset.policies().count(),
                warnings: result
                    .validation_warnings()
                    .map(|w| PolicyDiagnostic::from_miette(w, text))
                    .collect(),
            })
        })
    }

    /// Makes `record` the set in force for its scope (after it was stored, or to roll back).
    /// The text is parsed, not validated: validation belongs to the upload (`validate`), and a
    /// stored set must load even before the tools it names are catalogued.
    pub fn install(&self, record: &PolicySetRecord) -> Result<(), PolicyError> {
        let compiled = Arc::new(compile(
            &record.scope,
            record.version,
            record.mode,
            &record.text,
        )?);
        let scope = record.scope.clone();
        self.apply(move |s| match scope {
            PolicyScope::Platform => s.platform = Some(compiled),
            PolicyScope::Tier(t) => {
                s.tiers.insert(t, compiled);
            }
            PolicyScope::Tenant(t) => {
                s.tenants.insert(t, compiled);
            }
        });
        Ok(())
    }

    /// Leaves `scope` without a set: a tier or tenant then adds nothing; the platform falls
    /// back to the starter set.
    pub fn remove(&self, scope: &PolicyScope) {
        let scope = scope.clone();
        self.apply(move |s| match scope {
            PolicyScope::Platform => s.platform = None,
            PolicyScope::Tier(t) => {
                s.tiers.remove(&t);
            }
            PolicyScope::Tenant(t) => {
                s.tenants.remove(&t);
            }
        });
    }

    /// Replaces every set with the active ones in `records` (scopes without a record have no
    /// set; the platform falls back to the starter). A record that cannot be compiled makes its
    /// scope deny everything (fail closed) and is reported.
    pub fn replace_all(&self, records: &[PolicySetRecord]) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut platform = None;
        let mut tiers = HashMap::new();
        let mut tenants = HashMap::new();
        for r in records.iter().filter(|r| r.active) {
            let compiled = match compile(&r.scope, r.version, r.mode, &r.text) {
                Ok(c) => c,
                Err(e) => {
                    let id = set_id(&r.scope, r.version);
                    report.unloadable.push(PolicyError::Unloadable {
                        id: id.clone(),
                        detail: e.to_string(),
                    });
                    CompiledSet {
                        mode: Mode::Enforce,
                        policies: vec![deny_all(&format!("{id}#unloadable"))],
                    }
                }
            };
            report.loaded += 1;
            let compiled = Arc::new(compiled);
            match &r.scope {
                PolicyScope::Platform => platform = Some(compiled),
                PolicyScope::Tier(t) => {
                    tiers.insert(t.clone(), compiled);
                }
                PolicyScope::Tenant(t) => {
                    tenants.insert(t.clone(), compiled);
                }
            }
        }
        self.apply(move |s| {
            s.platform = platform;
            s.tiers = tiers;
            s.tenants = tenants;
        });
        report
    }

    /// Loads the active sets from the store (at start-up, after a change, or periodically on
    /// every replica). If the store cannot be read, the sets in force stay and the error is
    /// returned.
    pub async fn reload(&self, store: &Store) -> Result<ReloadReport, PolicyError> {
        let records = store.list_active_policy_sets().await?;
        Ok(self.replace_all(&records))
    }

    // ---- decisions -----------------------------------------------------------------------

    /// Decides one tool call. Default deny; a `forbid` that is satisfied overrides every
    /// `permit`; the applicable sets are the platform's (or the starter), the caller's tier's
    /// and the caller's tenant's. Never fails: what cannot be evaluated is denied.
    pub fn authorize(&self, req: &AuthzRequest<'_>) -> Decision {
        let snap = self.snapshot();
        let p = req.principal;
        let tool = &req.tool.full_name;
        let refuse = |e: String| Decision::refused(&p.tenant, &p.user, tool, e);

        let Some(input_type) = snap.tools.get(tool) else {
            return refuse(format!(
                "tool {tool} is not in the policy engine's catalogue"
            ));
        };
        let input = if req.input.is_null() {
            Value::Object(Map::new())
        } else {
            req.input.clone()
        };
        let input = match input_type.convert(&input, "input") {
            Ok(v) => v,
            Err(e) => return refuse(format!("the input does not fit the tool's schema: {e}")),
        };
        let (hour, minute, weekday) = utc_parts(req.now);
        let context = json!({
            "input": input,
            "time": {"hour": hour, "minute": minute, "weekday": weekday},
            "tool": tool,
        });
        let uids = match Uids::new(p, req.tool) {
            Ok(u) => u,
            Err(e) => return refuse(e.to_string()),
        };
        let context = match Context::from_json_value(context, Some((&snap.schema, &uids.action))) {
            Ok(c) => c,
            Err(e) => return refuse(format!("the call's context does not fit the schema: {e}")),
        };
        let request = match Request::new(
            uids.principal.clone(),
            uids.action.clone(),
            uids.resource.clone(),
            context,
            Some(&snap.schema),
        ) {
            Ok(r) => r,
            Err(e) => return refuse(format!("the request does not fit the schema: {e}")),
        };
        let entities = match entities(p, req.tool, &uids) {
            Ok(e) => e,
            Err(e) => return refuse(e.to_string()),
        };

        let merged = snap.merged(&p.tier, &p.tenant);
        let authorizer = Authorizer::new();
        let full = authorizer.is_authorized(&request, &merged.all, &entities);
        let policy_allowed = allows(&full, &merged.all);
        let (allowed, mode) = if merged.log_only {
            let enforced = authorizer.is_authorized(&request, &merged.enforced, &entities);
            (allows(&enforced, &merged.enforced), Mode::LogOnly)
        } else {
            (policy_allowed, Mode::Enforce)
        };
        let mut determining_policies: Vec<String> = full
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        determining_policies.sort();
        let errors = full
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        Decision {
            tenant: p.tenant.clone(),
            user: p.user.clone(),
            tool: tool.clone(),
            allowed,
            policy_allowed,
            enforced: !merged.log_only,
            mode,
            determining_policies,
            evaluated: true,
            errors,
        }
    }

    /// Whether `tools/list` shows `tool` to `principal`: true if some input, at some time,
    /// could be allowed by the enforce-mode sets. It is decided by partial evaluation with the
    /// whole context (input, time, tool) unknown: a tool is hidden only when the sets deny it
    /// whatever the context, e.g. a `forbid` without conditions on the context, or no `permit`
    /// that could apply to this principal. A tool the engine does not know is hidden.
    pub fn visible(&self, principal: &PrincipalAttrs, tool: &ToolRef) -> bool {
        let snap = self.snapshot();
        if !snap.tools.contains_key(&tool.full_name) {
            return false;
        }
        let Ok(uids) = Uids::new(principal, tool) else {
            return false;
        };
        let Ok(entities) = entities(principal, tool, &uids) else {
            return false;
        };
        let request = RequestBuilder::default()
            .principal(uids.principal)
            .action(uids.action)
            .resource(uids.resource)
            .build();
        let merged = snap.merged(&principal.tier, &principal.tenant);
        let partial =
            Authorizer::new().is_authorized_partial(&request, &merged.enforced, &entities);
        partial.decision() != Some(CedarDecision::Deny)
    }
}
