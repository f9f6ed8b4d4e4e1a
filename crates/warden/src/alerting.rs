//! `warden alerts` and `warden silence …` against a running Warden (`/api/alerts`,
//! `/api/silences`).
// A command-line client: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cli::{RemoteArgs, SilenceCmd};
use crate::remote::{client, endpoint, send};

/// Prints the firing and pending alerts (or the JSON view). Exit 0 when nothing fires, 1 when
/// something does.
pub(crate) async fn alerts(remote: &RemoteArgs, json: bool) -> ExitCode {
    let view = match send(remote, client().get(endpoint(remote, "/api/alerts"))).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let firing = view["firing"].as_array().cloned().unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
    } else {
        print!("{}", render(&view));
    }
    ExitCode::from(u8::from(!firing.is_empty()))
}

fn render(view: &Value) -> String {
    let mut out = String::new();
    let list = |key: &str| view[key].as_array().cloned().unwrap_or_default();
    let (firing, pending) = (list("firing"), list("pending"));
    if firing.is_empty() && pending.is_empty() {
        out.push_str("no alerts firing\n");
    }
    for (state, alerts) in [("FIRING", &firing), ("pending", &pending)] {
        for a in alerts {
            let target = a["labels"]["server_instance"]
                .as_str()
                .or(a["labels"]["server"].as_str())
                .unwrap_or("-");
            let muted = a["muted"].as_str().map(|m| format!("  [{m}]")).unwrap_or_default();
            out.push_str(&format!(
                "{state:<8} {:<9} {:<26} {:<20} since {}  {}{muted}\n",
                a["severity"].as_str().unwrap_or(""),
                a["name"].as_str().unwrap_or(""),
                target,
                a["starts_at"].as_str().unwrap_or(""),
                a["annotations"]["summary"].as_str().unwrap_or(""),
            ));
        }
    }
    let silences = list("silences");
    if !silences.is_empty() {
        out.push_str(&format!("{} active silence(s): `warden silence list`\n", silences.len()));
    }
    let undelivered = view["notifications"]["undelivered"].as_array().map_or(0, Vec::len);
    if undelivered > 0 {
        out.push_str(&format!("{undelivered} notification(s) waiting for delivery\n"));
    }
    out
}

pub(crate) async fn silence(cmd: &SilenceCmd) -> ExitCode {
    match cmd {
        SilenceCmd::Add { matchers, duration, comment, author, remote } => {
            let body = json!({
                "matchers": matchers,
                "duration": duration,
                "comment": comment.clone().unwrap_or_default(),
                "created_by": author.clone().unwrap_or_else(whoami),
            });
            let req = client().post(endpoint(remote, "/api/silences")).json(&body);
            match send(remote, req).await {
                Ok(s) => {
                    println!(
                        "silence {} until {}",
                        s["id"].as_str().unwrap_or(""),
                        s["ends_at"].as_str().unwrap_or("")
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        SilenceCmd::List { json, remote } => {
            let v = match send(remote, client().get(endpoint(remote, "/api/silences"))).await {
                Ok(v) => v,
                Err(code) => return code,
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            let list = v["silences"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no active silences");
            }
            for s in list {
                let matchers: Vec<String> = s["matchers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let op = if m["equal"] == false { "!=" } else { "=" };
                        format!(
                            "{}{op}{}",
                            m["name"].as_str().unwrap_or(""),
                            m["value"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                println!(
                    "{}  until {}  {}  by {}: {}",
                    s["id"].as_str().unwrap_or(""),
                    s["ends_at"].as_str().unwrap_or(""),
                    matchers.join(","),
                    s["created_by"].as_str().unwrap_or(""),
                    s["comment"].as_str().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        SilenceCmd::Expire { id, remote } => {
            let req = client().delete(endpoint(remote, &format!("/api/silences/{id}")));
            match send(remote, req).await {
                Ok(_) => {
                    println!("silence {id} expired");
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".to_owned())
}
