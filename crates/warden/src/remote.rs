//! Commands against a running Warden, through its operator API (`--url`, `--token`).
// A command-line client: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{ActionArgs, FailoverCmd, RemoteArgs};

/// Exit code when Warden cannot be reached (EX_UNAVAILABLE).
pub(crate) const UNREACHABLE: u8 = 69;

pub(crate) fn client() -> reqwest::Client {
    // Warden refuses an API request that acts unless it is declared as JSON (415): every
    // request says so, with or without a body.
    let mut json = reqwest::header::HeaderMap::new();
    json.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(json)
        .build()
        .expect("an HTTP client builds")
}

pub(crate) fn endpoint(remote: &RemoteArgs, path: &str) -> String {
    format!("{}{path}", remote.url.trim_end_matches('/'))
}

/// Sends a request and returns the JSON answer, or prints why not and returns the exit code.
pub(crate) async fn send(
    remote: &RemoteArgs,
    req: reqwest::RequestBuilder,
) -> Result<Value, ExitCode> {
    let req = match &remote.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let res = req.send().await.map_err(|e| {
        eprintln!("warden: cannot reach Warden at {}: {}", shown(&remote.url), without_url(&e));
        ExitCode::from(UNREACHABLE)
    })?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status.is_success() || status.as_u16() == 503 && body.get("servers").is_some() {
        return Ok(body);
    }
    let message =
        body["error"]["message"].as_str().map_or_else(|| status.to_string(), str::to_owned);
    eprintln!("warden: {message}");
    if status.as_u16() == 401 {
        eprintln!("warden: pass the token with --token or WARDEN_TOKEN");
    }
    Err(ExitCode::from(1))
}

/// The URL without any credentials in it.
pub(crate) fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "the given --url".to_owned(),
    }
}

/// What failed, without reqwest's text: it names the URL, which may carry credentials.
pub(crate) fn without_url(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_timeout() {
        "no answer within 30 s"
    } else {
        "the request failed"
    }
}

fn paint(text: &str, state: &str, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    let code = match state {
        "healthy" => "32",
        "warning" | "degraded" | "starting" => "33",
        "critical" | "offline" | "failed" | "unhealthy" => "31",
        _ => "0",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The server view as a table, one line per instance.
fn table(view: &Value, color: bool) -> String {
    // The fleet's view labels every instance with its replica: one more column.
    let fleet = view["scope"] == "fleet";
    let mut head = vec!["SERVER", "STATUS", "INSTANCE", "STATE", "PID", "LATENCY", "RESTARTS"];
    if fleet {
        head.insert(2, "REPLICA");
    }
    head.push("REASON");
    let mut rows: Vec<Vec<String>> = vec![head.into_iter().map(String::from).collect()];
    let empty = vec![];
    for s in view["servers"].as_array().unwrap_or(&empty) {
        for (n, i) in s["instances"].as_array().unwrap_or(&empty).iter().enumerate() {
            let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
            let mut row = vec![
                if n == 0 { text(&s["name"]) } else { String::new() },
                if n == 0 { text(&s["status"]) } else { String::new() },
                text(&i["id"]),
                text(&i["state"]),
                i["pid"].as_u64().map_or("-".into(), |p| p.to_string()),
                i["latency_ms"].as_f64().map_or("-".into(), |l| format!("{l:.1}ms")),
                i["restarts"].as_u64().map_or("-".into(), |r| r.to_string()),
            ];
            if fleet {
                let replica = text(&i["replica"]);
                row.insert(
                    2,
                    match i["replica_state"].as_str() {
                        Some("live") | None => replica,
                        Some(state) => format!("{replica} ({state})"),
                    },
                );
            }
            row.push(i["reason"]["message"].as_str().unwrap_or("").to_owned());
            rows.push(row);
        }
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let state_column = if fleet { 4 } else { 3 };
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let padded = format!("{cell:<w$}  ", w = widths[c]);
            // Color the status and state columns (not the header).
            line.push_str(&if n > 0 && (c == 1 || c == state_column) {
                paint(&padded, cell, color)
            } else {
                padded
            });
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if fleet {
        let replicas: Vec<String> = view["replicas"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|r| {
                let id = r["id"].as_str().unwrap_or("?");
                match (r["state"].as_str().unwrap_or("?"), r["age_seconds"].as_f64()) {
                    ("gone", Some(age)) => format!("{id} gone (silent {age:.0} s)"),
                    (state, _) => format!("{id} {state}"),
                }
            })
            .collect();
        out.push_str(&format!("replicas: {}\n", replicas.join(", ")));
    }
    let overall = view["status"].as_str().unwrap_or("unknown");
    out.push_str(&format!("overall: {}\n", paint(overall, overall, color)));
    out
}

pub(crate) async fn status(remote: &RemoteArgs, json: bool, fleet: bool) -> ExitCode {
    let path = if fleet { "/api/servers?scope=fleet" } else { "/api/servers" };
    let view = match send(remote, client().get(endpoint(remote, path))).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", table(&view, color));
    }
    match view["status"].as_str() {
        Some("healthy") => ExitCode::SUCCESS,
        Some("degraded") => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}

/// `warden reload`: the diff applied (exit 0), or every error of the refused config (exit 64).
pub(crate) async fn reload(remote: &RemoteArgs, json: bool) -> ExitCode {
    let req = client().post(endpoint(remote, "/api/reload"));
    let req = match &remote.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warden: cannot reach Warden at {}: {}", shown(&remote.url), without_url(&e));
            return ExitCode::from(UNREACHABLE);
        }
    };
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if json {
        println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
    }
    if status.is_success() {
        if !json {
            println!("reloaded: {}", body["summary"].as_str().unwrap_or("applied"));
            if let Some(r) = body["needs_restart"].as_array().filter(|r| !r.is_empty()) {
                let names: Vec<&str> = r.iter().filter_map(Value::as_str).collect();
                println!("needs a restart of Warden to take effect: {}", names.join(", "));
            }
        }
        return ExitCode::SUCCESS;
    }
    if status.as_u16() == 422 {
        if !json {
            eprintln!("warden: the config was refused; the running config stays");
            for e in body["error"]["errors"].as_array().into_iter().flatten() {
                eprintln!("  error: {}", e.as_str().unwrap_or_default());
            }
        }
        return ExitCode::from(64);
    }
    let message =
        body["error"]["message"].as_str().map_or_else(|| status.to_string(), str::to_owned);
    eprintln!("warden: {message}");
    if status.as_u16() == 401 {
        eprintln!("warden: pass the token with --token or WARDEN_TOKEN");
    }
    ExitCode::from(1)
}

pub(crate) async fn act(a: &ActionArgs, action: &str) -> ExitCode {
    let mut path = format!("/api/servers/{}/{action}", a.name);
    if let Some(i) = a.instance {
        path.push_str(&format!("?instance={i}"));
    }
    match send(&a.remote, client().post(endpoint(&a.remote, &path))).await {
        Ok(v) => {
            let target = a.instance.map_or(a.name.clone(), |i| format!("{}#{i}", a.name));
            println!("{action}: sent to {} instance(s) of {target}", v["instances"]);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub(crate) async fn failover(remote: &RemoteArgs, name: &str, action: FailoverCmd) -> ExitCode {
    let verb = match action {
        FailoverCmd::Enable => "enable",
        FailoverCmd::Disable => "disable",
        FailoverCmd::Trigger => "trigger",
        FailoverCmd::Test => "test",
        FailoverCmd::Restore => "restore",
    };
    let path = format!("/api/failover/{name}/{verb}");
    match send(remote, client().post(endpoint(remote, &path))).await {
        Ok(v) => {
            println!(
                "{name}: failover {}, {}served by {}",
                if v["failover_enabled"] == true { "enabled" } else { "disabled" },
                if v["forced"] == true { "forced to the fallbacks, " } else { "" },
                v["served_by"].as_str().unwrap_or("nothing routable"),
            );
            let mut ok = true;
            for t in v["test"].as_array().into_iter().flatten() {
                let line = match t["rtt_ms"].as_f64() {
                    Some(ms) => format!(
                        "  {}: answered in {ms:.1} ms",
                        t["instance"].as_str().unwrap_or("?")
                    ),
                    None => {
                        ok = false;
                        format!(
                            "  {}: {}",
                            t["instance"].as_str().unwrap_or("?"),
                            t["error"].as_str().unwrap_or("failed")
                        )
                    }
                };
                println!("{line}");
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(code) => code,
    }
}
