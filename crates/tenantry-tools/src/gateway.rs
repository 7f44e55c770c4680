//! The tool gateway's decisions, independent of the MCP transport: which tools a caller sees
//! (`tools/list`) and what happens on a call (`tools/call`): admission by the meter, tenancy
//! of the target, policy with the call's input, the tenant's credential, the upstream call
//! under the target's deadline, and the metering record.
//!
//! Order matters and is fixed: no call reaches an upstream before the policy allowed it (an
//! upstream MCP server's tool list may be fetched first: the policy must know a tool before it
//! decides on it), and a credential is looked up only for the verified caller's tenant, only
//! for a target that caller can see. Every call's deadline is its target's timeout: an upstream
//! that is down or slow gives an error in time, never a hang.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::catalog::{Backend, Catalog, Target};
use crate::credentials::{CredentialSource, OutboundCredential};
use crate::error::{ToolError, UpstreamError};
use crate::hosted::{SessionBasis, hosted_session_id};
use crate::identity::CallerIdentity;
use crate::meter::{CallStatus, NoGuard, NoMeter, ToolCallRecord, ToolGuard, ToolMeter};
use crate::policy::{OfferedTool, ToolAuthzRequest, ToolDecision, ToolPolicy, ToolRef};
use crate::session::Sessions;
use crate::target::{TOOL_SEPARATOR, TargetName, TargetSpec};
use crate::upstream::mcp::{McpUpstream, Route};
use crate::upstream::openapi::{CallError, OpenApiTarget};

/// Settings of the MCP endpoint.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// A session unused this long is forgotten (the client re-initializes).
    pub session_idle_timeout: Duration,
    /// Most live sessions per user; the least recently used gives way.
    pub max_sessions_per_user: usize,
    /// Most live sessions per tenant.
    pub max_sessions_per_tenant: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// `serverInfo.name` in `initialize`.
    pub server_name: String,
    /// `instructions` in `initialize`, if any.
    pub instructions: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            session_idle_timeout: Duration::from_secs(3600),
            max_sessions_per_user: 64,
            max_sessions_per_tenant: 10_000,
            max_body_bytes: 4 * 1024 * 1024,
            server_name: "tenantry".into(),
            instructions: None,
        }
    }
}

/// The tool gateway: the catalogue and the server's policy, vault and meter.
#[derive(Debug)]
pub struct ToolGateway {
    catalog: Arc<Catalog>,
    policy: Arc<dyn ToolPolicy>,
    credentials: Arc<dyn CredentialSource>,
    meter: Arc<dyn ToolMeter>,
    guard: Arc<dyn ToolGuard>,
    pub(crate) sessions: Sessions,
    pub(crate) config: GatewayConfig,
}

fn sessions_for(c: &GatewayConfig) -> Sessions {
    Sessions::new(
        c.session_idle_timeout,
        c.max_sessions_per_user,
        c.max_sessions_per_tenant,
    )
}

impl ToolGateway {
    /// A gateway with no metering and the default configuration.
    pub fn new(
        catalog: Arc<Catalog>,
        policy: Arc<dyn ToolPolicy>,
        credentials: Arc<dyn CredentialSource>,
    ) -> Self {
        let config = GatewayConfig::default();
        Self {
            catalog,
            policy,
            credentials,
            meter: Arc::new(NoMeter),
            guard: Arc::new(NoGuard),
            sessions: sessions_for(&config),
            config,
        }
    }

    pub fn with_meter(mut self, meter: Arc<dyn ToolMeter>) -> Self {
        self.meter = meter;
        self
    }

    /// Guardrails on the calls' arguments and results.
    pub fn with_guard(mut self, guard: Arc<dyn ToolGuard>) -> Self {
        self.guard = guard;
        self
    }

    pub fn with_config(mut self, config: GatewayConfig) -> Self {
        self.sessions = sessions_for(&config);
        self.config = config;
        self
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The tools `caller` may call, as MCP `Tool` objects named `{target}___{tool}`, sorted by
    /// name. A target that fails to list in time, or needs a credential the caller's tenant
    /// does not have, contributes nothing (hidden, not an error). `session` is the caller's
    /// MCP session: a runtime-hosted target lists in the runtime session that serves it.
    pub async fn list_tools(&self, caller: &CallerIdentity, session: Option<&str>) -> Vec<Value> {
        let targets = self.catalog.visible_to(caller.tenant());
        let basis = session.map(SessionBasis::Mcp);
        let lists = join_all(targets.iter().map(|t| self.target_tools(caller, t, basis))).await;
        let mut tools: Vec<Value> = lists.into_iter().flatten().collect();
        tools.sort_by(|a, b| {
            let name = |v: &Value| {
                v.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            name(a).cmp(&name(b))
        });
        tools
    }

    async fn target_tools(
        &self,
        caller: &CallerIdentity,
        target: &Target,
        basis: Option<SessionBasis<'_>>,
    ) -> Vec<Value> {
        let spec = &target.spec;
        let work = async {
            let credential = self.credential(caller, target).await?;
            let raw: Vec<Value> = match &target.backend {
                Backend::Mcp(m) => m
                    .list_tools(
                        &self.route(caller, target, m, credential.as_ref(), basis)?,
                        &|fetched| self.offer(spec, fetched),
                    )
                    .await
                    .map_err(|error| ToolError::Upstream {
                        tool: spec.name.to_string(),
                        error,
                    })?
                    .iter()
                    .cloned()
                    .collect(),
                Backend::OpenApi(o) => {
                    self.offer_once(target, o);
                    o.operations().iter().map(|op| op.tool.clone()).collect()
                }
            };
            Ok::<_, ToolError>(raw)
        };
        let raw = match tokio::time::timeout(spec.timeout(), work).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => {
                tracing::warn!(tenant = %caller.tenant(), user = %caller.user, target = %spec.name,
                    reason = e.reason(), error = %e, "a target's tools are left out of tools/list");
                return Vec::new();
            }
            Err(_) => {
                tracing::warn!(tenant = %caller.tenant(), user = %caller.user, target = %spec.name,
                    timeout_ms = spec.timeout_ms, "a target did not list its tools in time");
                return Vec::new();
            }
        };
        raw.into_iter()
            .filter_map(|mut tool| {
                let upstream_name = tool.get("name").and_then(Value::as_str)?.to_owned();
                let full = format!("{}{TOOL_SEPARATOR}{upstream_name}", spec.name);
                let r = ToolRef {
                    name: &full,
                    target: &spec.name,
                    tool: &upstream_name,
                    shared: spec.tenant.is_none(),
                };
                if !self.policy.visible(caller, &r) {
                    return None;
                }
                tool.as_object_mut()?.insert("name".into(), json!(full));
                Some(tool)
            })
            .collect()
    }

    /// Makes the policy learn the tools of the targets as they are now (an OpenAPI target's
    /// operations; an upstream MCP server's list, fetched if not cached), so a policy upload
    /// can be validated against them. With `caller`, the targets that caller's tenant sees,
    /// with its credentials (a runtime-hosted server is started in a one-off session of the
    /// caller's, stopped again right after); without, every target, but those that need a
    /// tenant's credential or session are skipped. Returns the targets whose tools could not
    /// be learned, and why.
    pub async fn discover(&self, caller: Option<&CallerIdentity>) -> Vec<(TargetName, String)> {
        let targets = match caller {
            Some(c) => self.catalog.visible_to(c.tenant()),
            None => self.catalog.all(),
        };
        let learn = |target: Arc<Target>| async move {
            let spec = &target.spec;
            if let (Backend::Mcp(m), Some(c)) = (&target.backend, caller)
                && m.hosted_runtime().is_some()
            {
                let learned = self.discover_hosted(c, &target, m).await;
                return learned.err().map(|e| (spec.name.clone(), e.to_string()));
            }
            let work = async {
                match &target.backend {
                    Backend::OpenApi(o) => {
                        self.offer_once(&target, o);
                        Ok(())
                    }
                    Backend::Mcp(m) if m.hosted_runtime().is_some() => {
                        Err(hosted_needs_session(spec))
                    }
                    Backend::Mcp(m) => {
                        let credential = match caller {
                            Some(c) => self.credential(c, &target).await?,
                            None if spec.credential.is_some() => {
                                return Err(ToolError::CredentialMissing {
                                    target: spec.name.clone(),
                                });
                            }
                            None => None,
                        };
                        let route = Route::new(caller.map(|c| c.tenant()), credential.as_ref());
                        self.learn(spec, m, &route).await
                    }
                }
            };
            match tokio::time::timeout(spec.timeout(), work).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((spec.name.clone(), e.to_string())),
                Err(_) => Some((
                    spec.name.clone(),
                    format!("no tool list within {}ms", spec.timeout_ms),
                )),
            }
        };
        join_all(targets.into_iter().map(learn))
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Learns a runtime-hosted target's tools in a one-off runtime session of `caller`'s,
    /// stopped again whether the listing succeeded, failed or ran out of time.
    async fn discover_hosted(
        &self,
        caller: &CallerIdentity,
        target: &Target,
        m: &McpUpstream,
    ) -> Result<(), ToolError> {
        let spec = &target.spec;
        let once = uuid::Uuid::new_v4().simple().to_string();
        let basis = Some(SessionBasis::Discovery(&once));
        let session = hosted_session_id(&spec.name, caller, basis)
            .ok_or_else(|| hosted_needs_session(spec))?;
        let list = async {
            let credential = self.credential(caller, target).await?;
            let route = self.route(caller, target, m, credential.as_ref(), basis)?;
            self.learn(spec, m, &route).await
        };
        let listed = tokio::time::timeout(spec.timeout(), list).await;
        if let Some(host) = m.host() {
            host.end(caller, &session).await;
        }
        m.forget(&Route {
            tenant: Some(caller.tenant()),
            credential: None,
            hosted: Some((caller, session)),
        });
        listed.unwrap_or_else(|_| {
            Err(ToolError::Upstream {
                tool: spec.name.to_string(),
                error: UpstreamError::Timeout {
                    after: spec.timeout(),
                },
            })
        })
    }

    /// Where a message to an MCP target goes for `caller`: the credential and, for a
    /// runtime-hosted server, the runtime session that serves the caller.
    fn route<'a>(
        &self,
        caller: &'a CallerIdentity,
        target: &Target,
        m: &McpUpstream,
        credential: Option<&'a OutboundCredential>,
        basis: Option<SessionBasis<'_>>,
    ) -> Result<Route<'a>, ToolError> {
        if m.hosted_runtime().is_none() {
            return Ok(Route::new(Some(caller.tenant()), credential));
        }
        let session = hosted_session_id(&target.spec.name, caller, basis)
            .ok_or_else(|| hosted_needs_session(&target.spec))?;
        Ok(Route {
            tenant: Some(caller.tenant()),
            credential,
            hosted: Some((caller, session)),
        })
    }

    /// Stops the runtime sessions that served `caller`'s MCP session `session` (after the
    /// caller ended it). An agent's hosted sessions follow its own session and are left alone.
    pub async fn end_session(&self, caller: &CallerIdentity, session: &str) {
        if matches!(
            caller.credential,
            tenantry_core::CredentialKind::Workload { .. }
        ) {
            return;
        }
        for target in self.catalog.visible_to(caller.tenant()) {
            let Backend::Mcp(m) = &target.backend else {
                continue;
            };
            let Some(host) = m.host() else { continue };
            let Some(id) =
                hosted_session_id(&target.spec.name, caller, Some(SessionBasis::Mcp(session)))
            else {
                continue;
            };
            host.end(caller, &id).await;
            m.forget(&Route {
                tenant: Some(caller.tenant()),
                credential: None,
                hosted: Some((caller, id)),
            });
        }
    }

    /// The caller's credential for the target, if the target takes one.
    async fn credential(
        &self,
        caller: &CallerIdentity,
        target: &Target,
    ) -> Result<Option<OutboundCredential>, ToolError> {
        if target.spec.credential.is_none() {
            return Ok(None);
        }
        match self.credentials.credential_for(caller, &target.spec).await {
            Ok(Some(c)) => Ok(Some(c)),
            Ok(None) => Err(ToolError::CredentialMissing {
                target: target.spec.name.clone(),
            }),
            Err(error) => Err(ToolError::Credential {
                target: target.spec.name.clone(),
                error,
            }),
        }
    }

    /// Calls the tool `name` (`{target}___{tool}`) for `caller`. The result is the MCP
    /// `CallToolResult` (a tool that ran and failed is a result with `isError: true`).
    /// `session` is the MCP session, for the record.
    pub async fn call_tool(
        &self,
        caller: &CallerIdentity,
        name: &str,
        arguments: &Value,
        session: Option<&str>,
    ) -> Result<Value, ToolError> {
        self.meter
            .admit(caller, name)
            .await
            .map_err(ToolError::Refused)?;
        let started = Instant::now();
        let target = name
            .split_once(TOOL_SEPARATOR)
            .and_then(|(target, _)| self.catalog.resolve(caller.tenant(), target));
        let (Some(target), Some((_, tool))) = (target, name.split_once(TOOL_SEPARATOR)) else {
            return Err(ToolError::UnknownTool(name.to_owned()));
        };
        // The guard sees the arguments before the policy and the upstream, and the result
        // before the caller; what it masks is what they get.
        let outcome = match self.guard.check_input(caller, name, arguments).await {
            Err(refusal) => Err(ToolError::Refused(refusal)),
            Ok(masked) => {
                let arguments = masked.as_ref().unwrap_or(arguments);
                match self
                    .call_target(caller, &target, name, tool, arguments, session)
                    .await
                {
                    Ok(result) => match self.guard.check_result(caller, name, &result).await {
                        Ok(Some(masked)) => Ok(masked),
                        Ok(None) => Ok(result),
                        Err(refusal) => Err(ToolError::Refused(refusal)),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        let status = match &outcome {
            Ok(r) if r.get("isError") == Some(&Value::Bool(true)) => CallStatus::ToolError,
            Ok(_) => CallStatus::Ok,
            Err(e) => CallStatus::Failed {
                code: e.code(),
                reason: e.reason(),
            },
        };
        let price = match status {
            CallStatus::Ok | CallStatus::ToolError => target.spec.price_per_call,
            CallStatus::Failed { .. } => None,
        };
        let latency = started.elapsed();
        tracing::info!(tenant = %caller.tenant(), user = %caller.user, tool = name,
            status = %status.ledger_status(), latency_ms = latency.as_millis() as u64, "tool call");
        let recorded = self
            .meter
            .record(ToolCallRecord {
                tenant: caller.tenant().clone(),
                user: caller.user.clone(),
                session: session.map(str::to_owned),
                target: target.spec.name.clone(),
                tool: name.to_owned(),
                latency,
                status,
                price,
                credential: caller.credential.clone(),
                scope: caller.scope().clone(),
            })
            .await;
        match (outcome, recorded) {
            // A result the tool produced is sent only once the call is in the ledger; a call
            // that cannot be recorded is refused instead of given away unbilled.
            (Ok(_), Err(refusal)) => Err(ToolError::Refused(refusal)),
            (outcome, Ok(())) => outcome,
            (Err(e), Err(refusal)) => {
                tracing::error!(tenant = %caller.tenant(), tool = name, reason = refusal.reason,
                    "a failed tool call cannot be recorded");
                Err(e)
            }
        }
    }

    /// Lists an MCP target's tools over `route`, offering every fetched list to the policy.
    async fn learn(
        &self,
        spec: &TargetSpec,
        m: &McpUpstream,
        route: &Route<'_>,
    ) -> Result<(), ToolError> {
        m.list_tools(route, &|fetched| self.offer(spec, fetched))
            .await
            .map(drop)
            .map_err(|error| ToolError::Upstream {
                tool: spec.name.to_string(),
                error,
            })
    }

    /// Tells the policy which tools a target offers.
    fn offer(&self, spec: &TargetSpec, tools: &[Value]) {
        let empty = json!({});
        let named: Vec<(String, &str, &Value)> = tools
            .iter()
            .filter_map(|t| {
                let tool = t.get("name")?.as_str()?;
                let schema = t.get("inputSchema").unwrap_or(&empty);
                Some((format!("{}{TOOL_SEPARATOR}{tool}", spec.name), tool, schema))
            })
            .collect();
        let offered: Vec<OfferedTool<'_>> = named
            .iter()
            .map(|(name, tool, input_schema)| OfferedTool {
                name,
                tool,
                input_schema,
            })
            .collect();
        self.policy.tools_offered(spec, &offered);
    }

    /// Offers an OpenAPI target's (static) tools, once per registration; concurrent callers
    /// wait for it, so none reaches the policy first.
    fn offer_once(&self, target: &Target, o: &OpenApiTarget) {
        target.offered.call_once(|| {
            let tools: Vec<Value> = o.operations().iter().map(|op| op.tool.clone()).collect();
            self.offer(&target.spec, &tools);
        });
    }

    fn authorize(
        &self,
        caller: &CallerIdentity,
        spec: &TargetSpec,
        name: &str,
        tool: &str,
        arguments: &Value,
    ) -> Result<(), ToolError> {
        let request = ToolAuthzRequest {
            caller,
            tool: ToolRef {
                name,
                target: &spec.name,
                tool,
                shared: spec.tenant.is_none(),
            },
            input: arguments,
            now: SystemTime::now(),
        };
        match self.policy.authorize(&request) {
            ToolDecision::Allow => Ok(()),
            ToolDecision::Deny { reason } => Err(ToolError::Denied {
                tool: name.to_owned(),
                reason,
            }),
            ToolDecision::Undecided { reason } => Err(ToolError::PolicyUndecided {
                tool: name.to_owned(),
                reason,
            }),
        }
    }

    async fn call_target(
        &self,
        caller: &CallerIdentity,
        target: &Target,
        name: &str,
        tool: &str,
        arguments: &Value,
        session: Option<&str>,
    ) -> Result<Value, ToolError> {
        let spec = &target.spec;
        if !(arguments.is_object() || arguments.is_null()) {
            return Err(ToolError::InvalidArguments {
                tool: name.to_owned(),
                message: "`arguments` must be an object".into(),
            });
        }
        let unknown = || ToolError::UnknownTool(name.to_owned());
        let upstream = |error: UpstreamError| ToolError::Upstream {
            tool: name.to_owned(),
            error,
        };
        let work = async {
            match &target.backend {
                Backend::OpenApi(o) => {
                    let op = o.operation(tool).ok_or_else(unknown)?;
                    self.offer_once(target, o);
                    self.authorize(caller, spec, name, tool, arguments)?;
                    let credential = self.credential(caller, target).await?;
                    o.call(op, arguments, credential.as_ref())
                        .await
                        .map_err(|e| match e {
                            CallError::InvalidArguments(message) => ToolError::InvalidArguments {
                                tool: name.to_owned(),
                                message,
                            },
                            CallError::Upstream(error) => upstream(error),
                        })
                }
                Backend::Mcp(m) => {
                    // The list (usually cached) tells whether the tool exists and offers it
                    // to the policy before the policy decides on it.
                    let credential = self.credential(caller, target).await?;
                    let route = self.route(
                        caller,
                        target,
                        m,
                        credential.as_ref(),
                        session.map(SessionBasis::Mcp),
                    )?;
                    let tools = m
                        .list_tools(&route, &|fetched| self.offer(spec, fetched))
                        .await
                        .map_err(upstream)?;
                    if !tools
                        .iter()
                        .any(|t| t.get("name").and_then(Value::as_str) == Some(tool))
                    {
                        return Err(unknown());
                    }
                    self.authorize(caller, spec, name, tool, arguments)?;
                    m.call_tool(&route, tool, arguments).await.map_err(upstream)
                }
            }
        };
        match tokio::time::timeout(spec.timeout(), work).await {
            Ok(r) => r,
            Err(_) => Err(upstream(UpstreamError::Timeout {
                after: spec.timeout(),
            })),
        }
    }
}

fn hosted_needs_session(spec: &TargetSpec) -> ToolError {
    ToolError::Upstream {
        tool: spec.name.to_string(),
        error: UpstreamError::Request(
            "a runtime-hosted server runs in a tenant's session; it is listed and called within \
             an MCP session"
                .into(),
        ),
    }
}
