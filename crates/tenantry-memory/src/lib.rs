//! Tenantry's memory and knowledge, the domain rules without I/O.
//!
//! Short-term memory is events: immutable conversation turns per (tenant, memory, actor,
//! session). Long-term memory is records that strategies extract from events through the model
//! gateway, under namespaces built from templates. Knowledge bases hold tenants' documents as
//! chunks. Records and chunks share one retrieval: full-text and vector similarity, fused.
//!
//! This crate must never do network or store I/O itself (the server and the store do), and
//! never let a namespace, filter or id a caller supplies widen what the caller's tenant scope
//! reaches.

#![forbid(unsafe_code)]

pub mod knowledge;
pub mod search;
