//! Tuning end to end: real slow tool calls through the gateway to `warden misbehave` come
//! close to the call timeout; `warden tune apply` raises it (recorded, announced as an
//! event), a call that timed out before now succeeds; `warden tune revert` puts it back and
//! the call times out again; a value set by hand survives a restart of Warden on the same
//! database, and is dropped once the config's own value changes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use warden_app::App;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `warden ARGS --url URL`; returns its exit code, stdout and stderr.
async fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--url", url]);
    let out = tokio::process::Command::new(warden())
        .args(&all)
        .env("WARDEN_LOG_DIR", "none")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn text(timeout: &str) -> String {
    format!(
        r#"{{ "mcpServers": {{ "slow": {} }}, "warden": {{ "metrics_interval": "1s" }} }}"#,
        misbehave(&[], &format!(r#", "timeout": "{timeout}", {FAST_HEALTH}, {FAST_RESTART}"#)),
    )
}

async fn boot(text: &str, dir: &std::path::Path) -> (App, String) {
    let app = start_in(config_text(text), dir, true, None).await;
    healthy_pid(&app, "slow").await;
    let url = format!("http://{}", app.http_addr().unwrap());
    (app, url)
}

async fn client(url: &str) -> RunningService<RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(format!("{url}/mcp")),
    );
    ClientConfig::new(ClientCapabilities::default(), Implementation::new("tuning", "0"))
        .serve(transport)
        .await
        .unwrap()
}

/// Calls `slow__sleep` for `ms`; whether it succeeded.
async fn sleep_call(c: &RunningService<RoleClient, ClientConfig>, ms: u64) -> bool {
    let args = json!({ "ms": ms });
    c.peer()
        .call_tool(
            CallToolRequestParams::new("slow__sleep")
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .is_ok_and(|r| r.is_error != Some(true))
}

fn timeout_param(v: &Value) -> Value {
    v["servers"][0]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["parameter"] == "timeout")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_raise_the_timeout_recorded_and_reversible_across_restarts() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let (app, url) = boot(&text("1s"), dir.path()).await;
        let mut events = app.bus().subscribe();
        let c = client(&url).await;

        // Nothing learned yet: the configured policy, no proposal.
        let v = get(&format!("{url}/api/tuning")).await;
        assert_eq!(timeout_param(&v)["value"], 1000.0, "{v}");
        assert_eq!(v["proposals"], json!([]), "{v}");

        // Five calls of 850 ms against a 1 s timeout (≥ 80 %), and one that times out.
        let calls: Vec<_> = (0..5).map(|_| sleep_call(&c, 850)).collect();
        assert!(futures::future::join_all(calls).await.into_iter().all(|ok| ok));
        assert!(!sleep_call(&c, 1_300).await, "1.3 s must time out at 1 s");

        // The MCP tool lists the change without making it (dry run)…
        let r = c
            .peer()
            .call_tool(CallToolRequestParams::new("warden__performance_optimizer").with_arguments(
                json!({ "action": "apply_tuning", "dry_run": true }).as_object().unwrap().clone(),
            ))
            .await
            .unwrap();
        let proposals = r.structured_content.unwrap()["proposals"].clone();
        assert_eq!(proposals.as_array().map(Vec::len), Some(1), "{proposals}");
        assert_eq!(proposals[0]["parameter"], "timeout");
        let to = proposals[0]["to"].as_f64().unwrap();
        assert!((2_000.0..=4_000.0).contains(&to), "2 × the slowest, at most 4 × 1 s: {to}");
        assert_eq!(timeout_param(&get(&format!("{url}/api/tuning")).await)["value"], 1000.0);

        // …and `warden tune apply` makes it: recorded, announced, in force at once.
        let (code, out, err) = cli(&url, &["tune", "apply"]).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("slow timeout: 1s →"), "{out}");
        let v = get(&format!("{url}/api/tuning")).await;
        assert_eq!(timeout_param(&v)["value"], to, "{v}");
        let change = v["history"][0].clone();
        assert_eq!(
            (&change["parameter"], &change["rule"], &change["source"], &change["in_force"]),
            (&json!("timeout"), &json!("slow_calls"), &json!("cli"), &json!(true)),
            "{change}"
        );
        assert!(change["evidence"]["slowest_call_ms"].as_f64().unwrap() >= 850.0, "{change}");
        let id = change["id"].as_i64().unwrap();
        let start = Instant::now();
        loop {
            let e =
                tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
            if e.kind.name() == "tuning_changed" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no tuning_changed event");
        }
        assert!(sleep_call(&c, 1_300).await, "1.3 s fits the raised timeout");
        let (code, out, _) = cli(&url, &["tune", "show"]).await;
        assert_eq!(code, 0);
        assert!(out.contains("TUNED") && out.contains("in force"), "{out}");
        // Durations as durations: "(configured 1s)", never raw milliseconds ("1000.0").
        assert!(out.contains("(configured 1s)") && !out.contains("1000.0"), "{out}");

        // Reverted: back to 1 s, the same call times out again; reverting twice is refused.
        let (code, out, err) = cli(&url, &["tune", "revert", &id.to_string()]).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("back to 1s"), "{out}");
        assert!(!sleep_call(&c, 1_300).await, "reverted: 1.3 s times out again");
        let (status, v) = post(&format!("{url}/api/tuning/{id}/revert"), json!({})).await;
        assert_eq!(status, 409, "{v}");

        // By hand, inside the safe range only; a weight needs an instance.
        let (code, _, err) = cli(&url, &["tune", "set", "slow", "timeout", "1h"]).await;
        assert_ne!(code, 0);
        assert!(err.contains("outside the safe range"), "{err}");
        let (status, v) = post(
            &format!("{url}/api/tuning/set"),
            json!({ "server": "slow", "parameter": "weight", "value": 0.5 }),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains("instance"), "{v}");
        let (code, out, err) = cli(&url, &["tune", "set", "slow", "timeout", "3s"]).await;
        assert_eq!(code, 0, "{out}{err}");
        drop(c);
        app.shutdown().await;

        // A restart on the same database puts the change back…
        let (app, url) = boot(&text("1s"), dir.path()).await;
        let v = get(&format!("{url}/api/tuning")).await;
        assert_eq!(timeout_param(&v)["value"], 3000.0, "{v}");
        let c = client(&url).await;
        assert!(sleep_call(&c, 1_300).await, "restored: 3 s");
        drop(c);
        app.shutdown().await;

        // …unless the config's own value changed since: then it is marked reverted.
        let (app, url) = boot(&text("2s"), dir.path()).await;
        let v = get(&format!("{url}/api/tuning")).await;
        assert_eq!(timeout_param(&v)["value"], 2000.0, "{v}");
        let newest = &v["history"][0];
        assert_eq!(newest["in_force"], false, "{v}");
        assert!(newest["reverted_reason"].as_str().unwrap().contains("config changed"), "{v}");
        app.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

/// Calls forwarded to `instance`, from `/metrics`.
async fn calls_to(url: &str, instance: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("warden_call_duration_seconds_count"))
        .find(|l| l.contains(&format!("server_instance=\"{instance}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_weight_sends_fewer_calls_to_a_replica() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"{{ "mcpServers": {{ "w": {} }} }}"#,
            misbehave(&[], &format!(r#", "replicas": 2, {FAST_HEALTH}"#)),
        );
        let app = start_in(config_text(&text), dir.path(), true, None).await;
        let url = format!("http://{}", app.http_addr().unwrap());
        let start = Instant::now();
        while app.registry().server("w").unwrap().views().iter().any(|v| !v.state.is_routable()) {
            assert!(start.elapsed() < Duration::from_secs(30), "replicas not up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = client(&url).await;
        let echo = json!({ "text": "x" });
        // `n` sequential calls; how many each replica took.
        let calls = |n: usize| {
            let (c, url, echo) = (&c, &url, &echo);
            async move {
                let before = [calls_to(url, "w#0").await, calls_to(url, "w#1").await];
                for _ in 0..n {
                    c.peer()
                        .call_tool(
                            CallToolRequestParams::new("w__echo")
                                .with_arguments(echo.as_object().unwrap().clone()),
                        )
                        .await
                        .unwrap();
                }
                [calls_to(url, "w#0").await - before[0], calls_to(url, "w#1").await - before[1]]
            }
        };
        // Unweighted, power of two choices on peak-EWMA latency keeps to the replica that
        // answers faster: find it…
        let split = calls(50).await;
        assert_eq!(split[0] + split[1], 50, "every call counted once: {split:?}");
        let fast = usize::from(split[1] > split[0]);
        // …and give it a tenth of the weight: it looks ten times as loaded, the other takes over.
        let (status, v) = post(
            &format!("{url}/api/tuning/set"),
            json!({ "server": "w", "parameter": "weight", "instance": fast, "value": 0.1 }),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let after = calls(100).await;
        assert!(after[fast] <= 20, "unweighted {split:?}, then w#{fast} at 0.1: {after:?}");
        drop(c);
        app.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}
