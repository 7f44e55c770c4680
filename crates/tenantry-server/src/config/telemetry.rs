//! `[telemetry]`: the metrics endpoint and the bounds of its labels.

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
}

fn default_tenant_cap() -> usize {
    200
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            metrics_tenant_cap: default_tenant_cap(),
            metrics_listen: None,
        }
    }
}
