//! Tenants and their isolation settings (DESIGN.md section 3): pool, silo, and bridge, which is
//! any per-component mix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{TenantId, TenantUid, TierName};

/// Whether one component of a tenant shares infrastructure with other tenants or has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IsolationMode {
    #[default]
    Pool,
    Silo,
}

/// The isolation of every component, as a tier default or as resolved for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IsolationSettings {
    #[serde(default)]
    pub runtime: IsolationMode,
    #[serde(default)]
    pub data: IsolationMode,
    #[serde(default)]
    pub memory: IsolationMode,
    #[serde(default)]
    pub knowledge: IsolationMode,
    #[serde(default)]
    pub tools: IsolationMode,
    #[serde(default)]
    pub model: IsolationMode,
}

impl IsolationSettings {
    pub const fn uniform(mode: IsolationMode) -> Self {
        Self {
            runtime: mode,
            data: mode,
            memory: mode,
            knowledge: mode,
            tools: mode,
            model: mode,
        }
    }
}

/// Per-component overrides; a component left out takes the preset's (or tier's) value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IsolationOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<IsolationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<IsolationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<IsolationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<IsolationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<IsolationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<IsolationMode>,
}

/// The three presets. `Bridge` starts from the tier's defaults and applies the overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IsolationPreset {
    #[default]
    Pool,
    Silo,
    Bridge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantIsolation {
    #[serde(default)]
    pub preset: IsolationPreset,
    #[serde(default)]
    pub overrides: IsolationOverrides,
}

impl TenantIsolation {
    /// The isolation in force for each component, given the tier's defaults.
    pub fn resolve(&self, tier_defaults: IsolationSettings) -> IsolationSettings {
        let base = match self.preset {
            IsolationPreset::Pool => IsolationSettings::uniform(IsolationMode::Pool),
            IsolationPreset::Silo => IsolationSettings::uniform(IsolationMode::Silo),
            IsolationPreset::Bridge => tier_defaults,
        };
        let o = &self.overrides;
        IsolationSettings {
            runtime: o.runtime.unwrap_or(base.runtime),
            data: o.data.unwrap_or(base.data),
            memory: o.memory.unwrap_or(base.memory),
            knowledge: o.knowledge.unwrap_or(base.knowledge),
            tools: o.tools.unwrap_or(base.tools),
            model: o.model.unwrap_or(base.model),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    #[default]
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// A tenant as the registry holds it. The registry, not any token, is the source of truth for
/// tier and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    /// The tenant's immutable internal identity (see `TenantUid`).
    pub uid: TenantUid,
    pub name: String,
    pub tier: TierName,
    pub status: TenantStatus,
    pub isolation: TenantIsolation,
    pub region: String,
    /// Feature flags, by name.
    pub features: BTreeMap<String, bool>,
    /// Free-form entitlements (a JSON object) passed to agents as context.
    pub entitlements: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}
