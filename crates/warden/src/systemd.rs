//! systemd's notify protocol (sd_notify(3)) in a few lines, without libsystemd: when
//! `NOTIFY_SOCKET` is set, `warden run` sends `READY=1` once it serves (HTTP bound, every
//! instance task started), `STATUS=…` (the health summary) when it changes, `WATCHDOG=1` every
//! half `WATCHDOG_USEC` while the health snapshot is fresh (what `/livez` checks: a stuck
//! runtime stops the pets and systemd restarts Warden), and `STOPPING=1` on the way out.
//!
//! The variables stay in Warden's environment; children never see them (the stdio connector
//! removes them).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use warden_app::Liveness;

/// How often `STATUS=` is refreshed without a watchdog (and at least this often with one).
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// A connection to the service manager's notification socket.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// How often to pet the watchdog, if systemd asked for it.
    watchdog: Option<Duration>,
    /// The last send failed (logged once until one succeeds).
    failing: AtomicBool,
}

impl Notifier {
    /// `None` unless `NOTIFY_SOCKET` is set (and usable).
    pub(crate) fn from_env() -> Option<Self> {
        let raw = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty())?;
        // Non-blocking: a receiver that stops reading must never stall a runtime thread.
        let made = address(&raw).and_then(|addr| {
            let socket = UnixDatagram::unbound()?;
            socket.set_nonblocking(true)?;
            Ok((socket, addr))
        });
        match made {
            Ok((socket, addr)) => Some(Self {
                socket,
                addr,
                watchdog: watchdog_interval(),
                failing: AtomicBool::new(false),
            }),
            Err(e) => {
                tracing::warn!(socket = ?raw, error = %e, "cannot use NOTIFY_SOCKET; not notifying systemd");
                None
            }
        }
    }

    fn send(&self, state: &str) {
        match self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            Ok(_) => self.failing.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot notify systemd (said once until it works again)");
                }
            }
        }
    }

    /// Warden serves: `READY=1` with the first status line.
    pub(crate) fn ready(&self, summary: &str) {
        self.send(&format!("READY=1\nSTATUS={summary}"));
    }

    /// Warden is stopping its servers.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: every server gets close-stdin, SIGTERM, SIGKILL");
    }

    /// Pets the watchdog (while `liveness` holds) and keeps `STATUS=` current, until aborted.
    pub(crate) fn spawn(
        self: Arc<Self>,
        liveness: Liveness,
        mut shown: String,
    ) -> tokio::task::JoinHandle<()> {
        let every = self.watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut was_live = true;
            loop {
                tick.tick().await;
                let mut msg = String::new();
                if self.watchdog.is_some() {
                    let live = liveness.live();
                    if live {
                        msg.push_str("WATCHDOG=1\n");
                    } else if was_live {
                        tracing::error!("the health snapshot is stale (the runtime looks stuck); no longer petting systemd's watchdog");
                    }
                    was_live = live;
                }
                let summary = liveness.summary();
                if summary != shown {
                    msg.push_str(&format!("STATUS={summary}"));
                    shown = summary;
                }
                if !msg.is_empty() {
                    self.send(msg.trim_end());
                }
            }
        })
    }
}

/// `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
fn address(raw: &OsStr) -> io::Result<SocketAddr> {
    match raw.as_bytes() {
        [b'/', ..] => SocketAddr::from_pathname(Path::new(raw)),
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract socket (@name)",
        )),
    }
}

/// Half of `WATCHDOG_USEC`, if it is set and meant for this process (`WATCHDOG_PID` unset or
/// ours).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_addresses() {
        let a = address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(a.as_pathname(), Some(Path::new("/run/systemd/notify")));
        let a = address(OsStr::new("@warden-test")).unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"warden-test"[..]));
        assert!(address(OsStr::new("vsock:2:1234")).is_err());
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("warden-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            addr: address(OsStr::new(&format!("@{name}"))).unwrap(),
            watchdog: None,
            failing: AtomicBool::new(false),
        };
        n.ready("healthy: 1/1 servers healthy");
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=healthy: 1/1 servers healthy");
    }
}
