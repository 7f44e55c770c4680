"""An MCP client of another implementation (the official Python SDK, `pip install mcp`) driving
Tenantry's /mcp endpoint: connect, list, call. Prints one JSON summary line for the Rust test.

Usage: mcp_client.py URL BEARER_TOKEN
Works with the SDK's 2.x `Client` (which probes `server/discover` and falls back to the
initialize handshake) and with 1.x's `ClientSession` over `streamablehttp_client`.
"""

import asyncio
import json
import sys

import mcp


def result_summary(result):
    texts = [getattr(c, "text", None) for c in result.content]
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = getattr(result, "isError", None)
    return {"text": texts[0] if texts else None, "is_error": bool(is_error)}


async def exercise(call_tool, list_tools, protocol_version):
    out = {"protocol_version": protocol_version}
    tools = await list_tools()
    out["tools"] = sorted(t.name for t in tools)
    out["schemas"] = {t.name: t.inputSchema if hasattr(t, "inputSchema") else t.input_schema for t in tools}
    out["echo"] = result_summary(await call_tool("kit___echo", {"message": "from python"}))
    out["add"] = result_summary(await call_tool("kit___add", {"a": 2, "b": 40}))
    out["tool_error"] = result_summary(await call_tool("kit___fail", {}))
    out["pet"] = result_summary(await call_tool("pets___getPet", {"petId": 2}))
    out["echo_api"] = result_summary(await call_tool("pets___get_echo_value", {"value": "a b/c"}))
    errors = {}
    for name, args in [("kit___nope", {}), ("pets___listPets", {"limit": 500}), ("kit___slow", {"ms": 10000})]:
        try:
            r = await call_tool(name, args)
            errors[name] = {"unexpected_result": result_summary(r)}
        except Exception as e:  # the SDK raises its MCPError (McpError in 1.x)
            err = getattr(e, "error", None)
            errors[name] = {
                "code": getattr(err, "code", None),
                "message": getattr(err, "message", str(e)),
                "data": getattr(err, "data", None),
            }
    out["errors"] = errors
    return out


async def main_v2(url, token):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0))
    async with http:
        async with mcp.Client(streamable_http_client(url, http_client=http)) as client:
            async def list_tools():
                return (await client.list_tools()).tools

            return await exercise(client.call_tool, list_tools, client.protocol_version)


async def main_v1(url, token):
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url, headers={"Authorization": f"Bearer {token}"}) as (read, write, _):
        async with mcp.ClientSession(read, write) as session:
            init = await session.initialize()

            async def list_tools():
                return (await session.list_tools()).tools

            async def call_tool(name, args):
                r = await session.call_tool(name, args)
                return r

            return await exercise(call_tool, list_tools, init.protocolVersion)


def main():
    url, token = sys.argv[1], sys.argv[2]
    run = main_v2 if hasattr(mcp, "Client") else main_v1
    out = asyncio.run(run(url, token))
    print("SUMMARY " + json.dumps(out, default=str))


if __name__ == "__main__":
    main()
