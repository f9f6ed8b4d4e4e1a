//! The seeds' MCP tools end to end (issue 13 item 1): `integration_monitor`,
//! `failover_manager`, `performance_optimizer` and `failover_coordinator` with the seeds'
//! parameters and names (`warden.tools.prefix`), through a real rmcp client; and the
//! `fallback_strategy` each server may carry, deciding who serves a dead server's calls.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use warden_app::App;
use warden_core::InstanceState;

const LIMIT: Duration = Duration::from_secs(120);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

type Client = RunningService<RoleClient, ()>;

async fn client(addr: &str) -> Client {
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
    );
    ().serve(transport).await.expect("the client connects")
}

async fn call(c: &Client, tool: &str, args: Value) -> Result<CallToolResult, rmcp::ServiceError> {
    c.peer()
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
}

/// A tool's structured answer, and whether it is an error.
async fn tool(c: &Client, name: &str, args: Value) -> (Value, bool) {
    let r = call(c, name, args.clone()).await.unwrap_or_else(|e| panic!("{name} {args}: {e}"));
    (r.structured_content.clone().unwrap_or_default(), r.is_error == Some(true))
}

async fn get(addr: &str, path: &str) -> Value {
    reqwest::get(format!("http://{addr}{path}")).await.unwrap().json().await.unwrap()
}

fn names(v: &Value) -> Vec<String> {
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn wait_state(app: &App, server: &str, want: InstanceState) -> u32 {
    let start = Instant::now();
    loop {
        let v = app.registry().server(server).unwrap().views()[0].clone();
        if v.state == want {
            return v.pid.unwrap_or(0);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{server} never {want}: {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const NO_RESTART: &str = r#""restart": { "policy": "no" }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_tools_answer_under_their_names_with_their_parameters() {
    limited(async {
        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{
                "steady": {},
                "flaky": {} }},
               "integrations": {{ "port": {{ "tcp": "127.0.0.1:1" }} }},
               "warden": {{ "tools": {{ "prefix": "orchestrator_" }} }} }}"#,
            misbehave(
                &[],
                &format!(
                    r#", {FAST_HEALTH}, "tags": ["search", "prod"], "smoke_test": {{ "tool": "echo", "arguments": {{ "text": "ok" }} }}"#
                ),
            ),
            misbehave(
                &[],
                &format!(r#", {FAST_HEALTH}, {NO_RESTART}, "tags": ["prod"], "smoke_test": "fail""#),
            ),
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "steady").await;
        let flaky_pid = healthy_pid(&app, "flaky").await;
        let c = client(&addr).await;

        // The seeds' names, and strict schemas.
        let tools = c.peer().list_all_tools().await.unwrap();
        let listed: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        for t in ["integration_monitor", "failover_manager", "performance_optimizer", "failover_coordinator"] {
            assert!(listed.contains(&format!("orchestrator_{t}")), "{t}: {listed:?}");
        }
        assert!(!listed.iter().any(|n| n.starts_with("warden__")), "{listed:?}");
        let monitor = tools.iter().find(|t| t.name == "orchestrator_integration_monitor").unwrap();
        let schema = Value::Object((*monitor.input_schema).clone());
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["check_depth"]["enum"], json!(["basic", "deep", "comprehensive"]));

        // server_types filters by name, tag and kind; a name that matches nothing is an error.
        let m = "orchestrator_integration_monitor";
        let hc = |types: Value| json!({ "action": "health_check", "server_types": types });
        assert_eq!(names(&tool(&c, m, hc(json!(["steady"]))).await.0), ["steady"]);
        assert_eq!(names(&tool(&c, m, hc(json!(["prod"]))).await.0), ["flaky", "steady"]);
        assert_eq!(names(&tool(&c, m, hc(json!(["tcp"]))).await.0), ["port"]);
        let (v, err) = tool(&c, m, hc(json!(["nope"]))).await;
        let e = v["error"].as_str().unwrap();
        assert!(err && e.contains("names no server, kind or tag") && e.contains("steady"), "{v}");

        // Unknown parameters and values are refused with the accepted ones.
        let (v, err) = tool(&c, m, json!({ "action": "health_check", "depth": "deep" })).await;
        assert!(err && v["error"].as_str().unwrap().contains("check_depth"), "{v}");
        let (v, err) = tool(&c, m, json!({ "action": "health_check", "check_depth": "full" })).await;
        assert!(err && v["error"].as_str().unwrap().contains("basic, deep, comprehensive"), "{v}");

        // deep probes and lists now; comprehensive calls each server's smoke test.
        let (v, err) = tool(
            &c,
            m,
            json!({ "action": "health_check", "server_types": ["steady"], "check_depth": "deep" }),
        )
        .await;
        let row = &v["servers"][0]["checked_now"][0];
        assert!(!err && row["ok"] == true && row["tools"] == 5 && row["catalog_current"] == true, "{v}");
        assert!(row["probe_ms"].as_f64().unwrap() > 0.0, "{v}");
        let (v, _) = tool(
            &c,
            m,
            json!({ "action": "health_check", "server_types": ["prod"], "check_depth": "comprehensive" }),
        )
        .await;
        let smoke = |name: &str| {
            let s = v["servers"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap();
            let t = &s["checked_now"][0]["smoke_test"];
            (t["tool"].clone(), t["ok"].clone())
        };
        assert_eq!(smoke("steady"), (json!("echo"), json!(true)), "{v}");
        assert_eq!(smoke("flaky"), (json!("fail"), json!(false)), "{v}");
        assert_eq!(v["healthy"], false, "a failing smoke test is not healthy: {v}");

        // auto_recovery restarts what the check finds down (flaky never restarts itself).
        signal(flaky_pid, Signal::SIGKILL);
        wait_state(&app, "flaky", InstanceState::Offline).await;
        let (v, _) = tool(
            &c,
            m,
            json!({ "action": "health_check", "server_types": ["flaky"], "auto_recovery": true }),
        )
        .await;
        let rec = &v["servers"][0]["recovery"];
        assert_eq!((rec[0]["action"].clone(), rec[0]["was"].clone()), (json!("restart"), json!("offline")), "{v}");
        let new_pid = wait_state(&app, "flaky", InstanceState::Healthy).await;
        assert_ne!(new_pid, flaky_pid);

        // failover_manager acts on every server of a tag, and sets their strategy.
        let (v, err) = tool(
            &c,
            "orchestrator_failover_manager",
            json!({ "action": "enable_failover", "integration_type": "prod", "fallback_strategy": "fail_fast" }),
        )
        .await;
        assert!(!err, "{v}");
        let strategies: Vec<&Value> = v["servers"].as_array().unwrap().iter().map(|s| &s["fallback_strategy"]).collect();
        assert_eq!(strategies, [&json!("fail_fast"), &json!("fail_fast")], "{v}");
        let (v, _) = tool(
            &c,
            "orchestrator_failover_manager",
            json!({ "action": "trigger_recovery", "integration_type": "steady", "recovery_priority": "scheduled" }),
        )
        .await;
        assert_eq!(v["scheduled"], json!([]), "nothing is down: {v}");
        let (v, err) = tool(
            &c,
            "orchestrator_failover_manager",
            json!({ "action": "enable_failover", "integration_type": "steady", "recovery_priority": "soon" }),
        )
        .await;
        assert!(err && v["error"].as_str().unwrap().contains("immediate, scheduled, background"), "{v}");

        // failover_coordinator says what Warden does for a class of failure.
        let (v, _) = tool(
            &c,
            "orchestrator_failover_coordinator",
            json!({ "server_type": "steady", "failure_type": "hang" }),
        )
        .await;
        assert_eq!(v["servers"][0]["instances"], "kill_and_restart", "{v}");
        assert_eq!(v["servers"][0]["calls"], "fail", "fail_fast was set above: {v}");
        let (v, err) = tool(
            &c,
            "orchestrator_failover_coordinator",
            json!({ "server_type": "steady", "failure_type": "oom" }),
        )
        .await;
        assert!(err && v["error"].as_str().unwrap().contains("rate_limit"), "{v}");

        // performance_optimizer: a learning period and a scope.
        let (v, err) = tool(
            &c,
            "orchestrator_performance_optimizer",
            json!({ "action": "suggest_optimizations", "learning_period": "session", "optimization_scope": "error_rates" }),
        )
        .await;
        assert!(!err && v["optimization_scope"] == "error_rates", "{v}");
        for s in v["suggestions"].as_array().unwrap() {
            assert!(["errors", "breaker", "fallback"].contains(&s["rule"].as_str().unwrap()), "{v}");
        }
        let (v, err) = tool(
            &c,
            "orchestrator_performance_optimizer",
            json!({ "action": "analyze_patterns", "learning_period": "fortnight" }),
        )
        .await;
        assert!(err && v["error"].as_str().unwrap().contains("session, hour, day, week"), "{v}");

        // /api/servers: Warden's view with mcp-hub's fields beside it (seed 004's jq lines).
        let v = get(&addr, "/api/servers").await;
        let steady = v["servers"].as_array().unwrap().iter().find(|s| s["name"] == "steady").unwrap();
        assert_eq!(steady["status"], "healthy", "{steady}");
        assert_eq!(steady["hubStatus"], "connected", "{steady}");
        assert_eq!(steady["capabilities"]["tools"].as_array().unwrap().len(), 5, "{steady}");
        assert!(steady["uptime"].is_number() && steady["error"].is_null(), "{steady}");
        assert_eq!((steady["tags"].clone(), steady["fallback_strategy"].clone()), (json!(["search", "prod"]), json!("fail_fast")));
        let port = v["servers"].as_array().unwrap().iter().find(|s| s["name"] == "port").unwrap();
        assert!(port["error"].as_str().is_some_and(|e| !e.is_empty()), "{port}");
        drop(c);
        app.shutdown().await;
    })
    .await;
}

fn stale(r: &CallToolResult) -> Option<Value> {
    serde_json::to_value(r).unwrap()["_meta"].get(warden_gateway::STALE_META).cloned()
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect()
}

/// The four strategies with the same dead primary: graceful degradation is covered by the
/// gateway tests; here fail-fast refuses at once and cannot be failed over, manual waits for
/// the operator and does not fail back by itself, and offline mode answers read-only calls it
/// has seen from their last result (marked stale) and lists only those tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_strategies_decide_who_serves_a_dead_server() {
    limited(async {
        let dead = |strategy: &str, fallback: bool| {
            let fb = if fallback { r#", "fallback": ["backup"]"# } else { "" };
            misbehave(
                &[],
                &format!(r#", {FAST_HEALTH}, {NO_RESTART}, "fallback_strategy": "{strategy}"{fb}"#),
            )
        };
        let cfg = config(&[
            ("ff", dead("fail_fast", true)),
            ("man", dead("manual", true)),
            ("off", dead("offline_mode", false)),
            ("backup", misbehave(&[], "")),
        ]);
        let (app, _dir, addr) = listening(cfg, None).await;
        let mut pids = Vec::new();
        for s in ["ff", "man", "off", "backup"] {
            pids.push(healthy_pid(&app, s).await);
        }
        let c = client(&addr).await;
        let echo = async |server: &str, t: &str| {
            call(&c, &format!("{server}__echo"), json!({ "text": t })).await
        };
        assert_eq!(text(&echo("off", "kept").await.unwrap()), "kept");
        assert!(stale(&echo("off", "kept").await.unwrap()).is_none(), "fresh while it serves");
        for pid in &pids[..3] {
            signal(*pid, Signal::SIGKILL);
        }
        for s in ["ff", "man", "off"] {
            wait_state(&app, s, InstanceState::Offline).await;
        }
        let unavailable = |r: Result<CallToolResult, rmcp::ServiceError>| match r {
            Err(rmcp::ServiceError::McpError(e)) => e.code.0 == warden_gateway::UNAVAILABLE,
            _ => false,
        };

        // Fail-fast: no fallback tier, and none to fail over to.
        assert!(unavailable(echo("ff", "x").await), "fail_fast must not use the fallback");
        let (v, err) = tool(
            &c,
            "warden__failover_manager",
            json!({ "action": "trigger_failover", "server": "ff" }),
        )
        .await;
        assert!(err && v["error"].as_str().unwrap().contains("fail_fast"), "{v}");

        // Manual: nothing moves until the operator fails over; then it stays failed over.
        assert!(unavailable(echo("man", "x").await), "manual must not fail over by itself");
        let (v, err) = tool(
            &c,
            "warden__failover_manager",
            json!({ "action": "trigger_failover", "server": "man" }),
        )
        .await;
        assert!(!err && v["served_by"] == "backup", "{v}");
        assert_eq!(text(&echo("man", "via backup").await.unwrap()), "via backup");
        let (v, _) = tool(
            &c,
            "warden__failover_manager",
            json!({ "action": "trigger_recovery", "server": "man" }),
        )
        .await;
        assert_eq!(v["serving"], true, "immediate waits until it serves again: {v}");
        let view = get(&addr, "/api/servers/man").await;
        assert_eq!(view["served_by"], "backup", "no automatic fail-back: {view}");
        tool(
            &c,
            "warden__failover_manager",
            json!({ "action": "restore_primary", "server": "man" }),
        )
        .await;
        let view = get(&addr, "/api/servers/man").await;
        assert_eq!(view["served_by"], "man", "{view}");

        // Offline mode: the last good result, marked stale; nothing for what it never saw, and
        // nothing for a tool that is not read-only.
        let r = echo("off", "kept").await.expect("answered from the last good result");
        assert_eq!(text(&r), "kept");
        let meta = stale(&r).expect("marked stale");
        assert!(meta["age_ms"].as_i64().is_some() && meta["stored_at"].is_string(), "{meta}");
        assert!(unavailable(echo("off", "never seen").await));
        assert!(unavailable(call(&c, "off__increment", json!({})).await));
        let listed: Vec<String> =
            c.peer().list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
        assert!(listed.contains(&"off__echo".to_owned()), "{listed:?}");
        assert!(!listed.contains(&"off__increment".to_owned()), "{listed:?}");
        let metrics =
            reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        assert!(
            metrics.lines().any(|l| l.starts_with("warden_stale_answers") && l.ends_with(" 1")),
            "{}",
            metrics.lines().filter(|l| l.contains("stale")).collect::<Vec<_>>().join("\n")
        );
        drop(c);
        app.shutdown().await;
    })
    .await;
}
