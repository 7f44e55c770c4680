//! The tier's `storage_mb` is a hard limit where the host allows image storage (root, loop
//! devices, `mkfs.ext4`): writes past it fail with ENOSPC at once, during an invocation or from
//! a process that keeps writing after it, and the host's disk holds no more than the size. The
//! agent keeps running and can free space itself; the owner can reset the storage. The image
//! survives stop and resume, and goes with expiry, tenant deletion and reset. Files are private.
//!
//! On a host without image support (or sandboxes) these tests print a SKIP line saying why.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::TestServer;

mod support;

use support::{
    assert_refused_over_quota, create_runtime, invoke_ok, measured_server, sandboxes_available,
    server, session_id, small_disk_tier, test_agents_dir, typed,
};

const MB: u64 = 1024 * 1024;

fn images_available(test: &str) -> bool {
    if !sandboxes_available(test) {
        return false;
    }
    match tenantry_runtime::storage::image_support() {
        Ok(_) => true,
        Err(why) => {
            eprintln!("SKIP {test}: this host cannot give sessions image storage: {why}");
            false
        }
    }
}

/// A server with a 5 MB tier `small-disk`, tenant `acme` on it, and the `quota` agent.
async fn small_disk() -> TestServer {
    let s = server(1).await;
    small_disk_tier(&s, 5).await;
    s.create_tenant("acme", "small-disk").await;
    create_runtime(
        &s,
        json!({"name": "quota", "command": ["python3", "quota.py"], "workdir": test_agents_dir(),
               "storage": {"idle_expiry_seconds": 1}}),
    )
    .await;
    s
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

/// Bytes of the host's disk a file holds.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

async fn call(s: &TestServer, token: &str, session: &str, body: Value) -> Value {
    invoke_ok(s, "quota", token, session, body).await.body
}

#[tokio::test]
async fn writes_past_the_tier_storage_fail_at_once_from_any_process() {
    if !images_available("writes_past_the_tier_storage_fail_at_once_from_any_process") {
        return;
    }
    let s = small_disk().await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("full");
    let r = call(&s, &alice, &session, json!({"write_mb": 60})).await;
    let written = r["write"]["written"].as_u64().unwrap();
    assert_eq!(r["write"]["error"], "ENOSPC", "{r}");
    assert!(
        (3 * MB..=5 * MB).contains(&written),
        "ENOSPC near 5 MB: {written} bytes written"
    );
    let sessions = &s.server().state.sessions;
    let dir = sessions.storage_dir(&s.tenant_uid("acme").await, &typed(&session));
    let image = tenantry_runtime::storage::image_of(&dir);
    assert!(
        allocated(&image) <= 5 * MB,
        "{} bytes on the host",
        allocated(&image)
    );
    assert_eq!(mode(&image), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(dir.parent().unwrap()), 0o700);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "on the host the directory is only a mount point"
    );

    // A background writer that keeps going after its invocation returned.
    let r = call(
        &s,
        &alice,
        &session,
        json!({"delete": ["blob"], "background_mb": 60}),
    )
    .await;
    assert!(
        !r["files"].as_array().unwrap().contains(&json!("blob")),
        "{r}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let background = loop {
        let r = call(&s, &alice, &session, json!({})).await;
        if r["background"]["done"] == true {
            break r["background"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the background writer never stopped: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(background["error"], "ENOSPC", "{background}");
    assert!(
        background["written"].as_u64().unwrap() <= 5 * MB,
        "{background}"
    );
    assert!(
        allocated(&image) <= 5 * MB,
        "{} bytes on the host",
        allocated(&image)
    );

    // The full session still answers, and the agent makes room itself.
    let r = call(&s, &alice, &session, json!({"write_mb": 1, "name": "more"})).await;
    assert_eq!(r["write"]["error"], "ENOSPC", "{r}");
    assert!(r["write"]["written"].as_u64().unwrap() < MB / 4, "{r}");
    let r = call(
        &s,
        &alice,
        &session,
        json!({"delete": ["background", "more"], "write_mb": 1}),
    )
    .await;
    assert_eq!(r["write"]["error"], Value::Null, "{r}");
    assert_eq!(r["write"]["written"], MB, "{r}");
    s.stop().await;
}

#[tokio::test]
async fn image_storage_survives_resume_and_goes_with_reset_expiry_and_deletion() {
    if !images_available("image_storage_survives_resume_and_goes_with_reset_expiry_and_deletion") {
        return;
    }
    let s = small_disk().await;
    let alice = s.token("acme", "alice", &[]);
    let uid = s.tenant_uid("acme").await;
    let sessions = &s.server().state.sessions;
    let session = session_id("kept");
    let dir = sessions.storage_dir(&uid, &typed(&session));
    let image = tenantry_runtime::storage::image_of(&dir);

    // Stop and resume: the files are still there.
    let r = call(
        &s,
        &alice,
        &session,
        json!({"put": {"note": "kept"}, "write_mb": 2}),
    )
    .await;
    assert_eq!(r["files"], json!(["blob", "note"]), "no lost+found: {r}");
    let view = sessions.storage_view(&uid, &typed(&session));
    assert_eq!(std::fs::read_to_string(view.join("note")).unwrap(), "kept");
    assert_eq!(
        s.delete(&format!("/v1/sessions/{session}"), &alice)
            .await
            .status,
        200
    );
    assert!(image.exists());
    let r = call(&s, &alice, &session, json!({"get": "note"})).await;
    assert_eq!(r["get"], "kept", "{r}");

    // Reset: stopped, storage gone, the same session starts again on empty storage.
    let r = s
        .delete(&format!("/v1/sessions/{session}?storage=true"), &alice)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["was_running"], true, "{}", r.text);
    assert_eq!(r.body["storage_reset"], true, "{}", r.text);
    assert_eq!(r.body["stop_reason"], "storage_reset", "{}", r.text);
    assert!(!image.exists() && !dir.exists());
    let r = call(&s, &alice, &session, json!({})).await;
    assert_eq!(r["files"], json!([]), "{r}");
    // Another user cannot reset it.
    let bob = s.token("acme", "bob", &[]);
    let r = s
        .delete(&format!("/v1/sessions/{session}?storage=true"), &bob)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(image.exists());

    // Expiry removes the image.
    s.delete(&format!("/v1/sessions/{session}"), &alice).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    sessions.sweep_now().await;
    assert!(!image.exists(), "{}", image.display());
    assert!(!dir.exists(), "{}", dir.display());

    // Deleting the tenant removes the images of its running and stopped sessions.
    let running = session_id("running");
    let stopped = session_id("stopped");
    call(&s, &alice, &running, json!({"write_mb": 1})).await;
    call(&s, &alice, &stopped, json!({"write_mb": 1})).await;
    s.delete(&format!("/v1/sessions/{stopped}"), &alice).await;
    let images: Vec<_> = [&running, &stopped]
        .iter()
        .map(|id| tenantry_runtime::storage::image_of(&sessions.storage_dir(&uid, &typed(id))))
        .collect();
    assert!(images.iter().all(|i| i.exists()));
    let r = s.delete("/v1/admin/tenants/acme", &s.admin_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for i in &images {
        assert!(!i.exists(), "{}", i.display());
    }
    assert!(
        !sessions
            .storage_dir(&uid, &typed(&running))
            .parent()
            .unwrap()
            .exists()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_session_over_its_measured_quota_is_usable_again_after_a_reset() {
    if !sandboxes_available("a_session_over_its_measured_quota_is_usable_again_after_a_reset") {
        return;
    }
    let s = measured_server().await;
    small_disk_tier(&s, 5).await;
    s.create_tenant("acme", "small-disk").await;
    create_runtime(
        &s,
        json!({"name": "quota", "command": ["python3", "quota.py"], "workdir": test_agents_dir()}),
    )
    .await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("soft");
    let r = call(&s, &alice, &session, json!({"write_mb": 8})).await;
    assert_eq!(
        r["write"]["error"],
        Value::Null,
        "the soft limit lets it write: {r}"
    );
    let sessions = &s.server().state.sessions;
    let dir = sessions.storage_dir(&s.tenant_uid("acme").await, &typed(&session));
    assert!(!tenantry_runtime::storage::image_of(&dir).exists());
    // Measured after the invocation: over, so the next one is refused, and so is a resume.
    assert_refused_over_quota(&s, "quota", &alice, &session).await;
    // The owner resets the storage: the session is usable again, on empty storage.
    let r = s
        .delete(&format!("/v1/sessions/{session}?storage=true"), &alice)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(&s, &alice, &session, json!({"put": {"after": "reset"}})).await;
    assert_eq!(r["files"], json!(["after"]), "{r}");
    assert_eq!(mode(&dir), 0o700);
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_storage_reset_value_is_refused() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let alice = s.token("acme", "alice", &[]);
    let r = s.delete("/v1/sessions/nope?storage=maybe", &alice).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.delete("/v1/sessions/nope?storage=true", &alice).await;
    assert_eq!(r.status, 404, "{}", r.text);
    s.stop().await;
}
