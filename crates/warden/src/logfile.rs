//! `warden run`'s log files: every log line (already formatted and scrubbed of secrets) is
//! appended to `warden.YYYY-MM-DD.log` (UTC day) in one directory; files older than the
//! retention are deleted whenever a new day's file is opened.
//!
//! Logging never waits for the disk and never stops Warden: a logging thread hands its line to
//! a bounded queue (a full queue drops the line, counted) and one thread of our own writes
//! them. A failed write (full disk, a removed or unwritable directory, a file where the
//! directory should be) loses that batch, is counted and shown in `/health/status`
//! (`checks.logs`); the file is closed and reopened — its directory recreated — by the next
//! batch, or within a second by the thread's own check if nothing is logged.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use warden_app::LogFilesStatus;
use warden_core::dayfiles::{DayFiles, Keep};

/// Lines the queue holds before new ones are dropped.
const QUEUE: usize = 16_384;
/// Most lines written in one batch.
const BATCH: u64 = 1024;
/// How often the thread checks, while idle, that its file is still there.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the logging threads send the writer.
pub(crate) enum Msg {
    Line(Vec<u8>),
    /// Answer once every line sent before is written (or failed).
    Flush(mpsc::Sender<()>),
}

/// The sending side, shared by every thread that logs.
pub(crate) struct Sink {
    tx: SyncSender<Msg>,
    status: LogFilesStatus,
}

impl Sink {
    /// Starts the writer thread for files under `dir`, keeping `retention_days` days.
    pub(crate) fn start(
        dir: PathBuf,
        retention_days: u32,
        status: LogFilesStatus,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let files = rolling(dir, retention_days);
        let thread_status = status.clone();
        std::thread::Builder::new()
            .name("warden-logs".into())
            .spawn(move || run(rx, files, &thread_status))?;
        Ok(Self { tx, status })
    }

    /// Queues one line; never blocks.
    pub(crate) fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.status.dropped(1),
            // The writer thread is gone (it never ends on its own): nothing to do.
            Err(TrySendError::Disconnected(_)) => self.status.dropped(1),
        }
    }

    /// Waits (at most `within`) until every line queued so far is written.
    pub(crate) fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let (ack, done) = mpsc::channel();
        let mut msg = Msg::Flush(ack);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The writer thread: batches what is queued, writes it, reports how it went.
fn run(rx: Receiver<Msg>, mut files: DayFiles, status: &LogFilesStatus) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let first = match rx.recv_timeout(CHECK_EVERY) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                check(&mut files, status);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut lines = 0;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    buf.extend_from_slice(&line);
                    lines += 1;
                }
                Msg::Flush(ack) => {
                    write(&mut files, &mut buf, &mut lines, status);
                    let _ = ack.send(());
                }
            }
            if lines < BATCH {
                next = rx.try_recv().ok();
            }
        }
        write(&mut files, &mut buf, &mut lines, status);
    }
}

fn write(files: &mut DayFiles, buf: &mut Vec<u8>, lines: &mut u64, status: &LogFilesStatus) {
    if *lines == 0 {
        return;
    }
    match files.append(today(), buf) {
        Ok(()) => status.wrote(*lines, files.open_path().unwrap_or(files.dir())),
        Err(e) => status.failed(*lines, &e),
    }
    buf.clear();
    *lines = 0;
}

/// While idle: reopen a file removed under us, and retry a failing directory, so the health
/// check sees a problem (and its end) without waiting for the next log line.
fn check(files: &mut DayFiles, status: &LogFilesStatus) {
    let failing = status.failing();
    match files.reopen(today(), failing) {
        Ok(Some(path)) => status.wrote(0, path),
        Ok(None) => {}
        // Already failing: not a new failure.
        Err(_) if failing => {}
        Err(e) => status.failed(0, &e),
    }
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// The log's day files (`warden.YYYY-MM-DD.log`), `retention_days` days kept (today's
/// included); used by the writer thread only.
pub(crate) fn rolling(dir: PathBuf, retention_days: u32) -> DayFiles {
    DayFiles::new(dir, "warden.", ".log", "log file", Keep::Days(retention_days.max(1)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn lines_go_to_their_day_and_the_oldest_days_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::write(logs.join("warden.2030-01-01.log"), "old\n").unwrap();
        std::fs::write(logs.join("other.2030-01-01.log"), "not ours\n").unwrap();
        let mut files = rolling(logs.clone(), 2);
        files.append(day("2030-01-02"), b"a\n").unwrap();
        assert!(logs.join("warden.2030-01-01.log").exists(), "two days kept: the 1st and 2nd");
        files.append(day("2030-01-02"), b"b\n").unwrap();
        assert_eq!(read(&files.path(day("2030-01-02"))), "a\nb\n");
        // Midnight: the next line opens the next day's file and the oldest day goes.
        files.append(day("2030-01-03"), b"c\n").unwrap();
        let path = files.open_path().unwrap().to_owned();
        assert_eq!(path, logs.join("warden.2030-01-03.log"));
        assert_eq!(read(&path), "c\n");
        assert!(!logs.join("warden.2030-01-01.log").exists());
        assert_eq!(read(&logs.join("warden.2030-01-02.log")), "a\nb\n");
        assert!(logs.join("other.2030-01-01.log").exists(), "only our files are deleted");
        // A cut-short last line is ended before the next line is appended.
        std::fs::write(logs.join("warden.2030-01-04.log"), "cut").unwrap();
        files.append(day("2030-01-04"), b"d\n").unwrap();
        assert_eq!(read(&logs.join("warden.2030-01-04.log")), "cut\nd\n");
    }

    #[test]
    fn a_removed_directory_is_recreated_and_a_file_in_its_place_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let today = day("2030-05-05");
        let mut files = rolling(logs.clone(), 7);
        files.append(today, b"1\n").unwrap();
        std::fs::remove_dir_all(&logs).unwrap();
        files.append(today, b"2\n").unwrap();
        assert_eq!(read(&files.path(today)), "2\n");
        // Removed while idle: the check reopens it.
        std::fs::remove_dir_all(&logs).unwrap();
        assert!(files.reopen(today, false).unwrap().is_some());
        assert!(files.path(today).exists());
        assert!(files.reopen(today, false).unwrap().is_none(), "nothing to do");
        // A regular file where the directory should be: every write fails, even for root.
        std::fs::remove_dir_all(&logs).unwrap();
        std::fs::write(&logs, "in the way").unwrap();
        assert!(files.append(today, b"3\n").is_err());
        assert!(files.append(today, b"4\n").is_err());
        assert!(files.reopen(today, true).is_err());
        std::fs::remove_file(&logs).unwrap();
        assert!(files.reopen(today, true).unwrap().is_some());
        files.append(today, b"5\n").unwrap();
        assert_eq!(read(&files.path(today)), "5\n");
    }

    #[test]
    fn the_writer_thread_counts_failures_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let status = LogFilesStatus::new(logs.clone());
        let sink = Sink::start(logs.clone(), 7, status.clone()).unwrap();
        sink.send(b"one\n".to_vec());
        sink.send(b"two\n".to_vec());
        sink.flush(Duration::from_secs(5));
        let (v, ok) = status.check();
        assert!(ok, "{v}");
        assert_eq!(v["lines_written"], 2);
        let file = PathBuf::from(v["path"].as_str().unwrap());
        assert_eq!(read(&file), "one\ntwo\n");

        std::fs::remove_dir_all(&logs).unwrap();
        std::fs::write(&logs, "in the way").unwrap();
        sink.send(b"lost\n".to_vec());
        sink.flush(Duration::from_secs(5));
        let (v, ok) = status.check();
        assert!(!ok, "{v}");
        assert_eq!(v["status"], "failing");
        assert_eq!(v["lines_lost"], 1);
        assert!(v["failures"].as_u64().unwrap() >= 1);
        assert!(v["last_error"].is_string());

        // Out of the way again: the thread's own check reopens the file with no new line.
        std::fs::remove_file(&logs).unwrap();
        let start = Instant::now();
        while status.failing() {
            assert!(start.elapsed() < Duration::from_secs(5), "not reopened");
            std::thread::sleep(Duration::from_millis(50));
        }
        sink.send(b"three\n".to_vec());
        sink.flush(Duration::from_secs(5));
        assert_eq!(read(&file), "three\n");
        assert_eq!(status.check().0["lines_written"], 3);
    }
}
