//! Issue 14 end to end: each client session of the aggregated endpoint is shown only the tools
//! its task needs (`warden.tools.exposure`, `warden__analyze_prompt`, `warden__search_tools`,
//! `warden__expose_tools`), with real rmcp clients over Streamable HTTP, the official
//! server-everything and the misbehaving server; a tool whose server is down is never offered.

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
use serde_json::{json, Value};
use warden_core::InstanceState;

const LIMIT: Duration = Duration::from_secs(120);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// A client that counts `tools/list_changed`.
#[derive(Clone, Default)]
struct Counting {
    changed: Arc<AtomicU32>,
}

impl ClientHandler for Counting {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("filter-test", "0"))
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed.fetch_add(1, Ordering::SeqCst);
    }
}

type Client = RunningService<RoleClient, Counting>;

async fn connect(addr: &str) -> (Client, Arc<AtomicU32>) {
    let handler = Counting::default();
    let changed = Arc::clone(&handler.changed);
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
    );
    (handler.serve(transport).await.expect("the client connects"), changed)
}

async fn listed(c: &Client) -> Vec<String> {
    let mut n: Vec<String> =
        c.peer().list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    n.sort();
    n
}

async fn tool(c: &Client, name: &str, args: Value) -> (Value, bool) {
    let r = c
        .peer()
        .call_tool(
            CallToolRequestParams::new(name.to_owned())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} {args}: {e}"));
    (r.structured_content.clone().unwrap_or_default(), r.is_error == Some(true))
}

/// Waits until `changed` reaches `n` (a notification is sent before the tool answers, but
/// it travels on the session's stream).
async fn notified(changed: &AtomicU32, n: u32) {
    let start = Instant::now();
    while changed.load(Ordering::SeqCst) < n {
        assert!(start.elapsed() < Duration::from_secs(5), "list_changed never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const META: [&str; 3] = ["warden__analyze_prompt", "warden__expose_tools", "warden__search_tools"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_sees_only_the_tools_its_task_needs() {
    limited(async {
        let everything = format!(
            r#"{{ "command": "node", "args": [{}, "stdio"], {FAST_HEALTH} }}"#,
            json_str(&everything_js())
        );
        let misc = misbehave(&[], &format!(r#", {FAST_HEALTH}, "restart": {{ "policy": "no" }}"#));
        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{ "everything": {everything}, "misc": {misc} }},
                 "warden": {{ "tools": {{ "exposure": "meta" }} }} }}"#
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "everything").await;
        let misc_pid = healthy_pid(&app, "misc").await;

        // Three sessions at once, each starting from the default: only the meta-tools.
        let ((c1, n1), (c2, n2), (c3, n3)) =
            tokio::join!(connect(&addr), connect(&addr), connect(&addr));
        for c in [&c1, &c2, &c3] {
            assert_eq!(listed(c).await, META);
        }

        // Each asks for a different task, at once.
        let (a1, a2, a3) = tokio::join!(
            tool(
                &c1,
                "warden__analyze_prompt",
                json!({ "prompt": "add two numbers and give me their sum" })
            ),
            tool(&c2, "warden__analyze_prompt", json!({ "prompt": "show me a tiny image" })),
            tool(&c3, "warden__analyze_prompt", json!({ "prompt": "echo this text back to me" })),
        );
        for (a, _) in [&a1, &a2, &a3] {
            assert_eq!(a["method"], "static", "{a}");
            assert_eq!(a["exposure_changed"], true, "{a}");
        }
        for n in [&n1, &n2, &n3] {
            notified(n, 1).await;
        }
        let (l1, l2, l3) = (listed(&c1).await, listed(&c2).await, listed(&c3).await);
        assert!(
            l1.contains(&"misc__add".to_owned()) && l1.contains(&"everything__get-sum".to_owned()),
            "{l1:?} {a1:?}"
        );
        assert!(!l1.contains(&"everything__get-tiny-image".to_owned()), "{l1:?}");
        assert!(l2.contains(&"everything__get-tiny-image".to_owned()), "{l2:?} {a2:?}");
        assert!(!l2.contains(&"misc__add".to_owned()), "{l2:?}");
        assert!(
            l3.contains(&"misc__echo".to_owned()) && l3.contains(&"everything__echo".to_owned()),
            "{l3:?} {a3:?}"
        );
        for l in [&l1, &l2, &l3] {
            for m in META {
                assert!(l.contains(&m.to_owned()), "meta-tools stay: {l:?}");
            }
        }

        // Client 2 changes again; 1 and 3 see nothing new.
        let (v, err) =
            tool(&c2, "warden__expose_tools", json!({ "mode": "replace", "categories": ["math"] }))
                .await;
        assert!(!err && v["exposure_changed"] == true, "{v}");
        notified(&n2, 2).await;
        assert!(listed(&c2).await.contains(&"misc__add".to_owned()));
        assert!(!listed(&c2).await.contains(&"everything__get-tiny-image".to_owned()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!((n1.load(Ordering::SeqCst), n3.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(listed(&c1).await, l1);
        assert_eq!(listed(&c3).await, l3);
        let (v, err) =
            tool(&c2, "warden__expose_tools", json!({ "mode": "add", "categories": ["nope"] }))
                .await;
        assert!(err && v["error"].as_str().unwrap().contains("known:"), "{v}");

        // Search ranks without changing anything, and says where each tool is.
        let (v, _) =
            tool(&c3, "warden__search_tools", json!({ "query": "add numbers", "limit": 5 })).await;
        let names: Vec<&str> =
            v["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"misc__add"), "{v}");
        let add = v["tools"].as_array().unwrap().iter().find(|t| t["name"] == "misc__add").unwrap();
        assert!(
            add["server"] == "misc"
                && add["score"].as_f64().unwrap() > 0.0
                && add["categories"].is_array(),
            "{add}"
        );
        assert_eq!(listed(&c3).await, l3, "search changes nothing");

        // A server that is down is neither offered nor shown; it returns when it is back.
        signal(misc_pid, Signal::SIGKILL);
        let start = Instant::now();
        while app.registry().server("misc").unwrap().views()[0].state != InstanceState::Offline {
            assert!(start.elapsed() < Duration::from_secs(20));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (v, _) = tool(&c3, "warden__search_tools", json!({ "query": "add numbers" })).await;
        assert!(!v["tools"].as_array().unwrap().iter().any(|t| t["server"] == "misc"), "{v}");
        assert!(!listed(&c1).await.iter().any(|t| t.starts_with("misc__")));
        let http = reqwest::Client::new();
        let r = http
            .post(format!("http://{addr}/api/servers/misc/restart"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        healthy_pid(&app, "misc").await;
        let start = Instant::now();
        while !listed(&c1).await.contains(&"misc__add".to_owned()) {
            assert!(start.elapsed() < Duration::from_secs(10), "misc__add never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Each tool's categories are in the server view.
        let v: Value = reqwest::get(format!("http://{addr}/api/servers/misc"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let add =
            v["tool_categories"].as_array().unwrap().iter().find(|t| t["name"] == "add").unwrap();
        assert_eq!(
            (add["categories"][0].clone(), add["categorized_by"].clone()),
            (json!("math"), json!("static")),
            "{v}"
        );

        // Each session's count of shown tools is a metric: c1 and c3 chose, c2 chose math.
        let metrics =
            reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        let max = format!(
            "warden_exposed_tools_per_session{{stat=\"max\"}} {}",
            l1.len().max(l3.len()).max(listed(&c2).await.len()) - META.len()
        );
        assert!(
            metrics.lines().any(|l| l == max),
            "want {max:?}: {}",
            metrics.lines().filter(|l| l.contains("exposed")).collect::<Vec<_>>().join("\n")
        );

        // A client that reconnects starts from the default.
        drop(c1);
        let (c1, _) = connect(&addr).await;
        assert_eq!(listed(&c1).await, META);
        let metrics =
            reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        assert!(
            metrics.lines().any(|l| l.starts_with("warden_tool_categorizations_total{")
                && l.contains("method=\"static\"")
                && l.ends_with(" 3")),
            "{}",
            metrics
                .lines()
                .filter(|l| l.contains("categoriz") || l.contains("exposure"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        drop((c1, c2, c3));
        app.shutdown().await;
    })
    .await;
}

/// How the fake model's API answers next.
#[derive(Clone)]
enum Mode {
    Answer(String),
    Status(u16),
    Stall,
}

#[derive(Clone)]
struct FakeModel {
    mode: Arc<std::sync::Mutex<Mode>>,
    asked: Arc<AtomicU32>,
    last: Arc<std::sync::Mutex<(String, Value)>>,
}

const KEY: &str = "sk-test-SECRET-0123456789abcdef";

/// An OpenAI-compatible chat-completions API on a free loopback port.
async fn fake_model() -> (FakeModel, String) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let m = FakeModel {
        mode: Arc::new(std::sync::Mutex::new(Mode::Status(500))),
        asked: Arc::default(),
        last: Arc::default(),
    };
    let auth = |h: &HeaderMap| {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {KEY}"))
    };
    let state = m.clone();
    let app = axum::Router::new()
        .route(
            "/v1/models",
            axum::routing::get(move |h: HeaderMap| async move {
                if auth(&h) {
                    StatusCode::OK.into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        )
        .route(
            "/v1/chat/completions",
            axum::routing::post(move |h: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let m = state.clone();
                async move {
                    m.asked.fetch_add(1, Ordering::SeqCst);
                    let who = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    *m.last.lock().unwrap() = (who, body);
                    let mode = m.mode.lock().unwrap().clone();
                    match mode {
                        Mode::Answer(content) => axum::Json(json!({
                            "choices": [{ "message": { "role": "assistant", "content": content } }]
                        }))
                        .into_response(),
                        Mode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
                        Mode::Stall => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            StatusCode::OK.into_response()
                        }
                    }
                }
            }),
        );
    // Gemini's generateContent: the model in the path, the key in x-goog-api-key.
    let gem = m.clone();
    let app = app.route(
        "/gem/models/{spec}",
        axum::routing::post(
            move |axum::extract::Path(spec): axum::extract::Path<String>,
                  h: HeaderMap,
                  axum::Json(body): axum::Json<Value>| {
                let m = gem.clone();
                async move {
                    m.asked.fetch_add(1, Ordering::SeqCst);
                    let key = h
                        .get("x-goog-api-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    *m.last.lock().unwrap() = (format!("{key} {spec}"), body);
                    let Mode::Answer(text) = m.mode.lock().unwrap().clone() else {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    };
                    axum::Json(
                        json!({ "candidates": [{ "content": { "parts": [{ "text": text }] } }] }),
                    )
                    .into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (m, addr)
}

/// The model's path (issue 14 item 4) against a local OpenAI-compatible API: a valid answer is
/// used (method `llm`); garbage, names that are not listed, 401, a stall past the timeout, 429
/// and 500 each fall back to the static choice at once with the reason; after 429 the model is
/// not asked again until the backoff ends. The model's endpoint is supervised as kind `llm`,
/// and its key is in no answer of the API, no event and no metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_chooses_tools_and_every_failure_falls_back_to_static() {
    limited(async {
        let (model, maddr) = fake_model().await;
        let misc = misbehave(&[], &format!(", {FAST_HEALTH}"));
        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{ "misc": {misc} }},
                 "warden": {{ "tools": {{ "exposure": "meta",
                     "llm": {{ "provider": "openai", "url": "http://{maddr}/v1", "model": "test-model",
                               "api_key": "{KEY}", "timeout": "1s" }} }} }} }}"#
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "misc").await;
        let c = connect(&addr).await.0;
        let set = |m: Mode| *model.mode.lock().unwrap() = m;
        let analyze = async |p: &str| tool(&c, "warden__analyze_prompt", json!({ "prompt": p })).await.0;

        set(Mode::Answer(r#"{"categories": ["math"], "tools": ["misc__add"], "why": "adding"}"#.into()));
        let v = analyze("add two numbers").await;
        assert_eq!((v["method"].clone(), v["tools"].clone()), (json!("llm"), json!(["misc__add"])), "{v}");
        let l = listed(&c).await;
        assert!(l.contains(&"misc__add".to_owned()) && !l.contains(&"misc__echo".to_owned()), "{l:?}");
        let (who, body) = model.last.lock().unwrap().clone();
        assert_eq!(who, format!("Bearer {KEY}"));
        assert_eq!(body["model"], "test-model");
        assert!(body["messages"][0]["content"].as_str().unwrap().contains("misc__add"), "{body}");
        assert_eq!(body["messages"][1]["content"], "add two numbers");

        let falls_back = async |m: Mode, why: &str| {
            set(m);
            let started = Instant::now();
            let v = analyze("echo this text back").await;
            assert_eq!(v["method"], "static", "{v}");
            assert!(v["fallback"].as_str().is_some_and(|f| f.contains(why)), "want {why:?}: {v}");
            assert!(v["tools"].as_array().unwrap().iter().any(|t| t == "misc__echo"), "{v}");
            started.elapsed()
        };
        falls_back(Mode::Answer("sure, use the echo tool".into()), "not JSON").await;
        falls_back(Mode::Answer(r#"{"tools": ["nope__x"]}"#.into()), "not listed: nope__x").await;
        falls_back(Mode::Status(401), "key was refused").await;
        let took = falls_back(Mode::Stall, "no answer within 1s").await;
        assert!(took < Duration::from_millis(2500), "the fallback is at once: {took:?}");
        falls_back(Mode::Status(429), "429").await;
        let asked = model.asked.load(Ordering::SeqCst);
        falls_back(Mode::Answer(r#"{"tools": ["misc__add"]}"#.into()), "backing off").await;
        assert_eq!(model.asked.load(Ordering::SeqCst), asked, "not asked while backing off");
        tokio::time::sleep(Duration::from_millis(2300)).await;
        falls_back(Mode::Status(500), "500").await;

        // Supervised as kind llm, healthy while /models accepts the key.
        let v: Value = reqwest::get(format!("http://{addr}/api/servers/llm")).await.unwrap().json().await.unwrap();
        assert_eq!(v["kind"], "llm", "{v}");
        let start = Instant::now();
        while app.registry().server("llm").unwrap().views()[0].state != InstanceState::Healthy {
            assert!(start.elapsed() < Duration::from_secs(20), "the llm check never passed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The key is nowhere.
        for path in ["/api/servers", "/api/servers/llm", "/api/events?limit=1000", "/metrics", "/health/status", "/api/alerts"] {
            let text = reqwest::get(format!("http://{addr}{path}")).await.unwrap().text().await.unwrap();
            assert!(!text.contains(KEY) && !text.contains("SECRET-0123"), "{path} shows the key");
        }
        let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        for outcome in ["ok", "bad_answer", "unknown_names", "invalid_key", "timeout", "rate_limited", "backoff", "server_error"] {
            let label = format!("method=\"llm\",outcome=\"{outcome}\"");
            assert!(metrics.lines().any(|l| l.contains(&label)), "no {label} in\n{metrics}");
        }
        drop(c);
        app.shutdown().await;

        // Gemini's API: the same choice through generateContent.
        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{ "misc": {misc} }},
                 "warden": {{ "tools": {{ "exposure": "meta",
                     "llm": {{ "provider": "gemini", "url": "http://{maddr}/gem", "model": "gem-1",
                               "api_key": "{KEY}", "timeout": "1s" }} }} }} }}"#
        ));
        let (app, _dir2, addr) = listening(cfg, None).await;
        healthy_pid(&app, "misc").await;
        let c = connect(&addr).await.0;
        set(Mode::Answer(r#"{"categories": ["math"], "tools": ["misc__add"], "why": "adding"}"#.into()));
        let v = tool(&c, "warden__analyze_prompt", json!({ "prompt": "add two numbers" })).await.0;
        assert_eq!((v["method"].clone(), v["provider"].clone()), (json!("llm"), json!("gemini")), "{v}");
        let (who, body) = model.last.lock().unwrap().clone();
        assert_eq!(who, format!("{KEY} gem-1:generateContent"));
        assert_eq!(body["contents"][0]["parts"][0]["text"], "add two numbers");
        assert!(body["systemInstruction"]["parts"][0]["text"].as_str().unwrap().contains("misc__add"));
        drop(c);
        app.shutdown().await;
    })
    .await;
}

async fn connect_to(addr: &str, path: &str) -> Client {
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}{path}")),
    );
    Counting::default().serve(transport).await.expect("the client connects")
}

/// Endpoints with their own starting exposure (`warden.tools.endpoints`, served at
/// `/endpoints/{name}/mcp`): a session of each starts from its endpoint's, and a reset returns
/// it there; `/mcp` keeps the default; an endpoint the config does not name is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_starts_its_sessions_from_its_own_exposure() {
    limited(async {
        let misc = misbehave(&[], &format!(", {FAST_HEALTH}"));
        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{ "misc": {misc} }},
                 "warden": {{ "tools": {{ "exposure": "meta",
                     "endpoints": {{ "maths": ["math"], "everything": "all" }} }} }} }}"#
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "misc").await;
        let plain = connect_to(&addr, "/mcp").await;
        let maths = connect_to(&addr, "/endpoints/maths/mcp").await;
        let all = connect_to(&addr, "/endpoints/everything/mcp").await;
        assert_eq!(listed(&plain).await, META);
        let m = listed(&maths).await;
        assert!(
            m.contains(&"misc__add".to_owned()) && !m.contains(&"misc__echo".to_owned()),
            "{m:?}"
        );
        let a = listed(&all).await;
        assert!(
            a.contains(&"misc__echo".to_owned())
                && a.contains(&"warden__integration_monitor".to_owned()),
            "{a:?}"
        );
        tool(&maths, "warden__expose_tools", json!({ "mode": "replace", "tools": ["misc__echo"] }))
            .await;
        assert!(listed(&maths).await.contains(&"misc__echo".to_owned()));
        tool(&maths, "warden__expose_tools", json!({ "mode": "reset" })).await;
        assert_eq!(listed(&maths).await, m, "reset returns to the endpoint's exposure");
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/endpoints/nope/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        drop((plain, maths, all));
        app.shutdown().await;
    })
    .await;
}

/// `warden run --stdio --endpoint NAME`, standalone and attached to a running Warden: the
/// desktop client's one session starts from that endpoint's exposure; a name the config lacks
/// is a config error (exit 64) before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_client_can_start_from_an_endpoints_exposure() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let misc = misbehave(&[], "");
        let text = |listen: &str| {
            format!(
                r#"{{ "mcpServers": {{ "misc": {misc} }},
                     "warden": {{ "listen": "{listen}", "tools": {{ "endpoints": {{ "maths": ["math"] }} }} }} }}"#
            )
        };
        let run = |cfg: &std::path::Path, endpoint: &str, db: &str| {
            warden_stdio(cfg, &dir.path().join(db), &["--endpoint", endpoint])
        };
        let maths_tools = async |child: &mut tokio::process::Child| {
            let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
            let c = ().serve(io).await.expect("the stdio session starts");
            let start = Instant::now();
            loop {
                let l: Vec<String> =
                    c.peer().list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
                if l.contains(&"misc__add".to_owned()) {
                    assert!(!l.contains(&"misc__echo".to_owned()), "{l:?}");
                    assert!(l.contains(&"warden__analyze_prompt".to_owned()), "{l:?}");
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(30), "misc__add never listed: {l:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            drop(c);
        };

        // Standalone (nothing answers at its address).
        let port = free_port();
        let alone = dir.path().join("alone.json");
        std::fs::write(&alone, text(&format!("127.0.0.1:{port}"))).unwrap();
        let mut child = run(&alone, "maths", "a.db");
        maths_tools(&mut child).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;

        // Attached to a running Warden with the same endpoint.
        let cfg = config_text(&text("127.0.0.1:0"));
        let (app, _d, addr) = listening(cfg, None).await;
        healthy_pid(&app, "misc").await;
        let attached = dir.path().join("attached.json");
        std::fs::write(&attached, text(&addr)).unwrap();
        let mut child = run(&attached, "maths", "b.db");
        maths_tools(&mut child).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;

        let out = tokio::process::Command::new(warden())
            .args(["run", "--stdio", "--endpoint", "nope", "--log-dir", "none", "-c"])
            .arg(&alone)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no endpoint \"nope\" (warden.tools.endpoints: maths)"));
        app.shutdown().await;
    })
    .await;
}
