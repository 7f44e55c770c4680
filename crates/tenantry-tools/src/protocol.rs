//! The MCP protocol versions and transport headers Tenantry speaks, on both sides.
//!
//! Tenantry serves the `initialize` handshake era of streamable HTTP. The stateless
//! per-request revision (`server/discover`, 2026-07-28) is not served: such clients probe,
//! receive a JSON-RPC error, and fall back to `initialize`, as that revision specifies.

/// Versions served, newest first. `initialize` echoes the client's version when it is here,
/// and answers the newest otherwise.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// The session header of streamable HTTP.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The negotiated version, sent by clients on every request after `initialize`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// What a client that sends no version header is assumed to speak (the transport's rule).
pub const DEFAULT_HEADERLESS_VERSION: &str = "2025-03-26";

/// The version to answer an `initialize` that asked for `requested`.
pub fn negotiate(requested: &str) -> &'static str {
    SUPPORTED_PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(SUPPORTED_PROTOCOL_VERSIONS[0])
}

/// Whether invalid tool arguments are a tool execution error (`isError` result, so a model
/// can correct itself) rather than a JSON-RPC error: the rule from 2025-11-25 on.
pub(crate) fn invalid_arguments_as_result(version: &str) -> bool {
    !matches!(version, "2025-06-18" | "2025-03-26")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate("2025-03-26"), "2025-03-26");
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2024-11-05"), "2025-11-25");
        assert_eq!(negotiate("garbage"), "2025-11-25");
        assert!(invalid_arguments_as_result("2025-11-25"));
        assert!(!invalid_arguments_as_result("2025-06-18"));
    }
}
