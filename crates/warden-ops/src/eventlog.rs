//! The event log on disk: every event as one JSON line (the wire form, `warden_core::wire`),
//! appended to `events-YYYY-MM-DD.jsonl` (UTC date of the event) in the database's directory.
//! Files older than `warden.retention` are deleted when a new day's file is opened.
//!
//! Dated names rather than `events.jsonl` renamed at midnight: nothing is ever renamed, so a
//! restart, a crash or two Wardens reading the directory never see a half-rotated file, and
//! a day's file is complete once the next one exists.
//!
//! The log never stops Warden: it reads the bus like any subscriber (a writer too slow for the
//! bus loses lines, counted as `missed`, and writes a `dropped` line in their place), writes on
//! the blocking pool, and a failed write (full disk, removed or unwritable directory) loses
//! that batch, is counted, logged at most once a minute, and reported in `/health/status`
//! (`checks.event_log`). The directory and the file are recreated if they disappear.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use warden_core::dayfiles::{DayFiles, Keep};
use warden_core::{wire, Event, EventBus, Timestamp};

/// A failing log says so in Warden's log at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Most lines written in one batch.
const BATCH: usize = 4096;

/// The running log writer.
pub struct EventLog {
    status: LogStatus,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
}

/// How the log is doing; shared with the health snapshot.
#[derive(Clone)]
pub struct LogStatus(Arc<Mutex<Status>>);

#[derive(Default)]
struct Status {
    dir: Option<PathBuf>,
    file: Option<PathBuf>,
    failing: bool,
    lines: u64,
    /// Lines lost to failed writes.
    errors: u64,
    /// Events the writer fell too far behind to see.
    missed: u64,
    last_error: Option<String>,
    last_error_at: Option<Timestamp>,
    last_logged: Option<Instant>,
}

impl LogStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `checks.event_log` of `/health/status`, and whether the log is writing.
    pub fn check(&self) -> (Value, bool) {
        let s = self.lock();
        let status = match (&s.dir, s.failing) {
            (None, _) => "off",
            (Some(_), true) => "failing",
            (Some(_), false) => "ok",
        };
        (
            json!({
                "status": status,
                "path": s.file.as_ref().or(s.dir.as_ref()).map(|p| p.display().to_string()),
                "lines_written": s.lines,
                "lines_lost": s.errors,
                "missed": s.missed,
                "last_error": s.last_error,
                "last_error_at": s.last_error_at,
            }),
            !s.failing,
        )
    }

    fn wrote(&self, lines: usize, file: Option<PathBuf>) {
        let mut s = self.lock();
        s.lines += lines as u64;
        s.file = file;
        if s.failing {
            s.failing = false;
            tracing::info!(dir = ?s.dir, "the event log is writable again");
        }
    }

    fn failed(&self, lines: usize, error: &std::io::Error) {
        let mut s = self.lock();
        s.errors += lines as u64;
        s.failing = true;
        s.last_error = Some(error.to_string());
        s.last_error_at = Some(warden_core::now());
        if s.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            s.last_logged = Some(Instant::now());
            tracing::warn!(
                dir = ?s.dir,
                error = %error,
                lost = s.errors,
                "cannot write the event log; supervision, the database and the live stream carry on"
            );
        }
    }
}

impl EventLog {
    /// Starts appending every event of `bus` under `dir` (`None`: no log, e.g. an in-memory
    /// database), deleting day files older than `retention`.
    pub fn start(
        dir: Option<PathBuf>,
        retention: tokio::sync::watch::Receiver<Duration>,
        bus: &EventBus,
    ) -> Self {
        let status =
            LogStatus(Arc::new(Mutex::new(Status { dir: dir.clone(), ..Default::default() })));
        let stop = CancellationToken::new();
        let task = dir.map(|dir| {
            let files = day_files(dir, *retention.borrow());
            tokio::spawn(run(files, retention, bus.subscribe(), status.clone(), stop.clone()))
        });
        Self { status, task, stop }
    }

    pub fn status(&self) -> LogStatus {
        self.status.clone()
    }

    /// Writes what is queued and stops.
    pub async fn close(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

async fn run(
    files: DayFiles,
    mut retention: tokio::sync::watch::Receiver<Duration>,
    mut events: tokio::sync::broadcast::Receiver<Arc<Event>>,
    status: LogStatus,
    stop: CancellationToken,
) {
    let mut files = Some(files);
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            e = events.recv() => Some(e),
        };
        let mut done = first.is_none();
        let mut lines: Vec<(NaiveDate, String)> = Vec::new();
        match first {
            Some(Ok(e)) => push(&mut lines, Ok(e), &status),
            Some(Err(RecvError::Lagged(n))) => push(&mut lines, Err(n), &status),
            Some(Err(RecvError::Closed)) => done = true,
            None => {}
        }
        // Take what else is queued (all of it when stopping).
        while done || lines.len() < BATCH {
            match events.try_recv() {
                Ok(e) => push(&mut lines, Ok(e), &status),
                Err(TryRecvError::Lagged(n)) => push(&mut lines, Err(n), &status),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if !lines.is_empty() {
            let mut f = files.take().expect("files are handed back after each batch");
            if retention.has_changed().unwrap_or(false) {
                f.set_keep(Keep::For(*retention.borrow_and_update()));
            }
            let spare = f.closed_copy();
            let count = lines.len();
            match tokio::task::spawn_blocking(move || {
                let r = write(&mut f, &lines);
                (f, r)
            })
            .await
            {
                Ok((f, r)) => {
                    match r {
                        Ok(()) => status.wrote(count, f.open_path().map(Path::to_owned)),
                        Err(e) => status.failed(count, &e),
                    }
                    files = Some(f);
                }
                Err(e) => {
                    status.failed(count, &std::io::Error::other(e.to_string()));
                    files = Some(spare);
                }
            }
        }
        if done {
            return;
        }
    }
}

/// One line for an event, or a `dropped` line for events the writer missed.
fn push(lines: &mut Vec<(NaiveDate, String)>, r: Result<Arc<Event>, u64>, status: &LogStatus) {
    match r {
        Ok(e) => lines.push((e.at.date_naive(), wire::event_json(&e).to_line())),
        Err(missed) => {
            status.lock().missed += missed;
            let notice = wire::dropped_notice(missed, "the event log fell behind");
            lines.push((warden_core::now().date_naive(), notice.to_line()));
        }
    }
}

/// The event log's day files (`events-YYYY-MM-DD.jsonl`), kept for `retention`; used on the
/// blocking pool only.
fn day_files(dir: PathBuf, retention: Duration) -> DayFiles {
    DayFiles::new(dir, "events-", ".jsonl", "event log", Keep::For(retention))
}

/// Appends each line to its day's file, a batch per day. On an error the file is closed, to
/// be reopened (and its directory recreated) by the next batch.
fn write(files: &mut DayFiles, lines: &[(NaiveDate, String)]) -> std::io::Result<()> {
    let mut buf = String::new();
    let mut i = 0;
    while i < lines.len() {
        let day = lines[i].0;
        buf.clear();
        while i < lines.len() && lines[i].0 == day {
            buf.push_str(&lines[i].1);
            buf.push('\n');
            i += 1;
        }
        files.append(day, buf.as_bytes())?;
    }
    Ok(())
}

/// The directory of the event log: the SQLite database's, the state directory with
/// PostgreSQL (`None` for an in-memory database).
pub fn dir_for(database: &warden_store::Location) -> Option<PathBuf> {
    database.local_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn lines_go_to_their_day_and_old_days_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("events-2001-01-01.jsonl");
        std::fs::write(&old, "{}\n").unwrap();
        std::fs::write(dir.path().join("unrelated.jsonl"), "x").unwrap();
        let mut files = day_files(dir.path().join("sub"), Duration::from_secs(86_400));
        let today = warden_core::now().date_naive();
        write(&mut files, &[(today, "{\"a\":1}".into()), (today, "{\"a\":2}".into())]).unwrap();
        let text = std::fs::read_to_string(files.path(today)).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
        // Pruning looks at the log's own directory only.
        assert!(old.exists());
        let mut files = day_files(dir.path().to_owned(), Duration::from_secs(86_400));
        write(&mut files, &[(today, "{}".into())]).unwrap();
        assert!(!old.exists(), "a file older than the retention is deleted");
        assert!(dir.path().join("unrelated.jsonl").exists());
        // A cut-short last line is ended before the next one is appended.
        std::fs::write(files.path(day("2030-01-02")), "{\"cut").unwrap();
        write(&mut files, &[(day("2030-01-02"), "{}".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(files.path(day("2030-01-02"))).unwrap(), "{\"cut\n{}\n");
    }

    #[test]
    fn a_removed_directory_is_recreated_and_an_unwritable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let mut files = day_files(logs.clone(), Duration::from_secs(3600));
        let today = warden_core::now().date_naive();
        write(&mut files, &[(today, "1".into())]).unwrap();
        std::fs::remove_dir_all(&logs).unwrap();
        write(&mut files, &[(today, "2".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(files.path(today)).unwrap(), "2\n");
        // A directory where the file should be: every write fails, even for root.
        let tomorrow = today + chrono::Days::new(1);
        std::fs::create_dir(files.path(tomorrow)).unwrap();
        assert!(write(&mut files, &[(tomorrow, "3".into())]).is_err());
        assert!(files.open_path().is_none());
    }
}
