//! Files rotated by day (`PREFIXYYYY-MM-DD.SUFFIX`): the log files and the JSONL event log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;

/// How long day files are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// This many days, today's included (the log files).
    Days(u32),
    /// Files whose day began within this long before now (the event log: `warden.retention`).
    For(Duration),
}

/// A directory of day files `{prefix}YYYY-MM-DD{suffix}`, one open at a time. Used from one
/// thread (or one blocking task) at a time. Every write names its day, so tests can move the
/// clock. On a write error the file is closed, to be reopened — its directory recreated — by
/// the next write; a file removed under it is noticed and replaced, not written into the void.
#[derive(Debug)]
pub struct DayFiles {
    dir: PathBuf,
    prefix: &'static str,
    suffix: &'static str,
    /// What the files are, for the log ("log file", "event log").
    what: &'static str,
    keep: Keep,
    open: Option<Open>,
    /// The day for which old files were last deleted.
    pruned: Option<NaiveDate>,
}

#[derive(Debug)]
struct Open {
    day: NaiveDate,
    path: PathBuf,
    file: File,
}

impl DayFiles {
    pub fn new(
        dir: PathBuf,
        prefix: &'static str,
        suffix: &'static str,
        what: &'static str,
        keep: Keep,
    ) -> Self {
        Self { dir, prefix, suffix, what, keep, open: None, pruned: None }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long files are kept from now on (a live reload changed it); old files go at the
    /// next day's first write.
    pub fn set_keep(&mut self, keep: Keep) {
        self.keep = keep;
    }

    /// The same directory and naming, with nothing open (after a writer task was lost).
    pub fn closed_copy(&self) -> Self {
        Self::new(self.dir.clone(), self.prefix, self.suffix, self.what, self.keep)
    }

    pub fn path(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!("{}{}{}", self.prefix, day.format("%Y-%m-%d"), self.suffix))
    }

    /// The file open now.
    pub fn open_path(&self) -> Option<&Path> {
        self.open.as_ref().map(|o| o.path.as_path())
    }

    /// Appends `bytes` to `day`'s file.
    pub fn append(&mut self, day: NaiveDate, bytes: &[u8]) -> std::io::Result<()> {
        if self.gone() {
            self.open = None;
        }
        let r = self.file(day).and_then(|f| f.write_all(bytes));
        if r.is_err() {
            self.open = None;
        }
        r
    }

    /// Reopens the file if it was removed (or, with `retry`, if none is open); `Ok(Some)` when
    /// a file was opened.
    pub fn reopen(&mut self, day: NaiveDate, retry: bool) -> std::io::Result<Option<&Path>> {
        let wanted = self.gone() || (retry && self.open.is_none());
        if !wanted {
            return Ok(None);
        }
        self.open = None;
        self.file(day)?;
        Ok(self.open_path())
    }

    /// The open file was removed under us (or its directory was): what is written there is lost.
    fn gone(&self) -> bool {
        self.open.as_ref().is_some_and(|o| !o.path.exists())
    }

    fn file(&mut self, day: NaiveDate) -> std::io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|o| o.day != day) {
            self.open = None;
            std::fs::create_dir_all(&self.dir)?;
            let path = self.path(day);
            let file = open_append(&path)?;
            self.open = Some(Open { day, path, file });
            // Once per day: at start and at the first write after midnight (UTC).
            if self.pruned != Some(day) {
                self.pruned = Some(day);
                self.prune(day);
            }
        }
        Ok(&mut self.open.as_mut().expect("just opened").file)
    }

    fn prune(&self, today: NaiveDate) {
        let keep_from = match self.keep {
            Keep::Days(n) => today.checked_sub_days(chrono::Days::new(u64::from(n.max(1) - 1))),
            Keep::For(d) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|r| crate::now().checked_sub_signed(r))
                .map(|t| t.date_naive()),
        };
        if let Some(keep_from) = keep_from {
            prune_before(&self.dir, self.prefix, self.suffix, keep_from, self.what);
        }
    }
}

/// Opens `path` for appending (creating it), ending a last line that an earlier failure or a
/// crash cut short, so it cannot swallow the next one.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
    let len = file.metadata()?.len();
    let mut last = [0u8];
    if len > 0 && file.read_at(&mut last, len - 1)? == 1 && last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(file)
}

/// Deletes the files in `dir` named `{prefix}YYYY-MM-DD{suffix}` whose day is before
/// `keep_from`; other files are left alone. `what` names them in the log.
pub fn prune_before(dir: &Path, prefix: &str, suffix: &str, keep_from: NaiveDate, what: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(day) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix)?.strip_suffix(suffix))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if day < keep_from {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "deleted {what} older than the retention")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot delete an old {what}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_cut_short_is_ended_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        std::fs::write(&p, "whole\ncut sho").unwrap();
        drop(super::open_append(&p).unwrap());
        drop(super::open_append(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "whole\ncut sho\n");
    }

    #[test]
    fn deletes_only_matching_files_before_the_day() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["warden.2026-11-01.log", "warden.2026-11-02.log", "warden.x.log", "other.txt"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let keep_from = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        super::prune_before(dir.path(), "warden.", ".log", keep_from, "log file");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec!["other.txt", "warden.2026-11-02.log", "warden.x.log"]);
    }
}
