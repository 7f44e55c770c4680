//! Attacks on the lifecycle of tenants and sessions, from the outside, with real sandboxes:
//! a tenant deleted and created again under the same id, a suspended tenant, a workload token
//! kept past its sandbox, session starts abandoned mid-way, and a store that fails mid-start.
//! What must hold each time: nothing of the old is reachable, no sandbox or slot is left
//! behind, and other users are not locked out.
//!
//! The test agent (`tests/agents/leaky.py`) hands back its workload token and reads, writes
//! or keeps writing its session storage on request. Each test gives its runtime a unique
//! argument, so its sandboxes can be counted on the host by their command line.
//!
//! These tests need user namespaces and cgroups; where the host lacks them they print a SKIP
//! line saying what is missing.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::TestServer;

mod support;

use support::{
    create_runtime, free_port, init_state, invoke, ok, sandboxes_available, serve, server,
    session_id, test_agents_dir, typed,
};

/// Processes on this host whose command line contains `marker` (an agent's unique argument).
fn agents(marker: &str) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|p| p.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .filter(|cmd| String::from_utf8_lossy(cmd).contains(marker))
        .count()
}

/// Sandbox cgroups made by the platform process `pid` (named `sb-p<pid>s<start>-<id>`), in
/// every hierarchy, below this test's own cgroups (where the servers it starts make theirs).
fn cgroups_of(pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("sb-p{pid}s");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut found = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let path = path.trim_start_matches('/');
        let mounts: Vec<String> = if controllers.is_empty() {
            vec!["/sys/fs/cgroup/unified".into(), "/sys/fs/cgroup".into()]
        } else {
            controllers
                .split(',')
                .map(|c| format!("/sys/fs/cgroup/{}", c.trim_start_matches("name=")))
                .collect()
        };
        for mount in mounts {
            let parent = std::path::Path::new(&mount).join(path).join("tenantry");
            if let Ok(entries) = std::fs::read_dir(&parent) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix)
                        && !found.contains(&e.path())
                    {
                        found.push(e.path());
                    }
                }
            }
        }
    }
    found
}

/// The run directories of the platform process `pid` below `run`.
fn run_dirs_of(run: &std::path::Path, pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("p{pid}s");
    std::fs::read_dir(run)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to 15 s) until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leaky agent as runtime `leaky`, marked with a unique argument; returns the marker.
async fn leaky_runtime(s: &TestServer) -> String {
    leaky_runtime_starting_in(s, "0").await
}

/// `leaky_runtime`, whose agent waits `seconds` before it listens.
async fn leaky_runtime_starting_in(s: &TestServer, seconds: &str) -> String {
    let marker = session_id("agent-marker");
    create_runtime(
        s,
        json!({"name": "leaky", "command": ["python3", "leaky.py", marker, seconds],
               "workdir": test_agents_dir()}),
    )
    .await;
    marker
}

#[tokio::test]
async fn a_deleted_tenant_leaves_nothing_that_a_new_tenant_of_its_id_could_reach() {
    if !sandboxes_available(
        "a_deleted_tenant_leaves_nothing_that_a_new_tenant_of_its_id_could_reach",
    ) {
        return;
    }
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    s.create_tenant("globex", "standard").await;
    let marker = leaky_runtime(&s).await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("old-customer");
    let r = invoke(
        &s,
        "leaky",
        &alice,
        &session,
        json!({"write": {"secret": "the old customer's data"}, "background": true}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let old_token = r.body["workload_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1/me", &old_token).await.status, 200);
    let (_, old_key) = s.create_api_key("acme", &[]).await;
    assert_eq!(s.get("/v1/me", &old_key).await.status, 200);
    // Another tenant's session, which the deletion must not touch.
    let bob = s.token("globex", "bob", &[]);
    let other = session_id("other-tenant");
    assert_eq!(
        invoke(&s, "leaky", &bob, &other, json!({}), &[])
            .await
            .status,
        200
    );
    let old_uid = s.tenant_uid("acme").await;
    let sessions = &s.server().state.sessions;
    let storage = sessions.storage_dir(&old_uid, &typed(&session));
    assert!(
        sessions
            .storage_view(&old_uid, &typed(&session))
            .join("secret")
            .exists()
    );
    assert_eq!(agents(&marker), 2);

    let r = s.delete("/v1/admin/tenants/acme", &s.admin_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tenant"], "acme");
    assert_eq!(r.body["sessions"]["sessions_stopped"], 1, "{}", r.text);
    assert_eq!(r.body["sessions"]["storage_removed"], true, "{}", r.text);
    assert_eq!(r.body["rows"]["api_keys"], 1, "{}", r.text);
    assert_eq!(r.body["rows"]["sessions"], 1, "{}", r.text);
    assert_eq!(r.body["usage_purged"], false, "{}", r.text);
    // The old sandbox is gone with its background writer, and so is its storage.
    assert_eq!(
        agents(&marker),
        1,
        "only the other tenant's sandbox is left"
    );
    assert!(!storage.exists(), "{}", storage.display());
    assert!(!storage.parent().unwrap().exists());
    assert!(sessions.is_running(&s.tenant_uid("globex").await, &typed(&other)));
    // Its credentials are dead.
    let r = s.get("/v1/me", &old_token).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    assert_eq!(s.get("/v1/me", &old_key).await.status, 401);

    // A new tenant of the same id is another tenant.
    s.create_tenant("acme", "standard").await;
    assert_ne!(s.tenant_uid("acme").await, old_uid);
    let r = s.get("/v1/me", &old_token).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    assert_eq!(s.get("/v1/me", &old_key).await.status, 401);
    let alice = s.token("acme", "alice", &[]);
    let r = invoke(
        &s,
        "leaky",
        &alice,
        &session,
        json!({"read": "secret"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["read"], Value::Null, "{}", r.text);
    assert_eq!(
        r.body["invocations_in_session"], 1,
        "a fresh session: {}",
        r.text
    );
    assert_eq!(r.body["files"], json!(["invocations"]), "{}", r.text);
    assert_eq!(agents(&marker), 2);

    // The ledger of the old tenant is kept for billing; purging it is asked for.
    let r = s
        .delete("/v1/admin/tenants/acme?purge=everything", &s.admin_key)
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    let r = s
        .delete("/v1/admin/tenants/acme?purge=usage", &s.admin_key)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["usage_purged"], true);
    assert!(
        r.body["rows"]["usage_records"].as_u64().unwrap() >= 1,
        "{}",
        r.text
    );
    assert_eq!(agents(&marker), 1);
    let r = s.delete("/v1/admin/tenants/acme", &s.admin_key).await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn suspending_a_tenant_stops_its_sandboxes_and_keeps_their_storage() {
    if !sandboxes_available("suspending_a_tenant_stops_its_sandboxes_and_keeps_their_storage") {
        return;
    }
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    let marker = leaky_runtime(&s).await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("suspended");
    let r = invoke(
        &s,
        "leaky",
        &alice,
        &session,
        json!({"write": {"note": "kept"}, "background": true}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["workload_token"].as_str().unwrap().to_owned();
    assert_eq!(agents(&marker), 1);

    let r = s
        .send_json(
            "PATCH",
            "/v1/admin/tenants/acme",
            &s.admin_key,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(agents(&marker), 0, "a suspended tenant's sandboxes stop");
    let r = invoke(&s, "leaky", &alice, &session, json!({}), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "tenant_suspended"),
        "{}",
        r.text
    );
    assert_eq!(s.get("/v1/me", &token).await.status, 401);

    s.send_json(
        "PATCH",
        "/v1/admin/tenants/acme",
        &s.admin_key,
        json!({"status": "active"}),
    )
    .await;
    let r = s.get(&format!("/v1/sessions/{session}"), &alice).await;
    assert_eq!(r.body["stop_reason"], "tenant_suspended", "{}", r.text);
    let r = invoke(&s, "leaky", &alice, &session, json!({"read": "note"}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["read"], "kept",
        "storage survives suspension: {}",
        r.text
    );
    assert_eq!(r.body["invocations_in_session"], 2);
    s.stop().await;
}

#[tokio::test]
async fn a_workload_token_dies_with_its_sandbox_even_if_the_session_resumes() {
    if !sandboxes_available("a_workload_token_dies_with_its_sandbox_even_if_the_session_resumes") {
        return;
    }
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    leaky_runtime(&s).await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("epoch");
    let r = invoke(&s, "leaky", &alice, &session, json!({}), &[]).await;
    let old = r.body["workload_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1/me", &old).await.status, 200);
    s.delete(&format!("/v1/sessions/{session}"), &alice).await;
    assert_eq!(s.get("/v1/me", &old).await.status, 401);
    // Resumed: a new sandbox, and the old token stays dead.
    let r = invoke(&s, "leaky", &alice, &session, json!({}), &[]).await;
    assert_eq!(r.body["invocations_in_session"], 2, "{}", r.text);
    let new = r.body["workload_token"].as_str().unwrap().to_owned();
    let r = s.get("/v1/me", &old).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    assert_eq!(s.get("/v1/me", &new).await.status, 200);
    s.stop().await;
}

/// A tier of five concurrent sessions and invocations for the two tests below.
async fn small_tier_tenant(s: &TestServer) {
    let tier = json!({"limits": {"requests_per_second": 1000, "burst": 1000,
                                 "concurrent_sessions": 5, "concurrent_invocations": 5}});
    s.admin("PUT", "/v1/admin/tiers/small", Some(tier)).await;
    s.create_tenant("acme", "small").await;
}

/// Five sessions of another user of the tenant start together, and each then takes an
/// invocation at the same time as the others: no slot, reservation or permit was left behind.
async fn another_user_gets_the_whole_allowance(s: &TestServer) {
    let bob = s.token("acme", "bob", &[]);
    let ids: Vec<String> = (0..5).map(|_| session_id("bob")).collect();
    for round in 0..2 {
        let calls = ids
            .iter()
            .map(|id| invoke(s, "leaky", &bob, id, json!({}), &[]));
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.status, 200, "round {round}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn cancelled_session_starts_leave_no_sandbox_slot_or_permit_behind() {
    if !sandboxes_available("cancelled_session_starts_leave_no_sandbox_slot_or_permit_behind") {
        return;
    }
    let s = server(1).await;
    small_tier_tenant(&s).await;
    // The agent takes 0.1 s to listen, so most cancellations land in the middle of a start.
    let marker = leaky_runtime_starting_in(&s, "0.1").await;
    let mallory = s.token("acme", "mallory", &[]);
    let http = reqwest::Client::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("cancellation delays from seed {seed}");
    let mut state = seed | 1;
    let mut answered = Vec::new();
    for _ in 0..50 {
        // xorshift: a delay of 1 to 50 ms.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(1 + state % 50);
        let id = session_id("cancelled");
        let sent = http
            .post(format!("{}/v1/runtimes/leaky/invocations", s.url))
            .bearer_auth(&mallory)
            .header("X-Tenantry-Session-Id", &id)
            .json(&json!({}))
            .timeout(delay)
            .send()
            .await;
        // A start can finish within the delay: that session is an ordinary one, stopped below
        // by its owner. Every other one was abandoned and must stop by itself.
        if let Ok(r) = sent
            && r.bytes().await.is_ok()
        {
            answered.push(id);
        } else {
            // Each abandoned start is undone before the next request, so each one of the
            // fifty meets a free tier (not the 429 of its predecessors' reservations).
            let sessions = &s.server().state.sessions;
            eventually("an abandoned start is undone", || {
                sessions.live_count() == 0
            })
            .await;
        }
    }
    eprintln!("{} of 50 answered within their delay", answered.len());
    for id in &answered {
        s.delete(&format!("/v1/sessions/{id}"), &mallory).await;
    }
    let sessions = &s.server().state.sessions;
    eventually(
        "no session of the cancelled starts holds or awaits a sandbox",
        || sessions.live_count() == 0,
    )
    .await;
    eventually("no sandbox of the cancelled starts is left", || {
        agents(&marker) == 0
    })
    .await;
    let listed = s.get("/v1/sessions", &mallory).await;
    let running: Vec<&Value> = listed.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["running"] == true)
        .collect();
    assert!(running.is_empty(), "{running:?}");
    another_user_gets_the_whole_allowance(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn a_store_failure_mid_start_leaves_nothing_behind() {
    if !sandboxes_available("a_store_failure_mid_start_leaves_nothing_behind") {
        return;
    }
    let s = server(1).await;
    small_tier_tenant(&s).await;
    let marker = leaky_runtime(&s).await;
    // The database refuses this user's sessions, as a failing disk or a lost connection would.
    let url = s.server().state.config.database.url.clone();
    let db = url.strip_prefix("sqlite://").unwrap();
    let sql = "CREATE TRIGGER refuse BEFORE INSERT ON sessions WHEN NEW.user_id = 'doomed' \
               BEGIN SELECT RAISE(ABORT, 'injected failure'); END;";
    // Run without blocking this runtime: the server shares it, and its background writers
    // (the audit log) must be able to finish a transaction while the trigger waits for the lock.
    let out = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=60); c.execute(sys.argv[2]); c.commit()",
            db,
            sql,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doomed = s.token("acme", "doomed", &[]);
    for _ in 0..10 {
        let r = invoke(&s, "leaky", &doomed, &session_id("doomed"), json!({}), &[]).await;
        assert!(r.status >= 500, "{}", r.text);
    }
    let sessions = &s.server().state.sessions;
    assert_eq!(sessions.live_count(), 0);
    assert_eq!(agents(&marker), 0);
    another_user_gets_the_whole_allowance(&s).await;
    s.stop().await;
}

/// A server killed with SIGKILL while a session runs: after its restart the session is not
/// left `active` (reason `crash`), its compute up to the last sample is in the ledger, the
/// cgroups and run directory the dead server left are gone, and the session resumes on its
/// storage.
#[tokio::test]
async fn after_a_crash_the_node_marks_its_sessions_stopped_and_kept_their_compute() {
    if !sandboxes_available(
        "after_a_crash_the_node_marks_its_sessions_stopped_and_kept_their_compute",
    ) {
        return;
    }
    tenantry_testkit::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = init_state(dir.path(), port);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("compute_sample_seconds = 60", "compute_sample_seconds = 1"),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let admin = std::fs::read_to_string(dir.path().join("admin.key")).unwrap();
    let admin = admin.trim();
    let http = reqwest::Client::new();
    let mut server = serve(&config, port);
    let marker = session_id("crash-marker");
    for (path, body) in [
        (
            "/v1/admin/tenants",
            json!({"id": "acme", "tier": "standard"}),
        ),
        (
            "/v1/admin/runtimes",
            json!({"name": "leaky", "command": ["python3", "leaky.py", marker],
                   "workdir": test_agents_dir()}),
        ),
    ] {
        let r = http
            .post(format!("{url}{path}"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let alice = ok(&[
        "token", "issue", "--tenant", "acme", "--user", "alice", "--config", c,
    ]);
    let alice = alice.trim();
    let session = session_id("crashed");
    let invoke = |body: Value| {
        http.post(format!("{url}/v1/runtimes/leaky/invocations"))
            .bearer_auth(alice)
            .header("X-Tenantry-Session-Id", &session)
            .json(&body)
            .send()
    };
    let r = invoke(json!({"write": {"note": "before the crash"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A few compute samples go to the ledger meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let dead_pid = server.0.id();
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    eventually("the sandbox dies with its server", || agents(&marker) == 0).await;
    // What the killed server could not clean up: its sandbox's cgroups and its run directory.
    let leftovers = || {
        let mut found = cgroups_of(dead_pid);
        found.extend(run_dirs_of(&dir.path().join("run"), dead_pid));
        found
    };
    let left = leftovers();
    assert!(
        !cgroups_of(dead_pid).is_empty(),
        "the killed server leaves cgroups: {left:?}"
    );
    assert!(
        !run_dirs_of(&dir.path().join("run"), dead_pid).is_empty(),
        "and a run directory: {left:?}"
    );

    let _server = serve(&config, port);
    // The new server reconciles as it starts (it may already listen meanwhile).
    eventually("the new server removes what the killed one left", || {
        leftovers().is_empty()
    })
    .await;
    // The old server's kept-alive connections died with it.
    let http = reqwest::Client::new();
    let invoke = |body: Value| {
        http.post(format!("{url}/v1/runtimes/leaky/invocations"))
            .bearer_auth(alice)
            .header("X-Tenantry-Session-Id", &session)
            .json(&body)
            .send()
    };
    let r = http
        .get(format!("{url}/v1/sessions/{session}"))
        .bearer_auth(alice)
        .send()
        .await
        .unwrap();
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["status"], "stopped", "{shown}");
    assert_eq!(shown["stop_reason"], "crash", "{shown}");
    assert_eq!(shown["running"], false, "{shown}");
    let usage: Value = http
        .get(format!("{url}/v1/admin/usage?tenant=acme&group_by=kind"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let compute = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "compute")
        .unwrap_or_else(|| panic!("no compute in {usage}"));
    assert!(compute["cpu_ms"].as_i64().unwrap() > 0, "{usage}");
    assert!(compute["memory_mb_ms"].as_i64().unwrap() > 0, "{usage}");
    // The session resumes on its storage.
    let r: Value = invoke(json!({"read": "note"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["read"], "before the crash", "{r}");
    assert_eq!(r["invocations_in_session"], 2, "{r}");
}
