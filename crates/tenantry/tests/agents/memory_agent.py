"""An agent written for AgentCore with its Python SDK, unchanged, that keeps its conversation in
AgentCore Memory: the SDK's MemoryClient finds its endpoints, region and credentials in the
environment, as it would on AWS. On Tenantry they point at the sandbox's bridge, where the
sandbox's dummy key pair stands for the session's own identity; the agent holds no credential.

Each invocation stores the prompt as a user turn of the session's conversation, lists the
conversation, and waits (briefly) for the long-term facts extracted from it."""

import os
import time

from bedrock_agentcore.memory import MemoryClient
from bedrock_agentcore.runtime import BedrockAgentCoreApp, BedrockAgentCoreContext
from botocore.exceptions import ClientError

app = BedrockAgentCoreApp()
memory = MemoryClient(region_name=os.environ.get("AWS_REGION"))


@app.entrypoint
def invoke(payload, context):
    mid, actor = payload["memory_id"], payload["actor_id"]
    session = payload.get("session", "agent-chat")
    answer = {"credentials_seen": sorted(k for k in os.environ if k.startswith("AWS_"))}
    try:
        memory.create_event(memory_id=mid, actor_id=actor, session_id=session,
                            messages=[(payload["prompt"], "USER"), ("Noted.", "ASSISTANT")])
        events = memory.list_events(memory_id=mid, actor_id=actor, session_id=session)
        answer["events"] = [[p["conversational"]["content"]["text"] for p in e["payload"]]
                            for e in events]
        records = []
        for _ in range(40):
            records = memory.retrieve_memories(memory_id=mid, namespace=f"/facts/{actor}",
                                               query=payload["prompt"], top_k=3)
            if records or not payload.get("wait_for_records", True):
                break
            time.sleep(0.25)
        answer["records"] = [r["content"]["text"] for r in records]
    except ClientError as e:
        answer["error"] = {"status": e.response["ResponseMetadata"]["HTTPStatusCode"],
                           "code": e.response["Error"]["Code"]}
    answer["session_id"] = context.session_id
    return answer


if __name__ == "__main__":
    app.run()
