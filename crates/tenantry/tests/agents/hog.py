# An AgentCore-style agent that can be told to allocate memory until it is killed.
from jsonagent import JsonHandler, serve

hoard = []


class H(JsonHandler):
    def do_POST(self):
        body = self.body()
        if body.get("allocate_mb"):
            for _ in range(int(body["allocate_mb"])):
                hoard.append(bytearray(1024 * 1024))
        self.reply({"allocated_mb": len(hoard)})


serve(H)
