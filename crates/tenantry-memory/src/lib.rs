//! Tenantry's memory and knowledge, the domain rules without I/O.
//!
//! Short-term memory is events: immutable conversation turns per (tenant, memory, actor,
//! session). Long-term memory is records that strategies extract from events through the model
//! gateway, under namespaces built from templates. Knowledge bases hold tenants' documents as
//! chunks. Records and chunks share one retrieval: full-text and vector similarity, fused.
//!
//! Modules of the memory part: `ids` (the identifiers and their syntax), `types` (memories,
//! strategies, events, records, metadata), `namespace` (templates and what a caller may
//! name), `extract` (strategy prompts, reading the model's answer, consolidation),
//! `retrieve` (metadata filters and the ranking seam), `paging` (opaque page tokens), `error`.
//!
//! This crate must never do network or store I/O itself (the server and the store do), and
//! never let a namespace, filter or id a caller supplies widen what the caller's tenant scope
//! reaches.

#![forbid(unsafe_code)]

pub mod error;
pub mod extract;
pub mod ids;
pub mod knowledge;
pub mod namespace;
pub mod paging;
pub mod retrieve;
pub mod search;
pub mod types;

pub use error::MemoryError;
pub use ids::{ActorId, EventId, MemoryId, MemorySessionId, RecordId, StrategyId};
pub use types::*;
