//! The catalogue: every registered target, compiled and ready to call, kept in memory. The
//! server loads it from the store at start and updates it on each control-plane change; the
//! gateway reads it on every `tools/list` and `tools/call`.
//!
//! Target names are unique across the platform, shared or not, so an exported tool name means
//! one target (and one policy action) everywhere. A tenant's own target is visible to that
//! tenant alone: [`Catalog::resolve`] and [`Catalog::visible_to`] take the caller's tenant and
//! treat another tenant's target as absent. Re-registering a name replaces the target only
//! for the same owner; moving a name to another owner means removing it first.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tenantry_core::TenantId;
use tenantry_core::upstream::error_message;
use url::Url;

use crate::error::TargetError;
use crate::hosted::HostedRuntimes;
use crate::target::{SpecSource, TargetKind, TargetName, TargetSpec};
use crate::upstream::http::{client, read_limited};
use crate::upstream::mcp::{HostSlot, McpUpstream, Transport};
use crate::upstream::openapi::{MAX_SPEC_BYTES, OpenApiTarget};

/// How long an upstream MCP server's tool list is reused before it is asked again.
pub const DEFAULT_TOOLS_TTL: Duration = Duration::from_secs(60);
/// Deadline for fetching an OpenAPI document from its URL.
const SPEC_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How a target is called.
#[derive(Debug)]
pub(crate) enum Backend {
    Mcp(McpUpstream),
    OpenApi(OpenApiTarget),
}

/// A registered target, compiled.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) spec: TargetSpec,
    pub(crate) backend: Backend,
    /// Whether a static tool set (OpenAPI) has been offered to the policy.
    pub(crate) offered: std::sync::Once,
}

/// One target that could not be loaded by [`Catalog::load`].
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub name: TargetName,
    pub error: TargetError,
}

/// All registered targets.
#[derive(Debug)]
pub struct Catalog {
    http: reqwest::Client,
    tools_ttl: Duration,
    /// The platform's runtimes, for runtime-hosted targets (set once by the server).
    host: HostSlot,
    entries: RwLock<BTreeMap<TargetName, Arc<Target>>>,
}

impl Catalog {
    pub fn new() -> Result<Self, TargetError> {
        Ok(Self {
            http: client()?,
            tools_ttl: DEFAULT_TOOLS_TTL,
            host: HostSlot::default(),
            entries: RwLock::new(BTreeMap::new()),
        })
    }

    /// Gives runtime-hosted targets the platform's runtimes, for targets loaded before and
    /// after. Only the first call has an effect; until then such targets answer an error.
    pub fn set_host(&self, host: Arc<dyn HostedRuntimes>) {
        if self.host.set(host).is_err() {
            tracing::warn!("the catalogue's runtimes were set already; the first ones are kept");
        }
    }

    /// Sets how long upstream MCP tool lists are cached (targets added afterwards).
    pub fn with_tools_ttl(mut self, ttl: Duration) -> Self {
        self.tools_ttl = ttl;
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TargetName, Arc<Target>>> {
        match self.entries.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<TargetName, Arc<Target>>> {
        match self.entries.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Validates `spec` and, for an OpenAPI document given by URL, fetches it once so the spec
    /// can be stored with its text inline (the stored target then does not depend on that URL
    /// staying up). Also compiles it, so a broken document is refused at registration.
    pub async fn resolve_spec(&self, mut spec: TargetSpec) -> Result<TargetSpec, TargetError> {
        spec.validate()?;
        if let TargetKind::Openapi { spec: source, .. } = &mut spec.kind
            && let SpecSource::Url(url) = source
        {
            let text = self.fetch_spec(&url.clone()).await?;
            *source = SpecSource::Inline(text);
        }
        self.compile(&spec)?;
        Ok(spec)
    }

    async fn fetch_spec(&self, url: &str) -> Result<String, TargetError> {
        let url =
            Url::parse(url).map_err(|e| TargetError::invalid("kind.spec.url", e.to_string()))?;
        let fetch = async {
            let resp = self
                .http
                .get(url)
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| {
                    TargetError::SpecFetch(crate::upstream::http::transport_error(&e).to_string())
                })?;
            let status = resp.status();
            let body = read_limited(resp, MAX_SPEC_BYTES)
                .await
                .map_err(|e| TargetError::SpecFetch(e.to_string()))?;
            if !status.is_success() {
                return Err(TargetError::SpecFetch(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    crate::error::trim_message(error_message(&body))
                )));
            }
            String::from_utf8(body)
                .map_err(|_| TargetError::InvalidSpec("the document is not UTF-8 text".into()))
        };
        match tokio::time::timeout(SPEC_FETCH_TIMEOUT, fetch).await {
            Ok(r) => r,
            Err(_) => Err(TargetError::SpecFetch(format!(
                "no answer within {}s",
                SPEC_FETCH_TIMEOUT.as_secs()
            ))),
        }
    }

    fn compile(&self, spec: &TargetSpec) -> Result<Target, TargetError> {
        spec.validate()?;
        let backend = match &spec.kind {
            TargetKind::Mcp { url } => {
                let url =
                    Url::parse(url).map_err(|e| TargetError::invalid("kind.url", e.to_string()))?;
                Backend::Mcp(McpUpstream::new(
                    Transport::Http {
                        url,
                        http: self.http.clone(),
                    },
                    self.tools_ttl,
                ))
            }
            TargetKind::Runtime { runtime } => Backend::Mcp(McpUpstream::new(
                Transport::Hosted {
                    runtime: runtime.clone(),
                    host: self.host.clone(),
                },
                self.tools_ttl,
            )),
            TargetKind::Openapi {
                spec: source,
                base_url,
            } => match source {
                SpecSource::Inline(text) => Backend::OpenApi(OpenApiTarget::compile(
                    text,
                    base_url,
                    self.http.clone(),
                    spec.credential.as_ref(),
                )?),
                SpecSource::Url(_) => {
                    return Err(TargetError::invalid(
                        "kind.spec",
                        "fetch the document first (Catalog::resolve_spec) or give it inline",
                    ));
                }
            },
        };
        Ok(Target {
            spec: spec.clone(),
            backend,
            offered: std::sync::Once::new(),
        })
    }

    /// Adds a target, or replaces the one of the same name and owner. Fetches a document given
    /// by URL.
    /// Returns the compiler's warnings (OpenAPI operations left out, and why).
    pub async fn upsert(&self, spec: TargetSpec) -> Result<Vec<String>, TargetError> {
        let spec = self.resolve_spec(spec).await?;
        let target = Arc::new(self.compile(&spec)?);
        let warnings = match &target.backend {
            Backend::OpenApi(o) => o.warnings.clone(),
            Backend::Mcp(_) => Vec::new(),
        };
        let mut entries = self.write();
        insert(&mut entries, target)?;
        Ok(warnings)
    }

    /// Replaces every target with `specs` (documents must be inline: what `resolve_spec`
    /// returned and the store kept). A spec that does not compile is left out and reported;
    /// the others are loaded.
    pub fn load(&self, specs: Vec<TargetSpec>) -> Vec<LoadFailure> {
        let mut failures = Vec::new();
        let mut fresh = BTreeMap::new();
        for spec in specs {
            let name = spec.name.clone();
            let result = self
                .compile(&spec)
                .and_then(|t| insert(&mut fresh, Arc::new(t)));
            if let Err(error) = result {
                failures.push(LoadFailure { name, error });
            }
        }
        *self.write() = fresh;
        failures
    }

    /// Removes a target; true if it existed.
    pub fn remove(&self, name: &TargetName) -> bool {
        self.write().remove(name).is_some()
    }

    /// The spec of a target.
    pub fn get(&self, name: &TargetName) -> Option<TargetSpec> {
        self.read().get(name).map(|t| t.spec.clone())
    }

    /// Every target's spec, shared ones and every tenant's (for the operator), by name.
    pub fn specs(&self) -> Vec<TargetSpec> {
        self.read().values().map(|t| t.spec.clone()).collect()
    }

    /// Forgets the cached tool lists of every upstream MCP server (the next `tools/list`
    /// asks them again).
    pub fn refresh(&self) {
        for t in self.read().values() {
            match &t.backend {
                Backend::Mcp(m) => m.invalidate(),
                Backend::OpenApi(_) => {}
            }
        }
    }

    /// Every target, compiled.
    pub(crate) fn all(&self) -> Vec<Arc<Target>> {
        self.read().values().cloned().collect()
    }

    /// The targets `tenant` can see: every shared one and its own.
    pub(crate) fn visible_to(&self, tenant: &TenantId) -> Vec<Arc<Target>> {
        self.read()
            .values()
            .filter(|t| t.spec.tenant.as_ref().is_none_or(|owner| owner == tenant))
            .cloned()
            .collect()
    }

    /// The target of this name, if `tenant` can see it.
    pub(crate) fn resolve(&self, tenant: &TenantId, name: &str) -> Option<Arc<Target>> {
        let name = TargetName::new(name).ok()?;
        self.read()
            .get(&name)
            .filter(|t| t.spec.tenant.as_ref().is_none_or(|owner| owner == tenant))
            .cloned()
    }
}

fn insert(
    entries: &mut BTreeMap<TargetName, Arc<Target>>,
    target: Arc<Target>,
) -> Result<(), TargetError> {
    let name = target.spec.name.clone();
    if let Some(existing) = entries.get(&name)
        && existing.spec.tenant != target.spec.tenant
    {
        let owner = |t: &Option<TenantId>| match t {
            Some(t) => format!("tenant {t}"),
            None => "all tenants (shared)".to_owned(),
        };
        return Err(TargetError::Conflict(format!(
            "target {name} is registered for {}; remove it before registering it for {}",
            owner(&existing.spec.tenant),
            owner(&target.spec.tenant)
        )));
    }
    entries.insert(name, target);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mcp(name: &str, tenant: Option<&str>) -> TargetSpec {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "kind": {"type": "mcp", "url": "http://127.0.0.1:1/mcp"},
            "tenant": tenant,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn names_are_unique_and_owned() {
        let c = Catalog::new().unwrap();
        let (a, b) = (
            TenantId::new("acme").unwrap(),
            TenantId::new("bolt").unwrap(),
        );
        c.upsert(mcp("crm", Some("acme"))).await.unwrap();
        c.upsert(mcp("wiki", None)).await.unwrap();
        assert_eq!(
            c.upsert(mcp("crm", Some("bolt"))).await.unwrap_err().code(),
            tenantry_core::ErrorCode::Conflict
        );
        assert!(c.upsert(mcp("crm", None)).await.is_err());
        assert!(c.upsert(mcp("wiki", Some("acme"))).await.is_err());
        c.upsert(mcp("crm", Some("acme"))).await.unwrap();
        assert_eq!(c.visible_to(&a).len(), 2);
        assert_eq!(c.visible_to(&b).len(), 1);
        assert!(c.resolve(&a, "crm").is_some());
        assert!(c.resolve(&b, "crm").is_none());
        assert!(c.resolve(&b, "wiki").is_some());
        assert!(c.resolve(&b, "Not_A_Name").is_none());
        let crm = TargetName::new("crm").unwrap();
        assert_eq!(c.get(&crm).unwrap().tenant, Some(a.clone()));
        assert!(c.remove(&crm));
        assert!(!c.remove(&crm));
        c.upsert(mcp("crm", Some("bolt"))).await.unwrap();
        assert_eq!(c.specs().len(), 2);
        let failures = c.load(vec![
            mcp("one", None),
            mcp("one", Some("acme")),
            mcp("two", None),
        ]);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].name.as_str(), "one");
        assert_eq!(c.specs().len(), 2);
        assert!(c.resolve(&b, "crm").is_none());
    }
}
