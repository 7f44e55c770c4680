# An agent that reports the file descriptors it was started with (before it opened any of its
# own) and what it can read through descriptors it did not open: an inherited descriptor is a
# way out of the sandbox.
import os

from jsonagent import JsonHandler, serve


def inherited():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return out


AT_START = inherited()


class H(JsonHandler):
    def do_POST(self):
        body = self.body()
        read = {}
        for fd in body.get("read_fds", []):
            try:
                read[str(fd)] = os.pread(int(fd), 256, 0).decode("utf-8", "replace")
            except OSError as e:
                read[str(fd)] = "error: " + e.strerror
        self.reply({"fds_at_start": AT_START, "read": read})


serve(H, threaded=False)
