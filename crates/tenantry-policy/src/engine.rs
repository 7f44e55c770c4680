//! The policy engine: the schema (base file plus one action per catalogued tool), the active
//! policy set of the platform, of each tier and of each tenant, and decisions over them.
//!
//! The engine holds an immutable snapshot behind a lock that is only taken to swap it, so a
//! decision never waits for an update and never sees half of one. The policy sets that apply
//! to a caller are merged once per (tier, tenant) and cached in the snapshot.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet, Request, RequestBuilder, RestrictedExpression, Schema,
    SchemaFragment, ValidationMode, Validator,
};
use serde_json::{Map, Value, json};
use tenantry_core::{TenantId, TierName, UserId};
use tenantry_store::{PolicySetRecord, Store};

use crate::input::InputType;
use crate::{Decision, Mode, PolicyDiagnostic, PolicyError, PolicyScope};

/// The fixed part of the Cedar schema.
pub const BASE_SCHEMA: &str = include_str!("../schema/tenantry.cedarschema");

/// The platform set of a fresh state: every caller may call every tool it is offered (shared
/// tools, and its own tenant's tools, which only it is offered). Policies are opt-in
/// restrictions (`forbid`) on top of it, until the operator replaces it with a platform set
/// of their own (an empty one leaves only what tier and tenant sets permit).
pub const STARTER_POLICY: &str = r#"// The starter platform policy: every tier may call every tool it is offered.
@id("starter")
permit (principal, action in Tenantry::Action::"CallTool", resource);
"#;

/// Deepest nesting of parentheses, brackets and braces a policy text may have. Cedar's parser
/// recurses once per level, with tens of kilobytes of stack per level in a build without
/// optimisations: an upload of a few dozen nested parentheses overflowed a server thread's
/// stack, which aborts the whole process. Real policies nest a few levels.
pub const MAX_POLICY_NESTING: usize = 32;

/// Deepest expression a policy may have, counted in levels of its JSON form (an operator with
/// its operands is a level or two). Cedar clones, drops and evaluates expression trees by
/// recursion on whatever thread holds them, so a set with a chain of 20,000 `+` overflowed a
/// server thread when it was dropped. Real policies are a few dozen levels deep.
pub const MAX_POLICY_DEPTH: usize = 256;

/// The stack of the thread on which Cedar parses and validates a policy text. Long operator
/// chains and nested `if`s are parsed by recursion as well; within the store's 256 KiB text
/// limit they need tens of megabytes in a debug build. Address space only: a thread's stack
/// is committed as far as it is used.
const CEDAR_STACK_BYTES: usize = 512 << 20;

const NAMESPACE: &str = "Tenantry";
const CALL_TOOL: &str = "CallTool";

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

/// One scope's compiled policy set.
#[derive(Debug)]
struct CompiledSet {
    mode: Mode,
    policies: Vec<Policy>,
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
            Err(e) => return refuse(e),
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
            Err(e) => return refuse(e),
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

// ---- compiling sets ----------------------------------------------------------------------------

/// `tier:basic@v3`.
fn set_id(scope: &PolicyScope, version: i64) -> String {
    format!("{scope}@v{version}")
}

fn deny_all(id: &str) -> Policy {
    // A fixed, valid policy: parsing it cannot fail.
    Policy::parse(
        Some(PolicyId::new(id)),
        "forbid (principal, action, resource);",
    )
    .unwrap_or_else(|_| unreachable_policy())
}

#[allow(
    clippy::panic,
    reason = "only reachable if Cedar stops parsing its simplest policy, a build-time impossibility"
)]
fn unreachable_policy() -> Policy {
    panic!("cedar refused `forbid (principal, action, resource);`")
}

/// Whether Cedar's answer allows the call. Cedar skips a policy whose evaluation fails (an
/// integer overflow the caller's input provokes, say); a skipped `permit` grants nothing, but
/// a skipped `forbid` would let through a call it may have forbidden, so an error in any
/// `forbid` (or in a policy that cannot be found) denies: the engine could not decide.
fn allows(response: &cedar_policy::Response, set: &PolicySet) -> bool {
    response.decision() == CedarDecision::Allow
        && response.diagnostics().errors().all(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(e) => set
                .policy(e.policy_id())
                .is_some_and(|p| p.effect() == cedar_policy::Effect::Permit),
        })
}

/// Runs `work` (Cedar parsing and validation) on a thread of its own with a stack of
/// `CEDAR_STACK_BYTES`, waiting for it: whatever a text makes Cedar recurse, the server's own
/// threads (2 MiB stacks) never overflow.
fn on_cedar_stack<T: Send>(
    work: impl FnOnce() -> Result<T, PolicyError> + Send,
) -> Result<T, PolicyError> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("cedar-parse".into())
            .stack_size(CEDAR_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| {
                PolicyError::Unavailable(format!("cannot start a thread to parse policies: {e}"))
            })?;
        worker
            .join()
            .unwrap_or_else(|_| Err(PolicyError::Unavailable("the policy parser failed".into())))
    })
}

/// The depth of a JSON value, counted without recursion.
fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut todo = vec![(v, 1usize)];
    while let Some((v, depth)) = todo.pop() {
        deepest = deepest.max(depth);
        match v {
            Value::Array(items) => todo.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(fields) => todo.extend(fields.values().map(|f| (f, depth + 1))),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
    }
    deepest
}

/// Refuses a text nested deeper than `MAX_POLICY_NESTING` (outside string literals and
/// comments), naming where it went too deep.
fn check_nesting(text: &str) -> Result<(), PolicyError> {
    let mut depth = 0usize;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_POLICY_NESTING {
                    return Err(PolicyError::Invalid {
                        diagnostics: vec![PolicyDiagnostic::at(
                            format!(
                                "expressions nest too deep: at most {MAX_POLICY_NESTING} levels of \
                                 parentheses, brackets and braces"
                            ),
                            text,
                            Some(at),
                        )],
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a policy set text: static policies only, `@id` annotations distinct. Runs Cedar's
/// parser, so it belongs on the Cedar stack (`on_cedar_stack`).
fn parse(text: &str) -> Result<PolicySet, PolicyError> {
    check_nesting(text)?;
    let pset = PolicySet::from_str(text).map_err(|errors| PolicyError::Invalid {
        diagnostics: errors
            .iter()
            .map(|e| PolicyDiagnostic::from_miette(e, text))
            .collect(),
    })?;
    let mut diagnostics = Vec::new();
    for p in pset.policies() {
        let name = p
            .annotation("id")
            .map_or_else(|| p.id().to_string(), str::to_owned);
        let depth = match p.to_json() {
            Ok(json) => json_depth(&json),
            Err(e) => {
                diagnostics.push(PolicyDiagnostic::at(
                    format!("policy {name} cannot be inspected: {e}"),
                    text,
                    None,
                ));
                continue;
            }
        };
        if depth > MAX_POLICY_DEPTH {
            diagnostics.push(PolicyDiagnostic::at(
                format!(
                    "policy {name} nests too deep: its expression is {depth} levels deep, at \
                     most {MAX_POLICY_DEPTH}; split long chains of operators or conditions"
                ),
                text,
                None,
            ));
        }
    }
    if pset.templates().next().is_some() {
        let at = text.find("?principal").or_else(|| text.find("?resource"));
        diagnostics.push(PolicyDiagnostic::at(
            "templates (?principal, ?resource) are not supported: write static policies",
            text,
            at,
        ));
    }
    let mut seen = HashSet::new();
    for p in pset.policies() {
        if let Some(id) = p.annotation("id")
            && !seen.insert(id.to_owned())
        {
            let at = text.find(&format!("\"{id}\""));
            diagnostics.push(PolicyDiagnostic::at(
                format!("two policies are annotated @id(\"{id}\"); ids must be distinct"),
                text,
                at,
            ));
        }
    }
    if diagnostics.is_empty() {
        Ok(pset)
    } else {
        Err(PolicyError::Invalid { diagnostics })
    }
}

/// Parses a set and gives its policies their audit ids: `{scope}@v{version}#{name}`, the name
/// being the policy's `@id` annotation, or its position in the text (0, 1, ...).
fn compile(
    scope: &PolicyScope,
    version: i64,
    mode: Mode,
    text: &str,
) -> Result<CompiledSet, PolicyError> {
    on_cedar_stack(|| compile_here(scope, version, mode, text))
}

fn compile_here(
    scope: &PolicyScope,
    version: i64,
    mode: Mode,
    text: &str,
) -> Result<CompiledSet, PolicyError> {
    let pset = parse(text)?;
    let prefix = set_id(scope, version);
    let mut numbered: Vec<(usize, &Policy)> = pset
        .policies()
        .map(|p| {
            // Cedar numbers the policies of a text policy0, policy1... in order.
            let n = p
                .id()
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            (n, p)
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let policies = numbered
        .into_iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let name = p
                .annotation("id")
                .map_or_else(|| i.to_string(), str::to_owned);
            p.new_id(PolicyId::new(format!("{prefix}#{name}")))
        })
        .collect();
    Ok(CompiledSet { mode, policies })
}

// ---- the schema --------------------------------------------------------------------------------

/// The generated part of the schema, in Cedar's JSON format: one action per tool.
fn generated_fragment(tools: &HashMap<String, InputType>) -> Result<Value, PolicyError> {
    let mut actions = Map::new();
    let mut names: Vec<&String> = tools.keys().collect();
    names.sort();
    for name in names {
        if name == CALL_TOOL {
            return Err(PolicyError::Schema(format!(
                "a tool may not be named {CALL_TOOL:?}"
            )));
        }
        let input = tools.get(name).map(InputType::to_cedar_schema);
        actions.insert(
            name.clone(),
            json!({
                "memberOf": [{"id": CALL_TOOL}],
                "appliesTo": {
                    "principalTypes": ["User"],
                    "resourceTypes": ["Tool"],
                    "context": {
                        "type": "Record",
                        "attributes": {
                            "input": input,
                            "time": {"type": "EntityOrCommon", "name": "Time"},
                            "tool": {"type": "String"},
                        }
                    }
                }
            }),
        );
    }
    Ok(json!({ NAMESPACE: { "entityTypes": {}, "actions": actions } }))
}

fn build_schema(tools: &HashMap<String, InputType>) -> Result<Schema, PolicyError> {
    let (base, _warnings) = SchemaFragment::from_cedarschema_str(BASE_SCHEMA)
        .map_err(|e| PolicyError::Schema(format!("the base schema: {e}")))?;
    let generated = SchemaFragment::from_json_value(generated_fragment(tools)?)
        .map_err(|e| PolicyError::Schema(format!("the tool actions: {e}")))?;
    Schema::from_schema_fragments([base, generated])
        .map_err(|e| PolicyError::Schema(format!("the tool actions: {e}")))
}

// ---- requests ----------------------------------------------------------------------------------

struct Uids {
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let ty = EntityTypeName::from_str(&format!("{NAMESPACE}::{type_name}"))
        .map_err(|e| format!("entity type {type_name}: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

impl Uids {
    fn new(p: &PrincipalAttrs, tool: &ToolRef) -> Result<Self, String> {
        Ok(Self {
            // Users are per tenant; tenant ids have no '/', so this is unambiguous.
            principal: uid("User", &format!("{}/{}", p.tenant, p.user))?,
            action: uid("Action", &tool.full_name)?,
            resource: uid("Tool", &tool.full_name)?,
        })
    }
}

/// The entities of one request: the user (in its tenant and tier, tagged with its claims),
/// the tool (in its target), and the tool's action (in `CallTool`).
fn entities(p: &PrincipalAttrs, tool: &ToolRef, uids: &Uids) -> Result<Entities, String> {
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let tags = p.claims.iter().map(|(k, v)| {
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        (k.clone(), RestrictedExpression::new_string(text))
    });
    let user = Entity::new_with_tags(
        uids.principal.clone(),
        [
            ("tenant".to_owned(), string(p.tenant.as_str())),
            ("tier".to_owned(), string(p.tier.as_str())),
            ("user".to_owned(), string(p.user.as_str())),
            (
                "roles".to_owned(),
                RestrictedExpression::new_set(p.roles.iter().map(|r| string(r))),
            ),
        ],
        [
            uid("Tier", p.tier.as_str())?,
            uid("Tenant", p.tenant.as_str())?,
        ],
        tags,
    )
    .map_err(|e| format!("the principal: {e}"))?;
    let name = tool
        .full_name
        .strip_prefix(&format!("{}___", tool.target))
        .or_else(|| tool.full_name.rsplit_once("___").map(|(_, n)| n))
        .unwrap_or(&tool.full_name);
    let resource = Entity::new(
        uids.resource.clone(),
        [
            ("target".to_owned(), string(&tool.target)),
            ("name".to_owned(), string(name)),
            (
                "tenant_owned".to_owned(),
                RestrictedExpression::new_bool(tool.tenant_owned),
            ),
        ]
        .into_iter()
        .collect(),
        [uid("Target", &tool.target)?].into_iter().collect(),
    )
    .map_err(|e| format!("the tool: {e}"))?;
    let call_tool = uid("Action", CALL_TOOL)?;
    let action = Entity::new_no_attrs(uids.action.clone(), [call_tool.clone()].into());
    Entities::from_entities(
        [
            user,
            resource,
            action,
            Entity::new_no_attrs(call_tool, HashSet::new()),
        ],
        None,
    )
    .map_err(|e| format!("the entities: {e}"))
}

/// Hour (0-23), minute (0-59) and ISO weekday (1 = Monday ... 7 = Sunday) of `now` in UTC.
pub(crate) fn utc_parts(now: SystemTime) -> (i64, i64, i64) {
    let secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // 1970-01-01 was a Thursday (ISO weekday 4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    (of_day / 3600, of_day % 3600 / 60, weekday)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_parts_of_known_instants() {
        // 2024-03-15 14:37:00 UTC, a Friday.
        let t = UNIX_EPOCH + Duration::from_secs(1_710_513_420);
        assert_eq!(utc_parts(t), (14, 37, 5));
        assert_eq!(utc_parts(UNIX_EPOCH), (0, 0, 4));
        // 1969-12-31 23:59 UTC, a Wednesday.
        let t = UNIX_EPOCH - Duration::from_secs(60);
        assert_eq!(utc_parts(t), (23, 59, 3));
    }

    #[test]
    fn policy_ids_name_scope_version_and_position_or_annotation() {
        let set = compile(
            &PolicyScope::Tier(TierName::new("basic").unwrap_or_else(|_| unreachable!())),
            3,
            Mode::Enforce,
            "permit(principal, action, resource);\n@id(\"named\")\nforbid(principal, action, resource);\npermit(principal, action, resource);",
        );
        let ids: Vec<String> = set
            .map(|s| s.policies.iter().map(|p| p.id().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            ids,
            ["tier:basic@v3#0", "tier:basic@v3#named", "tier:basic@v3#2"]
        );
    }
}
