//! Warden's own log lines, live (`GET /logs`): the binary's logging hands every line — one
//! JSON object, already scrubbed of secrets like the log files — to a [`LogTap`]; each
//! subscriber gets them from there. Nothing is formatted while nobody listens.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Lines a slow subscriber may fall behind by before it is told it missed some.
const BACKLOG: usize = 1024;

/// The fan-out of log lines; cheap to clone.
#[derive(Clone)]
pub struct LogTap {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for LogTap {
    fn default() -> Self {
        Self { tx: broadcast::channel(BACKLOG).0 }
    }
}

impl LogTap {
    /// Whether anyone listens (the logging layer formats lines only then).
    pub fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// One line (a JSON object with `level`), scrubbed by the caller.
    pub fn send(&self, line: &str) {
        let _ = self.tx.send(Arc::from(line.trim_end()));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// Whether a line's `level` is at least `min` (`trace` < `debug` < `info` < `warn` < `error`).
pub fn at_least(line: &str, min: &str) -> bool {
    const ORDER: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
    let rank = |l: &str| ORDER.iter().position(|o| o.eq_ignore_ascii_case(l));
    let level = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("level").and_then(|l| l.as_str()).map(str::to_owned));
    match (level.as_deref().and_then(rank), rank(min)) {
        (Some(l), Some(m)) => l >= m,
        _ => true,
    }
}

/// Whether `level` names a level (for refusing a bad `?level=`).
pub fn is_level(level: &str) -> bool {
    ["trace", "debug", "info", "warn", "error"].iter().any(|l| l.eq_ignore_ascii_case(level))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter_by_rank() {
        let warn = r#"{"level":"WARN","fields":{"message":"x"}}"#;
        assert!(at_least(warn, "info") && at_least(warn, "warn") && !at_least(warn, "error"));
        assert!(is_level("Debug") && !is_level("loud"));
    }
}
