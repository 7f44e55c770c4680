"""An agent written for AWS Bedrock AgentCore with its Python SDK, unchanged.

Tenantry serves the same runtime contract (port 8080, POST /invocations, GET /ping, the
AgentCore session, workload-token and custom headers), so this file runs on Tenantry as it is.
Deploy it with its dependencies vendored next to it:

    python3 -m pip install --target vendor bedrock-agentcore
    tenantry runtime create agentcore --workdir $PWD \\
        --env PYTHONPATH=$PWD/vendor \\
        --allow-header X-Amzn-Bedrock-AgentCore-Runtime-Custom-Plan -- python3 agent.py
"""

from bedrock_agentcore.runtime import BedrockAgentCoreApp, BedrockAgentCoreContext

app = BedrockAgentCoreApp()


@app.entrypoint
def invoke(payload, context):
    custom = {
        k: v
        for k, v in (context.request_headers or {}).items()
        if k.lower().startswith("x-amzn-bedrock-agentcore-runtime-custom-")
    }
    return {
        "prompt": payload.get("prompt"),
        "session_id": context.session_id,
        "custom_headers": custom,
        "has_workload_token": bool(BedrockAgentCoreContext.get_workload_access_token()),
    }


if __name__ == "__main__":
    app.run()
