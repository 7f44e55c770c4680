#!/usr/bin/env python3
"""How long placing a process in a sandbox's cgroups takes, by how long ago the previous
placement was: writes a fresh `sleep` process's pid to the `cgroup.procs` of four new cgroups
(v1 memory, cpu, cpuacct and pids, below `tenantry/` in this process's own cgroups, as the
sandbox helper does), 30 times, with PAUSE seconds between rounds.

    PAUSE=0.005 python3 bench/scripts/cgroup_move.py   # moves close together
    PAUSE=0.2   python3 bench/scripts/cgroup_move.py   # moves as sparse as sessions

Needs root (or delegated cgroups) on a cgroup v1 host; removes what it creates.
"""

import os
import statistics
import subprocess
import time

CONTROLLERS = ["memory", "cpu", "cpuacct", "pids"]


def own_path(controller):
    for line in open("/proc/self/cgroup"):
        _, names, path = line.rstrip("\n").split(":", 2)
        if controller in names.split(","):
            return path
    raise SystemExit(f"no v1 {controller} hierarchy: this script is for cgroup v1 hosts")


def main():
    pause = float(os.environ.get("PAUSE", "0.02"))
    parents = {c: f"/sys/fs/cgroup/{c}{own_path(c).rstrip('/')}/tenantry" for c in CONTROLLERS}
    per = {c: [] for c in CONTROLLERS}
    total = []
    for i in range(30):
        dirs = {}
        for c, parent in parents.items():
            d = f"{parent}/cgmove-{os.getpid()}-{i}"
            os.makedirs(d)
            dirs[c] = d
        child = subprocess.Popen(["sleep", "5"])
        start = time.perf_counter()
        for c, d in dirs.items():
            t = time.perf_counter()
            with open(d + "/cgroup.procs", "w") as f:
                f.write(str(child.pid))
            per[c].append((time.perf_counter() - t) * 1000)
        total.append((time.perf_counter() - start) * 1000)
        child.kill()
        child.wait()
        time.sleep(pause)
        for d in dirs.values():
            os.rmdir(d)
    for c, v in per.items():
        print(f"{c:<8} p50 {statistics.median(v):6.2f} ms  max {max(v):6.2f} ms")
    total.sort()
    print(
        f"all four p50 {statistics.median(total):.2f} ms, p90 {total[int(len(total) * 0.9)]:.2f} ms, "
        f"max {total[-1]:.2f} ms ({pause * 1000:.0f} ms between rounds)"
    )


if __name__ == "__main__":
    main()
