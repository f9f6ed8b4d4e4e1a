//! Durations as operators write them: `"5s"`, `"500ms"`, `"1m30s"`, or a number of seconds.

use std::time::Duration;

/// Parses `"5s"`, `"500ms"`, `"1m 30s"`, `"2h"`, `"30d"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is not a duration (write it like \"5s\", \"500ms\" or \"1m30s\")")
    })
}

/// Formats a duration compactly for humans (`1.5s`, `250ms`, `5m`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if !ms.is_multiple_of(1000) {
        if ms < 1000 {
            return format!("{ms}ms");
        }
        return format!("{:.1}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
