//! Clients of the upstreams behind targets: MCP servers over streamable HTTP ([`mcp`]) and
//! HTTP APIs described by OpenAPI documents ([`openapi`]), with what they share ([`http`]).

pub(crate) mod http;
pub(crate) mod mcp;
pub(crate) mod openapi;
