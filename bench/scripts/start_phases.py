#!/usr/bin/env python3
"""Where a sandbox's start-up time goes, from kernel tracepoints recorded around the runtime
benchmark (no ptrace, so the processes run at full speed).

Record (as root; perf follows the benchmark's children: helpers, inits, agents):

    perf record -q -o /tmp/rt.data -e "$(python3 bench/scripts/start_phases.py --events)" -- \\
        target/release/runtime --phases cold --no-python --sessions 20

Then:

    python3 bench/scripts/start_phases.py /tmp/rt.data

For every sandbox it finds the helper (a child of the benchmark that execs the helper binary),
the helper's child (the sandbox's init) and the init's child that execs (the agent), and prints
the median and 90th percentile of each step, for sandboxes started by the server (sessions
and warm pools) and by the benchmark's own baseline (`ProcessSandbox` directly).
"""

import re
import statistics
import subprocess
import sys

EVENTS = [
    "sched:sched_process_fork",
    "sched:sched_process_exec",
    "syscalls:sys_enter_bind",
    "syscalls:sys_enter_listen",
    "syscalls:sys_enter_mount",
    "syscalls:sys_enter_pivot_root",
    "syscalls:sys_enter_unshare",
    "syscalls:sys_enter_connect",
]

LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")


def load(path):
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,pid,tid,time,event,trace"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            comm, pid, tid, t, name, rest = m.groups()
            events.append((float(t) * 1000.0, comm, int(pid), int(tid), name, rest))
    return events


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--events":
        print(",".join(EVENTS))
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    events = load(sys.argv[1])
    bench = next(
        (e[2] for e in events if e[4] == "sched:sched_process_exec" and "/runtime " in e[5] + " "),
        None,
    )
    if bench is None:
        sys.exit("no exec of the runtime benchmark in this recording")
    forks = {}
    by_pid = {}
    for e in events:
        by_pid.setdefault(e[2], []).append(e)
        if e[4] == "sched:sched_process_fork":
            child = int(re.search(r"child_pid=(\d+)", e[5]).group(1))
            forks[child] = (e[0], e[2], e[3])

    def first(pid, name, after=0.0, cond=lambda rest: True):
        for e in by_pid.get(pid, []):
            if e[4] == name and e[0] >= after and cond(e[5]):
                return e[0]
        return None

    groups = {"server": [], "baseline": []}
    for helper, (t_fork, parent, parent_tid) in forks.items():
        if parent != bench or first(helper, "sched:sched_process_exec") is None:
            continue
        inits = [c for c, (_, p, _) in forks.items() if p == helper]
        if not inits:
            continue
        init = inits[0]
        agents = [
            c for c, (_, p, tid) in forks.items()
            if p == init and tid == init and first(c, "sched:sched_process_exec") is not None
        ]
        if not agents:
            continue
        agent = agents[0]
        listen = first(agent, "syscalls:sys_enter_listen")
        steps = {
            "helper spawned (fork)": t_fork,
            "helper exec'd": first(helper, "sched:sched_process_exec"),
            "helper bound the agent socket": first(helper, "syscalls:sys_enter_bind"),
            "namespaces cloned (init forked)": forks[init][0],
            "init: first mount": first(init, "syscalls:sys_enter_mount"),
            "init: pivot_root": first(init, "syscalls:sys_enter_pivot_root"),
            "init: platform port listening": first(init, "syscalls:sys_enter_listen"),
            "init: placed in cgroups": first(init, "syscalls:sys_enter_unshare"),
            "agent exec'd": first(agent, "sched:sched_process_exec"),
            "agent listening": listen,
        }
        if listen is not None:
            # The platform's first connection to the agent socket (not a TCP connect).
            steps["platform connects to the agent"] = first(
                bench, "syscalls:sys_enter_connect", listen,
                lambda rest: "addrlen: 0x00000010" not in rest,
            )
        # A launch from the server's runtime threads, or from the benchmark's main thread.
        groups["server" if parent_tid != bench else "baseline"].append(steps)

    for name, rows in groups.items():
        if not rows:
            continue
        if name == "server":
            cold = [r for r in rows if r.get("platform connects to the agent") and r["platform connects to the agent"] - r["agent listening"] < 100]
            print(f"\n{name}: {len(rows)} sandboxes ({len(cold)} connected within 100 ms of listening, i.e. cold sessions; the rest waited in a warm pool)")
            rows = cold or rows
        else:
            print(f"\n{name}: {len(rows)} sandboxes")
        keys = list(rows[0].keys())
        print(f"  {'step':<34} {'since spawn p50':>15} {'step p50':>9} {'step p90':>9}  (ms)")
        prev = None
        for k in keys:
            since = [r[k] - r[keys[0]] for r in rows if r.get(k) is not None]
            if not since:
                continue
            step = [r[k] - r[prev] for r in rows if prev and r.get(k) is not None and r.get(prev) is not None]
            p90 = sorted(step)[int(len(step) * 0.9)] if step else 0.0
            print(f"  {k:<34} {statistics.median(since):>15.2f} {statistics.median(step) if step else 0.0:>9.2f} {p90:>9.2f}")
            prev = k


if __name__ == "__main__":
    main()
