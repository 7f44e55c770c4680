//! `tenantry`: runs the server (`serve`, `init`) and drives a running server's control plane
//! (`tenant`, `tier`, `apikey`, `accesskey`), and mints development tokens (`token issue`).
//!
//! Admin commands find the server and the operator key from `--config` (the state directory's
//! `tenantry.toml`), or from `--url` / `--admin-key` (`TENANTRY_URL` / `TENANTRY_ADMIN_KEY`).

#![forbid(unsafe_code)]

mod accesskey_cmd;
mod admin;
mod audit_cmd;
mod cli;
mod client;
mod demo;
mod guardrail_cmd;
mod logs_cmd;
mod memory_cmd;
mod models_cmd;
mod runtime_cmd;
mod tools_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The sandbox helper must run before anything starts a thread: it creates user
    // namespaces, which a multi-threaded process cannot.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            tenantry_server::config::SANDBOX_HELPER_SUBCOMMAND,
        ))
    {
        return tenantry_runtime::helper_main();
    }
    // Nothing this process inherited (a descriptor its launching shell left open) may reach
    // the sandboxes it starts.
    if let Err(e) = tenantry_runtime::seal_inherited_descriptors() {
        eprintln!("error: cannot mark inherited descriptors close-on-exec: {e}");
        return ExitCode::FAILURE;
    }
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(admin::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
