//! A hostile agent in session A tries everything a sandbox must prevent and reports what
//! happened; the test then checks both its report and the host's side of each attempt.
//!
//! Session B runs at the same time with a secret in its storage; a host process, a host TCP
//! listener and a host file outside the read-only view are the other targets. The platform
//! endpoint (a tiny HTTP server on a host Unix socket) must stay reachable.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tenantry_runtime::{PlatformBridge, SandboxExit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTILE: &str = r#"
import ctypes, json, os, signal, socket, urllib.request

r = {}
def attempt(name, fn):
    try:
        r[name] = {"ok": True, "value": fn()}
    except Exception as e:
        r[name] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}

other = os.environ["OTHER_STORAGE"]
attempt("read_other_storage", lambda: open(other + "/secret.txt").read())
attempt("list_other_storage", lambda: os.listdir(other))
attempt("write_other_storage", lambda: open(other + "/pwned", "w").write("x"))
attempt("read_host_secret", lambda: open(os.environ["HOST_SECRET"]).read())
attempt("list_root", lambda: os.listdir("/root"))
attempt("list_work", lambda: os.listdir("/work"))
attempt("list_home", lambda: os.listdir("/home"))
attempt("read_shadow", lambda: open("/etc/shadow").read()[:4])
attempt("read_init_environ", lambda: open("/proc/1/environ").read())

pids = sorted(p for p in os.listdir("/proc") if p.isdigit())
def comm(p):
    try:
        return open("/proc/%s/comm" % p).read().strip()
    except OSError as e:
        return "?" + str(e.errno)
r["processes"] = {p: comm(p) for p in pids}
attempt("kill_host_process", lambda: os.kill(int(os.environ["HOST_PID"]), signal.SIGTERM))

writes = {}
for p in ["/pwned", "/usr/pwned", "/etc/pwned", "/bin/pwned", "/mnt/pwned", "/dev/pwned",
          "/proc/pwned", "/var/pwned", os.getcwd() + "/pwned", "/etc/hostname",
          "/proc/self/comm", "/proc/self/oom_score_adj"]:
    try:
        open(p, "a").write("x")
        writes[p] = "written"
    except Exception as e:
        writes[p] = "%s: %s" % (type(e).__name__, e)
r["writes"] = writes
attempt("write_tmp", lambda: open("/tmp/ok", "w").write("x"))
attempt("write_session", lambda: open(os.environ["SESSION_DIR"] + "/ok.txt", "w").write("x"))
attempt("write_dev_null", lambda: open("/dev/null", "w").write("x"))

def tcp():
    s = socket.create_connection(("127.0.0.1", int(os.environ["HOST_PORT"])), timeout=2)
    s.close()
    return "connected"
attempt("tcp_host_port", tcp)
attempt("vsock", lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close())
attempt("alg", lambda: socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET).close())
attempt("interfaces", lambda: [n for _, n in socket.if_nameindex()])
attempt("platform", lambda: urllib.request.urlopen(
    os.environ["TENANTRY_ENDPOINT"] + "/hello", timeout=5).read().decode())

libc = ctypes.CDLL(None, use_errno=True)
calls = {}
for name, nr in json.loads(os.environ["SYSCALLS"]).items():
    arg = 0x10000000 if name == "unshare" else 0
    ctypes.set_errno(0)
    rc = libc.syscall(nr, ctypes.c_long(arg), ctypes.c_long(0), ctypes.c_long(0),
                      ctypes.c_long(0), ctypes.c_long(0))
    calls[name] = {"rc": rc, "errno": ctypes.get_errno()}
r["syscalls"] = calls

status = {}
for line in open("/proc/self/status"):
    k, _, v = line.partition(":")
    if k in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Uid"):
        status[k] = v.strip()
r["status"] = status
r["uid"] = os.getuid()
r["hostname"] = socket.gethostname()
r["mounts"] = open("/proc/self/mounts").read()

json.dump(r, open(os.environ["SESSION_DIR"] + "/report.json", "w"), indent=1)
"#;

/// A one-endpoint HTTP server on a Unix socket, standing in for the platform.
async fn platform_server(path: std::path::PathBuf) -> Arc<AtomicUsize> {
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = conn
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\npong")
                    .await;
            });
        }
    });
    hits
}

fn denied_syscalls() -> BTreeMap<&'static str, i64> {
    [
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("ptrace", libc::SYS_ptrace),
        ("bpf", libc::SYS_bpf),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("kexec_load", libc::SYS_kexec_load),
        ("reboot", libc::SYS_reboot),
        ("swapon", libc::SYS_swapon),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("io_uring_setup", libc::SYS_io_uring_setup),
    ]
    .into_iter()
    .collect()
}

fn failed(report: &Value, key: &str) -> bool {
    report[key]["ok"] == Value::Bool(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_cannot_reach_anything_but_its_own_session_and_the_platform() {
    let Some(backend) = backend("a_hostile_agent_cannot_reach_anything_but_its_own_session") else {
        return;
    };
    let dirs = Dirs::new();

    // Session B: a quiet agent with a secret in its storage.
    let storage_b = dirs.storage("sessions/b");
    std::fs::write(storage_b.join("secret.txt"), "B's secret").unwrap();
    let quiet = dirs.agent("quiet", "import time\ntime.sleep(60)\n");
    let b = backend
        .launch(python_spec("b", &quiet, &storage_b))
        .await
        .unwrap();

    // Host-side targets.
    let host_secret = dirs.path("host-secret.txt");
    std::fs::write(&host_secret, "host secret").unwrap();
    let mut host_process = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host_listener.set_nonblocking(true).unwrap();
    let platform_sock = dirs.path("platform.sock");
    let platform_hits = platform_server(platform_sock.clone()).await;

    // Session A: the hostile agent.
    let storage_a = dirs.storage("sessions/a");
    let hostile = dirs.agent("hostile", HOSTILE);
    let mut spec = python_spec("a", &hostile, &storage_a);
    spec.platform = Some(PlatformBridge::new(&platform_sock));
    let env = [
        ("OTHER_STORAGE", storage_b.display().to_string()),
        ("HOST_SECRET", host_secret.display().to_string()),
        ("HOST_PID", host_process.id().to_string()),
        (
            "HOST_PORT",
            host_listener.local_addr().unwrap().port().to_string(),
        ),
        (
            "SYSCALLS",
            serde_json::to_string(&denied_syscalls()).unwrap(),
        ),
    ];
    for (k, v) in env {
        spec.env.insert(k.into(), v);
    }
    let a = backend.launch(spec).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), a.wait())
        .await
        .unwrap();
    let output = a.recent_output();
    assert_eq!(
        exit,
        SandboxExit::Exited { code: 0 },
        "agent output: {output:?}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(storage_a.join("report.json")).unwrap())
            .unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());

    // Another session's storage does not exist for A, and is untouched.
    for key in [
        "read_other_storage",
        "list_other_storage",
        "write_other_storage",
    ] {
        assert!(failed(&report, key), "{key}: {}", report[key]);
    }
    assert!(!storage_b.join("pwned").exists());
    assert_eq!(
        std::fs::read_to_string(storage_b.join("secret.txt")).unwrap(),
        "B's secret"
    );

    // Host files outside the read-only view are absent; root-only files stay unreadable.
    for key in [
        "read_host_secret",
        "list_root",
        "list_work",
        "list_home",
        "read_shadow",
        "read_init_environ",
    ] {
        assert!(failed(&report, key), "{key}: {}", report[key]);
    }

    // Only the sandbox's own processes are visible, and host processes cannot be signalled.
    let procs = report["processes"].as_object().unwrap();
    let names: Vec<&str> = procs.values().filter_map(Value::as_str).collect();
    assert!(
        names
            .iter()
            .all(|n| ["sandbox-init", "python3"].contains(n)),
        "unexpected processes visible: {procs:?}"
    );
    assert_eq!(procs.get("1").and_then(Value::as_str), Some("sandbox-init"));
    assert!(failed(&report, "kill_host_process"));
    assert!(
        host_process.try_wait().unwrap().is_none(),
        "the host process must survive"
    );

    // Writes succeed only in /tmp, the session storage (and /dev/null). /proc is mounted
    // read-write, so refusals there come from Landlock alone.
    for (path, outcome) in report["writes"].as_object().unwrap() {
        assert_ne!(outcome, "written", "{path} must not be writable");
    }
    for key in ["write_tmp", "write_session", "write_dev_null"] {
        assert_eq!(
            report[key]["ok"],
            Value::Bool(true),
            "{key}: {}",
            report[key]
        );
    }
    assert_eq!(
        std::fs::read_to_string(storage_a.join("ok.txt")).unwrap(),
        "x"
    );

    // No network but loopback: the host's listener is unreachable...
    assert!(
        failed(&report, "tcp_host_port"),
        "{}",
        report["tcp_host_port"]
    );
    assert!(matches!(
        host_listener.accept(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    ));
    assert_eq!(report["interfaces"]["value"], serde_json::json!(["lo"]));
    // vsock would bypass the network namespace (host/VM listeners); rare families are refused.
    assert!(failed(&report, "vsock"), "{}", report["vsock"]);
    assert!(failed(&report, "alg"), "{}", report["alg"]);
    // ...while the platform endpoint works.
    assert_eq!(
        report["platform"]["value"], "pong",
        "{}",
        report["platform"]
    );
    assert!(platform_hits.load(Ordering::SeqCst) >= 1);

    // Seccomp answers EPERM to every call on the list; no capabilities, no new privileges.
    for (name, result) in report["syscalls"].as_object().unwrap() {
        assert_eq!(result["rc"], -1, "{name} must fail: {result}");
        assert_eq!(
            result["errno"],
            libc::EPERM,
            "{name} must be EPERM: {result}"
        );
    }
    let status = &report["status"];
    assert_eq!(status["CapEff"], "0000000000000000");
    assert_eq!(status["CapPrm"], "0000000000000000");
    assert_eq!(status["CapBnd"], "0000000000000000");
    assert_eq!(status["NoNewPrivs"], "1");
    assert_eq!(status["Seccomp"], "2");
    assert_eq!(report["uid"], 0, "root inside the user namespace only");
    assert_eq!(report["hostname"], "sandbox");

    // A and B run as different unprivileged host uids (never host root): what A wrote is
    // owned by A's uid, and B's storage was given to B's.
    use std::os::unix::fs::MetadataExt;
    let uid_a = std::fs::metadata(storage_a.join("report.json"))
        .unwrap()
        .uid();
    let uid_b = std::fs::metadata(&storage_b).unwrap().uid();
    if tenantry_runtime::probe().running_as_root {
        assert_ne!(uid_a, 0);
        assert_ne!(uid_b, 0);
        assert_ne!(uid_a, uid_b, "concurrent sessions get different host uids");
    }

    host_process.kill().unwrap();
    let _ = host_process.wait();
    a.stop().await.unwrap();
    assert_eq!(b.stop().await.unwrap().exit, SandboxExit::Stopped);
}
