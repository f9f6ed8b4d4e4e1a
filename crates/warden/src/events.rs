//! `warden events [--follow]`: a running Warden's recent events (`GET /api/events`), then, with
//! `--follow`, its live stream (`GET /events`, Server-Sent Events). One line per event: time,
//! kind, instance and message; `--json` prints each event's JSON exactly as Warden sends it.
// A command-line client: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::EventsArgs;
use crate::remote::{endpoint, send, shown, without_url, UNREACHABLE};

/// Warden sends a keep-alive every 15 s; silence for this long means the connection is dead.
const SILENCE: Duration = Duration::from_secs(45);

pub(crate) async fn run(a: &EventsArgs) -> ExitCode {
    let mut out = Printer { json: a.json, seen: HashSet::new(), last_at: None };
    // Subscribe before reading the history, so no event falls between the two; the history
    // then skips none and the stream repeats none (`seen`).
    let mut live = if a.follow {
        match subscribe(a).await {
            Ok(r) => Some(r),
            Err(refused) => return refused.report(&a.remote.url),
        }
    } else {
        None
    };
    if a.limit > 0 {
        let history = match recent(a, a.limit).await {
            Ok(h) => h,
            Err(code) => return code,
        };
        for e in history.iter().rev() {
            if !out.print(e) {
                return ExitCode::SUCCESS;
            }
        }
    }
    while let Some(res) = live.take() {
        match follow(res, &mut out).await {
            Ended::Stdout => return ExitCode::SUCCESS,
            Ended::Dropped => {
                eprintln!("warden: this terminal fell behind the event stream; resubscribing")
            }
            Ended::Lost => eprintln!("warden: the event stream ended; reconnecting"),
        }
        let mut wait = Duration::from_millis(500);
        let mut told = false;
        loop {
            tokio::time::sleep(wait).await;
            match subscribe(a).await {
                Ok(r) => {
                    live = Some(r);
                    break;
                }
                // Warden is back but refuses us (a new token?): retrying will not help.
                Err(refused @ Refused::Answer { .. }) => return refused.report(&a.remote.url),
                Err(_) if !told => {
                    told = true;
                    eprintln!("warden: waiting for Warden at {}", shown(&a.remote.url));
                }
                Err(_) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        // What happened while disconnected, from the store.
        let Ok(history) = recent(a, 1000).await else { continue };
        for e in history.iter().rev() {
            if out.is_new(e) && out.after_last(e) && !out.print(e) {
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `path` on Warden with the filters (and `extra`) as its query.
fn url(a: &EventsArgs, path: &str, extra: &[(&str, String)]) -> Result<reqwest::Url, ExitCode> {
    let mut url = reqwest::Url::parse(&endpoint(&a.remote, path)).map_err(|e| {
        eprintln!("warden: --url is not a URL: {e}");
        ExitCode::from(64)
    })?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = &a.server {
            q.append_pair("server", s);
        }
        if let Some(k) = &a.kind {
            q.append_pair("kind", k);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

/// The last `limit` recorded events, newest first.
async fn recent(a: &EventsArgs, limit: u32) -> Result<Vec<Value>, ExitCode> {
    let url = url(a, "/api/events", &[("limit", limit.to_string())])?;
    let req = crate::remote::client().get(url);
    let v = send(&a.remote, req).await?;
    Ok(v["events"].as_array().cloned().unwrap_or_default())
}

/// Why `/events` could not be opened.
enum Refused {
    /// Not a usable URL (the exit code says so already).
    Url(ExitCode),
    Unreachable(&'static str),
    Answer {
        status: u16,
        message: String,
    },
}

impl Refused {
    /// Says why on stderr; the exit code.
    fn report(self, url: &str) -> ExitCode {
        match self {
            Self::Url(code) => code,
            Self::Unreachable(why) => {
                eprintln!("warden: cannot reach Warden at {}: {why}", shown(url));
                ExitCode::from(UNREACHABLE)
            }
            Self::Answer { status, message } => {
                eprintln!("warden: {message}");
                if status == 401 {
                    eprintln!("warden: pass the token with --token or WARDEN_TOKEN");
                }
                ExitCode::from(1)
            }
        }
    }
}

/// Opens `/events`.
async fn subscribe(a: &EventsArgs) -> Result<reqwest::Response, Refused> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client builds");
    let mut req = client
        .get(url(a, "/events", &[]).map_err(Refused::Url)?)
        .header("accept", "text/event-stream");
    if let Some(t) = &a.remote.token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.map_err(|e| Refused::Unreachable(without_url(&e)))?;
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let message =
        body["error"]["message"].as_str().map_or_else(|| status.to_string(), str::to_owned);
    Err(Refused::Answer { status: status.as_u16(), message })
}

enum Ended {
    /// Nobody reads our output any more (a closed pipe).
    Stdout,
    /// Warden dropped this subscriber for falling behind.
    Dropped,
    /// The connection ended or went silent.
    Lost,
}

/// Prints the stream's events until it ends.
async fn follow(mut res: reqwest::Response, out: &mut Printer) -> Ended {
    let mut buf: Vec<u8> = Vec::new();
    let mut data = String::new();
    loop {
        let chunk = match tokio::time::timeout(SILENCE, res.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => return Ended::Lost,
        };
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                // The end of one SSE event.
                if data.is_empty() {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&data) else {
                    data.clear();
                    continue;
                };
                data.clear();
                if v["kind"] == "dropped" {
                    let _ = out.print(&v);
                    return Ended::Dropped;
                }
                if out.is_new(&v) && !out.print(&v) {
                    return Ended::Stdout;
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
            // `id:`, `event:`, `retry:` and `:` comments carry nothing we print.
        }
    }
}

struct Printer {
    json: bool,
    /// (seq, at) of what was printed, so history and stream never print an event twice.
    seen: HashSet<(u64, String)>,
    last_at: Option<DateTime<Utc>>,
}

fn at(e: &Value) -> Option<DateTime<Utc>> {
    e["at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc())
}

impl Printer {
    fn key(e: &Value) -> Option<(u64, String)> {
        Some((e["seq"].as_u64()?, e["at"].as_str()?.to_owned()))
    }

    /// Not printed yet.
    fn is_new(&self, e: &Value) -> bool {
        Self::key(e).is_none_or(|k| !self.seen.contains(&k))
    }

    /// Not older than the last event printed (for the history read after a reconnect; the
    /// live stream is in `seq` order, and `at` may step back a little between tasks).
    fn after_last(&self, e: &Value) -> bool {
        match (self.last_at, at(e)) {
            (Some(last), Some(t)) => t >= last,
            _ => true,
        }
    }

    /// Prints one event; false when stdout is gone.
    fn print(&mut self, e: &Value) -> bool {
        if let Some(k) = Self::key(e) {
            self.seen.insert(k);
        }
        if let Some(t) = at(e) {
            self.last_at = Some(self.last_at.map_or(t, |l| l.max(t)));
        }
        let line = if self.json { e.to_string() } else { human(e) };
        writeln!(std::io::stdout().lock(), "{line}").is_ok()
    }
}

/// `2026-11-21T10:00:00.123Z  process_exited       search#0  process 4242 exited with signal 9`
fn human(e: &Value) -> String {
    let time = at(e).map_or_else(
        || e["at"].as_str().unwrap_or("-").to_owned(),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    );
    let kind = e["kind"].as_str().unwrap_or("?");
    let instance = e["instance"].as_str().unwrap_or("-");
    let message = match e["message"].as_str() {
        Some(m) => m.to_owned(),
        None => warden_core::wire::describe(kind, &e["data"]),
    };
    format!("{time}  {kind:<26} {instance:<16} {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_event() {
        let e = serde_json::json!({
            "seq": 3, "at": "2026-11-21T10:00:00.123456789Z", "kind": "process_exited",
            "instance": "search#0", "message": "process 42 exited with signal 9", "data": {}
        });
        assert_eq!(
            human(&e),
            "2026-11-21T10:00:00.123Z  process_exited             search#0         process 42 exited with signal 9"
        );
        let mut p = Printer { json: true, seen: HashSet::new(), last_at: None };
        assert!(p.is_new(&e));
        p.seen.insert((3, "2026-11-21T10:00:00.123456789Z".into()));
        assert!(!p.is_new(&e));
    }
}
