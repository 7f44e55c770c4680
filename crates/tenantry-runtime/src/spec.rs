//! What a sandbox is asked to run: `SandboxSpec`, its defaults and its validation.
//!
//! The spec is built by the platform from a runtime's configuration and the tenant's tier; it is
//! never taken from an agent. Validation here is the last line before paths reach `mount(2)`, so
//! it refuses relative paths, `..`, NUL bytes and a mount path outside `/mnt/`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tenantry_core::{SandboxResources, TenantId};

use crate::SandboxError;

/// Port the agent's HTTP server listens on inside the sandbox (the AgentCore contract).
pub const DEFAULT_AGENT_PORT: u16 = 8080;
/// Port of the platform endpoint forwarder inside the sandbox (`TENANTRY_ENDPOINT`).
pub const DEFAULT_PLATFORM_PORT: u16 = 9180;
/// Where the session's storage appears inside the sandbox.
pub const DEFAULT_MOUNT_PATH: &str = "/mnt/session";
/// `PATH` given to the agent when its environment does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The way from the sandbox to the platform: the sandbox's init listens on
/// `127.0.0.1:<port>` inside the sandbox and forwards each connection to the Unix socket
/// `socket` on the host, where the platform listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformBridge {
    /// Host path of the platform's Unix socket. The sandbox never sees this path: the
    /// connection is made on the host by the helper and passed in.
    pub socket: PathBuf,
    /// Port inside the sandbox; `TENANTRY_ENDPOINT=http://127.0.0.1:<port>`.
    pub port: u16,
}

impl PlatformBridge {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            port: DEFAULT_PLATFORM_PORT,
        }
    }

    /// The value of `TENANTRY_ENDPOINT` inside the sandbox.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Everything needed to start one session's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// A label for attribution in logs, never used in a path: the id of the session the
    /// sandbox serves, or a warm spare's name before any session is bound to it — so not
    /// necessarily a `tenantry_core::SessionId`, whose rule the server applies to sessions.
    pub session_id: String,
    pub tenant: TenantId,
    /// Program and arguments; the program is looked up on the agent's `PATH` when it has no `/`.
    pub command: Vec<String>,
    /// Host directory holding the agent's program; exposed read-only inside the sandbox at the
    /// same path, and the agent's working directory. It must contain only the program.
    pub workdir: PathBuf,
    /// Environment of the agent. Nothing of the platform's own environment is passed on.
    /// `SESSION_DIR`, `PORT` and `TENANTRY_ENDPOINT` are set by the sandbox and win.
    pub env: BTreeMap<String, String>,
    /// Host directory of the session's persistent storage, created by the caller. It is the only
    /// host directory the agent can write, mounted at `mount_path`.
    pub storage_dir: PathBuf,
    /// An ext4 image (see `storage::make_image`) holding the session's storage: when set, it
    /// is loop-mounted on `storage_dir` for this sandbox only, so the storage's size is a hard
    /// limit (writes past it fail with `ENOSPC`). Needs root on the host. `None`: the
    /// directory itself is the storage, and nothing limits its size.
    #[serde(default)]
    pub storage_image: Option<PathBuf>,
    /// Where the storage appears inside the sandbox; must be under `/mnt/`.
    pub mount_path: PathBuf,
    pub resources: SandboxResources,
    /// Port the agent listens on inside the sandbox; reached through `connect_agent()`.
    pub agent_port: u16,
    /// The bridge to the platform endpoint; `None` leaves the sandbox with no way out at all.
    pub platform: Option<PlatformBridge>,
}

impl SandboxSpec {
    /// A spec with the contract's defaults (port 8080, `/mnt/session`, tier-default resources,
    /// no platform bridge).
    pub fn new(
        session_id: impl Into<String>,
        tenant: TenantId,
        command: Vec<String>,
        workdir: impl Into<PathBuf>,
        storage_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            session_id: session_id.into(),
            tenant,
            command,
            workdir: workdir.into(),
            env: BTreeMap::new(),
            storage_dir: storage_dir.into(),
            storage_image: None,
            mount_path: PathBuf::from(DEFAULT_MOUNT_PATH),
            resources: SandboxResources::default(),
            agent_port: DEFAULT_AGENT_PORT,
            platform: None,
        }
    }

    /// Checks everything that can be checked without touching the host.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |m: String| Err(SandboxError::InvalidSpec(m));
        if self.session_id.is_empty()
            || self.session_id.len() > 256
            || self.session_id.chars().any(char::is_control)
        {
            return bad("session_id (the sandbox's label) must be 1 to 256 characters without control characters".into());
        }
        if self.command.is_empty() || self.command[0].is_empty() {
            return bad("command must name a program".into());
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return bad("command arguments must not contain NUL".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(format!(
                    "env key {k:?} is not a valid variable name (non-empty, no '=' or NUL)"
                ));
            }
        }
        check_abs("workdir", &self.workdir)?;
        check_abs("storage_dir", &self.storage_dir)?;
        check_abs("mount_path", &self.mount_path)?;
        if let Some(image) = &self.storage_image {
            check_abs("storage_image", image)?;
            if image.starts_with(&self.workdir) || image.starts_with(&self.storage_dir) {
                return bad("storage_image must be outside workdir and storage_dir".into());
            }
        }
        if self.workdir == Path::new("/") {
            return bad("workdir must not be / (it is exposed to the agent)".into());
        }
        for hidden in ["/proc", "/dev", "/mnt"] {
            if self.workdir.starts_with(hidden) {
                return bad(format!(
                    "workdir {} must not be under {hidden}",
                    self.workdir.display()
                ));
            }
        }
        if self.storage_dir.starts_with(&self.workdir)
            || self.workdir.starts_with(&self.storage_dir)
        {
            return bad(
                "storage_dir and workdir must not contain each other (workdir is read-only)".into(),
            );
        }
        let under_mnt = self.mount_path.strip_prefix("/mnt").ok();
        if under_mnt.is_none_or(|rest| rest.as_os_str().is_empty()) {
            return bad(format!(
                "mount_path {} must be under /mnt/ (e.g. /mnt/session)",
                self.mount_path.display()
            ));
        }
        if self.agent_port == 0 {
            return bad("agent_port must not be 0".into());
        }
        if let Some(p) = &self.platform {
            check_abs("platform.socket", &p.socket)?;
            if p.port == 0 || p.port == self.agent_port {
                return bad("platform.port must be non-zero and differ from agent_port".into());
            }
        }
        let r = &self.resources;
        if r.memory_mb < 16 {
            return bad("resources.memory_mb must be at least 16".into());
        }
        if r.cpu_millis < 10 {
            return bad("resources.cpu_millis must be at least 10".into());
        }
        if r.max_processes < 1 {
            return bad("resources.max_processes must be at least 1".into());
        }
        Ok(())
    }

    /// The agent's final environment: the spec's variables, then the sandbox's own.
    pub fn agent_env(&self) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        env.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        env.entry("HOME".into()).or_insert_with(|| "/tmp".into());
        env.insert(
            "SESSION_DIR".into(),
            self.mount_path.to_string_lossy().into_owned(),
        );
        env.insert("PORT".into(), self.agent_port.to_string());
        match &self.platform {
            Some(p) => {
                env.insert("TENANTRY_ENDPOINT".into(), p.endpoint());
            }
            None => {
                env.remove("TENANTRY_ENDPOINT");
            }
        }
        env
    }
}

fn check_abs(field: &str, p: &Path) -> Result<(), SandboxError> {
    let ok = p.is_absolute()
        && !p.as_os_str().as_encoded_bytes().contains(&0)
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidSpec(format!(
            "{field} {} must be an absolute path without '.' or '..'",
            p.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        SandboxSpec::new(
            "s-1",
            TenantId::new("acme").expect("valid"),
            vec!["python3".into(), "agent.py".into()],
            "/srv/agents/echo",
            "/var/lib/tenantry/sessions/s-1",
        )
    }

    #[test]
    fn defaults_validate() {
        spec().validate().expect("defaults are valid");
    }

    #[test]
    fn mount_path_must_be_under_mnt() {
        for bad in ["/mnt", "/tmp/x", "/mnt/../etc", "mnt/x", "/mntx/y"] {
            let mut s = spec();
            s.mount_path = bad.into();
            assert!(s.validate().is_err(), "{bad} must be refused");
        }
        let mut s = spec();
        s.mount_path = "/mnt/data/session".into();
        s.validate().expect("nested path under /mnt is fine");
    }

    #[test]
    fn paths_must_be_absolute_and_clean() {
        let mut s = spec();
        s.storage_dir = "rel/dir".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.workdir = "/srv/../root".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.workdir = "/".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.storage_dir = "/srv/agents/echo/state".into();
        assert!(s.validate().is_err(), "storage inside workdir is refused");
    }

    #[test]
    fn sandbox_variables_win_over_the_spec() {
        let mut s = spec();
        s.env.insert("SESSION_DIR".into(), "/etc".into());
        s.env
            .insert("TENANTRY_ENDPOINT".into(), "http://evil".into());
        s.env.insert("FOO".into(), "bar".into());
        let env = s.agent_env();
        assert_eq!(env["SESSION_DIR"], "/mnt/session");
        assert!(!env.contains_key("TENANTRY_ENDPOINT"));
        assert_eq!(env["FOO"], "bar");
        assert_eq!(env["PORT"], "8080");
        s.platform = Some(PlatformBridge::new("/run/tenantry/platform.sock"));
        assert_eq!(s.agent_env()["TENANTRY_ENDPOINT"], "http://127.0.0.1:9180");
    }

    #[test]
    fn bad_env_and_commands_are_refused() {
        let mut s = spec();
        s.env.insert("A=B".into(), "x".into());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.command.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.platform = Some(PlatformBridge {
            socket: "/run/p.sock".into(),
            port: 8080,
        });
        assert!(
            s.validate().is_err(),
            "platform port clashing with the agent's"
        );
    }
}
