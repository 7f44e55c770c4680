//! The catalogue: every registered target, compiled and ready to call, kept in memory. The
//! server loads it from the store at start and updates it on each control-plane change; the
//! gateway reads it on every `tools/list` and `tools/call`.
//!
//! A target name is either shared (visible to every tenant) or registered per tenant (each
//! tenant may have its own target of that name, visible to it alone), never both, so an
//! exported tool name means exactly one target for any caller. The catalogue never hands a
//! tenant another tenant's target: [`Catalog::resolve`] and [`Catalog::visible_to`] take the
//! caller's tenant.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tenantry_core::TenantId;
use url::Url;

use crate::error::TargetError;
use crate::target::{SpecSource, TargetKind, TargetName, TargetSpec};
use crate::upstream::http::{client, error_message, read_limited};
use crate::upstream::mcp::McpUpstream;
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
}

#[derive(Debug)]
enum Entry {
    Shared(Arc<Target>),
    PerTenant(BTreeMap<TenantId, Arc<Target>>),
}

/// One target that could not be loaded by [`Catalog::load`].
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub name: TargetName,
    pub tenant: Option<TenantId>,
    pub error: TargetError,
}

/// All registered targets.
#[derive(Debug)]
pub struct Catalog {
    http: reqwest::Client,
    tools_ttl: Duration,
    entries: RwLock<BTreeMap<TargetName, Entry>>,
}

impl Catalog {
    pub fn new() -> Result<Self, TargetError> {
        Ok(Self {
            http: client()?,
            tools_ttl: DEFAULT_TOOLS_TTL,
            entries: RwLock::new(BTreeMap::new()),
        })
    }

    /// Sets how long upstream MCP tool lists are cached (targets added afterwards).
    pub fn with_tools_ttl(mut self, ttl: Duration) -> Self {
        self.tools_ttl = ttl;
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TargetName, Entry>> {
        match self.entries.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<TargetName, Entry>> {
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
                Backend::Mcp(McpUpstream::new(url, self.http.clone(), self.tools_ttl))
            }
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
        })
    }

    /// Adds or replaces a target (same name and tenant). Fetches a document given by URL.
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
            let (name, tenant) = (spec.name.clone(), spec.tenant.clone());
            let result = self
                .compile(&spec)
                .and_then(|t| insert(&mut fresh, Arc::new(t)));
            if let Err(error) = result {
                failures.push(LoadFailure {
                    name,
                    tenant,
                    error,
                });
            }
        }
        *self.write() = fresh;
        failures
    }

    /// Removes a target; `tenant` says which one for a per-tenant name. True if it existed.
    pub fn remove(&self, name: &TargetName, tenant: Option<&TenantId>) -> bool {
        let mut entries = self.write();
        let (removed, now_empty) = match (entries.get_mut(name), tenant) {
            (Some(Entry::Shared(_)), None) => (true, true),
            (Some(Entry::PerTenant(m)), Some(t)) => {
                let removed = m.remove(t).is_some();
                (removed, m.is_empty())
            }
            (Some(Entry::Shared(_)), Some(_)) | (Some(Entry::PerTenant(_)), None) | (None, _) => {
                (false, false)
            }
        };
        if now_empty {
            entries.remove(name);
        }
        removed
    }

    /// The spec of a target; `tenant` says which one for a per-tenant name.
    pub fn get(&self, name: &TargetName, tenant: Option<&TenantId>) -> Option<TargetSpec> {
        match (self.read().get(name), tenant) {
            (Some(Entry::Shared(t)), None) => Some(t.spec.clone()),
            (Some(Entry::PerTenant(m)), Some(tenant)) => m.get(tenant).map(|t| t.spec.clone()),
            (Some(Entry::Shared(_)), Some(_)) | (Some(Entry::PerTenant(_)), None) | (None, _) => {
                None
            }
        }
    }

    /// Every target's spec, shared ones and every tenant's (for the operator).
    pub fn specs(&self) -> Vec<TargetSpec> {
        let mut out = Vec::new();
        for entry in self.read().values() {
            match entry {
                Entry::Shared(t) => out.push(t.spec.clone()),
                Entry::PerTenant(m) => out.extend(m.values().map(|t| t.spec.clone())),
            }
        }
        out
    }

    /// Forgets the cached tool lists of every upstream MCP server (the next `tools/list`
    /// asks them again).
    pub fn refresh(&self) {
        for entry in self.read().values() {
            let targets: Vec<&Arc<Target>> = match entry {
                Entry::Shared(t) => vec![t],
                Entry::PerTenant(m) => m.values().collect(),
            };
            for t in targets {
                match &t.backend {
                    Backend::Mcp(m) => m.invalidate(),
                    Backend::OpenApi(_) => {}
                }
            }
        }
    }

    /// The targets `tenant` can see: every shared one and its own.
    pub(crate) fn visible_to(&self, tenant: &TenantId) -> Vec<Arc<Target>> {
        self.read()
            .values()
            .filter_map(|e| match e {
                Entry::Shared(t) => Some(t.clone()),
                Entry::PerTenant(m) => m.get(tenant).cloned(),
            })
            .collect()
    }

    /// The target of this name that `tenant` can see, if any.
    pub(crate) fn resolve(&self, tenant: &TenantId, name: &str) -> Option<Arc<Target>> {
        let name = TargetName::new(name).ok()?;
        match self.read().get(&name)? {
            Entry::Shared(t) => Some(t.clone()),
            Entry::PerTenant(m) => m.get(tenant).cloned(),
        }
    }
}

fn insert(
    entries: &mut BTreeMap<TargetName, Entry>,
    target: Arc<Target>,
) -> Result<(), TargetError> {
    let name = target.spec.name.clone();
    match (entries.get_mut(&name), target.spec.tenant.clone()) {
        (None, None) => {
            entries.insert(name, Entry::Shared(target));
        }
        (None, Some(tenant)) => {
            entries.insert(name, Entry::PerTenant(BTreeMap::from([(tenant, target)])));
        }
        (Some(Entry::Shared(slot)), None) => *slot = target,
        (Some(Entry::PerTenant(m)), Some(tenant)) => {
            m.insert(tenant, target);
        }
        (Some(Entry::Shared(_)), Some(tenant)) => {
            return Err(TargetError::Conflict(format!(
                "target {name} is shared by all tenants, so tenant {tenant} cannot have its own of \
                 that name; choose another name"
            )));
        }
        (Some(Entry::PerTenant(_)), None) => {
            return Err(TargetError::Conflict(format!(
                "target {name} is registered for some tenants, so a shared target cannot take \
                 that name; choose another name"
            )));
        }
    }
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
    async fn names_are_shared_or_per_tenant_never_both() {
        let c = Catalog::new().unwrap();
        let (a, b) = (
            TenantId::new("acme").unwrap(),
            TenantId::new("bolt").unwrap(),
        );
        c.upsert(mcp("crm", Some("acme"))).await.unwrap();
        c.upsert(mcp("crm", Some("bolt"))).await.unwrap();
        c.upsert(mcp("wiki", None)).await.unwrap();
        assert_eq!(
            c.upsert(mcp("crm", None)).await.unwrap_err().code(),
            tenantry_core::ErrorCode::Conflict
        );
        assert!(c.upsert(mcp("wiki", Some("acme"))).await.is_err());
        assert_eq!(c.visible_to(&a).len(), 2);
        assert!(c.resolve(&a, "crm").is_some());
        assert_eq!(c.resolve(&b, "crm").unwrap().spec.tenant.as_ref(), Some(&b));
        let crm = TargetName::new("crm").unwrap();
        assert!(c.remove(&crm, Some(&a)));
        assert!(c.resolve(&a, "crm").is_none());
        assert!(c.resolve(&b, "crm").is_some());
        assert!(!c.remove(&crm, None));
        assert!(c.remove(&crm, Some(&b)));
        c.upsert(mcp("crm", None)).await.unwrap();
        assert_eq!(c.specs().len(), 2);
        let failures = c.load(vec![
            mcp("one", None),
            mcp("one", Some("acme")),
            mcp("two", None),
        ]);
        assert_eq!(failures.len(), 1);
        assert_eq!(c.specs().len(), 2);
        assert!(c.resolve(&a, "crm").is_none());
    }
}
