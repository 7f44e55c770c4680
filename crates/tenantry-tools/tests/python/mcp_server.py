"""An upstream MCP server of another implementation (the official Python SDK), for Tenantry's
MCP client: streamable HTTP at /mcp, answering with event streams (the SDK's default) or JSON.

Usage: mcp_server.py PORT [json]
Tools: add(a, b); whoami() answers the Authorization header the call arrived with.
"""

import sys

port = int(sys.argv[1])
json_response = len(sys.argv) > 2 and sys.argv[2] == "json"

try:  # SDK 2.x
    from mcp.server.mcpserver import Context, MCPServer

    app = MCPServer("py-upstream")
    run = lambda: app.run("streamable-http", host="127.0.0.1", port=port, json_response=json_response)
except ImportError:  # SDK 1.x
    from mcp.server.fastmcp import Context, FastMCP

    app = FastMCP("py-upstream", host="127.0.0.1", port=port, json_response=json_response, log_level="WARNING")
    run = lambda: app.run("streamable-http")


@app.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@app.tool()
def whoami(ctx: Context) -> str:
    """The Authorization header this call carried."""
    headers = getattr(ctx.request_context.request, "headers", None) or {}
    return headers.get("authorization", "none")


run()
