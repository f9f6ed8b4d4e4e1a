//! End to end: real MCP clients (rmcp) through Warden's gateway to real servers.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::{ClientHandler, ServiceExt};
use warden_app::{App, RunOptions};
use warden_core::InstanceState;
use warden_store::Location;

const LIMIT: Duration = Duration::from_secs(90);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// A client that counts `list_changed` notifications of each kind.
#[derive(Clone, Default)]
struct Client {
    list_changed: Arc<AtomicU32>,
    prompts_changed: Arc<AtomicU32>,
    resources_changed: Arc<AtomicU32>,
    logs: Arc<AtomicU32>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("gateway-test", "0"))
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed.fetch_add(1, Ordering::SeqCst);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.prompts_changed.fetch_add(1, Ordering::SeqCst);
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.resources_changed.fetch_add(1, Ordering::SeqCst);
    }

    #[allow(deprecated)] // logging is deprecated by SEP-2577 (2026-07-28); servers still use it
    async fn on_logging_message(
        &self,
        _: rmcp::model::LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.logs.fetch_add(1, Ordering::SeqCst);
    }
}

struct Served {
    app: App,
    _dir: tempfile::TempDir,
}

async fn serve(config: warden_config::Config) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(RunOptions {
        config,
        database: Location::Sqlite(dir.path().join("w.db")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        connectors: None,
        http_threads: None,
    })
    .await
    .unwrap();
    Served { app, _dir: dir }
}

impl Served {
    async fn healthy(&self, names: &[&str]) {
        let start = Instant::now();
        while !names.iter().all(|n| {
            self.app
                .registry()
                .server(n)
                .unwrap()
                .views()
                .iter()
                .all(|v| v.state == InstanceState::Healthy)
        }) {
            assert!(start.elapsed() < Duration::from_secs(30), "servers did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn client(&self, path: &str, handler: Client) -> RunningService<RoleClient, Client> {
        let url = format!("http://{}{path}", self.app.http_addr().unwrap());
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(url),
        );
        handler.serve(transport).await.expect("the client connects")
    }
}

async fn tool_names(c: &RunningService<RoleClient, Client>) -> Vec<String> {
    c.peer().list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect()
}

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

fn text(r: &rmcp::model::CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_serves_every_server_and_a_dead_one_fails_fast() {
    limited(async {
        let cfg = config(&[
            ("a", misbehave(&[], "")),
            ("b", misbehave(&[], "")),
            ("dead", misbehave(&["--exit-on-start"], r#", "restart": { "policy": "no" }"#)),
        ]);
        let w = serve(cfg).await;
        w.healthy(&["a", "b"]).await;
        let c = w.client("/mcp", Client::default()).await;
        let tools = c.peer().list_all_tools().await.unwrap();
        let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        for want in ["a__echo", "a__add", "b__echo", "b__sleep"] {
            assert!(names.contains(&want.to_owned()), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("dead__")), "{names:?}");
        assert!(tools.iter().any(|t| t.name == "a__echo" && t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true)));

        let r = c.peer().call_tool(CallToolRequestParams::new("a__echo").with_arguments(args(serde_json::json!({"text": "hello"})))).await.unwrap();
        assert_eq!(text(&r), "hello");
        let r = c.peer().call_tool(CallToolRequestParams::new("b__add").with_arguments(args(serde_json::json!({"a": 2, "b": 3})))).await.unwrap();
        assert_eq!(text(&r), "5");
        // A tool error is the tool's answer, passed through untouched.
        let r = c.peer().call_tool(CallToolRequestParams::new("a__fail")).await.unwrap();
        assert_eq!(r.is_error, Some(true));

        let started = Instant::now();
        let err = c.peer().call_tool(CallToolRequestParams::new("dead__echo").with_arguments(args(serde_json::json!({"text": "x"})))).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "a dead server answers at once: {:?}", started.elapsed());
        match err {
            rmcp::ServiceError::McpError(e) => {
                assert_eq!(e.code.0, warden_gateway::UNAVAILABLE, "{e:?}");
                let data = e.data.unwrap();
                assert_eq!(data["server"], "dead");
                assert!(data["reason"].as_str().unwrap().contains("exited with code 1"), "{data}");
                assert!(data["retry_after_ms"].is_u64(), "{data}");
            }
            other => panic!("{other:?}"),
        }
        let err = c.peer().call_tool(CallToolRequestParams::new("nonsense")).await.unwrap_err();
        assert!(matches!(err, rmcp::ServiceError::McpError(ref e) if e.code == rmcp::model::ErrorCode::INVALID_PARAMS), "{err:?}");

        // One server, unprefixed.
        let one = w.client("/servers/b/mcp", Client::default()).await;
        let names: Vec<String> = tool_names(&one).await;
        assert!(names.contains(&"echo".to_owned()) && !names.iter().any(|n| n.contains("__")), "{names:?}");
        let r = one.peer().call_tool(CallToolRequestParams::new("echo").with_arguments(args(serde_json::json!({"text": "solo"})))).await.unwrap();
        assert_eq!(text(&r), "solo");
        drop(c);
        drop(one);
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_calls_survive_the_death_of_one_replica() {
    limited(async {
        let entry = misbehave(&["--latency", "2ms"], r#", "replicas": 2, "trusted": true"#);
        let w = serve(config(&[("pair", entry)])).await;
        w.healthy(&["pair"]).await;
        let c = w.client("/mcp", Client::default()).await;
        let victim = w.app.registry().server("pair").unwrap().views()[0].pid.unwrap();
        let mut failures = vec![];
        for i in 0..200 {
            if i == 60 {
                signal(victim, Signal::SIGKILL);
            }
            let r = c
                .peer()
                .call_tool(
                    CallToolRequestParams::new("pair__echo")
                        .with_arguments(args(serde_json::json!({"text": format!("{i}")}))),
                )
                .await;
            match r {
                Ok(r) if text(&r) == format!("{i}") => {}
                other => failures.push((i, format!("{other:?}"))),
            }
        }
        assert!(failures.is_empty(), "client-visible failures: {failures:?}");
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_tools_leave_the_list_and_come_back_with_list_changed() {
    limited(async {
        let slow_restart =
            r#", "restart": { "backoff": { "initial": "3s", "max": "3s", "jitter": 0 } }"#;
        let w =
            serve(config(&[("a", misbehave(&[], slow_restart)), ("b", misbehave(&[], ""))])).await;
        w.healthy(&["a", "b"]).await;
        let handler = Client::default();
        let c = w.client("/mcp", handler.clone()).await;
        let before = handler.list_changed.load(Ordering::SeqCst);
        let pid = w.app.registry().server("a").unwrap().views()[0].pid.unwrap();
        signal(pid, Signal::SIGKILL);
        let start = Instant::now();
        while handler.list_changed.load(Ordering::SeqCst) == before {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "no list_changed after the server died"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let names: Vec<String> = tool_names(&c).await;
        assert!(
            !names.iter().any(|n| n.starts_with("a__"))
                && names.iter().any(|n| n.starts_with("b__")),
            "{names:?}"
        );
        let after_drop = handler.list_changed.load(Ordering::SeqCst);
        let start = Instant::now();
        loop {
            let names: Vec<String> = tool_names(&c).await;
            if names.iter().any(|n| n.starts_with("a__")) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(15), "a's tools never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The watcher notices within 200 ms; the list itself may be seen a moment earlier.
        let start = Instant::now();
        while handler.list_changed.load(Ordering::SeqCst) == after_drop {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "no list_changed when they came back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_takes_over_and_hands_back() {
    limited(async {
        let primary = misbehave(&[], r#", "fallback": ["backup"], "restart": { "backoff": { "initial": "3s", "max": "3s", "jitter": 0 } }"#);
        let w = serve(config(&[("primary", primary), ("backup", misbehave(&[], ""))])).await;
        w.healthy(&["primary", "backup"]).await;
        let handler = Client::default();
        let c = w.client("/mcp", handler.clone()).await;
        let before = handler.list_changed.load(Ordering::SeqCst);
        let pid = w.app.registry().server("primary").unwrap().views()[0].pid.unwrap();
        signal(pid, Signal::SIGKILL);
        let start = Instant::now();
        while w.app.registry().server("primary").unwrap().views()[0].state.is_routable() {
            assert!(start.elapsed() < Duration::from_secs(2));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let overview = w.app.registry().overview();
        let p = overview.servers.iter().find(|s| s.name == "primary").unwrap();
        assert_eq!(p.served_by.as_deref(), Some("backup"));
        let r = c.peer().call_tool(CallToolRequestParams::new("primary__echo").with_arguments(args(serde_json::json!({"text": "via backup"})))).await.unwrap();
        assert_eq!(text(&r), "via backup");
        let names: Vec<String> = tool_names(&c).await;
        assert!(names.contains(&"primary__echo".to_owned()), "the fallback keeps the primary's tools listed: {names:?}");
        // The list now comes from the fallback: clients are told.
        let start = Instant::now();
        while handler.list_changed.load(Ordering::SeqCst) == before {
            assert!(start.elapsed() < Duration::from_secs(2), "no list_changed when the fallback took over");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let engaged = handler.list_changed.load(Ordering::SeqCst);
        // Fail-back once the primary is healthy again, and clients are told again.
        w.healthy(&["primary"]).await;
        let overview = w.app.registry().overview();
        assert_eq!(overview.servers.iter().find(|s| s.name == "primary").unwrap().served_by.as_deref(), Some("primary"));
        let start = Instant::now();
        while handler.list_changed.load(Ordering::SeqCst) == engaged {
            assert!(start.elapsed() < Duration::from_secs(2), "no list_changed when the primary took back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = c.peer().call_tool(CallToolRequestParams::new("primary__echo").with_arguments(args(serde_json::json!({"text": "home"})))).await.unwrap();
        assert_eq!(text(&r), "home");
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_run_stdio_is_one_mcp_server_for_a_desktop_client() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{ "mcpServers": {{ "a": {}, "b": {} }} }}"#,
                misbehave(&[], ""),
                misbehave(&[], "")
            ),
        )
        .unwrap();
        let mut child = warden_stdio(&cfg, &dir.path().join("w.db"), &["--listen", "127.0.0.1:0"]);
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let c = Client::default().serve((stdout, stdin)).await.expect("handshake over stdio");
        let start = Instant::now();
        loop {
            let names: Vec<String> = tool_names(&c).await;
            if names.contains(&"a__echo".to_owned()) && names.contains(&"b__echo".to_owned()) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "tools never appeared: {names:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = c
            .peer()
            .call_tool(
                CallToolRequestParams::new("b__echo")
                    .with_arguments(args(serde_json::json!({"text": "over stdio"}))),
            )
            .await
            .unwrap();
        assert_eq!(text(&r), "over stdio");
        // The desktop client quits: closing stdin stops Warden and everything it started.
        let pid = child.id().unwrap();
        let tree = descendants(pid);
        drop(c);
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("warden exits when stdin closes")
            .unwrap();
        assert!(status.success(), "{status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(tree.iter().all(|p| !alive(*p)), "children outlived warden");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_client_works_over_http_and_stdio() {
    limited(async {
        let script = workspace_root().join("tests/python/client_check.py");
        let dead = misbehave(&["--exit-on-start"], r#", "restart": { "policy": "no" }"#);
        let everything = format!(
            r#"{{ "command": "node", "args": [{}, "stdio"] }}"#,
            json_str(&everything_js())
        );
        let cfg = config(&[
            ("a", misbehave(&[], "")),
            ("b", misbehave(&[], "")),
            ("dead", dead.clone()),
            ("everything", everything),
        ]);
        let w = serve(cfg).await;
        w.healthy(&["a", "b", "everything"]).await;
        let url = format!("http://{}/mcp", w.app.http_addr().unwrap());
        let out = tokio::process::Command::new(python())
            .arg(&script)
            .args(["http", &url, "dead"])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let seen: serde_json::Value =
            serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
        assert_eq!(seen["server"], "warden");
        assert_eq!(seen["echo"], "from python");
        assert_eq!(seen["dead_error"], -32001);
        assert_eq!(seen["sampled"], true, "{seen}");
        assert_eq!(seen["progress"], serde_json::json!([1.0, 2.0]), "{seen}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Session termination failed"),
            "the SDK's close is clean: {stderr}"
        );
        w.app.shutdown().await;

        // stdio: the SDK launches `warden run --stdio` itself, as a desktop client would.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(
            &file,
            format!(
                r#"{{ "mcpServers": {{ "a": {}, "b": {} }} }}"#,
                misbehave(&[], ""),
                misbehave(&[], "")
            ),
        )
        .unwrap();
        let out = tokio::process::Command::new(python())
            .arg(&script)
            .args(["stdio", warden()])
            .arg(&file)
            .arg(dir.path().join("w.db"))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(r#""echo": "from python""#), "{stdout}");
    })
    .await;
}

fn config_with(servers: &[(&str, String)], warden: &str) -> warden_config::Config {
    let body: Vec<String> = servers.iter().map(|(n, s)| format!("{}: {s}", json_str(n))).collect();
    let text = format!(r#"{{ "mcpServers": {{ {} }}, "warden": {warden} }}"#, body.join(",\n"));
    match warden_config::compile(&text, &|_| None) {
        Ok(l) => l.config,
        Err(e) => panic!("test config is invalid: {e}\n{text}"),
    }
}

async fn call_echo(
    c: &RunningService<RoleClient, Client>,
    tool: &str,
    what: &str,
) -> Result<rmcp::model::CallToolResult, rmcp::ServiceError> {
    c.peer()
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(args(serde_json::json!({ "text": what }))),
        )
        .await
}

fn mcp_error(e: &rmcp::ServiceError) -> &rmcp::ErrorData {
    match e {
        rmcp::ServiceError::McpError(d) => d,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_is_cut_off_by_its_circuit_breaker() {
    limited(async {
        // Probes succeed (the process is fine); every tool call fails with an internal error.
        let w = serve(config(&[("bad", misbehave(&["--error-rate", "1"], ""))])).await;
        w.healthy(&["bad"]).await;
        let c = w.client("/mcp", Client::default()).await;
        for i in 0..5 {
            let e = call_echo(&c, "bad__echo", "x").await.unwrap_err();
            assert_eq!(
                mcp_error(&e).code.0,
                -32603,
                "call {i}: the server's own error passes through"
            );
        }
        let started = Instant::now();
        let e = call_echo(&c, "bad__echo", "x").await.unwrap_err();
        let d = mcp_error(&e);
        assert_eq!(d.code.0, warden_gateway::UNAVAILABLE, "{d:?}");
        let data = d.data.clone().unwrap();
        // Two mechanisms agree: the gateway's breaker opened, and the supervisor's passive
        // signals (5 of 5 calls failed) marked the instance critical; either one refuses.
        assert_eq!(data["server"], "bad", "{data}");
        assert!(data["retry_after_ms"].as_u64().is_some(), "{data}");
        assert!(started.elapsed() < Duration::from_millis(500), "refused at once");
        let b = w.app.gateway().breakers();
        assert_eq!(b[0].1, warden_gateway::BreakerState::Open);
        assert_eq!(b[0].2, 1);
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_read_only_calls_share_one_upstream_call_and_cacheable_ones_are_cached() {
    limited(async {
        let entry =
            misbehave(&["--latency", "300ms"], r#", "trusted": true, "cache": { "add": "30s" }"#);
        let w = serve(config(&[("s", entry)])).await;
        w.healthy(&["s"]).await;
        let c = w.client("/mcp", Client::default()).await;
        // Five identical reads at once: one upstream call, five answers.
        let calls = (0..5).map(|_| call_echo(&c, "s__echo", "same"));
        let results = futures::future::join_all(calls).await;
        for r in &results {
            assert_eq!(text(r.as_ref().unwrap()), "same");
        }
        let (joined, _) = w.app.gateway().optimized_calls();
        assert_eq!(joined, 4, "four calls shared the first one's answer");
        // A different argument is a different call.
        assert_eq!(text(&call_echo(&c, "s__echo", "other").await.unwrap()), "other");
        assert_eq!(w.app.gateway().optimized_calls().0, 4);
        // A cacheable tool: the second call is answered from the cache, without the 300 ms.
        let add = |a: i64, b: i64| {
            CallToolRequestParams::new("s__add")
                .with_arguments(args(serde_json::json!({"a": a, "b": b})))
        };
        let first = c.peer().call_tool(add(2, 3)).await.unwrap();
        let started = Instant::now();
        let second = c.peer().call_tool(add(2, 3)).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(250), "{:?}", started.elapsed());
        assert_eq!(text(&first), text(&second));
        assert_eq!(w.app.gateway().optimized_calls().1, 1);
        let third = c.peer().call_tool(add(2, 4)).await.unwrap();
        assert_ne!(text(&third), text(&first));
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_limited_reaped_when_idle_and_bodies_are_bounded() {
    limited(async {
        let cfg = config_with(
            &[("s", misbehave(&[], ""))],
            r#"{ "sessions": { "max": 2, "idle_timeout": "1s" }, "max_request_body": 65536 }"#,
        );
        let w = serve(cfg).await;
        w.healthy(&["s"]).await;
        let one = w.client("/mcp", Client::default()).await;
        let two = w.client("/servers/s/mcp", Client::default()).await;
        assert_eq!(w.app.gateway().http_sessions().await, 2);
        // A third is refused with a clear error.
        let url = format!("http://{}/mcp", w.app.http_addr().unwrap());
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}});
        let http = reqwest::Client::new();
        let r = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("too many client sessions"), "{body}");
        // Idle sessions are closed even though each client holds its GET stream open.
        let start = Instant::now();
        while w.app.gateway().http_sessions().await > 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "idle sessions were not reaped");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Room again; and an oversized body is refused with 413.
        let big = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x".repeat(100_000), "version": "0"}}});
        let r = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let three = w.client("/mcp", Client::default()).await;
        assert!(!tool_names(&three).await.is_empty());
        drop((one, two, three));
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_triggers_tests_and_restores_a_failover() {
    limited(async {
        let primary = misbehave(&[], r#", "fallback": ["backup"]"#);
        let w = serve(config(&[("primary", primary), ("backup", misbehave(&[], ""))])).await;
        w.healthy(&["primary", "backup"]).await;
        let handler = Client::default();
        let c = w.client("/mcp", handler.clone()).await;
        let base = format!("http://{}", w.app.http_addr().unwrap());
        let http = reqwest::Client::new();
        let post = |what: &str| {
            http.post(format!("{base}/api/failover/primary/{what}"))
                .header("content-type", "application/json")
                .send()
        };
        let v: serde_json::Value = post("test").await.unwrap().json().await.unwrap();
        assert_eq!(v["test"][0]["instance"], "backup#0", "{v}");
        assert_eq!(v["test"][0]["ok"], true, "{v}");
        assert_eq!(v["served_by"], "primary", "testing moves no traffic: {v}");
        let before = handler.list_changed.load(Ordering::SeqCst);
        let v: serde_json::Value = post("trigger").await.unwrap().json().await.unwrap();
        assert_eq!(v["served_by"], "backup", "{v}");
        let r = call_echo(&c, "primary__echo", "via backup").await.unwrap();
        assert_eq!(text(&r), "via backup");
        let start = Instant::now();
        while handler.list_changed.load(Ordering::SeqCst) == before {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "no list_changed on a manual failover"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let v: serde_json::Value = post("restore").await.unwrap().json().await.unwrap();
        assert_eq!(v["served_by"], "primary", "{v}");
        assert_eq!(v["forced"], false);
        let r = post("bogus").await.unwrap();
        assert_eq!(r.status(), 404);
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(e["error"]["message"].as_str().unwrap().contains("bogus"), "{e}");
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

fn structured(r: &rmcp::model::CallToolResult) -> serde_json::Value {
    r.structured_content.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wardens_own_tools_and_health_resources_answer_from_live_state_and_the_store() {
    limited(async {
        let primary = misbehave(&[], &format!(r#", "fallback": ["backup"], {FAST_RESTART}"#));
        let w = serve(config(&[("primary", primary), ("backup", misbehave(&[], ""))])).await;
        w.healthy(&["primary", "backup"]).await;
        let c = w.client("/mcp", Client::default()).await;
        let names = tool_names(&c).await;
        for t in [
            "warden__integration_monitor",
            "warden__failover_manager",
            "warden__performance_optimizer",
        ] {
            assert!(names.contains(&t.to_owned()), "{t} missing: {names:?}");
        }
        let scoped = w.client("/servers/primary/mcp", Client::default()).await;
        assert!(!tool_names(&scoped).await.iter().any(|n| n.starts_with("warden__")));
        let call = |tool: &str, args: serde_json::Value| {
            c.peer().call_tool(
                CallToolRequestParams::new(tool.to_owned())
                    .with_arguments(args.as_object().unwrap().clone()),
            )
        };
        let r = call("warden__integration_monitor", serde_json::json!({"action": "health_check"}))
            .await
            .unwrap();
        let v = structured(&r);
        assert!(
            v["warden"]["status"].is_string()
                && v["servers"].is_array()
                && v["check_depth"] == "basic",
            "{v}"
        );
        // A crash, then the failure analysis sees it in the store.
        let pid = w.app.registry().server("primary").unwrap().views()[0].pid.unwrap();
        signal(pid, Signal::SIGKILL);
        w.healthy(&["primary"]).await;
        let start = Instant::now();
        let v = loop {
            let r = call(
                "warden__integration_monitor",
                serde_json::json!({"action": "failure_analysis", "server": "primary"}),
            )
            .await
            .unwrap();
            let v = structured(&r);
            if v["by_class"]["crash"]["count"].as_u64().unwrap_or(0) >= 1
                && v["mttr_seconds"].is_number()
            {
                break v;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the crash never showed: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(v["top_offenders"][0]["server"], "primary", "{v}");
        let r =
            call("warden__integration_monitor", serde_json::json!({"action": "performance_scan"}))
                .await
                .unwrap();
        assert_eq!(structured(&r)["instances"].as_array().unwrap().len(), 2);
        let r = call(
            "warden__failover_manager",
            serde_json::json!({"action": "test_fallback", "server": "primary"}),
        )
        .await
        .unwrap();
        assert_eq!(structured(&r)["test"][0]["ok"], true, "{:?}", structured(&r));
        let r = call(
            "warden__performance_optimizer",
            serde_json::json!({"action": "benchmark_performance", "server": "backup"}),
        )
        .await
        .unwrap();
        let v = structured(&r);
        assert_eq!(v["instances"][0]["pings"], 20, "{v}");
        assert!(v["instances"][0]["p50_ms"].as_f64().unwrap() > 0.0);
        let r = call(
            "warden__performance_optimizer",
            serde_json::json!({"action": "suggest_optimizations"}),
        )
        .await
        .unwrap();
        let v = structured(&r);
        assert!(
            v["suggestions"].as_array().unwrap().iter().any(|s| s["server"] == "primary"),
            "a restart of its only instance: {v}"
        );
        // A failed action is the tool's own error, not a protocol error.
        let r = call(
            "warden__failover_manager",
            serde_json::json!({"action": "test_fallback", "server": "backup"}),
        )
        .await
        .unwrap();
        assert_eq!(r.is_error, Some(true));
        // Resources.
        let read = c
            .peer()
            .read_resource(rmcp::model::ReadResourceRequestParams::new("health://status"))
            .await
            .unwrap();
        let text = match &read.contents[0] {
            rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
            other => panic!("{other:?}"),
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["checks"]["upstreams"].is_object(), "{v}");
        let read = c
            .peer()
            .read_resource(rmcp::model::ReadResourceRequestParams::new("health://servers/backup"))
            .await
            .unwrap();
        assert!(format!("{read:?}").contains("backup#0"));
        drop((c, scoped));
        w.app.shutdown().await;
    })
    .await;
}

/// A client that records the progress it hears.
#[derive(Clone, Default)]
struct Progressive {
    progress: Arc<std::sync::Mutex<Vec<f64>>>,
}

impl ClientHandler for Progressive {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("progress-test", "0"))
    }

    async fn on_progress(
        &self,
        p: rmcp::model::ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(p.progress);
    }
}

/// A remote (Streamable HTTP) upstream: its calls take the fast path (one POST on the
/// upstream session, no rmcp client machinery). Progress, tool errors and a server killed in
/// the middle of a call behave as on rmcp's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_upstream_relays_progress_and_a_kill_mid_call_fails_the_call() {
    limited(async {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut server = misbehave_process(&["--http", &addr]);
        let entry = format!(r#"{{ "url": "http://{addr}/mcp", {FAST_HEALTH} }}"#);
        let w = serve(config(&[("remote", entry)])).await;
        w.healthy(&["remote"]).await;
        let url = format!("http://{}/servers/remote/mcp", w.app.http_addr().unwrap());
        let handler = Progressive::default();
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(url),
        );
        let c = handler.clone().serve(transport).await.unwrap();
        let r = c
            .peer()
            .call_tool(
                CallToolRequestParams::new("echo")
                    .with_arguments(args(serde_json::json!({"text": "far"}))),
            )
            .await
            .unwrap();
        assert_eq!(text(&r), "far");
        let r = c.peer().call_tool(CallToolRequestParams::new("fail")).await.unwrap();
        assert_eq!(r.is_error, Some(true));

        // Progress every 100 ms, relayed before the answer.
        let r = c
            .peer()
            .call_tool(
                CallToolRequestParams::new("sleep")
                    .with_arguments(args(serde_json::json!({"ms": 350}))),
            )
            .await
            .unwrap();
        assert_eq!(text(&r), "slept 350 ms");
        let start = Instant::now();
        while handler.progress.lock().unwrap().len() < 4 {
            assert!(start.elapsed() < Duration::from_secs(2), "{:?}", handler.progress);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*handler.progress.lock().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);

        // The server dies in the middle of a call: the call fails at once, as a lost connection.
        let killer = {
            let link = w.app.registry().server("remote").unwrap().link(0).unwrap();
            let pid = server.id();
            tokio::spawn(async move {
                while link.in_flight() == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                signal(pid, Signal::SIGKILL);
            })
        };
        let started = Instant::now();
        let err = c
            .peer()
            .call_tool(
                CallToolRequestParams::new("sleep")
                    .with_arguments(args(serde_json::json!({"ms": 10000}))),
            )
            .await
            .unwrap_err();
        killer.await.unwrap();
        server.wait().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let e = mcp_error(&err);
        assert_eq!(e.code.0, warden_gateway::UPSTREAM_FAILED, "{e:?}");
        let class = e.data.as_ref().unwrap()["reason"]["class"].as_str().unwrap().to_owned();
        assert!(["crash", "connection_error"].contains(&class.as_str()), "{e:?}");
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

/// `list_changed` is sent only when a list a client is served really changed: never because the
/// balancer picked another replica, nor because a periodic re-list returned the same catalog
/// (it once flooded clients with ~15 notifications a second for 2 round-robin replicas).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_only_when_a_list_really_changes() {
    limited(async {
        let relist = r#", "health": { "catalog_interval": "1s" }"#;
        let w = serve(config(&[
            (
                "rr",
                misbehave(&[], &format!(r#", "replicas": 2, "balance": "round_robin"{relist}"#)),
            ),
            ("p2c", misbehave(&[], &format!(r#", "replicas": 3, "balance": "p2c"{relist}"#))),
            ("solo", misbehave(&[], &format!(r#", "restart": {{ "policy": "no" }}{relist}"#))),
        ]))
        .await;
        w.healthy(&["rr", "p2c", "solo"]).await;
        let handler = Client::default();
        let c = w.client("/mcp", handler.clone()).await;
        // Calls go round the replicas while the client idles; every instance re-lists its
        // catalog each second (the same catalog every time).
        for _ in 0..30 {
            for name in ["rr__echo", "p2c__echo"] {
                let p = CallToolRequestParams::new(name)
                    .with_arguments(args(serde_json::json!({"text": "x"})));
                c.peer().call_tool(p).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let counts = |h: &Client| {
            [&h.list_changed, &h.prompts_changed, &h.resources_changed]
                .map(|n| n.load(Ordering::SeqCst))
        };
        assert_eq!(counts(&handler), [0, 0, 0], "nothing changed: tools, prompts, resources");

        // A real change: solo's tools leave. One tools/list_changed, and nothing for the
        // prompts and resources lists, which did not change.
        w.app
            .registry()
            .server("solo")
            .unwrap()
            .command(warden_supervisor::Command::Stop, None)
            .await;
        let start = Instant::now();
        while handler.list_changed.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "no list_changed for a real change");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(counts(&handler), [1, 0, 0], "one tools/list_changed");
        assert!(!tool_names(&c).await.iter().any(|n| n.starts_with("solo__")));
        drop(c);
        w.app.shutdown().await;
    })
    .await;
}

/// Every view of a server — `/api/servers`, `/api/servers/{name}`, `/health/ecosystem` and
/// `warden status --json` — says the same status and `served_by` in each failover state (the
/// per-server route once said `unhealthy, served_by: null` for a fallback-served server, and an
/// operator's failover showed in no view).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_agrees_on_failover_in_each_state() {
    limited(async {
        let primary = misbehave(&[], r#", "fallback": ["backup"], "restart": { "backoff": { "initial": "60s", "max": "60s" } }"#);
        let w = serve(config(&[("primary", primary), ("backup", misbehave(&[], ""))])).await;
        w.healthy(&["primary", "backup"]).await;
        let base = format!("http://{}", w.app.http_addr().unwrap());
        let http = reqwest::Client::new();
        let views = || async {
            let get = |path: String| {
                let http = http.clone();
                async move { http.get(path).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
            };
            let pick = |v: &serde_json::Value| {
                v["servers"].as_array().unwrap().iter().find(|s| s["name"] == "primary").unwrap().clone()
            };
            let status = std::process::Command::new(warden())
                .args(["status", "--json", "--url", &base])
                .output()
                .unwrap();
            let cli: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
            [
                ("/api/servers", pick(&get(format!("{base}/api/servers")).await)),
                ("/api/servers/primary", get(format!("{base}/api/servers/primary")).await),
                ("/health/ecosystem", pick(&get(format!("{base}/health/ecosystem")).await)),
                ("warden status --json", pick(&cli)),
            ]
            .map(|(what, v)| (what, v["status"].clone(), v["served_by"].clone()))
        };
        let agree = |want: (&str, &str), got: [(&str, serde_json::Value, serde_json::Value); 4]| {
            for (what, status, served_by) in got {
                assert_eq!((status.as_str(), served_by.as_str()), (Some(want.0), Some(want.1)), "{what}");
            }
        };
        agree(("healthy", "primary"), views().await);
        let act = |what: &str| {
            http.post(format!("{base}/api/failover/primary/{what}"))
                .header("content-type", "application/json")
                .send()
        };
        assert!(act("trigger").await.unwrap().status().is_success());
        agree(("degraded", "backup"), views().await);
        assert!(act("restore").await.unwrap().status().is_success());
        agree(("healthy", "primary"), views().await);
        // The primary dies (and is not restarted for a minute): the backup serves.
        let pid = w.app.registry().server("primary").unwrap().views()[0].pid.unwrap();
        signal(pid, Signal::SIGKILL);
        let start = Instant::now();
        while w.app.registry().server("primary").unwrap().views()[0].state.is_routable() {
            assert!(start.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        agree(("degraded", "backup"), views().await);
        w.app.shutdown().await;
    })
    .await;
}

/// A log message a server sends on one call's stream reaches the session that made the call,
/// not every session that asked for logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(deprecated)] // logging/setLevel is deprecated by SEP-2577 (2026-07-28)
async fn a_calls_log_messages_reach_only_the_session_that_made_the_call() {
    limited(async {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut server = misbehave_process(&["--http", &addr, "--conformance"]);
        let entry = format!(r#"{{ "url": "http://{addr}/mcp", {FAST_HEALTH} }}"#);
        let w = serve(config(&[("remote", entry)])).await;
        w.healthy(&["remote"]).await;
        let (a, b) = (Client::default(), Client::default());
        let ca = w.client("/mcp", a.clone()).await;
        let cb = w.client("/mcp", b.clone()).await;
        for c in [&ca, &cb] {
            let level = rmcp::model::SetLevelRequestParams::new(rmcp::model::LoggingLevel::Debug);
            c.peer().set_level(level).await.unwrap();
        }
        let r = ca
            .peer()
            .call_tool(CallToolRequestParams::new("remote__test_tool_with_logging"))
            .await
            .unwrap();
        assert_eq!(text(&r), "Tool with logging executed successfully");
        let start = Instant::now();
        while a.logs.load(Ordering::SeqCst) < 3 {
            assert!(start.elapsed() < Duration::from_secs(5), "the caller got its logs");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.logs.load(Ordering::SeqCst), 3);
        assert_eq!(b.logs.load(Ordering::SeqCst), 0, "another session's call logs leaked");
        drop((ca, cb));
        w.app.shutdown().await;
        let _ = server.kill();
        let _ = server.wait();
    })
    .await;
}

/// A client that answers elicitations with its own name, after a pause.
#[derive(Clone)]
struct Elicited {
    name: &'static str,
    pause: Duration,
}

impl ClientHandler for Elicited {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_elicitation().build(),
            Implementation::new(self.name, "0"),
        )
    }

    async fn create_elicitation(
        &self,
        _: rmcp::model::ElicitRequestParams,
        _: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        tokio::time::sleep(self.pause).await;
        Ok(rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
            .with_content(serde_json::json!({"username": self.name, "email": "x@example.com"})))
    }
}

/// Identical concurrent calls to a safe tool share one upstream call — but never when the
/// answer may come from one session's elicitation (or sampling, or roots): each session gets
/// the result of its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_derived_from_one_sessions_elicitation_is_never_shared() {
    limited(async {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut server = misbehave_process(&["--http", &addr, "--conformance"]);
        let entry = format!(
            r#"{{ "url": "http://{addr}/mcp", "retry": ["test_elicitation"], {FAST_HEALTH} }}"#
        );
        let w = serve(config(&[("remote", entry)])).await;
        w.healthy(&["remote"]).await;
        let url = format!("http://{}/mcp", w.app.http_addr().unwrap());
        let connect = |h: Elicited| {
            let transport = StreamableHttpClientTransport::with_client(
                reqwest::Client::new(),
                StreamableHttpClientTransportConfig::with_uri(url.clone()),
            );
            h.serve(transport)
        };
        let alice =
            connect(Elicited { name: "alice", pause: Duration::from_millis(400) }).await.unwrap();
        let bob = connect(Elicited { name: "bob", pause: Duration::ZERO }).await.unwrap();
        let params = || {
            CallToolRequestParams::new("remote__test_elicitation")
                .with_arguments(args(serde_json::json!({"message": "who are you?"})))
        };
        let (pa, pb) = (alice.peer().clone(), bob.peer().clone());
        let a = tokio::spawn(async move { pa.call_tool(params()).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = pb.call_tool(params()).await;
        let a = a.await.unwrap();
        let (a, b) = (text(&a.unwrap()), text(&b.unwrap()));
        assert!(a.contains("alice") && !a.contains("bob"), "{a}");
        assert!(b.contains("bob") && !b.contains("alice"), "bob got another session's answer: {b}");
        drop((alice, bob));
        w.app.shutdown().await;
        let _ = server.kill();
        let _ = server.wait();
    })
    .await;
}

/// Starts `warden run --stdio` with `args`, a config of one server that must never start
/// (`/nonexistent/…`), and its own database and logs.
fn stdio_warden(dir: &std::path::Path, listen_key: &str, args: &[&str]) -> tokio::process::Child {
    let cfg = dir.join("c.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ "mcpServers": {{ "local": {{ "command": "/nonexistent/never-started" }} }},
                  "warden": {{ "listen": "{listen_key}" }} }}"#
        ),
    )
    .unwrap();
    warden_stdio(&cfg, &dir.join("w.db"), args)
}

/// A second `warden run --stdio` (another desktop client) beside a running Warden attaches to
/// it: the client sees the running Warden's servers, and no second set of children starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_run_stdio_attaches_to_a_running_warden() {
    limited(async {
        let w = serve(config(&[("a", misbehave(&[], ""))])).await;
        w.healthy(&["a"]).await;
        let addr = w.app.http_addr().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let mut child = stdio_warden(dir.path(), &addr, &[]);
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let c = Client::default().serve((stdout, stdin)).await.expect("handshake over stdio");
        let names = tool_names(&c).await;
        assert!(names.contains(&"a__echo".to_owned()), "the running Warden's tools: {names:?}");
        assert!(!names.iter().any(|n| n.starts_with("local__")), "{names:?}");
        let r = c
            .peer()
            .call_tool(
                CallToolRequestParams::new("a__echo")
                    .with_arguments(args(serde_json::json!({"text": "through the bridge"}))),
            )
            .await
            .unwrap();
        assert_eq!(text(&r), "through the bridge");
        // A change on the running Warden reaches the bridged client unprompted.
        let before = c.service().list_changed.load(Ordering::SeqCst);
        w.app.registry().server("a").unwrap().command(warden_supervisor::Command::Stop, None).await;
        let start = Instant::now();
        while c.service().list_changed.load(Ordering::SeqCst) == before {
            assert!(start.elapsed() < Duration::from_secs(5), "no list_changed through the bridge");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = child.id().unwrap();
        assert!(descendants(pid).is_empty(), "the attached process started children");
        assert!(!dir.path().join("w.db").exists(), "the attached process opened no database");
        drop(c);
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the bridge exits when stdin closes")
            .unwrap();
        assert!(status.success(), "{status:?}");
        w.app.shutdown().await;
    })
    .await;
}

/// With no Warden running, `warden run --stdio` runs standalone and serves no HTTP unless
/// `--listen` asks for it (it once always bound 127.0.0.1:7420, so a second one exited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_run_stdio_alone_serves_http_only_when_asked() {
    limited(async {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let mut child = stdio_warden(dir.path(), &addr, &[]);
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let c = Client::default().serve((stdout, stdin)).await.expect("handshake over stdio");
        let names = tool_names(&c).await;
        assert!(names.iter().any(|n| n.starts_with("warden__")), "{names:?}");
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "standalone --stdio without --listen must not listen on {addr}"
        );
        drop(c);
        let status =
            tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status:?}");
    })
    .await;
}

/// `disabledTools` (mcp-hub, Cline) hides those tools from every list — the aggregated `/mcp`
/// and the server's own endpoint — and refuses calls to them, while the server's other tools
/// work as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_tools_are_neither_listed_nor_callable() {
    limited(async {
        let w =
            serve(config(&[("a", misbehave(&[], r#", "disabledTools": ["add", "fail"]"#))])).await;
        w.healthy(&["a"]).await;
        for (path, prefix) in [("/mcp", "a__"), ("/servers/a/mcp", "")] {
            let c = w.client(path, Client::default()).await;
            let names = tool_names(&c).await;
            assert!(names.contains(&format!("{prefix}echo")), "{path}: {names:?}");
            for hidden in ["add", "fail"] {
                assert!(!names.contains(&format!("{prefix}{hidden}")), "{path}: {names:?}");
                let e = c
                    .peer()
                    .call_tool(
                        CallToolRequestParams::new(format!("{prefix}{hidden}"))
                            .with_arguments(args(serde_json::json!({"a": 1, "b": 2}))),
                    )
                    .await
                    .expect_err("a disabled tool is refused");
                let e = mcp_error(&e);
                assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{e:?}");
                assert!(e.message.contains("disabled"), "{e:?}");
            }
            let r = call_echo(&c, &format!("{prefix}echo"), "still here").await.unwrap();
            assert_eq!(text(&r), "still here");
        }
        w.app.shutdown().await;
    })
    .await;
}

/// Ending a session (`DELETE` with its `Mcp-Session-Id`) answers 200, on `/mcp` and on a
/// server's own endpoint (the Python SDK warns "Session termination failed: 202" otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_answers_200() {
    limited(async {
        let w = serve(config(&[("a", misbehave(&[], ""))])).await;
        w.healthy(&["a"]).await;
        let http = reqwest::Client::new();
        for path in ["/mcp", "/servers/a/mcp"] {
            let url = format!("http://{}{path}", w.app.http_addr().unwrap());
            let init = serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                            "clientInfo": { "name": "t", "version": "0" } }
            });
            let res = http
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .json(&init)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            let id = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
            let res = http.delete(&url).header("mcp-session-id", &id).send().await.unwrap();
            assert_eq!(res.status(), reqwest::StatusCode::OK, "{path}");
            // The session is gone: a request in it is refused.
            let list = serde_json::json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
            let res = http
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &id)
                .json(&list)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_client_error(), "{path}: {}", res.status());
        }
        w.app.shutdown().await;
    })
    .await;
}
