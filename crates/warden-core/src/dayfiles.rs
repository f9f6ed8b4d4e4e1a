//! Files rotated by day (`PREFIXYYYY-MM-DD.SUFFIX`): the log files and the JSONL event log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use chrono::NaiveDate;

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
