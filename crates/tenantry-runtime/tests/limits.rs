//! Resource limits from the tier, enforced by the sandbox's cgroup: memory (an agent past its
//! limit is killed and reported as out of memory), processes (a fork bomb is contained and the
//! host stays responsive) and CPU (metered in CPU-seconds).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tenantry_runtime::{SandboxExit, SandboxStatus};

#[tokio::test]
async fn an_agent_past_its_memory_limit_is_killed_and_reported_oom() {
    let Some(backend) = backend("an_agent_past_its_memory_limit_is_killed_and_reported_oom") else {
        return;
    };
    let dirs = Dirs::new();
    let code = r#"
import time
hog = []
for i in range(64):
    hog.append(b"x" * (16 << 20))   # 1 GiB in 16 MiB chunks, each actually written
    time.sleep(0.001)
print("allocated everything: the limit did not hold")
"#;
    let workdir = dirs.agent("hog", code);
    let storage = dirs.storage("storage");
    let mut spec = python_spec("oom", &workdir, &storage);
    spec.resources.memory_mb = 64;
    let handle = backend.launch(spec).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .unwrap();
    assert_eq!(
        exit,
        SandboxExit::OutOfMemory,
        "output: {:?}",
        handle.recent_output()
    );
    assert_eq!(exit.as_str(), "sandbox_oom");
    let usage = handle.usage();
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert!(usage.memory_peak_bytes <= 64 << 20, "{usage:?}");
    assert!(usage.memory_peak_bytes >= 16 << 20, "{usage:?}");
    let report = handle.stop().await.unwrap();
    assert_eq!(report.exit, SandboxExit::OutOfMemory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_contained_and_the_host_stays_responsive() {
    let Some(backend) = backend("a_fork_bomb_is_contained_and_the_host_stays_responsive") else {
        return;
    };
    let dirs = Dirs::new();
    // The classic shell bomb, started by a Python agent that itself stays alive.
    let code = r#"
import subprocess, time
subprocess.Popen(["/bin/sh", "-c", "bomb() { bomb | bomb & }; bomb"])
time.sleep(120)
"#;
    let workdir = dirs.agent("bomb", code);
    let storage = dirs.storage("storage");
    let mut spec = python_spec("bomb", &workdir, &storage);
    spec.resources.max_processes = 24;
    spec.resources.cpu_millis = 500;
    let handle = backend.launch(spec).await.unwrap();
    let limit = u64::from(24 + tenantry_runtime::cgroup::INIT_PIDS_OVERHEAD);

    // Let it rage for a while, checking the host all along.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut worst_host_latency = Duration::ZERO;
    let mut most_tasks = 0;
    while Instant::now() < deadline {
        let t = Instant::now();
        let ok = std::process::Command::new("/bin/true").status().unwrap();
        assert!(ok.success());
        tokio::time::sleep(Duration::from_millis(20)).await;
        worst_host_latency = worst_host_latency.max(t.elapsed());
        most_tasks = most_tasks.max(handle.tasks_current().unwrap_or(0));
        assert!(most_tasks <= limit, "{most_tasks} tasks > limit {limit}");
    }
    println!(
        "fork bomb: at most {most_tasks} tasks (limit {limit}); worst host probe {worst_host_latency:?}"
    );
    let refused = handle.pids_limit_hits().unwrap_or(0);
    println!("forks refused by the process limit: {refused}");
    assert!(refused > 0, "the bomb should have hit the process limit");
    assert!(
        worst_host_latency < Duration::from_secs(1),
        "the host became unresponsive: {worst_host_latency:?}"
    );
    assert_eq!(handle.status(), SandboxStatus::Running);

    let pids = handle.pids();
    let dirs_before = handle.cgroup_dirs();
    let report = tokio::time::timeout(Duration::from_secs(15), handle.stop())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.exit, SandboxExit::Stopped);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived stop()"
        );
    }
    for d in dirs_before {
        assert!(!d.exists(), "{} not removed", d.display());
    }
}

#[tokio::test]
async fn cpu_time_is_metered() {
    let Some(backend) = backend("cpu_time_is_metered") else {
        return;
    };
    let dirs = Dirs::new();
    let code = r#"
import time
n = 0
while time.process_time() < 0.6:   # CPU time, so a busy machine cannot shorten it
    n += 1
time.sleep(60)
"#;
    let workdir = dirs.agent("busy", code);
    let storage = dirs.storage("storage");
    let handle = backend
        .launch(python_spec("cpu", &workdir, &storage))
        .await
        .unwrap();
    let start = Instant::now();
    let mut usage = handle.usage();
    while usage.cpu_seconds < 0.4 && start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        usage = handle.usage();
    }
    println!("usage after the busy loop: {usage:?}");
    assert!(usage.cpu_seconds >= 0.4, "{usage:?}");
    assert!(usage.memory_peak_bytes > 1 << 20, "{usage:?}");
    assert!(usage.memory_gb_seconds > 0.0, "{usage:?}");
    let report = handle.stop().await.unwrap();
    assert!(report.usage.cpu_seconds >= usage.cpu_seconds);
    assert_eq!(handle.usage(), report.usage, "usage is frozen after stop");
}
