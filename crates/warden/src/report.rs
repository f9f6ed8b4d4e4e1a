//! `warden report failures|performance|capacity|availability` against a running Warden: the
//! answer of `/api/reports/KIND` as plain tables, or as it is with `--json`. Exit 0; for
//! `availability`, 1 when a server with an objective missed it in the period.
// A command-line client: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use crate::cli::{RemoteArgs, ReportKind};
use crate::remote::{client, endpoint, send};

pub(crate) async fn run(
    remote: &RemoteArgs,
    kind: ReportKind,
    since: &str,
    server: Option<&str>,
    json: bool,
) -> ExitCode {
    let name = match kind {
        ReportKind::Failures => "failures",
        ReportKind::Performance => "performance",
        ReportKind::Capacity => "capacity",
        ReportKind::Availability => "availability",
    };
    let mut url = match reqwest::Url::parse(&endpoint(remote, &format!("/api/reports/{name}"))) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("warden: --url is not a URL: {e}");
            return ExitCode::from(64);
        }
    };
    url.query_pairs_mut().append_pair("since", since);
    if let Some(s) = server {
        url.query_pairs_mut().append_pair("server", s);
    }
    let v = match send(remote, client().get(url)).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", render(kind, &v));
    }
    let missed = kind == ReportKind::Availability && list(&v["servers"]).any(|s| s["met"] == false);
    ExitCode::from(u8::from(missed))
}

/// The report as text.
fn render(kind: ReportKind, v: &Value) -> String {
    let mut out = format!(
        "{} report, {} → {}{}\n",
        text(&v["report"]),
        short_time(&v["since"]),
        short_time(&v["until"]),
        v["server"].as_str().map(|s| format!(", server {s}")).unwrap_or_default(),
    );
    match kind {
        ReportKind::Failures => failures(v, &mut out),
        ReportKind::Performance => performance(v, &mut out),
        ReportKind::Capacity => capacity(v, &mut out),
        ReportKind::Availability => availability(v, &mut out),
    }
    out
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `2026-11-21T15:04:05.123Z` → `2026-11-21 15:04Z`.
fn short_time(v: &Value) -> String {
    v.as_str().map_or_else(
        || "-".to_owned(),
        |t| t.get(..16).map_or(t.to_owned(), |s| format!("{}Z", s.replace('T', " "))),
    )
}

/// Seconds, readably: `850ms`, `4.2s`, `3m 5s`, `2h 3m`, `1d 2h`.
fn duration(v: &Value) -> String {
    let Some(s) = v.as_f64() else { return "-".to_owned() };
    let whole = s.round() as u64;
    match s {
        s if s <= 0.0 => "0s".to_owned(),
        s if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        s if s < 60.0 => format!("{s:.1}s"),
        _ if whole < 3600 => format!("{}m {}s", whole / 60, whole % 60),
        _ if whole < 86_400 => format!("{}h {}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d {}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

fn ms(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_owned(), |m| format!("{m:.1}ms"))
}

/// A share 0..1 as a percentage, with more digits near 100 % (availability).
fn percent(v: &Value) -> String {
    match v.as_f64() {
        None => "-".to_owned(),
        Some(x) if x > 0.99 && x < 1.0 => format!("{:.3}%", x * 100.0),
        Some(x) => format!("{:.1}%", x * 100.0),
    }
}

fn rate(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// Rows as aligned columns under a blank line and a title.
fn table(out: &mut String, title: &str, header: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "\n{title}");
    if rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let mut all = vec![header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    all.extend(rows);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| all.iter().map(|r| r.get(c).map_or(0, |x| x.chars().count())).max().unwrap_or(0))
        .collect();
    for r in &all {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn failures(v: &Value, out: &mut String) {
    let t = &v["time_to_recover_seconds"];
    let _ = writeln!(
        out,
        "  failures: {} ({} resolved, {} open); time to recover: mean {}, p50 {}, p90 {}, max {}",
        text(&v["total"]),
        text(&v["resolved"]),
        text(&v["open"]),
        duration(&t["mean"]),
        duration(&t["p50"]),
        duration(&t["p90"]),
        duration(&t["max"]),
    );
    let classes = v["by_class"].as_object().into_iter().flatten().map(|(class, c)| {
        let t = &c["time_to_recover_seconds"];
        vec![
            class.clone(),
            text(&c["count"]),
            text(&c["open"]),
            duration(&t["mean"]),
            duration(&t["p50"]),
            duration(&t["p90"]),
        ]
    });
    table(out, "BY CLASS", &["CLASS", "COUNT", "OPEN", "MTTR", "P50", "P90"], classes.collect());
    let offenders = list(&v["top_offenders"]).map(|o| {
        let classes: Vec<String> = o["by_class"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        vec![
            o["instance"].as_str().or(o["server"].as_str()).unwrap_or("-").to_owned(),
            text(&o["count"]),
            text(&o["open"]),
            duration(&o["downtime_seconds"]),
            classes.join(", "),
        ]
    });
    table(
        out,
        "TOP OFFENDERS",
        &["INSTANCE", "COUNT", "OPEN", "DOWNTIME", "CLASSES"],
        offenders.collect(),
    );
    let recoveries =
        v["recoveries"].as_object().into_iter().flatten().map(|(action, r)| {
            vec![action.clone(), text(&r["count"]), duration(&r["mttr_seconds"])]
        });
    table(out, "RECOVERIES", &["ACTION", "COUNT", "MEAN TIME"], recoveries.collect());
    let open = list(&v["open_incidents"]).map(|i| {
        vec![
            i["server_instance"].as_str().or(i["server_type"].as_str()).unwrap_or("-").to_owned(),
            text(&i["failure_type"]),
            short_time(&i["occurred_at"]),
            text(&i["error_details"]),
        ]
    });
    table(out, "OPEN INCIDENTS (now)", &["INSTANCE", "CLASS", "SINCE", "DETAILS"], open.collect());
    let alerts = list(&v["alerts"]).map(|a| {
        vec![
            text(&a["name"]),
            text(&a["severity"]),
            text(&a["fired"]),
            text(&a["firing_now"]),
            duration(&a["firing_seconds"]),
        ]
    });
    table(
        out,
        "ALERTS FIRED",
        &["RULE", "SEVERITY", "FIRED", "FIRING NOW", "TIME FIRING"],
        alerts.collect(),
    );
}

/// 24 counts as a bar of block characters, one per hour.
fn spark(counts: &Value) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let xs: Vec<u64> = list(counts).map(|c| c.as_u64().unwrap_or(0)).collect();
    let max = xs.iter().copied().max().unwrap_or(0).max(1);
    xs.iter().map(|&x| if x == 0 { '·' } else { BARS[((x * 7) / max) as usize] }).collect()
}

fn tool_rows<'a>(tools: impl Iterator<Item = &'a Value>) -> Vec<Vec<String>> {
    tools
        .map(|t| {
            vec![
                format!("{}__{}", text(&t["server"]), text(&t["tool"])),
                text(&t["calls"]),
                text(&t["errors"]),
                percent(&t["error_rate"]),
                ms(&t["mean_ms"]),
                ms(&t["max_ms"]),
                percent(&t["repeat_rate"]),
            ]
        })
        .collect()
}

const TOOL_HEADER: [&str; 7] = ["TOOL", "CALLS", "ERRORS", "ERR %", "MEAN", "MAX", "REPEATS"];

fn performance(v: &Value, out: &mut String) {
    let instances = list(&v["servers"]).flat_map(|s| list(&s["instances"])).map(|i| {
        vec![
            text(&i["instance"]),
            text(&i["samples"]),
            ms(&i["p50_ms_avg"]),
            ms(&i["p95_ms_avg"]),
            ms(&i["p95_ms_max"]),
            percent(&i["error_rate_avg"]),
            rate(&i["throughput_avg"]),
            rate(&i["throughput_max"]),
        ]
    });
    table(
        out,
        "INSTANCES (sampled; throughput in requests/s, probes included)",
        &[
            "INSTANCE",
            "SAMPLES",
            "P50 AVG",
            "P95 AVG",
            "P95 MAX",
            "ERR AVG",
            "REQ/S AVG",
            "REQ/S MAX",
        ],
        instances.collect(),
    );
    table(out, "TOOLS (most calls first)", &TOOL_HEADER, tool_rows(list(&v["tools"])));
    table(out, "SLOWEST TOOLS", &TOOL_HEADER, tool_rows(list(&v["slowest_tools"])));
    let hours = list(&v["usage_by_hour"]).map(|h| {
        let total: u64 = list(&h["calls"]).filter_map(Value::as_u64).sum();
        let busiest = h["busiest_hour"]
            .as_u64()
            .map_or("-".to_owned(), |b| format!("{b:02}:00 ({} calls)", h["calls"][b as usize]));
        vec![text(&h["server"]), spark(&h["calls"]), total.to_string(), busiest]
    });
    table(
        out,
        "CALLS BY HOUR OF DAY (UTC, 00 → 23)",
        &["SERVER", "HOURS", "CALLS", "BUSIEST"],
        hours.collect(),
    );
    suggestions(&v["suggestions"], out);
    if let Some(note) = v["note"].as_str() {
        let _ = writeln!(out, "\nnote: {note}");
    }
}

fn suggestions(list_of: &Value, out: &mut String) {
    let rows = list(list_of).map(|s| {
        let target = s["instance"].as_str().or(s["tool"].as_str()).unwrap_or("");
        let evidence: Vec<String> = s["evidence"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, x)| match x.as_f64() {
                Some(f) if f.fract() != 0.0 => format!("{k}={f:.3}"),
                _ => format!("{k}={x}"),
            })
            .collect();
        vec![
            text(&s["rule"]),
            format!("{} {target}", text(&s["server"])).trim_end().to_owned(),
            text(&s["action"]),
            text(&s["config"]),
            evidence.join(" "),
        ]
    });
    table(out, "SUGGESTIONS", &["RULE", "WHERE", "ACTION", "CONFIG", "EVIDENCE"], rows.collect());
}

fn capacity(v: &Value, out: &mut String) {
    let _ = writeln!(out, "  {}", text(&v["method"]));
    let rows = list(&v["servers"]).map(|s| {
        let add = &s["add_replica"];
        let when = if add["now"] == true {
            "now".to_owned()
        } else {
            add["projected_at"]
                .as_str()
                .map_or("-".to_owned(), |t| t.get(..10).unwrap_or(t).to_owned())
        };
        vec![
            text(&s["server"]),
            text(&s["instances"]),
            text(&s["in_flight_now"]),
            rate(&s["throughput"]["avg"]),
            rate(&s["throughput"]["peak_hour"]),
            text(&s["planned_capacity"]),
            percent(&s["utilization"]["avg"]),
            percent(&s["utilization"]["peak_hour"]),
            s["trend"]["throughput_per_day"]
                .as_f64()
                .map_or("-".to_owned(), |d| format!("{d:+.3}")),
            when,
            text(&add["note"]),
        ]
    });
    table(
        out,
        "SERVERS (requests/s)",
        &[
            "SERVER",
            "INSTANCES",
            "IN FLIGHT",
            "AVG",
            "PEAK HOUR",
            "CAPACITY",
            "UTIL AVG",
            "UTIL PEAK",
            "TREND/DAY",
            "ADD REPLICA",
            "NOTE",
        ],
        rows.collect(),
    );
}

fn availability(v: &Value, out: &mut String) {
    let _ = writeln!(out, "  {}", text(&v["method"]));
    let mut rows = Vec::new();
    for s in list(&v["servers"]) {
        let met = match s["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        rows.push(vec![
            text(&s["server"]),
            percent(&s["objective"]),
            percent(&s["availability"]),
            met.to_owned(),
            duration(&s["downtime_seconds"]),
            percent(&s["error_budget"]["remaining"]),
            percent(&s["coverage"]),
            s["note"].as_str().unwrap_or("").to_owned(),
        ]);
        for i in list(&s["instances"]) {
            rows.push(vec![
                format!("  {}", text(&i["instance"])),
                String::new(),
                percent(&i["availability"]),
                String::new(),
                duration(&i["downtime_seconds"]),
                String::new(),
                String::new(),
                format!("{} incident(s)", text(&i["incidents"])),
            ]);
        }
    }
    table(
        out,
        "SERVERS",
        &[
            "SERVER",
            "OBJECTIVE",
            "AVAILABILITY",
            "MET",
            "DOWNTIME",
            "BUDGET LEFT",
            "COVERAGE",
            "NOTE",
        ],
        rows,
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_empty_report_renders_without_numbers_it_does_not_have() {
        let v = json!({"report": "failures", "since": "2026-11-14T15:04:05.123Z", "until": "2026-11-21T15:04:05.123Z",
                       "total": 0, "resolved": 0, "open": 0, "time_to_recover_seconds": {"mean": null},
                       "by_class": {}, "top_offenders": [], "recoveries": {"restart": {"count": 0, "mttr_seconds": null}},
                       "open_incidents": [], "alerts": []});
        let text = render(ReportKind::Failures, &v);
        assert!(
            text.starts_with("failures report, 2026-11-14 15:04Z → 2026-11-21 15:04Z\n"),
            "{text}"
        );
        assert!(
            text.contains("failures: 0 (0 resolved, 0 open); time to recover: mean -"),
            "{text}"
        );
        assert!(text.contains("restart  0      -"), "{text}");
        for kind in [ReportKind::Performance, ReportKind::Capacity, ReportKind::Availability] {
            render(kind, &json!({}));
        }
    }

    #[test]
    fn durations_and_hours_read_well() {
        assert_eq!(duration(&json!(0.25)), "250ms");
        assert_eq!(duration(&json!(4.21)), "4.2s");
        assert_eq!(duration(&json!(185)), "3m 5s");
        assert_eq!(duration(&json!(7380)), "2h 3m");
        assert_eq!(percent(&json!(0.9995)), "99.950%");
        let mut hours = vec![0; 24];
        hours[3] = 10;
        hours[4] = 5;
        let bar = spark(&json!(hours));
        assert_eq!(bar.chars().count(), 24);
        assert_eq!(bar.chars().nth(3), Some('█'));
        assert_eq!(bar.chars().next(), Some('·'));
    }
}
