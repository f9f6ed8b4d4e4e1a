//! The one place that decides what a child process inherits from Warden's environment: a stdio
//! server, an integration's command check and an alert command hook all start from here.
//!
//! Warden's own environment holds its secrets (`WARDEN_TOKEN`, every variable a config expands
//! with `${env:X}` for one server): a child gets none of it. It starts with a cleared
//! environment plus the variables a program needs to run at all, the list the official MCP SDKs
//! pass to stdio servers (`HOME`, `LOGNAME`, `PATH`, `SHELL`, `TERM`, `USER`) with the locale,
//! the temporary directory and the XDG base directories; then its own configured `env`.
//! `inherit_env: true` (per server, integration or hook) passes Warden's whole environment, as
//! before. systemd's notify socket and watchdog are Warden's alone either way (a child that
//! answered them would speak for Warden).

use std::ffi::OsStr;

/// Variables every child inherits.
pub const INHERITED: &[&str] =
    &["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TMPDIR"];

/// Prefixes of variables every child inherits (`LC_ALL`, `LC_CTYPE`, `XDG_RUNTIME_DIR`, …).
pub const INHERITED_PREFIXES: &[&str] = &["LC_", "XDG_"];

/// Variables no child inherits, even with `inherit_env`.
pub const WITHHELD: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Whether a child inherits the variable `name` without `inherit_env`.
pub fn is_inherited(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else { return false };
    INHERITED.contains(&name) || INHERITED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Sets a command's environment to what a child inherits: the allow-list, or (with `inherit`)
/// Warden's whole environment, never [`WITHHELD`]. The caller adds the child's own variables.
pub fn inherit(cmd: &mut tokio::process::Command, inherit_all: bool) {
    if inherit_all {
        for name in WITHHELD {
            cmd.env_remove(name);
        }
        return;
    }
    cmd.env_clear();
    cmd.envs(std::env::vars_os().filter(|(k, _)| is_inherited(k)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_passes_what_a_program_needs_and_nothing_else() {
        for name in ["PATH", "HOME", "LANG", "LC_ALL", "XDG_RUNTIME_DIR", "TMPDIR", "TERM"] {
            assert!(is_inherited(OsStr::new(name)), "{name}");
        }
        for name in ["WARDEN_TOKEN", "GITHUB_TOKEN", "NOTIFY_SOCKET", "PATHX", "LC", "home"] {
            assert!(!is_inherited(OsStr::new(name)), "{name}");
        }
    }
}
