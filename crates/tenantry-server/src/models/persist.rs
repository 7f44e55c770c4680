//! The control plane's model settings in the store: tier routes, a tenant's own routing and
//! its limit overrides, kept as settings of their tier or tenant (`SettingKind`). A stored body
//! that no longer parses (written by another version) is reported as corrupt, never guessed at.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tenantry_core::{TenantId, TierName, unix_now};
use tenantry_models::{TenantModels, TierRoutes};
use tenantry_store::{SettingKind, SettingRecord, Store, StoreError};

use super::limits::LimitOverrides;

fn parse<T: DeserializeOwned>(owner: &str, body: serde_json::Value) -> Result<T, StoreError> {
    serde_json::from_value(body)
        .map_err(|e| StoreError::Corrupt(format!("stored model setting of {owner}: {e}")))
}

fn encode(value: &impl Serialize) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value)
        .map_err(|e| StoreError::Database(format!("encoding a model setting: {e}")))
}

pub async fn load_tier_routes(store: &Store) -> Result<BTreeMap<TierName, TierRoutes>, StoreError> {
    let mut out = BTreeMap::new();
    for s in store.list_tier_settings(SettingKind::ModelRoutes).await? {
        let routes = parse(s.owner.as_str(), s.body)?;
        out.insert(s.owner, routes);
    }
    Ok(out)
}

/// `None` deletes; returns whether the tier had stored routes before.
pub async fn save_tier_routes(
    store: &Store,
    tier: &TierName,
    routes: Option<&TierRoutes>,
) -> Result<bool, StoreError> {
    let existed = load_tier_routes(store).await?.contains_key(tier);
    match routes {
        Some(r) => {
            store
                .put_tier_setting(&SettingRecord {
                    owner: tier.clone(),
                    kind: SettingKind::ModelRoutes,
                    body: encode(r)?,
                    updated_at: unix_now(),
                })
                .await?;
        }
        None => {
            store
                .delete_tier_setting(tier, SettingKind::ModelRoutes)
                .await?;
        }
    }
    Ok(existed)
}

async fn load_tenant<T: DeserializeOwned>(
    store: &Store,
    tenant: &TenantId,
    kind: SettingKind,
) -> Result<Option<T>, StoreError> {
    store
        .get_tenant_setting(tenant, kind)
        .await?
        .map(|s| parse(s.owner.as_str(), s.body))
        .transpose()
}

async fn save_tenant<T: Serialize>(
    store: &Store,
    tenant: &TenantId,
    kind: SettingKind,
    value: Option<&T>,
) -> Result<bool, StoreError> {
    let existed = store.get_tenant_setting(tenant, kind).await?.is_some();
    match value {
        Some(v) => {
            store
                .put_tenant_setting(&SettingRecord {
                    owner: tenant.clone(),
                    kind,
                    body: encode(v)?,
                    updated_at: unix_now(),
                })
                .await?;
        }
        None => {
            store.delete_tenant_setting(tenant, kind).await?;
        }
    }
    Ok(existed)
}

pub async fn load_tenant_models(
    store: &Store,
    tenant: &TenantId,
) -> Result<Option<TenantModels>, StoreError> {
    load_tenant(store, tenant, SettingKind::ModelRoutes).await
}

pub async fn save_tenant_models(
    store: &Store,
    tenant: &TenantId,
    models: Option<&TenantModels>,
) -> Result<bool, StoreError> {
    save_tenant(store, tenant, SettingKind::ModelRoutes, models).await
}

pub async fn load_tenant_limits(
    store: &Store,
    tenant: &TenantId,
) -> Result<Option<LimitOverrides>, StoreError> {
    load_tenant(store, tenant, SettingKind::Limits).await
}

pub async fn save_tenant_limits(
    store: &Store,
    tenant: &TenantId,
    limits: Option<&LimitOverrides>,
) -> Result<bool, StoreError> {
    save_tenant(store, tenant, SettingKind::Limits, limits).await
}
