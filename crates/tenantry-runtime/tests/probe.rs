//! Prints what this host supports for process sandboxes, so every test log says why the sandbox
//! tests ran or were skipped. With `TENANTRY_REQUIRE_SANDBOX=1` a missing feature fails instead.

#![allow(clippy::unwrap_used)]

#[test]
fn report_host_support() {
    let report = tenantry_runtime::probe();
    println!("process sandbox support on this host:\n{report}");
    let missing = report.missing();
    if !missing.is_empty() {
        println!(
            "process sandbox tests will be SKIPPED: {}",
            missing.join("; ")
        );
    }
    if std::env::var("TENANTRY_REQUIRE_SANDBOX").as_deref() == Ok("1") {
        assert!(missing.is_empty(), "required but missing: {missing:?}");
    }
    // The report is self-consistent.
    assert_eq!(report.sandbox_supported(), missing.is_empty());
    if let Ok(layout) = &report.cgroups {
        assert!(
            layout.starts_with("v1") || layout.starts_with("v2"),
            "{layout}"
        );
    }
}
