//! The store's contract for sessions: one id in two tenants is two sessions, status
//! transitions, resuming on a node, id validation, listing, counting, and the operator's
//! sweep of idle sessions.
//! Written once against `&Store` and run on both backends (`common::on_both_backends!`):
//! SQLite always, PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set, as the admin user and as
//! a database owner that is no superuser (so forced row-level security binds it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenantry_core::{ErrorCode, RuntimeName, TenantScope, UserId};
mod common;

use common::records::*;
use common::{on_both_backends, scope};
use tenantry_store::{LIST_SESSIONS_LIMIT, SessionRecord, SessionStatus, Store, StoreError};

on_both_backends!(
    sessions_are_resumed_on_a_node_and_found_by_it,
    same_session_id_in_two_tenants_is_two_sessions,
    session_status_transitions_and_touch,
    session_ids_are_validated,
    list_sessions_filters_orders_and_limits,
    count_active_sessions_per_runtime,
    idle_sweep_returns_old_stopped_sessions_only,
);

// ---- sessions ---------------------------------------------------------------------------------

async fn sessions_are_resumed_on_a_node_and_found_by_it(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    let (a, b) = (sid("a"), sid("b"));
    store
        .insert_session(&scope("alpha"), &session("alpha", &a, "alice", "bot", 1))
        .await
        .unwrap();
    store
        .insert_session(&scope("bravo"), &session("bravo", &b, "bob", "bot", 1))
        .await
        .unwrap();
    let on_a = |_: ()| async {
        store
            .sessions_active_on(grant(), "node-a", 100)
            .await
            .unwrap()
    };
    assert_eq!(
        on_a(()).await,
        [(tid("alpha"), sess(&a)), (tid("bravo"), sess(&b))]
    );
    store
        .set_session_status(&scope("alpha"), &a, SessionStatus::Stopped, Some("x"), 5)
        .await
        .unwrap();
    assert_eq!(on_a(()).await, [(tid("bravo"), sess(&b))]);
    // Resumed on another node: active there, and no longer on the first.
    let resumed = store
        .resume_session(&scope("alpha"), &a, "node-b", 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            resumed.status,
            resumed.node.as_str(),
            resumed.last_active_at,
            resumed.stop_reason
        ),
        (SessionStatus::Active, "node-b", 9, None)
    );
    assert_eq!(
        store
            .sessions_active_on(grant(), "node-b", 100)
            .await
            .unwrap(),
        [(tid("alpha"), sess(&a))]
    );
    // Another tenant's scope does not reach it.
    assert_eq!(
        store
            .resume_session(&scope("bravo"), &a, "node-b", 10)
            .await
            .unwrap(),
        None
    );
}

async fn same_session_id_in_two_tenants_is_two_sessions(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    let id = sid("shared-id");
    let a = session("alpha", &id, "alice", "bot", 100);
    let b = session("bravo", &id, "bob", "other", 200);
    store.insert_session(&scope("alpha"), &a).await.unwrap();
    store.insert_session(&scope("bravo"), &b).await.unwrap();

    assert_eq!(
        store.get_session(&scope("alpha"), &id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.get_session(&scope("bravo"), &id).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(sessions_of(store, "alpha").await, vec![a.clone()]);
    assert_eq!(sessions_of(store, "bravo").await, vec![b.clone()]);

    // Stopping and touching alpha's leaves bravo's alone.
    let stopped = store
        .set_session_status(
            &scope("alpha"),
            &id,
            SessionStatus::Stopped,
            Some("user"),
            150,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stopped.tenant_id, tid("alpha"));
    assert_eq!(stopped.status, SessionStatus::Stopped);
    assert!(
        store
            .touch_session(&scope("alpha"), &id, 300)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_session(&scope("bravo"), &id).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        store
            .count_active_sessions(&scope("alpha"), None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_active_sessions(&scope("bravo"), None)
            .await
            .unwrap(),
        1
    );

    // A session only bravo has does not exist for alpha: not to get, list, stop, touch, count
    // or delete.
    let only_b = session("bravo", &sid("bravo-only"), "bob", "bot", 400);
    store
        .insert_session(&scope("bravo"), &only_b)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_session(&scope("alpha"), only_b.id.as_str())
            .await
            .unwrap(),
        None
    );
    assert!(
        !sessions_of(store, "alpha")
            .await
            .iter()
            .any(|s| s.id == only_b.id)
    );
    assert_eq!(
        store
            .set_session_status(
                &scope("alpha"),
                only_b.id.as_str(),
                SessionStatus::Stopped,
                None,
                500
            )
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .touch_session(&scope("alpha"), only_b.id.as_str(), 500)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .count_active_sessions(&scope("alpha"), Some(&rname("bot")))
            .await
            .unwrap(),
        0
    );
    assert!(
        !store
            .delete_session(&scope("alpha"), only_b.id.as_str())
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_session(&scope("bravo"), only_b.id.as_str())
            .await
            .unwrap(),
        Some(only_b.clone())
    );

    // The id is taken within alpha only.
    let err = store
        .insert_session(&scope("alpha"), &session("alpha", &id, "carol", "bot", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A record of another tenant cannot be written through this scope.
    let planted = session("bravo", &sid("planted"), "mallory", "bot", 1);
    let err = store
        .insert_session(&scope("alpha"), &planted)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(
        store
            .get_session(&scope("bravo"), planted.id.as_str())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_session(&scope("alpha"), planted.id.as_str())
            .await
            .unwrap(),
        None
    );

    // Deleting alpha's leaves bravo's of the same id.
    assert!(store.delete_session(&scope("alpha"), &id).await.unwrap());
    assert_eq!(store.get_session(&scope("alpha"), &id).await.unwrap(), None);
    assert_eq!(
        store.get_session(&scope("bravo"), &id).await.unwrap(),
        Some(b)
    );
    assert!(sessions_of(store, "ghost").await.is_empty());
}

async fn session_status_transitions_and_touch(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    let id = sid("s1");
    let s = session("alpha", &id, "alice", "bot", 100);
    store.insert_session(&scope("alpha"), &s).await.unwrap();
    let set = |status, reason: Option<&'static str>, at| {
        let id = id.clone();
        async move {
            store
                .set_session_status(&scope("alpha"), &id, status, reason, at)
                .await
                .unwrap()
                .unwrap()
        }
    };

    // Active -> Stopped records when and why; activity is unchanged.
    let stopped = set(SessionStatus::Stopped, Some("idle_timeout"), 200).await;
    assert_eq!(
        stopped,
        SessionRecord {
            status: SessionStatus::Stopped,
            stopped_at: Some(200),
            stop_reason: Some("idle_timeout".into()),
            ..s.clone()
        }
    );
    // Stopped -> Expired keeps the first stop and its reason, unless a new reason is given.
    let expired = set(SessionStatus::Expired, None, 300).await;
    assert_eq!(expired.status, SessionStatus::Expired);
    assert_eq!(expired.stopped_at, Some(200));
    assert_eq!(expired.stop_reason.as_deref(), Some("idle_timeout"));
    let expired = set(SessionStatus::Expired, Some("storage_expired"), 350).await;
    assert_eq!(expired.stopped_at, Some(200));
    assert_eq!(expired.stop_reason.as_deref(), Some("storage_expired"));

    // Resuming clears the stop and counts as activity.
    let resumed = set(SessionStatus::Active, Some("ignored"), 400).await;
    assert_eq!(
        resumed,
        SessionRecord {
            last_active_at: 400,
            ..s.clone()
        }
    );
    // Activity never moves back.
    assert_eq!(
        set(SessionStatus::Active, None, 50).await.last_active_at,
        400
    );
    assert!(
        store
            .touch_session(&scope("alpha"), &id, 500)
            .await
            .unwrap()
    );
    assert!(
        store
            .touch_session(&scope("alpha"), &id, 450)
            .await
            .unwrap()
    );
    let got = store
        .get_session(&scope("alpha"), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_active_at, 500);
    assert_eq!(got.created_at, 100);

    // A second stop of an active session records the new time.
    let again = set(SessionStatus::Stopped, Some("user"), 600).await;
    assert_eq!(again.stopped_at, Some(600));
    assert_eq!(again.stop_reason.as_deref(), Some("user"));
    assert_eq!(
        store.get_session(&scope("alpha"), &id).await.unwrap(),
        Some(again)
    );

    // Unknown sessions.
    assert!(
        !store
            .touch_session(&scope("alpha"), &sid("nope"), 1)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .set_session_status(
                &scope("alpha"),
                &sid("nope"),
                SessionStatus::Active,
                None,
                1
            )
            .await
            .unwrap(),
        None
    );

    // Statuses read and write as snake_case.
    assert_eq!(
        serde_json::to_value(SessionStatus::Expired).unwrap(),
        serde_json::json!("expired")
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["status"], "active");
    assert_eq!(
        serde_json::from_value::<SessionRecord>(json).unwrap(),
        s.clone()
    );
}

async fn session_ids_are_validated(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    for ok in ["a".repeat(33), "a".repeat(256), sid("x")] {
        store
            .insert_session(&scope("alpha"), &session("alpha", &ok, "u", "bot", 1))
            .await
            .unwrap();
        assert!(
            store
                .get_session(&scope("alpha"), &ok)
                .await
                .unwrap()
                .is_some()
        );
    }
    // A record holds a `SessionId`, so an id outside the rule cannot reach the store at all.
    for bad in [
        "a".repeat(32),
        "a".repeat(257),
        "é".repeat(40),
        String::new(),
        format!("{}\n", "a".repeat(40)),
    ] {
        assert!(
            tenantry_core::SessionId::new(bad.clone()).is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(sessions_of(store, "alpha").await.len(), 3);
}

async fn list_sessions_filters_orders_and_limits(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    let s1 = session("alpha", &sid("a1"), "alice", "r1", 10);
    let s2 = session("alpha", &sid("b1"), "bob", "r1", 20);
    let s3 = session("alpha", &sid("a2"), "alice", "r1", 30);
    let s4 = session("alpha", &sid("a3"), "alice", "r2", 40);
    // Two at the same time: the greater id first.
    let s5 = session("alpha", &sid("t-a"), "bob", "r2", 50);
    let s6 = session("alpha", &sid("t-b"), "bob", "r2", 50);
    for s in [&s3, &s1, &s6, &s2, &s5, &s4] {
        store.insert_session(&scope("alpha"), s).await.unwrap();
    }
    let alice = uid("alice");
    let r1 = rname("r1");
    let list = |user: Option<UserId>, runtime: Option<RuntimeName>| async move {
        store
            .list_sessions(&scope("alpha"), user.as_ref(), runtime.as_ref())
            .await
            .unwrap()
    };
    assert_eq!(
        list(None, None).await,
        [&s6, &s5, &s4, &s3, &s2, &s1].map(Clone::clone)
    );
    assert_eq!(
        list(Some(alice.clone()), None).await,
        [&s4, &s3, &s1].map(Clone::clone)
    );
    assert_eq!(
        list(None, Some(r1.clone())).await,
        [&s3, &s2, &s1].map(Clone::clone)
    );
    assert_eq!(
        list(Some(alice), Some(r1)).await,
        [&s3, &s1].map(Clone::clone)
    );
    assert!(list(Some(uid("nobody")), None).await.is_empty());

    // At most LIST_SESSIONS_LIMIT, the newest.
    let limit = i64::from(LIST_SESSIONS_LIMIT);
    for i in 0..limit {
        let s = session("alpha", &sid(&format!("bulk{i}")), "carol", "r3", 1_000 + i);
        store.insert_session(&scope("alpha"), &s).await.unwrap();
    }
    let all = list(None, None).await;
    assert_eq!(all.len(), LIST_SESSIONS_LIMIT as usize);
    assert_eq!(all.first().map(|s| s.created_at), Some(1_000 + limit - 1));
    assert_eq!(all.last().map(|s| s.created_at), Some(1_000));
}

async fn count_active_sessions_per_runtime(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    for (tag, rt) in [("a", "r1"), ("b", "r1"), ("c", "r1"), ("d", "r2")] {
        store
            .insert_session(&scope("alpha"), &session("alpha", &sid(tag), "u", rt, 1))
            .await
            .unwrap();
    }
    store
        .insert_session(&scope("bravo"), &session("bravo", &sid("a"), "u", "r1", 1))
        .await
        .unwrap();
    store
        .set_session_status(&scope("alpha"), &sid("c"), SessionStatus::Stopped, None, 2)
        .await
        .unwrap();
    let count = |rt: Option<&'static str>| async move {
        store
            .count_active_sessions(&scope("alpha"), rt.map(rname).as_ref())
            .await
            .unwrap()
    };
    assert_eq!(count(None).await, 3);
    assert_eq!(count(Some("r1")).await, 2);
    assert_eq!(count(Some("r2")).await, 1);
    assert_eq!(count(Some("r3")).await, 0);
    store
        .set_session_status(&scope("alpha"), &sid("c"), SessionStatus::Active, None, 3)
        .await
        .unwrap();
    assert_eq!(count(Some("r1")).await, 3);
}

async fn idle_sweep_returns_old_stopped_sessions_only(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    // (tenant, tag, runtime, last active, status after)
    let plan = [
        ("alpha", "s1", "r1", 100, SessionStatus::Stopped),
        ("alpha", "s2", "r2", 150, SessionStatus::Expired),
        ("alpha", "old-active", "r1", 50, SessionStatus::Active),
        ("alpha", "recent", "r1", 1_000, SessionStatus::Stopped),
        ("bravo", "s5", "r1", 120, SessionStatus::Stopped),
        ("bravo", "s1", "r9", 100, SessionStatus::Stopped),
    ];
    for (t, tag, rt, last_active, status) in plan {
        let s = session(t, &sid(tag), "u", rt, last_active);
        store.insert_session(&scope(t), &s).await.unwrap();
        store
            .set_session_status(&scope(t), &sid(tag), status, None, last_active + 5)
            .await
            .unwrap();
    }
    let entry = |t: &str, tag: &str, rt: &str| (tid(t), sess(&sid(tag)), rname(rt));

    let idle = store.sessions_idle_before(grant(), 500, 100).await.unwrap();
    assert_eq!(
        idle,
        [
            entry("alpha", "s1", "r1"),
            entry("bravo", "s1", "r9"),
            entry("bravo", "s5", "r1"),
            entry("alpha", "s2", "r2"),
        ]
    );
    // `before` is exclusive, and the limit holds.
    assert!(
        store
            .sessions_idle_before(grant(), 100, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.sessions_idle_before(grant(), 101, 100).await.unwrap(),
        [entry("alpha", "s1", "r1"), entry("bravo", "s1", "r9")]
    );
    assert_eq!(
        store.sessions_idle_before(grant(), 500, 1).await.unwrap(),
        [entry("alpha", "s1", "r1")]
    );

    // The sweeper deletes each through its tenant's scope.
    for (t, id, _) in idle {
        let scope = TenantScope::for_operator(grant(), t);
        assert!(store.delete_session(&scope, id.as_str()).await.unwrap());
    }
    assert!(
        store
            .sessions_idle_before(grant(), 500, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let left: Vec<String> = sessions_of(store, "alpha")
        .await
        .into_iter()
        .map(|s| s.id.into_string())
        .collect();
    assert_eq!(left, [sid("recent"), sid("old-active")]);
    assert!(sessions_of(store, "bravo").await.is_empty());
}
