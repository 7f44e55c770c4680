//! Bad input from the outside: every caller mistake gets a clear 4xx in the one error shape,
//! never a panic or a 500.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use tenantry_testkit::{RequestBody, TestServer};

#[tokio::test]
async fn caller_mistakes_get_clear_4xx() {
    let s = TestServer::start().await;
    let admin = s.admin_key.clone();

    // Malformed JSON.
    let r = s
        .request(
            "POST",
            "/v1/admin/tenants",
            Some(&admin),
            &[],
            Some(RequestBody::Raw {
                content_type: "application/json",
                bytes: b"{\"id\": \"acme\", ".to_vec(),
            }),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"), "{}", r.text);
    assert!(
        r.body["error"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    assert_eq!(
        r.header("x-request-id"),
        r.body["error"]["request_id"].as_str()
    );

    // Unknown field: the message names it.
    let r = s
        .send_json(
            "POST",
            "/v1/admin/tenants",
            &admin,
            json!({"id": "acme", "tier": "basic", "colour": "red"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );

    // Tenant ids with path tricks, in the body and in the path.
    for bad in ["../etc", "a/b", "..", "Acme", "x"] {
        let r = s
            .send_json(
                "POST",
                "/v1/admin/tenants",
                &admin,
                json!({"id": bad, "tier": "basic"}),
            )
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tenant id")
        );
    }
    let r = s.get("/v1/admin/tenants/a%2Fb", &admin).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    let r = s.get("/v1/admin/tenants/..%2F..%2Fetc", &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.get("/v1/admin/tenants/%2E%2E", &admin).await;
    assert!((400..500).contains(&r.status), "{}", r.text);

    // A 10 MB body on a small endpoint.
    let mut big = b"{\"id\":\"acme\",\"tier\":\"basic\",\"name\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    big.extend(b"\"}");
    let r = s
        .request(
            "POST",
            "/v1/admin/tenants",
            Some(&admin),
            &[],
            Some(RequestBody::Raw {
                content_type: "application/json",
                bytes: big,
            }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{}",
        r.text
    );

    // Not JSON at all.
    let r = s
        .request(
            "POST",
            "/v1/admin/tenants",
            Some(&admin),
            &[],
            Some(RequestBody::Raw {
                content_type: "text/plain",
                bytes: b"id=acme".to_vec(),
            }),
        )
        .await;
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));

    // Unknown tier, unknown route, wrong method, bad field values.
    let r = s
        .send_json(
            "POST",
            "/v1/admin/tenants",
            &admin,
            json!({"id": "acme", "tier": "gold"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("basic")
    );
    let r = s.get("/v1/nothing-here", &admin).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = s.delete("/v1/admin/tiers", &admin).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    let r = s
        .send_json(
            "POST",
            "/v1/admin/tenants",
            &admin,
            json!({"id": "acme", "tier": "basic", "region": "eu west"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"));
    let r = s
        .send_json(
            "PUT",
            "/v1/admin/tiers/gold",
            &admin,
            json!({"name": "silver"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    let r = s
        .send_json(
            "PUT",
            "/v1/admin/tiers/gold",
            &admin,
            json!({"sandbox": {"memory_mb": 1, "cpu_millis": 100, "max_processes": 1, "storage_mb": 1}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    assert!(r.text.contains("memory_mb"));
    let r = s
        .send_json(
            "PATCH",
            "/v1/admin/tenants/nobody",
            &admin,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = s
        .send_json(
            "PATCH",
            "/v1/admin/tenants/nobody",
            &admin,
            json!({"id": "other"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    s.stop().await;
}
