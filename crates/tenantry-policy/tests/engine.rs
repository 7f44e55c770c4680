//! The policy engine's decisions from the outside: tier and tenant sets, input and time
//! conditions, `log_only`, `tools/list` visibility, fail-closed refusals, audit records, and
//! sharing across threads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tenantry_policy::{AuthzRequest, Mode, PolicyEngine, PolicyScope, STARTER_POLICY, ToolRef};
use tenantry_store::Store;

use common::*;

// ---- decisions --------------------------------------------------------------------------------

#[test]
fn the_starter_lets_every_tier_call_every_tool() {
    let e = engine();
    for tier in ["basic", "premium"] {
        let who = caller("acme", tier);
        let d = decide(&e, &who, "ehr___premium_report", json!({}), at_hour(3));
        assert!(
            d.allowed && d.policy_allowed && d.enforced && d.evaluated,
            "{d:?}"
        );
        assert_eq!(d.determining_policies, ["platform@v0#starter"]);
        assert_eq!(d.mode, Mode::Enforce);
        assert!(e.visible(&who, &tool("ehr___premium_report")));
    }
}

#[test]
fn a_tier_policy_hides_a_premium_tool_from_basic() {
    let e = engine();
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::Enforce,
        "@id(\"no-premium-tools\")\nforbid (principal, action == Tenantry::Action::\"ehr___premium_report\", resource);",
    );
    let basic = caller("acme", "basic");
    let premium = caller("globex", "premium");
    assert!(!e.visible(&basic, &tool("ehr___premium_report")));
    assert!(e.visible(&basic, &tool("ehr___patient_context")));
    assert!(e.visible(&premium, &tool("ehr___premium_report")));

    let d = decide(&e, &basic, "ehr___premium_report", json!({}), at_hour(9));
    assert!(!d.allowed && !d.policy_allowed && d.enforced, "{d:?}");
    assert_eq!(d.determining_policies, ["tier:basic@v1#no-premium-tools"]);
    assert!(
        d.reason().contains("tier:basic@v1#no-premium-tools"),
        "{}",
        d.reason()
    );
    let d = decide(&e, &premium, "ehr___premium_report", json!({}), at_hour(9));
    assert!(d.allowed, "{d:?}");
}

#[test]
fn an_input_condition_allows_and_denies_as_written() {
    let e = engine();
    upload(
        &e,
        tenant_scope("acme"),
        1,
        Mode::Enforce,
        "forbid (principal, action == Tenantry::Action::\"pay___transfer\", resource)\nunless { context.input.amount < 1000 };",
    );
    let acme = caller("acme", "basic");
    let small = decide(
        &e,
        &acme,
        "pay___transfer",
        json!({"amount": 999}),
        at_hour(9),
    );
    assert!(small.allowed, "{small:?}");
    let large = decide(
        &e,
        &acme,
        "pay___transfer",
        json!({"amount": 1000}),
        at_hour(9),
    );
    assert!(!large.allowed, "{large:?}");
    assert_eq!(large.determining_policies, ["tenant:acme@v1#0"]);
    // Still listed: some input is allowed.
    assert!(e.visible(&acme, &tool("pay___transfer")));
    // Another tenant is not bound by acme's set.
    let other = caller("globex", "basic");
    assert!(
        decide(
            &e,
            &other,
            "pay___transfer",
            json!({"amount": 5000}),
            at_hour(9)
        )
        .allowed
    );
}

#[test]
fn a_permit_with_an_input_condition_grants_when_the_platform_set_is_replaced() {
    let e = engine();
    // The operator's own platform set: nothing by default.
    upload(&e, PolicyScope::Platform, 1, Mode::Enforce, "");
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::Enforce,
        "permit (principal, action == Tenantry::Action::\"pay___transfer\", resource)\nwhen { context.input.amount < 1000 && context.input has currency && context.input.currency == \"EUR\" };\npermit (principal, action == Tenantry::Action::\"ehr___patient_context\", resource)\nwhen { context.input.patient_id like \"p-*\" };",
    );
    let basic = caller("acme", "basic");
    let ok = json!({"amount": 10, "currency": "EUR"});
    assert!(decide(&e, &basic, "pay___transfer", ok, at_hour(9)).allowed);
    let usd = json!({"amount": 10, "currency": "USD"});
    assert!(!decide(&e, &basic, "pay___transfer", usd, at_hour(9)).allowed);
    let none = json!({"amount": 10});
    assert!(!decide(&e, &basic, "pay___transfer", none, at_hour(9)).allowed);
    assert!(
        decide(
            &e,
            &basic,
            "ehr___patient_context",
            json!({"patient_id": "p-1"}),
            at_hour(9)
        )
        .allowed
    );
    assert!(
        !decide(
            &e,
            &basic,
            "ehr___patient_context",
            json!({"patient_id": "q-1"}),
            at_hour(9)
        )
        .allowed
    );
    // Visible: some input is permitted. Hidden: nothing permits it.
    assert!(e.visible(&basic, &tool("pay___transfer")));
    assert!(!e.visible(&basic, &tool("ehr___premium_report")));
    // Premium has no permits at all now.
    let premium = caller("globex", "premium");
    assert!(!e.visible(&premium, &tool("pay___transfer")));
    let d = decide(
        &e,
        &premium,
        "pay___transfer",
        json!({"amount": 1}),
        at_hour(9),
    );
    assert!(!d.allowed && d.determining_policies.is_empty(), "{d:?}");
    assert_eq!(d.reason(), "denied: no policy permits this call");
}

#[test]
fn decimals_roles_claims_and_tenant_owned_tools() {
    let e = engine();
    upload(&e, PolicyScope::Platform, 1, Mode::Enforce, "");
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::Enforce,
        r#"
permit (principal, action == Tenantry::Action::"pay___transfer", resource)
when { context.input has price && context.input.price.lessThan(decimal("10.5")) };
permit (principal, action == Tenantry::Action::"ehr___premium_report", resource)
when { principal.roles.contains("admin") || (principal.hasTag("dept") && principal.getTag("dept") == "cardiology") };
permit (principal in Tenantry::Tenant::"acme", action == Tenantry::Action::"ehr___patient_context", resource)
when { resource.tenant_owned && resource.target == "ehr" };
"#,
    );
    let mut who = caller("acme", "basic");
    let cheap = json!({"amount": 1, "price": 10.25});
    assert!(decide(&e, &who, "pay___transfer", cheap, at_hour(1)).allowed);
    let dear = json!({"amount": 1, "price": 10.5});
    assert!(!decide(&e, &who, "pay___transfer", dear, at_hour(1)).allowed);

    assert!(!decide(&e, &who, "ehr___premium_report", json!({}), at_hour(1)).allowed);
    assert!(!e.visible(&who, &tool("ehr___premium_report")));
    who.claims.insert("dept".into(), json!("cardiology"));
    assert!(decide(&e, &who, "ehr___premium_report", json!({}), at_hour(1)).allowed);
    assert!(e.visible(&who, &tool("ehr___premium_report")));
    who.claims.clear();
    who.roles.push("admin".into());
    assert!(decide(&e, &who, "ehr___premium_report", json!({}), at_hour(1)).allowed);

    let input = json!({"patient_id": "p-1"});
    assert!(!decide(&e, &who, "ehr___patient_context", input.clone(), at_hour(1)).allowed);
    let owned = ToolRef {
        tenant_owned: true,
        ..tool("ehr___patient_context")
    };
    let d = e.authorize(&AuthzRequest {
        principal: &who,
        tool: &owned,
        input: &input,
        now: at_hour(1),
    });
    assert!(d.allowed, "{d:?}");
}

#[test]
fn a_time_condition_follows_the_injected_clock() {
    let e = engine();
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::Enforce,
        "// basic may call patient_context only between 08:00 and 17:00 UTC\nforbid (principal, action == Tenantry::Action::\"ehr___patient_context\", resource)\nunless { context.time.hour >= 8 && context.time.hour < 17 };",
    );
    let basic = caller("acme", "basic");
    let input = json!({"patient_id": "p-1"});
    for (hour, allowed) in [
        (7, false),
        (8, true),
        (12, true),
        (16, true),
        (17, false),
        (23, false),
    ] {
        let d = decide(
            &e,
            &basic,
            "ehr___patient_context",
            input.clone(),
            at_hour(hour),
        );
        assert_eq!(d.allowed, allowed, "at {hour}:30: {d:?}");
    }
    // Listed for basic whatever the time: it may be called in office hours.
    assert!(e.visible(&basic, &tool("ehr___patient_context")));
    // Premium is not restricted.
    let premium = caller("globex", "premium");
    assert!(decide(&e, &premium, "ehr___patient_context", input, at_hour(23)).allowed);
    // Weekdays work too: 2024-03-16 is a Saturday (ISO 6).
    upload(
        &e,
        tier_scope("premium"),
        1,
        Mode::Enforce,
        "forbid (principal, action == Tenantry::Action::\"ehr___premium_report\", resource)\nwhen { context.time.weekday >= 6 };",
    );
    let friday = at_hour(12);
    let saturday = friday + Duration::from_secs(86_400);
    assert!(decide(&e, &premium, "ehr___premium_report", json!({}), friday).allowed);
    assert!(!decide(&e, &premium, "ehr___premium_report", json!({}), saturday).allowed);
}

#[test]
fn log_only_allows_but_reports_the_deny() {
    let e = engine();
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::LogOnly,
        "@id(\"try-no-premium\")\nforbid (principal, action == Tenantry::Action::\"ehr___premium_report\", resource);",
    );
    let basic = caller("acme", "basic");
    let d = decide(&e, &basic, "ehr___premium_report", json!({}), at_hour(9));
    assert!(d.allowed, "log_only must not block: {d:?}");
    assert!(!d.policy_allowed);
    assert!(!d.enforced);
    assert_eq!(d.mode, Mode::LogOnly);
    assert_eq!(d.determining_policies, ["tier:basic@v1#try-no-premium"]);
    let audit = serde_json::to_value(d.audit_fields()).unwrap();
    assert_eq!(audit["decision"], "allow");
    assert_eq!(audit["policy_decision"], "deny");
    assert_eq!(audit["mode"], "log_only");
    // Not hidden either: listing follows what is enforced.
    assert!(e.visible(&basic, &tool("ehr___premium_report")));

    // Switched to enforce (a new version), the same text blocks.
    upload(
        &e,
        tier_scope("basic"),
        2,
        Mode::Enforce,
        "@id(\"try-no-premium\")\nforbid (principal, action == Tenantry::Action::\"ehr___premium_report\", resource);",
    );
    let d = decide(&e, &basic, "ehr___premium_report", json!({}), at_hour(9));
    assert!(!d.allowed && d.enforced, "{d:?}");
    assert_eq!(d.determining_policies, ["tier:basic@v2#try-no-premium"]);
    assert!(!e.visible(&basic, &tool("ehr___premium_report")));
}

#[test]
fn a_log_only_permit_grants_nothing() {
    let e = engine();
    upload(&e, PolicyScope::Platform, 1, Mode::Enforce, "");
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::LogOnly,
        "permit (principal, action, resource);",
    );
    let basic = caller("acme", "basic");
    let d = decide(&e, &basic, "ehr___premium_report", json!({}), at_hour(9));
    assert!(!d.allowed && d.policy_allowed && !d.enforced, "{d:?}");
    assert!(d.reason().contains("log-only"), "{}", d.reason());
    assert!(!e.visible(&basic, &tool("ehr___premium_report")));
}

#[test]
fn what_cannot_be_evaluated_is_denied_and_hidden() {
    let e = engine();
    let who = caller("acme", "basic");
    // A tool the engine was never told about.
    let d = decide(&e, &who, "ghost___tool", json!({}), at_hour(9));
    assert!(!d.allowed && !d.evaluated, "{d:?}");
    assert!(d.reason().contains("catalogue"), "{}", d.reason());
    assert!(!e.visible(&who, &tool("ghost___tool")));
    // An input that does not fit the tool's schema.
    for bad in [
        json!({}),
        json!({"amount": "ten"}),
        json!({"amount": 1.5}),
        json!([1]),
    ] {
        let d = decide(&e, &who, "pay___transfer", bad.clone(), at_hour(9));
        assert!(!d.allowed && !d.evaluated, "{bad}: {d:?}");
    }
    // Extra keys and nulls are fine; so is a missing input for a tool without required fields.
    let extra = json!({"amount": 1, "memo": null, "unknown": {"deep": true}});
    assert!(decide(&e, &who, "pay___transfer", extra, at_hour(9)).allowed);
    assert!(decide(&e, &who, "ehr___premium_report", Value::Null, at_hour(9)).allowed);
    // Dropping a tool from the catalogue denies it from then on.
    e.set_tools(
        tools()
            .into_iter()
            .filter(|t| t.full_name != "pay___transfer"),
    )
    .unwrap();
    assert!(!decide(&e, &who, "pay___transfer", json!({"amount": 1}), at_hour(9)).allowed);
}

#[test]
fn a_stored_set_that_does_not_load_denies_its_scope() {
    let e = engine();
    let report = e.replace_all(&[
        record(tier_scope("basic"), 4, Mode::Enforce, "this is not cedar"),
        record(tier_scope("premium"), 1, Mode::Enforce, "// fine"),
    ]);
    assert_eq!(report.loaded, 2);
    assert_eq!(report.unloadable.len(), 1);
    assert!(report.unloadable[0].to_string().contains("tier:basic@v4"));
    let basic = caller("acme", "basic");
    let d = decide(&e, &basic, "ehr___premium_report", json!({}), at_hour(9));
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.determining_policies, ["tier:basic@v4#unloadable"]);
    let premium = caller("acme", "premium");
    assert!(decide(&e, &premium, "ehr___premium_report", json!({}), at_hour(9)).allowed);
}

// ---- the audit log ----------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn decisions_are_logged_with_target_audit() {
    let e = engine();
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::Enforce,
        "@id(\"no-premium\") forbid (principal, action == Tenantry::Action::\"ehr___premium_report\", resource);",
    );
    let d = decide(
        &e,
        &caller("acme", "basic"),
        "ehr___premium_report",
        json!({}),
        at_hour(9),
    );
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || d.log_audit());
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["target"], "audit");
    let f = &line["fields"];
    assert_eq!(f["tenant"], "acme");
    assert_eq!(f["user"], "alice@example.com");
    assert_eq!(f["tool"], "ehr___premium_report");
    assert_eq!(f["decision"], "deny");
    assert_eq!(f["policies"], "tier:basic@v1#no-premium");
}

// ---- shape ------------------------------------------------------------------------------------

#[test]
fn the_engine_is_shared_across_threads_and_decides_quickly() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<PolicyEngine>();
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let e = engine();
    send(&async move {
        let store = Store::connect(&url).await.unwrap();
        e.reload(&store).await.unwrap();
    });

    // Many threads deciding while the sets change under them.
    let e = engine();
    let writer = {
        let e = e.clone();
        std::thread::spawn(move || {
            for v in 1..50 {
                upload(
                    &e,
                    tier_scope("basic"),
                    v,
                    Mode::Enforce,
                    "forbid (principal, action == Tenantry::Action::\"ehr___premium_report\", resource);",
                );
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || {
                let who = caller("acme", "basic");
                for _ in 0..200 {
                    let d = decide(&e, &who, "pay___transfer", json!({"amount": 5}), at_hour(9));
                    assert!(d.allowed, "{d:?}");
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let who = caller("acme", "basic");
    let d = decide(&e, &who, "ehr___premium_report", json!({}), at_hour(9));
    assert_eq!(d.determining_policies, ["tier:basic@v49#0"]);
}

#[test]
fn a_forbid_that_cannot_be_evaluated_denies() {
    // Cedar skips a policy whose evaluation fails (here an integer overflow that the caller's
    // input provokes); for a `forbid` that would let the call through. It must deny.
    let e = engine();
    upload(&e, PolicyScope::Platform, 1, Mode::Enforce, STARTER_POLICY);
    upload(
        &e,
        tier_scope("basic"),
        1,
        Mode::Enforce,
        r#"@id("big-transfers")
forbid (principal, action == Tenantry::Action::"pay___transfer", resource)
when { context.input.amount * 1000 > 100000 };"#,
    );
    let who = caller("acme", "basic");
    let small = decide(
        &e,
        &who,
        "pay___transfer",
        json!({"amount": 5}),
        at_hour(12),
    );
    assert!(small.allowed, "{small:?}");
    let big = decide(
        &e,
        &who,
        "pay___transfer",
        json!({"amount": 500}),
        at_hour(12),
    );
    assert!(!big.allowed, "{big:?}");
    let overflow = decide(
        &e,
        &who,
        "pay___transfer",
        json!({"amount": i64::MAX / 10}),
        at_hour(12),
    );
    assert!(!overflow.allowed, "{overflow:?}");
    assert!(!overflow.policy_allowed, "{overflow:?}");
    assert!(
        overflow.errors.iter().any(|e| e.contains("overflow")),
        "{overflow:?}"
    );
    // A `permit` that cannot be evaluated grants nothing, and others still decide.
    let e = engine();
    upload(
        &e,
        PolicyScope::Platform,
        1,
        Mode::Enforce,
        r#"permit (principal, action == Tenantry::Action::"pay___transfer", resource)
when { context.input.amount * 1000 > 0 };
permit (principal, action == Tenantry::Action::"pay___transfer", resource)
when { context.input.amount < 0 };"#,
    );
    let d = decide(
        &e,
        &who,
        "pay___transfer",
        json!({"amount": i64::MAX / 10}),
        at_hour(12),
    );
    assert!(!d.allowed, "{d:?}");
    let d = decide(
        &e,
        &who,
        "pay___transfer",
        json!({"amount": 3}),
        at_hour(12),
    );
    assert!(d.allowed, "{d:?}");
}
