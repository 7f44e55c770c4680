//! Uploads from the outside: schema validation (positions, unknown attributes and actions,
//! nesting limits), the README's examples, and versions with rollback through the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use serde_json::json;
use tenantry_core::{TenantId, TenantIsolation, TenantStatus, Tier, TierName};
use tenantry_policy::{Mode, PolicyEngine, PolicyScope, STARTER_POLICY, ToolSpec};
use tenantry_store::Store;

use common::*;

// ---- the schema and validation ----------------------------------------------------------------

#[test]
fn the_base_schema_and_starter_policy_are_valid() {
    // Without tools the starter applies to no action yet: valid, with a warning.
    let bare = PolicyEngine::new().unwrap();
    let ok = bare.validate(STARTER_POLICY).unwrap();
    assert_eq!(ok.policies, 1);
    assert!(!ok.warnings.is_empty());
    let with_tools = engine();
    let ok = with_tools.validate(STARTER_POLICY).unwrap();
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    let text = with_tools.schema_text();
    assert!(text.contains("namespace Tenantry"), "{text}");
    assert!(text.contains("pay___transfer"), "{text}");
    assert!(text.contains("amount"), "{text}");
}

#[test]
fn a_syntax_error_is_refused_with_its_line_and_column() {
    let e = engine();
    let text = "// the first line is a comment\npermit (principal, action, resource);\nforbid (principal, action resource);\n";
    let problems = invalid(&e, text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    // `resource` where a comma belongs: line 3, column 27.
    assert_eq!(
        (problems[0].0, problems[0].1),
        (Some(3), Some(27)),
        "{problems:?}"
    );
    // The error's Display leads with the position too.
    let err = e.validate(text).unwrap_err();
    assert!(err.to_string().contains("3:27:"), "{err}");
    assert_eq!(err.code(), tenantry_core::ErrorCode::InvalidRequest);
}

/// Runs `work` on a thread with the stack of a Tokio worker (2 MiB), where the server parses
/// uploads: a stack overflow there aborts the whole process.
fn on_worker_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn_scoped(s, work)
            .unwrap()
            .join()
            .unwrap()
    })
}

#[test]
fn deep_nesting_is_refused_and_long_chains_do_not_overflow_the_stack() {
    let e = engine();
    let when = |cond: String| format!("permit (principal, action, resource) when {{ {cond} }};");
    // Nesting deeper than the engine takes: refused with the position where it went too deep.
    for text in [
        when(format!("{}true{}", "(".repeat(2000), ")".repeat(2000))),
        when(format!("{}1{} == [1]", "[".repeat(300), "]".repeat(300))),
        format!(
            "permit (principal, action, resource);\n{}",
            when(format!("{}1{} has a", "{a: ".repeat(60), "}".repeat(60)))
        ),
    ] {
        let found = on_worker_stack(|| invalid(&e, &text));
        assert_eq!(found.len(), 1, "{found:?}");
        let (line, column, message) = &found[0];
        assert!(message.contains("nest"), "{message}");
        assert!(line.is_some() && column.is_some(), "{found:?}");
        // A stored set that nests too deep does not load either (and does not crash).
        let stored = record(PolicyScope::Platform, 9, Mode::Enforce, &text);
        assert!(on_worker_stack(|| e.install(&stored)).is_err());
    }
    // Long chains of operators and nested conditions build expressions as deep as they are
    // long, which Cedar clones, drops and evaluates by recursion: refused past the limit (and
    // the refused set is dropped where it was parsed, not on this thread).
    for text in [
        when(format!("1{} > 2", " + 1".repeat(20_000))),
        when(format!("context{}", ".contains(1)".repeat(20_000))),
        when(format!(
            "{}true{}",
            "if true then ".repeat(5_000),
            " else false".repeat(5_000)
        )),
        when(format!("context.input{} == 1", ".a".repeat(20_000))),
    ] {
        let found = on_worker_stack(|| invalid(&e, &text));
        assert!(
            found.iter().any(|(_, _, m)| m.contains("nests too deep")),
            "{found:?}"
        );
        let stored = record(PolicyScope::Platform, 9, Mode::Enforce, &text);
        assert!(on_worker_stack(|| e.install(&stored)).is_err());
    }
    // Within both limits: accepted, installed, decided and dropped on an ordinary thread.
    // (The condition's braces are a level of their own.)
    let deep_ok = when(format!(
        "{}true{} && context.tool == \"x\"",
        "(".repeat(tenantry_policy::MAX_POLICY_NESTING - 1),
        ")".repeat(tenantry_policy::MAX_POLICY_NESTING - 1)
    ));
    on_worker_stack(|| {
        let e = engine();
        e.validate(&deep_ok).unwrap();
        e.install(&record(PolicyScope::Platform, 9, Mode::Enforce, &deep_ok))
            .unwrap();
        // Decided (whatever the answer) without overflowing this thread's stack.
        let _ = decide(
            &e,
            &caller("acme", "basic"),
            "pay___transfer",
            json!({"amount": 5}),
            at_hour(12),
        );
        drop(e);
    });
    // Brackets in strings and comments are not nesting.
    let quoted = format!(
        "// {}\npermit (principal, action, resource) when {{ \"{}\" == \"x\" }};",
        "(".repeat(500),
        "[".repeat(500)
    );
    on_worker_stack(|| e.validate(&quoted)).unwrap();
}

#[test]
fn unknown_attributes_actions_and_types_are_refused_by_the_validator() {
    let e = engine();
    // An attribute the principal does not have.
    let problems = invalid(
        &e,
        "permit (principal, action, resource)\nwhen { principal.department == \"x\" };",
    );
    assert_eq!(problems[0].0, Some(2), "{problems:?}");
    assert!(problems[0].2.contains("department"), "{problems:?}");
    // An action (tool) that is not catalogued.
    let problems = invalid(
        &e,
        "forbid (principal, action == Tenantry::Action::\"nope___tool\", resource);",
    );
    assert!(problems[0].2.contains("nope___tool"), "{problems:?}");
    // An input attribute the tool does not have (typo), on line 3.
    let problems = invalid(
        &e,
        "forbid (principal,\n  action == Tenantry::Action::\"pay___transfer\", resource)\nunless { context.input.amont < 1000 };",
    );
    assert_eq!(problems[0].0, Some(3), "{problems:?}");
    assert!(problems[0].2.contains("amont"), "{problems:?}");
    // A comparison of the wrong type.
    let problems = invalid(
        &e,
        "forbid (principal, action == Tenantry::Action::\"pay___transfer\", resource)\nunless { context.input.amount < \"1000\" };",
    );
    assert!(!problems.is_empty());
    // An optional attribute read without `has`.
    let problems = invalid(
        &e,
        "forbid (principal, action == Tenantry::Action::\"pay___transfer\", resource)\nwhen { context.input.memo == \"x\" };",
    );
    assert!(problems[0].2.contains("memo"), "{problems:?}");
    // Templates and duplicate ids.
    let problems = invalid(&e, "permit (principal == ?principal, action, resource);");
    assert!(problems[0].2.contains("templates"), "{problems:?}");
    let problems = invalid(
        &e,
        "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);",
    );
    assert!(problems[0].2.contains("distinct"), "{problems:?}");
}

#[test]
fn a_policy_written_for_one_tool_validates_against_all_tools_of_the_group() {
    let e = engine();
    // Reading an input attribute over the whole CallTool group needs `has`: other tools lack it.
    assert!(
        e.validate(
            "forbid (principal, action in Tenantry::Action::\"CallTool\", resource)\nwhen { context.input.amount > 5 };"
        )
        .is_err()
    );
    e.validate(
        "forbid (principal, action in Tenantry::Action::\"CallTool\", resource)\nwhen { context.input has amount && context.input.amount > 5 };",
    )
    .unwrap();
}

// ---- versions and rollback through the store --------------------------------------------------

#[tokio::test]
async fn versions_and_rollback_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let basic_tier: Tier = serde_json::from_value(json!({"name": "basic"})).unwrap();
    store.put_tier(&basic_tier).await.unwrap();
    store
        .create_tenant(&tenantry_core::Tenant {
            id: TenantId::new("acme").unwrap(),
            uid: tenantry_core::TenantUid::generate(),
            name: "Acme".into(),
            tier: TierName::new("basic").unwrap(),
            status: TenantStatus::Active,
            isolation: TenantIsolation::default(),
            region: "eu".into(),
            features: BTreeMap::new(),
            entitlements: serde_json::Map::new(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let e = engine();
    let basic = caller("acme", "basic");
    let scope = tier_scope("basic");
    let deny =
        "forbid (principal, action == Tenantry::Action::\"ehr___premium_report\", resource);";

    // v1 forbids, v2 allows again.
    for text in [deny, "// v2: no restrictions"] {
        e.validate(text).unwrap();
        let r = store
            .put_policy_set(&scope, text, Mode::Enforce, 1)
            .await
            .unwrap();
        e.install(&r).unwrap();
    }
    assert!(decide(&e, &basic, "ehr___premium_report", json!({}), at_hour(9)).allowed);

    // Roll back to v1, as another replica would see it: reload from the store.
    store.activate_policy_set(&scope, 1).await.unwrap().unwrap();
    let other_replica = engine();
    let report = other_replica.reload(&store).await.unwrap();
    assert_eq!(report.loaded, 1);
    assert!(report.unloadable.is_empty());
    let d = decide(
        &other_replica,
        &basic,
        "ehr___premium_report",
        json!({}),
        at_hour(9),
    );
    assert!(!d.allowed);
    assert_eq!(d.determining_policies, ["tier:basic@v1#0"]);

    // Deactivating the tier's set lifts its restriction on reload.
    store.deactivate_policy_set(&scope).await.unwrap();
    other_replica.reload(&store).await.unwrap();
    assert!(
        decide(
            &other_replica,
            &basic,
            "ehr___premium_report",
            json!({}),
            at_hour(9)
        )
        .allowed
    );
}

#[test]
fn the_readme_examples_validate() {
    let e = engine();
    let mut with_shop = tools();
    with_shop.push(ToolSpec {
        full_name: "shop___order".into(),
        input_schema: json!({"type": "object", "properties": {"price": {"type": "number"}}}),
    });
    e.set_tools(with_shop).unwrap();
    let readme = include_str!("../README.md");
    let mut checked = 0;
    for block in readme.split("```cedar").skip(1) {
        let text = block.split("```").next().unwrap();
        e.validate(text)
            .unwrap_or_else(|err| panic!("{err}\n{text}"));
        checked += 1;
    }
    assert_eq!(checked, 2);
}
