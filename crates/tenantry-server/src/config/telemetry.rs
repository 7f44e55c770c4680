//! `[telemetry]`: the metrics endpoint and the bounds of its labels, the audit log's retention.

use serde::Deserialize;

/// Where metrics are served and how many tenants get their own series.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// Tenants that get their own `tenant` label value; later ones are counted under `other`.
    #[serde(default = "default_tenant_cap")]
    pub metrics_tenant_cap: usize,
    /// A second listen address that serves only `GET /metrics`, without authentication (for a
    /// scraper on a private network). Unset, metrics are served only on the main listener at
    /// `/metrics`, to the operator key.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Audit events older than this many days are deleted (checked hourly); 0 keeps them all.
    #[serde(default = "default_audit_retention")]
    pub audit_retention_days: u32,
}

fn default_audit_retention() -> u32 {
    365
}

fn default_tenant_cap() -> usize {
    200
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            metrics_tenant_cap: default_tenant_cap(),
            metrics_listen: None,
            audit_retention_days: default_audit_retention(),
        }
    }
}
