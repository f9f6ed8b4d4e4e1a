//! How Warden's own log files are doing. The binary writes them (daily files under
//! `$XDG_STATE_HOME/warden/logs/`) and reports every write here; `/health/status` shows it as
//! `checks.logs`, and a failing log degrades Warden (never more: logging is not supervision).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_core::Timestamp;

/// A failing log says so in Warden's log (stderr) at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The log files' health, shared by their writer and `/health/status`. Cheap to clone.
#[derive(Clone)]
pub struct LogFilesStatus(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// Lines refused because the writer's queue was full (counted by the logging threads).
    dropped: AtomicU64,
}

struct State {
    dir: PathBuf,
    file: Option<PathBuf>,
    failing: bool,
    lines: u64,
    /// Lines lost to failed writes.
    lost: u64,
    /// Failed attempts to write or to reopen the file.
    failures: u64,
    last_error: Option<String>,
    last_error_at: Option<Timestamp>,
    last_logged: Option<Instant>,
}

impl LogFilesStatus {
    /// The status of log files written under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self(Arc::new(Shared {
            state: Mutex::new(State {
                dir,
                file: None,
                failing: false,
                lines: 0,
                lost: 0,
                failures: 0,
                last_error: None,
                last_error_at: None,
                last_logged: None,
            }),
            dropped: AtomicU64::new(0),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `lines` were written to `file` (0 lines: the file was reopened after a failure).
    pub fn wrote(&self, lines: u64, file: &Path) {
        let recovered = {
            let mut s = self.lock();
            s.lines += lines;
            if s.file.as_deref() != Some(file) {
                s.file = Some(file.to_owned());
            }
            std::mem::replace(&mut s.failing, false)
        };
        // Logged with the lock released: this line goes to the same writer.
        if recovered {
            tracing::info!(file = %file.display(), "the log files are writable again");
        }
    }

    /// A write (of `lines` lines) or a reopen failed with `error`.
    pub fn failed(&self, lines: u64, error: &std::io::Error) {
        let say = {
            let mut s = self.lock();
            s.lost += lines;
            s.failures += 1;
            s.failing = true;
            s.last_error = Some(error.to_string());
            s.last_error_at = Some(warden_core::now());
            let say = s.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY);
            if say {
                s.last_logged = Some(Instant::now());
            }
            say.then(|| (s.dir.clone(), s.lost))
        };
        if let Some((dir, lost)) = say {
            tracing::warn!(
                dir = %dir.display(),
                error = %error,
                lost,
                "cannot write the log files; Warden carries on (stderr still has every line)"
            );
        }
    }

    /// `lines` lines were refused because the writer fell behind.
    pub fn dropped(&self, lines: u64) {
        self.0.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// Whether the last write (or reopen) failed.
    pub fn failing(&self) -> bool {
        self.lock().failing
    }

    /// `checks.logs` of `/health/status`, and whether the files are writing.
    pub fn check(&self) -> (Value, bool) {
        let s = self.lock();
        (
            json!({
                "status": if s.failing { "failing" } else { "ok" },
                "path": s.file.as_ref().unwrap_or(&s.dir).display().to_string(),
                "lines_written": s.lines,
                "lines_lost": s.lost,
                "lines_dropped": self.0.dropped.load(Ordering::Relaxed),
                "failures": s.failures,
                "last_error": s.last_error,
                "last_error_at": s.last_error_at,
            }),
            !s.failing,
        )
    }
}

/// Where the health snapshot finds the log files' status, once the binary hands it over.
#[derive(Clone, Default)]
pub struct Slot(Arc<RwLock<Option<LogFilesStatus>>>);

impl Slot {
    pub fn set(&self, status: LogFilesStatus) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// `checks.logs`: `off` when Warden writes no log files.
    pub fn check(&self) -> (Value, bool) {
        match &*self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(status) => status.check(),
            None => (json!({ "status": "off" }), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_shows_until_the_next_good_write() {
        let slot = Slot::default();
        assert_eq!(slot.check().0["status"], "off");
        let status = LogFilesStatus::new("/logs".into());
        slot.set(status.clone());
        let (v, ok) = slot.check();
        assert!(ok);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["path"], "/logs");
        status.wrote(3, Path::new("/logs/warden.2030-01-01.log"));
        status.failed(2, &std::io::Error::other("disk full"));
        status.dropped(4);
        let (v, ok) = slot.check();
        assert!(!ok && status.failing());
        assert_eq!(v["status"], "failing");
        assert_eq!(v["last_error"], "disk full");
        assert_eq!((v["lines_written"].as_u64(), v["lines_lost"].as_u64()), (Some(3), Some(2)));
        assert_eq!((v["failures"].as_u64(), v["lines_dropped"].as_u64()), (Some(1), Some(4)));
        status.wrote(0, Path::new("/logs/warden.2030-01-01.log"));
        let (v, ok) = slot.check();
        assert!(ok);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["path"], "/logs/warden.2030-01-01.log");
        assert_eq!(v["last_error"], "disk full", "the last error stays for the record");
    }
}
