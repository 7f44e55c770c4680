//! Routing: which upstream model answers a tenant's request, in which order fallbacks are
//! tried, what the answer cost, and what `/v1/models` lists.
//!
//! A requested name is an alias (`default`, `fast`...) of the tenant's overrides or of its
//! tier, a model of the tenant's own, or a model of the catalogue; the tier's
//! `allowed_models` decides entitlement (`*` allows all; an alias is allowed by its own name or
//! by its target's). Overrides a tenant was given by the operator are entitled by definition,
//! as are the fallbacks the operator configured. The router must never route a name the tenant
//! is not entitled to, never fall back on an error that is the request's fault, and never hide
//! a failed attempt from the caller's metering (every attempt is reported).
//!
//! This module resolves names into a [`RoutePlan`]; running a plan is `execute`'s, and
//! metering a streamed answer `meter`'s.

mod execute;
mod meter;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tenantry_core::{Money, TenantId, Tier, TierName};

use crate::config::{
    CatalogEntry, ConfigError, ModelsConfig, ProviderKind, TenantModels, TierRoutes,
    check_model_name, invalid,
};
use crate::error::{ProviderError, RouteError};
use crate::providers::Provider;
use crate::tokens;
use crate::wire::{ChatRequest, EmbeddingsRequest, ModelInfo, ModelList};

pub use execute::{Answer, EmbeddingsAnswer, ExecFailure, FailedAttempt, StreamAnswer};
pub use meter::{StreamMeter, StreamUsage};

/// Prices of a model, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pricing {
    pub input_per_mtok: Money,
    pub output_per_mtok: Money,
}

impl Pricing {
    /// The exact cost of a call, rounded up to the next micro-dollar.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> Money {
        let micros_times_million = i128::from(input_tokens)
            * i128::from(self.input_per_mtok.micros().max(0))
            + i128::from(output_tokens) * i128::from(self.output_per_mtok.micros().max(0));
        let micros = (micros_times_million + 999_999) / 1_000_000;
        Money::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    fn of(e: &CatalogEntry) -> Self {
        Self {
            input_per_mtok: e.input_price_per_mtok,
            output_per_mtok: e.output_price_per_mtok,
        }
    }
}

/// One model to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The public name (catalogue or tenant model), shown to the caller and metered.
    pub model: String,
    /// The provider's name in `[models.providers]`.
    pub provider: String,
    /// The id the provider knows the model by.
    pub upstream_model: String,
    pub pricing: Pricing,
    /// How its prompt tokens are bounded before the call.
    pub bound: tokens::PromptBound,
}

/// The ordered models to try for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// What the caller asked for (`default` when it named nothing).
    pub requested: String,
    /// Never empty: the resolved model first, then its fallbacks.
    pub attempts: Vec<Attempt>,
    /// Output tokens assumed (and sent upstream as `max_tokens`) when the caller gives none.
    pub default_max_tokens: u32,
}

impl RoutePlan {
    pub fn primary(&self) -> &Attempt {
        // `resolve` never builds an empty plan; the index is therefore always valid.
        &self.attempts[0]
    }

    /// The output limit this request runs with.
    pub fn max_output_tokens(&self, request: &ChatRequest) -> u32 {
        request
            .max_output_tokens()
            .unwrap_or(self.default_max_tokens)
    }

    /// Tokens to reserve before the call: an upper bound of the prompt on every model of the
    /// plan (each counted its own way, see `PromptBound`), plus the output limit. The call
    /// cannot produce more output than that, since the limit is sent upstream.
    pub fn token_estimate(&self, request: &ChatRequest) -> u64 {
        let output = u64::from(self.max_output_tokens(request));
        self.attempts
            .iter()
            .map(|a| a.bound.prompt(request) + output)
            .max()
            .unwrap_or(output)
    }

    /// Money to reserve before the call: the dearest attempt's price of its own token bound.
    pub fn cost_estimate(&self, request: &ChatRequest) -> Money {
        let output = u64::from(self.max_output_tokens(request));
        self.attempts
            .iter()
            .map(|a| a.pricing.cost(a.bound.prompt(request), output))
            .max()
            .unwrap_or(Money::ZERO)
    }

    /// Tokens and money to reserve before an embeddings call: the input's upper bound on
    /// each model of the plan, the largest of each.
    pub fn embeddings_estimate(&self, request: &EmbeddingsRequest) -> (u64, Money) {
        self.attempts.iter().fold((0, Money::ZERO), |(t, m), a| {
            let input = a.bound.embeddings(request);
            (t.max(input), m.max(a.pricing.cost(input, 0)))
        })
    }
}

fn allows(tier: &Tier, name: &str) -> bool {
    tier.allowed_models.iter().any(|m| m == "*" || m == name)
}

/// The model router. Immutable once built; build a new one (cheaply, sharing the provider
/// clients, with [`Router::with_tier_routes`]) when routes change.
#[derive(Debug, Clone)]
pub struct Router {
    providers: BTreeMap<String, Arc<Provider>>,
    catalog: BTreeMap<String, CatalogEntry>,
    tiers: BTreeMap<TierName, TierRoutes>,
    tenants: BTreeMap<TenantId, TenantModels>,
    default_max_tokens: u32,
}

const DEFAULT_ALIAS: &str = "default";

impl Router {
    /// Builds the providers and validates every reference of the configuration. `env` looks up
    /// environment variables (credentials named by `*_env` keys).
    pub fn new(
        config: &ModelsConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut providers = BTreeMap::new();
        for (name, p) in &config.providers {
            check_model_name(&format!("providers.{name}"), name)?;
            providers.insert(name.clone(), Arc::new(Provider::from_config(name, p, env)?));
        }
        let mut router = Self {
            providers,
            catalog: BTreeMap::new(),
            tiers: BTreeMap::new(),
            tenants: BTreeMap::new(),
            default_max_tokens: config.default_max_tokens,
        };
        if config.default_max_tokens == 0 {
            return Err(invalid("default_max_tokens", "must be at least 1"));
        }
        for (name, entry) in &config.catalog {
            router.check_entry(&format!("catalog.{name}"), name, entry)?;
        }
        router.catalog = config.catalog.clone();
        router.warm_tokenizers();
        for (tier, routes) in &config.tiers {
            router.check_tier(tier, routes)?;
        }
        router.tiers = config.tiers.clone();
        for (tenant, models) in &config.tenants {
            router.check_tenant(&format!("tenants.{tenant}"), models)?;
        }
        router.tenants = config.tenants.clone();
        Ok(router)
    }

    /// The same router with new tier routes (e.g. edited through the control plane).
    pub fn with_tier_routes(
        &self,
        tiers: BTreeMap<TierName, TierRoutes>,
    ) -> Result<Self, ConfigError> {
        for (tier, routes) in &tiers {
            self.check_tier(tier, routes)?;
        }
        Ok(Self {
            tiers,
            ..self.clone()
        })
    }

    /// Checks a tenant's overrides before the control plane stores them.
    pub fn validate_tenant_models(&self, models: &TenantModels) -> Result<(), ConfigError> {
        self.check_tenant("tenant", models)
    }

    /// The overrides of a tenant given in the configuration file, if any.
    pub fn config_tenant_models(&self, tenant: &TenantId) -> Option<&TenantModels> {
        self.tenants.get(tenant)
    }

    pub fn tier_routes(&self, tier: &TierName) -> Option<&TierRoutes> {
        self.tiers.get(tier)
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    /// The price of a catalogue model's call, or `None` for a name not in the catalogue.
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<Money> {
        self.catalog
            .get(model)
            .map(|e| Pricing::of(e).cost(input_tokens, output_tokens))
    }

    fn check_entry(&self, key: &str, name: &str, e: &CatalogEntry) -> Result<(), ConfigError> {
        check_model_name(key, name)?;
        if !self.providers.contains_key(&e.provider) {
            return Err(invalid(
                format!("{key}.provider"),
                format!(
                    "no provider {:?}; define it under [models.providers.{}]",
                    e.provider, e.provider
                ),
            ));
        }
        if e.upstream_model.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                format!("{key}.upstream_model"),
                "must not be empty",
            ));
        }
        if e.input_price_per_mtok.micros() < 0 || e.output_price_per_mtok.micros() < 0 {
            return Err(invalid(key, "prices must not be negative"));
        }
        Ok(())
    }

    fn check_target(
        &self,
        key: &str,
        target: &str,
        own: Option<&TenantModels>,
    ) -> Result<(), ConfigError> {
        let known =
            self.catalog.contains_key(target) || own.is_some_and(|t| t.models.contains_key(target));
        if known {
            Ok(())
        } else {
            Err(invalid(
                key,
                format!("{target:?} is not a model; add it under [models.catalog.{target}]"),
            ))
        }
    }

    fn check_routes(
        &self,
        key: &str,
        default: Option<&String>,
        aliases: &BTreeMap<String, String>,
        fallback: &BTreeMap<String, Vec<String>>,
        own: Option<&TenantModels>,
    ) -> Result<(), ConfigError> {
        if let Some(d) = default {
            self.check_target(&format!("{key}.default"), d, own)?;
        }
        for (alias, target) in aliases {
            let k = format!("{key}.aliases.{alias}");
            check_model_name(&k, alias)?;
            if alias == DEFAULT_ALIAS {
                return Err(invalid(
                    k,
                    "set the default model with `default = ...` instead",
                ));
            }
            if self.catalog.contains_key(alias) || own.is_some_and(|t| t.models.contains_key(alias))
            {
                return Err(invalid(k, "an alias must not have the name of a model"));
            }
            self.check_target(&k, target, own)?;
        }
        for (model, chain) in fallback {
            let k = format!("{key}.fallback.{model}");
            self.check_target(&k, model, own)?;
            for m in chain {
                self.check_target(&k, m, own)?;
            }
        }
        Ok(())
    }

    fn check_tier(&self, tier: &TierName, r: &TierRoutes) -> Result<(), ConfigError> {
        let key = format!("tiers.{tier}");
        if r.default_max_tokens == Some(0) {
            return Err(invalid(
                format!("{key}.default_max_tokens"),
                "must be at least 1",
            ));
        }
        self.check_routes(&key, r.default.as_ref(), &r.aliases, &r.fallback, None)
    }

    fn check_tenant(&self, key: &str, t: &TenantModels) -> Result<(), ConfigError> {
        for (name, entry) in &t.models {
            let k = format!("{key}.models.{name}");
            self.check_entry(&k, name, entry)?;
            if self.catalog.contains_key(name) {
                return Err(invalid(
                    k,
                    "a tenant's model must not have the name of a catalogue model",
                ));
            }
        }
        self.check_routes(key, t.default.as_ref(), &t.aliases, &t.fallback, Some(t))
    }

    /// The target of an alias: the tenant's override first, then the tier's. The flag says
    /// whether the tenant's override decided.
    fn alias_target<'a>(
        &'a self,
        routes: Option<&'a TierRoutes>,
        tenant: Option<&'a TenantModels>,
        alias: &str,
    ) -> Option<(&'a str, bool)> {
        let from_tenant = tenant.and_then(|t| {
            if alias == DEFAULT_ALIAS {
                t.default.as_deref()
            } else {
                t.aliases.get(alias).map(String::as_str)
            }
        });
        if let Some(m) = from_tenant {
            return Some((m, true));
        }
        routes
            .and_then(|r| {
                if alias == DEFAULT_ALIAS {
                    r.default.as_deref()
                } else {
                    r.aliases.get(alias).map(String::as_str)
                }
            })
            .map(|m| (m, false))
    }

    fn alias_names<'a>(
        routes: Option<&'a TierRoutes>,
        tenant: Option<&'a TenantModels>,
    ) -> BTreeSet<&'a str> {
        let mut names = BTreeSet::new();
        names.insert(DEFAULT_ALIAS);
        names.extend(
            routes
                .iter()
                .flat_map(|r| r.aliases.keys().map(String::as_str)),
        );
        names.extend(
            tenant
                .iter()
                .flat_map(|t| t.aliases.keys().map(String::as_str)),
        );
        names
    }

    /// Whether the tenant may use `model` (a catalogue or tenant model) by its name.
    fn model_entitled(
        &self,
        tier: &Tier,
        routes: Option<&TierRoutes>,
        tenant: Option<&TenantModels>,
        model: &str,
    ) -> bool {
        if allows(tier, model) || tenant.is_some_and(|t| t.models.contains_key(model)) {
            return true;
        }
        Self::alias_names(routes, tenant).into_iter().any(|a| {
            match self.alias_target(routes, tenant, a) {
                Some((target, via_tenant)) => target == model && (via_tenant || allows(tier, a)),
                None => false,
            }
        })
    }

    /// Loads the BPE encodings of the catalogue's OpenAI models on a thread of their own (a
    /// few hundred milliseconds each, once per process), so no call waits for it.
    fn warm_tokenizers(&self) {
        let models: Vec<String> = self
            .catalog
            .iter()
            .filter(|(_, e)| {
                self.providers
                    .get(&e.provider)
                    .is_some_and(|p| p.kind() == ProviderKind::Openai)
            })
            .map(|(name, e)| e.upstream_model.clone().unwrap_or_else(|| name.clone()))
            .collect();
        if models.is_empty() {
            return;
        }
        // A thread that cannot start only delays the loading to the first call that needs it.
        let _ = std::thread::Builder::new()
            .name("tokenizers".into())
            .spawn(move || {
                for m in models {
                    let _ = tokens::PromptBound::for_model(true, false, &m);
                }
            });
    }

    fn attempt(&self, tenant: Option<&TenantModels>, model: &str) -> Option<Attempt> {
        let entry = tenant
            .and_then(|t| t.models.get(model))
            .or_else(|| self.catalog.get(model))?;
        let kind = self.providers.get(&entry.provider)?.kind();
        let upstream_model = entry
            .upstream_model
            .clone()
            .unwrap_or_else(|| model.to_owned());
        let bound = tokens::PromptBound::for_model(
            kind == ProviderKind::Openai,
            kind == ProviderKind::Mock,
            &upstream_model,
        );
        Some(Attempt {
            model: model.to_owned(),
            provider: entry.provider.clone(),
            upstream_model,
            pricing: Pricing::of(entry),
            bound,
        })
    }

    /// Decides the models to try for `requested` (an alias or a model name; empty means
    /// `default`) for a tenant on `tier` with its overrides.
    pub fn resolve(
        &self,
        tier: &Tier,
        tenant: Option<&TenantModels>,
        requested: &str,
    ) -> Result<RoutePlan, RouteError> {
        let requested = match requested.trim() {
            "" => DEFAULT_ALIAS,
            r => r,
        };
        let routes = self.tiers.get(&tier.name);
        let not_entitled = || RouteError::NotEntitled {
            requested: requested.to_owned(),
            tier: tier.name.to_string(),
        };
        let model = match self.alias_target(routes, tenant, requested) {
            Some((target, via_tenant)) => {
                if !(via_tenant || allows(tier, requested) || allows(tier, target)) {
                    return Err(not_entitled());
                }
                target
            }
            None if requested == DEFAULT_ALIAS => {
                return Err(RouteError::NoDefault(tier.name.to_string()));
            }
            None => {
                let known = self.catalog.contains_key(requested)
                    || tenant.is_some_and(|t| t.models.contains_key(requested));
                if !known {
                    return Err(RouteError::UnknownModel(requested.to_owned()));
                }
                if !self.model_entitled(tier, routes, tenant, requested) {
                    return Err(not_entitled());
                }
                requested
            }
        };
        let chain = tenant
            .and_then(|t| t.fallback.get(model))
            .or_else(|| routes.and_then(|r| r.fallback.get(model)));
        let mut seen = BTreeSet::new();
        let attempts: Vec<Attempt> = std::iter::once(model)
            .chain(chain.into_iter().flatten().map(String::as_str))
            .filter(|m| seen.insert(*m))
            .filter_map(|m| self.attempt(tenant, m))
            .collect();
        if attempts.is_empty() {
            return Err(RouteError::UnknownModel(requested.to_owned()));
        }
        Ok(RoutePlan {
            requested: requested.to_owned(),
            attempts,
            default_max_tokens: routes
                .and_then(|r| r.default_max_tokens)
                .unwrap_or(self.default_max_tokens),
        })
    }

    /// What `GET /v1/models` shows the tenant: its usable aliases, then its usable models.
    pub fn models_for(&self, tier: &Tier, tenant: Option<&TenantModels>) -> ModelList {
        let routes = self.tiers.get(&tier.name);
        let mut data = Vec::new();
        let mut seen = BTreeSet::new();
        for alias in Self::alias_names(routes, tenant) {
            if self.resolve(tier, tenant, alias).is_ok() && seen.insert(alias.to_owned()) {
                data.push(ModelInfo {
                    id: alias.to_owned(),
                    object: "model".into(),
                    created: 0,
                    owned_by: "tenantry".into(),
                });
            }
        }
        let own = tenant.into_iter().flat_map(|t| t.models.iter());
        for (name, entry) in own.chain(self.catalog.iter()) {
            if self.model_entitled(tier, routes, tenant, name) && seen.insert(name.clone()) {
                data.push(ModelInfo {
                    id: name.clone(),
                    object: "model".into(),
                    created: 0,
                    owned_by: entry.provider.clone(),
                });
            }
        }
        ModelList::new(data)
    }

    fn provider_for(&self, a: &Attempt) -> Result<&Arc<Provider>, ProviderError> {
        self.providers.get(&a.provider).ok_or_else(|| {
            ProviderError::Connect(format!("provider {} is not configured", a.provider))
        })
    }
}
