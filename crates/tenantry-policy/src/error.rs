//! The crate's closed error enum and its classification into `ErrorCode`.
//!
//! A refused upload (`Invalid`) is the caller's mistake and carries every diagnostic with its
//! position; the other variants mean the engine cannot be set up or refreshed, and are never
//! reported as anything but a refusal (fail closed).

use tenantry_core::ErrorCode;
use tenantry_store::StoreError;

use crate::PolicyDiagnostic;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy set does not parse or does not validate against the schema. Every problem is
    /// listed, each with its line and column where Cedar gave one.
    #[error("the policy set is not valid: {}", summary(.diagnostics))]
    Invalid { diagnostics: Vec<PolicyDiagnostic> },
    /// The schema could not be built (the base schema, or the actions of the tool catalogue).
    #[error("the policy schema cannot be built: {0}")]
    Schema(String),
    /// A stored policy set could not be loaded; its scope is denied everything until fixed.
    #[error(
        "stored policy set {id} cannot be loaded (its callers are denied until it is fixed): {detail}"
    )]
    Unloadable { id: String, detail: String },
    /// The engine cannot work on a set now (e.g. no thread to parse it on); a retry may work.
    #[error("the policy engine cannot take the set now: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn summary(diagnostics: &[PolicyDiagnostic]) -> String {
    match diagnostics {
        [] => "no details".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

impl PolicyError {
    pub fn code(&self) -> ErrorCode {
        match self {
            PolicyError::Invalid { .. } => ErrorCode::InvalidRequest,
            PolicyError::Schema(_) | PolicyError::Unloadable { .. } => ErrorCode::Internal,
            PolicyError::Unavailable(_) => ErrorCode::Unavailable,
            PolicyError::Store(e) => e.code(),
        }
    }

    /// The diagnostics of an `Invalid` error (empty for the others).
    pub fn diagnostics(&self) -> &[PolicyDiagnostic] {
        match self {
            PolicyError::Invalid { diagnostics } => diagnostics,
            PolicyError::Schema(_)
            | PolicyError::Unloadable { .. }
            | PolicyError::Unavailable(_)
            | PolicyError::Store(_) => &[],
        }
    }
}
