//! No Nagle stalls on agent calls: an agent that writes its response head and body in two
//! writes without `TCP_NODELAY` (as Python's `http.server` does) must answer through the
//! platform's kept-alive connection as fast as the same agent that sets `TCP_NODELAY`, not
//! 40 ms later (the delayed-ACK timer its second write would otherwise wait for).
//!
//! Why the twin and not the agent called directly: a direct caller that delays its own
//! acknowledgements (most HTTP clients on a kept-alive connection, `reqwest` among them) meets
//! the same stall, so "directly" is only a fair baseline with a client that acknowledges at
//! once; and in a debug build the platform's own work (authentication, admission, routing)
//! costs more than the stall test allows. The twin, behind the same platform, measures the
//! stall alone. The two sessions take turns call by call, so both see the same moments of the
//! machine; the median of the 100 paired differences must be at most 5 ms (a round spoiled
//! by other work on the machine is measured again, up to three times). The direct figures are
//! printed too.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;

mod support;

use support::{
    create_runtime, free_port, sandboxes_available, server, session_id, test_agents_dir,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn a_nagle_prone_agent_is_as_fast_behind_the_platform_as_one_that_is_not() {
    if !sandboxes_available("a_nagle_prone_agent_is_as_fast_behind_the_platform_as_one_that_is_not")
    {
        return;
    }
    let s = server(1).await;
    // A tier whose request rate is never in the way of 300 calls in a few seconds.
    let tier = json!({"limits": {"requests_per_second": 10000, "burst": 10000}});
    s.admin("PUT", "/v1/admin/tiers/fast", Some(tier)).await;
    s.create_tenant("acme", "fast").await;
    for (name, args) in [
        ("nagle", json!(["python3", "nagle.py"])),
        ("twin", json!(["python3", "nagle.py", "nodelay"])),
    ] {
        create_runtime(
            &s,
            json!({"name": name, "command": args, "workdir": test_agents_dir()}),
        )
        .await;
    }
    let alice = s.token("acme", "alice", &[]);
    let http = reqwest::Client::new();
    let through = |runtime: &'static str, session: String| {
        let (http, alice, url) = (http.clone(), alice.clone(), s.url.clone());
        move || {
            let (http, alice, url, session) =
                (http.clone(), alice.clone(), url.clone(), session.clone());
            async move {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/v1/runtimes/{runtime}/invocations"))
                    .bearer_auth(&alice)
                    .header("X-Tenantry-Session-Id", &session)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body = r.bytes().await.unwrap();
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                t.elapsed()
            }
        }
    };
    let nagle = through("nagle", session_id("nagle"));
    let twin = through("twin", session_id("twin"));

    // The same Nagle-prone agent on the host, called directly (for the record).
    let port = free_port();
    let mut host_agent = std::process::Command::new("python3")
        .arg("nagle.py")
        .current_dir(test_agents_dir())
        .env("PORT", port.to_string())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the host agent did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let direct = || async {
        let t = Instant::now();
        let r = http
            .post(format!("http://127.0.0.1:{port}/invocations"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        t.elapsed()
    };

    // Warm-up: both sessions start, every connection is open and kept alive.
    for _ in 0..5 {
        nagle().await;
        twin().await;
        direct().await;
    }
    // Each round: 100 calls of each, in turn; the statistic is the median of the paired
    // differences (Nagle-prone minus twin), which cancels what both calls of a pair share (a
    // busy machine). A stall costs tens of ms on most calls (the 40 ms delayed-ACK timer) and
    // fails every round; the bound is 5 ms, far below a stall and above what a loaded machine
    // adds to an agent that writes twice (about 1.2 ms seen while the whole suite ran; the
    // figure itself is the runtime benchmark's). A round spoiled by other work on the machine
    // is measured again, up to three times.
    const MAX_ADDED_MS: f64 = 5.0;
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (mut diffs, mut prone, mut safe, mut host) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..100 {
            let p = nagle().await;
            let t = twin().await;
            diffs.push(p.as_secs_f64() - t.as_secs_f64());
            prone.push(p);
            safe.push(t);
            host.push(direct().await);
        }
        diffs.sort_by(f64::total_cmp);
        let added = diffs[diffs.len() / 2] * 1000.0;
        let (prone, safe, host) = (median(prone), median(safe), median(host));
        println!(
            "p50 through the platform: Nagle-prone {prone:?}, with TCP_NODELAY {safe:?}, paired \
             difference {added:+.2} ms; the Nagle-prone agent called directly (reqwest, \
             delayed ACKs) {host:?}"
        );
        rounds.push(added);
        if added <= MAX_ADDED_MS {
            break;
        }
    }
    let _ = host_agent.kill();
    let _ = host_agent.wait();
    assert!(
        rounds.iter().any(|added| *added <= MAX_ADDED_MS),
        "the Nagle-prone agent's calls took more than {MAX_ADDED_MS} ms longer than its twin's \
         (median of paired differences, ms, per round): {rounds:?}"
    );
    s.stop().await;
}
