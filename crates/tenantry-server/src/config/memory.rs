//! `[memory]`: how long-term records are extracted and how often expired events are deleted.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySection {
    /// The model (or alias) strategies extract records with, routed for each tenant like its
    /// own calls (its tier decides what the name means and whether it is entitled).
    #[serde(default = "default_extraction_model")]
    pub extraction_model: String,
    /// How often the expiry job deletes events older than their memory's expiry.
    #[serde(default = "default_expiry_interval")]
    pub expiry_interval_seconds: u64,
    /// Extraction jobs waiting at most; beyond, new events are stored but not extracted (a
    /// warning says so).
    #[serde(default = "default_extraction_queue")]
    pub extraction_queue: usize,
}

fn default_extraction_model() -> String {
    "default".into()
}

fn default_expiry_interval() -> u64 {
    3600
}

fn default_extraction_queue() -> usize {
    10_000
}

impl Default for MemorySection {
    fn default() -> Self {
        Self {
            extraction_model: default_extraction_model(),
            expiry_interval_seconds: default_expiry_interval(),
            extraction_queue: default_extraction_queue(),
        }
    }
}
