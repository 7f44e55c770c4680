//! Tenantry's tool policy: which caller may call which tool, with which input, when.
//!
//! This crate owns the Cedar schema (`schema/tenantry.cedarschema`, plus one generated action
//! per catalogued tool), the policy sets of the platform, of each tier and of each tenant, and
//! the decisions over them ([`PolicyEngine::authorize`] for `tools/call`,
//! [`PolicyEngine::visible`] for `tools/list`), in `enforce` or `log_only` mode.
//!
//! How the sets combine: the sets that apply to a caller are the platform's (the built-in
//! [`STARTER_POLICY`] until the operator stores one), the caller's tier's and the caller's
//! tenant's, evaluated together as one Cedar policy set. Cedar's rules decide: default deny, a
//! satisfied `forbid` overrides every `permit`, and any satisfied `permit` allows. So with the
//! starter in force, tier and tenant sets restrict with `forbid`; an operator who wants to
//! grant rather than restrict replaces the platform set (an empty one leaves only what tier and
//! tenant sets permit).
//!
//! Modes are per set. A set in `log_only` mode is evaluated and reported but not applied: the
//! outcome is the verdict of the enforce-mode sets alone (see [`Decision`]).
//!
//! Storage is `tenantry-store`'s (versions, one active per scope, rollback); this crate
//! validates an upload ([`PolicyEngine::validate`]) before it is stored and loads what is
//! active ([`PolicyEngine::reload`], [`PolicyEngine::install`]).
//!
//! This crate must never allow a call it could not evaluate (an unknown tool, an input that
//! does not fit the tool's schema, a stored set that does not load: all deny), and never take
//! the principal from anything but the verified caller its callers pass in.

#![forbid(unsafe_code)]

mod compile;
mod decision;
mod diagnostic;
mod engine;
mod error;
pub mod input;
mod request;
mod schema;

pub use compile::{MAX_POLICY_DEPTH, MAX_POLICY_NESTING};
pub use decision::{AuditFields, Decision};
pub use diagnostic::PolicyDiagnostic;
pub use engine::{
    AuthzRequest, PolicyEngine, PrincipalAttrs, ReloadReport, STARTER_POLICY, ToolRef, ToolSpec,
    Validated,
};
pub use error::PolicyError;
pub use schema::BASE_SCHEMA;
pub use tenantry_store::{PolicyMode as Mode, PolicyScope, PolicySetRecord};
