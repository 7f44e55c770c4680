//! Runtime-hosted MCP servers: what the gateway needs from the platform's runtimes to reach a
//! target of kind `runtime` ([`HostedRuntimes`]), and how a caller's calls are mapped to the
//! runtime sessions that serve them ([`hosted_session_id`]).
//!
//! A hosted server runs one sandbox per tenant session, never shared: an agent's calls (made
//! with its workload token) go to a session of their own for that agent session; a user's or
//! an API key's calls go to one per MCP session of this endpoint. The runtime session belongs
//! to the caller's tenant and user like any session, so the session manager's rules (404 for
//! anyone else, lifecycle, storage, metering) hold for it unchanged.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use tenantry_core::{CredentialKind, RuntimeName};

use crate::error::UpstreamError;
use crate::identity::CallerIdentity;
use crate::target::TargetName;

/// The answer of a hosted server to one POST, its body streamed.
pub type HostedResponse = http::Response<axum::body::Body>;
/// What [`HostedRuntimes::post`] returns.
pub type HostedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<HostedResponse, UpstreamError>> + Send + 'a>>;
/// What [`HostedRuntimes::end`] returns.
pub type EndFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The platform's runtimes, as the tool gateway uses them. The server implements it over its
/// session manager; without one, runtime-hosted targets answer an error that says so.
pub trait HostedRuntimes: Send + Sync + std::fmt::Debug {
    /// Sends one MCP message (`POST /mcp` with these headers and this JSON body) to the
    /// server of `runtime` in the caller's runtime session `session`, which is started or
    /// resumed as needed and belongs to the caller's tenant and user. Refuses (with
    /// `UpstreamError::Runtime`) a runtime the caller's tenant may not use, one that is not an
    /// MCP server, and a session that cannot start.
    fn post<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        runtime: &'a RuntimeName,
        session: &'a str,
        headers: HeaderMap,
        body: Bytes,
    ) -> HostedFuture<'a>;

    /// Stops the caller's runtime session `session` if it runs; nothing otherwise.
    fn end<'a>(&'a self, caller: &'a CallerIdentity, session: &'a str) -> EndFuture<'a>;
}

/// Where the runtime session of a caller's calls to a hosted target comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionBasis<'a> {
    /// The MCP session of this endpoint the call came in.
    Mcp(&'a str),
    /// A one-off session, for learning a target's tools outside any caller's session.
    Discovery(&'a str),
}

/// The runtime session id that serves `caller`'s calls to the hosted `target`: for an agent
/// (workload token) its own session, otherwise the MCP session (`basis`). `None` when there
/// is neither. The id is a digest, so no caller-chosen string becomes a session id, and it
/// names the target, so two targets on one runtime never share a sandbox.
pub(crate) fn hosted_session_id(
    target: &TargetName,
    caller: &CallerIdentity,
    basis: Option<SessionBasis<'_>>,
) -> Option<String> {
    let mut h = Sha256::new();
    match (&caller.credential, basis) {
        (_, Some(SessionBasis::Discovery(id))) => {
            h.update(b"discovery\0");
            h.update(id.as_bytes());
        }
        (CredentialKind::Workload { session_id, .. }, _) => {
            h.update(b"agent\0");
            h.update(session_id.as_bytes());
        }
        (_, Some(SessionBasis::Mcp(id))) => {
            h.update(b"mcp\0");
            h.update(id.as_bytes());
        }
        (_, None) => return None,
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Some(format!("mcp-{target}-{hex}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tenantry_core::{TenantId, TierName, UserId};

    fn caller(credential: CredentialKind) -> CallerIdentity {
        CallerIdentity::new(
            tenantry_core::TenantScope::for_tests(TenantId::new("acme").unwrap()),
            UserId::new("alice").unwrap(),
            TierName::new("basic").unwrap(),
            credential,
        )
    }

    #[test]
    fn sessions_follow_the_agent_or_the_mcp_session() {
        let t = TargetName::new("notes").unwrap();
        let other = TargetName::new("files").unwrap();
        let user = caller(CredentialKind::ApiKey {
            key_id: "k1".into(),
        });
        let agent = caller(CredentialKind::Workload {
            session_id: "s1".into(),
            runtime: "rt".into(),
        });
        let a = hosted_session_id(&t, &user, Some(SessionBasis::Mcp("m1"))).unwrap();
        assert!(a.starts_with("mcp-notes-") && a.len() >= 33, "{a}");
        assert_eq!(
            Some(&a),
            hosted_session_id(&t, &user, Some(SessionBasis::Mcp("m1"))).as_ref()
        );
        assert_ne!(
            Some(&a),
            hosted_session_id(&t, &user, Some(SessionBasis::Mcp("m2"))).as_ref()
        );
        assert_ne!(
            Some(&a),
            hosted_session_id(&other, &user, Some(SessionBasis::Mcp("m1"))).as_ref()
        );
        assert!(hosted_session_id(&t, &user, None).is_none());
        // An agent's calls follow its own session, whatever MCP session carries them.
        let g1 = hosted_session_id(&t, &agent, Some(SessionBasis::Mcp("m1")));
        assert_eq!(g1, hosted_session_id(&t, &agent, None));
        assert_ne!(g1.as_ref(), Some(&a));
        assert_ne!(
            hosted_session_id(&t, &agent, Some(SessionBasis::Discovery("d"))),
            g1
        );
    }
}
