//! The plain-text table of `warden check`.

use std::fmt::Write;

use crate::Overview;

/// One line per instance: server, status, instance, state, pid, latency, tools, reason.
pub fn render_table(o: &Overview) -> String {
    let mut rows =
        vec![["SERVER", "STATUS", "INSTANCE", "STATE", "PID", "LATENCY", "TOOLS", "REASON"]
            .map(String::from)];
    for s in &o.servers {
        for (n, i) in s.instances.iter().enumerate() {
            let first = n == 0;
            rows.push([
                if first { s.name.clone() } else { String::new() },
                if first { s.status.as_str().to_owned() } else { String::new() },
                i.id.to_string(),
                i.state.to_string(),
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.latency_ms.map(|l| format!("{l:.1}ms")).unwrap_or_else(|| "-".into()),
                i.tools.to_string(),
                i.reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
            ]);
        }
    }
    let widths: Vec<usize> =
        (0..8).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(out, "overall: {}", o.status.as_str());
    out
}
