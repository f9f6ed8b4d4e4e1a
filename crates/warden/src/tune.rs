//! `warden tune …` against a running Warden (`/api/tuning`).
// A command-line client: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cli::{RemoteArgs, TuneCmd};
use crate::remote::{client, endpoint, send};

pub(crate) async fn tune(cmd: &TuneCmd) -> ExitCode {
    let (remote, req, json_out): (&RemoteArgs, reqwest::RequestBuilder, bool) = match cmd {
        TuneCmd::Show { since, server, json, remote } => {
            let mut url = match reqwest::Url::parse(&endpoint(remote, "/api/tuning")) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("warden: --url is not a URL: {e}");
                    return ExitCode::from(64);
                }
            };
            for (k, v) in [("since", since), ("server", server)] {
                if let Some(v) = v {
                    url.query_pairs_mut().append_pair(k, v);
                }
            }
            (remote, client().get(url), *json)
        }
        TuneCmd::Apply { since, server, dry_run, json, remote } => {
            let body =
                json!({ "since": since, "server": server, "dry_run": dry_run, "source": "cli" });
            (remote, client().post(endpoint(remote, "/api/tuning/apply")).json(&body), *json)
        }
        TuneCmd::Set { server, parameter, value, instance, remote } => {
            // A weight is a number; a duration stays text ("30s").
            let value = match value.parse::<f64>() {
                Ok(n) if parameter == "weight" => json!(n),
                _ => json!(value),
            };
            let body = json!({ "server": server, "parameter": parameter, "value": value,
                               "instance": instance, "source": "cli" });
            (remote, client().post(endpoint(remote, "/api/tuning/set")).json(&body), false)
        }
        TuneCmd::Revert { id, remote } => {
            let path = format!("/api/tuning/{id}/revert");
            (
                remote,
                client().post(endpoint(remote, &path)).json(&json!({ "source": "cli" })),
                false,
            )
        }
        TuneCmd::Reset { server, remote } => {
            let body = json!({ "server": server, "source": "cli" });
            (remote, client().post(endpoint(remote, "/api/tuning/reset")).json(&body), false)
        }
    };
    let v = match send(remote, req).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    match cmd {
        TuneCmd::Show { .. } => print!("{}", render_show(&v)),
        TuneCmd::Apply { dry_run, .. } => {
            let key = if *dry_run { "proposals" } else { "applied" };
            let list = v[key].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("nothing to change: no rule matched the period's records");
            }
            for c in &list {
                println!("{}{}", if *dry_run { "would " } else { "" }, change_line(c));
            }
        }
        TuneCmd::Set { .. } => println!("{}", change_line(&v)),
        TuneCmd::Revert { .. } => println!(
            "reverted change {}: {} of {} back to {}",
            v["id"],
            v["parameter"].as_str().unwrap_or(""),
            target(&v),
            v["from_text"].as_str().unwrap_or("")
        ),
        TuneCmd::Reset { .. } => {
            let n = v["reverted"].as_array().map_or(0, Vec::len);
            println!("reverted {n} change(s)");
        }
    }
    ExitCode::SUCCESS
}

fn target(c: &Value) -> String {
    let server = c["server"].as_str().unwrap_or("");
    match c["instance"].as_u64() {
        Some(i) => format!("{server}#{i}"),
        None => server.to_owned(),
    }
}

fn change_line(c: &Value) -> String {
    let id = c["id"].as_i64().map(|i| format!("[{i}] ")).unwrap_or_default();
    format!(
        "{id}{} {}: {} → {} ({})",
        target(c),
        c["parameter"].as_str().unwrap_or(""),
        c["from_text"].as_str().unwrap_or(""),
        c["to_text"].as_str().unwrap_or(""),
        c["reason"].as_str().unwrap_or("")
    )
}

fn render_show(v: &Value) -> String {
    let mut out = String::new();
    let list = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    let mut tuned = 0;
    for s in list("servers") {
        for p in s["parameters"].as_array().cloned().unwrap_or_default() {
            if p["tuned"] == true {
                tuned += 1;
                let mut c = p.clone();
                c["server"] = s["server"].clone();
                out.push_str(&format!(
                    "TUNED    {:<24} {:<16} {} (configured {})\n",
                    target(&c),
                    p["parameter"].as_str().unwrap_or(""),
                    p["value_text"].as_str().unwrap_or(""),
                    // Durations as durations ("60s", not "60000.0"), from the API's text form.
                    p["configured_text"]
                        .as_str()
                        .map_or_else(|| p["configured"].to_string(), str::to_owned)
                ));
            }
        }
    }
    if tuned == 0 {
        out.push_str("every server runs its configured policy\n");
    }
    let proposals = list("proposals");
    for p in &proposals {
        out.push_str(&format!("PROPOSED {}\n", change_line(p)));
    }
    if !proposals.is_empty() {
        out.push_str("`warden tune apply` makes them\n");
    }
    for c in list("history").iter().take(20) {
        let state = if c["in_force"] == true { "in force" } else { "reverted" };
        out.push_str(&format!("{}  {}  {state}\n", c["at"].as_str().unwrap_or(""), change_line(c)));
    }
    out
}
