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

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use warden_app::LogFilesStatus;

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
        let files = Rolling::new(dir, retention_days);
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
fn run(rx: Receiver<Msg>, mut files: Rolling, status: &LogFilesStatus) {
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

fn write(files: &mut Rolling, buf: &mut Vec<u8>, lines: &mut u64, status: &LogFilesStatus) {
    if *lines == 0 {
        return;
    }
    match files.write(today(), buf) {
        Ok(path) => status.wrote(*lines, path),
        Err(e) => status.failed(*lines, &e),
    }
    buf.clear();
    *lines = 0;
}

/// While idle: reopen a file removed under us, and retry a failing directory, so the health
/// check sees a problem (and its end) without waiting for the next log line.
fn check(files: &mut Rolling, status: &LogFilesStatus) {
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

/// The day files; used by the writer thread only. Every method takes today's date, so tests
/// can move the clock.
pub(crate) struct Rolling {
    dir: PathBuf,
    retention_days: u32,
    open: Option<Open>,
    /// The day for which old files were last deleted.
    pruned: Option<NaiveDate>,
}

struct Open {
    day: NaiveDate,
    path: PathBuf,
    file: File,
}

impl Rolling {
    pub(crate) fn new(dir: PathBuf, retention_days: u32) -> Self {
        Self { dir, retention_days: retention_days.max(1), open: None, pruned: None }
    }

    pub(crate) fn path(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!("warden.{}.log", day.format("%Y-%m-%d")))
    }

    /// Appends `bytes` to `day`'s file and returns its path. On an error the file is closed,
    /// to be reopened (and its directory recreated) next time.
    pub(crate) fn write(&mut self, day: NaiveDate, bytes: &[u8]) -> std::io::Result<&Path> {
        if self.gone() {
            self.open = None;
        }
        if let Err(e) = self.file(day).and_then(|f| f.write_all(bytes)) {
            self.open = None;
            return Err(e);
        }
        Ok(&self.open.as_ref().expect("just written").path)
    }

    /// Reopens the file if it was removed (or, with `retry`, if none is open); `Ok(Some)` when
    /// a file was opened.
    pub(crate) fn reopen(&mut self, day: NaiveDate, retry: bool) -> std::io::Result<Option<&Path>> {
        let wanted = self.gone() || (retry && self.open.is_none());
        if !wanted {
            return Ok(None);
        }
        self.open = None;
        self.file(day)?;
        Ok(self.open.as_ref().map(|o| o.path.as_path()))
    }

    /// The open file was removed under us (or its directory was): lines written there are lost.
    fn gone(&self) -> bool {
        self.open.as_ref().is_some_and(|o| !o.path.exists())
    }

    fn file(&mut self, day: NaiveDate) -> std::io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|o| o.day != day) {
            self.open = None;
            std::fs::create_dir_all(&self.dir)?;
            let path = self.path(day);
            let file = warden_core::dayfiles::open_append(&path)?;
            self.open = Some(Open { day, path, file });
            // Once per day: at start and at the first line after midnight (UTC).
            if self.pruned != Some(day) {
                self.pruned = Some(day);
                self.prune(day);
            }
        }
        Ok(&mut self.open.as_mut().expect("just opened").file)
    }

    /// Deletes the day files older than the retention (`retention_days` days, today's
    /// included, are kept).
    fn prune(&self, today: NaiveDate) {
        let Some(keep_from) = today
            .checked_sub_days(chrono::Days::new(u64::from(self.retention_days.saturating_sub(1))))
        else {
            return;
        };
        warden_core::dayfiles::prune_before(&self.dir, "warden.", ".log", keep_from, "log file");
    }
}

#[cfg(test)]
mod tests {
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
        let mut files = Rolling::new(logs.clone(), 2);
        files.write(day("2030-01-02"), b"a\n").unwrap();
        assert!(logs.join("warden.2030-01-01.log").exists(), "two days kept: the 1st and 2nd");
        files.write(day("2030-01-02"), b"b\n").unwrap();
        assert_eq!(read(&files.path(day("2030-01-02"))), "a\nb\n");
        // Midnight: the next line opens the next day's file and the oldest day goes.
        let path = files.write(day("2030-01-03"), b"c\n").unwrap().to_owned();
        assert_eq!(path, logs.join("warden.2030-01-03.log"));
        assert_eq!(read(&path), "c\n");
        assert!(!logs.join("warden.2030-01-01.log").exists());
        assert_eq!(read(&logs.join("warden.2030-01-02.log")), "a\nb\n");
        assert!(logs.join("other.2030-01-01.log").exists(), "only our files are deleted");
        // A cut-short last line is ended before the next line is appended.
        std::fs::write(logs.join("warden.2030-01-04.log"), "cut").unwrap();
        files.write(day("2030-01-04"), b"d\n").unwrap();
        assert_eq!(read(&logs.join("warden.2030-01-04.log")), "cut\nd\n");
    }

    #[test]
    fn a_removed_directory_is_recreated_and_a_file_in_its_place_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let today = day("2030-05-05");
        let mut files = Rolling::new(logs.clone(), 7);
        files.write(today, b"1\n").unwrap();
        std::fs::remove_dir_all(&logs).unwrap();
        files.write(today, b"2\n").unwrap();
        assert_eq!(read(&files.path(today)), "2\n");
        // Removed while idle: the check reopens it.
        std::fs::remove_dir_all(&logs).unwrap();
        assert!(files.reopen(today, false).unwrap().is_some());
        assert!(files.path(today).exists());
        assert!(files.reopen(today, false).unwrap().is_none(), "nothing to do");
        // A regular file where the directory should be: every write fails, even for root.
        std::fs::remove_dir_all(&logs).unwrap();
        std::fs::write(&logs, "in the way").unwrap();
        assert!(files.write(today, b"3\n").is_err());
        assert!(files.write(today, b"4\n").is_err());
        assert!(files.reopen(today, true).is_err());
        std::fs::remove_file(&logs).unwrap();
        assert!(files.reopen(today, true).unwrap().is_some());
        files.write(today, b"5\n").unwrap();
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
