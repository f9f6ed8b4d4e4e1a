//! Reports end to end: real tool calls through the gateway to `warden misbehave`, then the
//! `warden report` binary against the running Warden's API shows them per tool; a SIGKILL
//! shows up in `warden report failures` as a crash recovered by a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use warden_app::App;
use warden_core::InstanceState;

const LIMIT: Duration = Duration::from_secs(90);

/// Runs `warden report ARGS --url URL`; returns its exit code and stdout.
async fn report(url: &str, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(warden())
        .arg("report")
        .args(args)
        .args(["--url", url])
        .env_remove("WARDEN_TOKEN")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "warden report {args:?} wrote to stderr: {stderr}");
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

async fn report_json(url: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out) = report(url, &all).await;
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn healthy(app: &App, after_restarts: u32) -> u32 {
    let start = Instant::now();
    loop {
        let v = app.registry().server("tools").unwrap().views()[0].clone();
        if v.state == InstanceState::Healthy && v.restarts >= after_restarts {
            return v.pid.unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not healthy: {}", v.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tool<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["server"] == "tools" && t["tool"] == name)
        .unwrap_or_else(|| panic!("no tools/{name} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_show_real_tool_calls_and_a_crash_with_its_restart() {
    tokio::time::timeout(LIMIT, async {
        let text = format!(
            r#"{{ "mcpServers": {{ "tools": {} }}, "warden": {{ "metrics_interval": "1s" }} }}"#,
            misbehave(
                &[],
                &format!(
                    r#", {FAST_HEALTH}, {FAST_RESTART}, "objective": {{ "availability": 99 }}"#
                )
            ),
        );
        let (app, _dir, addr) = listening(config_text(&text), None).await;
        let url = format!("http://{addr}");
        let pid = healthy(&app, 0).await;

        // Real calls through the gateway: echo three times with the same arguments, add once,
        // and a tool that answers with isError (a call, not an error).
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(format!("{url}/mcp")),
        );
        let info =
            ClientConfig::new(ClientCapabilities::default(), Implementation::new("reports", "0"));
        let client = info.serve(transport).await.unwrap();
        let call = |name: &str, args: Value| {
            client.peer().call_tool(
                CallToolRequestParams::new(name.to_owned())
                    .with_arguments(args.as_object().unwrap().clone()),
            )
        };
        for _ in 0..3 {
            call("tools__echo", json!({"text": "same"})).await.unwrap();
        }
        call("tools__add", json!({"a": 1, "b": 2})).await.unwrap();
        let failed = call("tools__fail", json!({})).await.unwrap();
        assert_eq!(failed.is_error, Some(true));

        // Counted at once: the report writes the gateway's counts before it reads them.
        let v = report_json(&url, &["performance"]).await;
        let echo = tool(&v, "echo");
        assert_eq!(
            (echo["calls"].as_u64(), echo["errors"].as_u64(), echo["repeats"].as_u64()),
            (Some(3), Some(0), Some(2)),
            "{v}"
        );
        assert!(echo["mean_ms"].as_f64().unwrap() > 0.0, "{v}");
        assert_eq!(tool(&v, "add")["calls"], 1);
        assert_eq!(
            (&tool(&v, "fail")["calls"], &tool(&v, "fail")["errors"]),
            (&json!(1), &json!(0)),
            "isError is the tool's answer"
        );
        let hours = &v["usage_by_hour"][0];
        let h = hours["busiest_hour"].as_u64().unwrap() as usize;
        assert_eq!(hours["calls"][h], 5, "{v}");
        let (code, table) =
            report(&url, &["performance", "--since", "1h", "--server", "tools"]).await;
        assert_eq!(code, 0);
        assert!(table.contains("tools__echo") && table.contains("SUGGESTIONS"), "{table}");

        // A crash: Warden restarts the child; the failures report shows both.
        signal(pid, Signal::SIGKILL);
        healthy(&app, 1).await;
        let start = Instant::now();
        let v = loop {
            let v = report_json(&url, &["failures", "--since", "10m"]).await;
            if v["recoveries"]["restart"]["count"].as_u64() >= Some(1) {
                break v;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no recovery recorded: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(v["by_class"]["crash"]["count"].as_u64() >= Some(1), "{v}");
        assert!(v["mttr_seconds"].as_f64().unwrap() > 0.0, "{v}");
        assert_eq!(v["top_offenders"][0]["instance"], "tools#0", "{v}");
        let (code, table) = report(&url, &["failures"]).await;
        assert_eq!(code, 0);
        assert!(
            table.contains("crash") && table.contains("restart") && table.contains("tools#0"),
            "{table}"
        );

        // Availability against the objective, and capacity: numbers or explicit notes.
        // (Seconds of watching and one crash: the objective is missed, and the exit code says so.)
        let (code, out) = report(&url, &["availability", "--server", "tools", "--json"]).await;
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["servers"][0]["objective"], 0.99, "{v}");
        assert_eq!(code, if v["servers"][0]["met"] == false { 1 } else { 0 }, "{v}");
        assert!(v["servers"][0]["downtime_seconds"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["servers"][0]["error_budget"]["consumed_seconds"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["servers"][0]["instances"][0]["incidents"].as_u64() >= Some(1), "{v}");
        let v = report_json(&url, &["capacity"]).await;
        assert_eq!(v["capacity_per_instance"], 10.0, "{v}");
        assert!(v["servers"][0]["add_replica"]["note"].is_string(), "{v}");
        // A bad period is refused by the API, naming the parameter.
        let out = tokio::process::Command::new(warden())
            .args(["report", "failures", "--since", "yesterday", "--url", &url])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("since"), "{out:?}");

        drop(client);
        app.shutdown().await;
    })
    .await
    .expect("the test finished within its time limit");
}
