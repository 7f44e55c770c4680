//! The tool gateway of Tenantry: one MCP endpoint (streamable HTTP) in front of the tools of
//! operator-registered targets.
//!
//! This crate owns the MCP server side ([`mcp_route`]: `initialize`, `ping`, `tools/list`,
//! `tools/call`, sessions bound to their caller), the targets ([`TargetSpec`], kept compiled in
//! the [`Catalog`]): upstream MCP servers (whose tools it re-exports through its own MCP client)
//! OpenAPI 3 documents (each operation a tool) and MCP servers hosted as Tenantry runtimes
//! (reached through [`HostedRuntimes`], one sandbox per tenant session), exported as
//! `{target}___{tool}`; and the order of a call in [`ToolGateway`]: admission, tenancy, policy with the call's input,
//! credential injection, the upstream call under the target's deadline, the metering record.
//!
//! It defines, and does not implement, what it needs from the rest of the platform: the policy
//! engine ([`ToolPolicy`]), the vault ([`CredentialSource`]) and limits and the ledger
//! ([`ToolMeter`]); the server plugs the real ones in and authenticates callers
//! ([`CallerIdentity`]). It must never take identity from a request body or header, never hand
//! one tenant's target or credential to another, never let a call through when the policy or
//! the vault cannot decide, never wait on an upstream without a deadline, and never log or
//! echo a credential.

#![forbid(unsafe_code)]

mod catalog;
mod credentials;
mod endpoint;
mod error;
mod gateway;
mod hosted;
mod identity;
pub mod jsonrpc;
mod meter;
mod policy;
pub mod protocol;
mod session;
mod target;
mod upstream;

#[cfg(feature = "test-util")]
pub mod testing;

pub use catalog::{Catalog, DEFAULT_TOOLS_TTL, LoadFailure};
pub use credentials::{
    CredentialError, CredentialFuture, CredentialSource, NoCredentials, OutboundCredential,
};
pub use endpoint::{mcp_route, router};
pub use error::{TargetError, ToolError, UpstreamError};
pub use gateway::{GatewayConfig, ToolGateway};
pub use hosted::{EndFuture, HostedFuture, HostedResponse, HostedRuntimes};
pub use identity::{CallerIdentity, Secret};
pub use meter::{
    AdmitFuture, CallStatus, GuardFuture, NoGuard, NoMeter, RecordFuture, Refusal, ToolCallRecord,
    ToolGuard, ToolMeter,
};
pub use policy::{OfferedTool, ToolAuthzRequest, ToolDecision, ToolPolicy, ToolRef};
pub use target::{
    CredentialPlacement, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, SpecSource, TOOL_SEPARATOR,
    TargetKind, TargetName, TargetSpec,
};
