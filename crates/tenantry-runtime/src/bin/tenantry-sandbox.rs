//! The sandbox helper executable: builds one sandbox per run (see `tenantry_runtime::helper`).
//! It must stay single-threaded until it has cloned the sandbox, so `main` does nothing else.

fn main() -> std::process::ExitCode {
    tenantry_runtime::helper_main()
}
