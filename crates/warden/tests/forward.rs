//! End to end: everything a client can do goes through Warden to `server-everything` (npm) and
//! back — prompts, resources, templates, completion, progress, cancellation, logging, resource
//! updates, and the server's own requests (sampling, roots) to the client that caused them.
#![allow(deprecated)] // sampling, roots and logging: deprecated in 2026-07-28, used by servers

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::{
    ArgumentInfo, CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest,
    CompleteRequestParams, CreateMessageRequestParams, CreateMessageResult, GetPromptRequestParams,
    Implementation, ListRootsResult, LoggingLevel, LoggingMessageNotificationParam,
    ProgressNotificationParam, ReadResourceRequestParams, Reference,
    ResourceUpdatedNotificationParam, SetLevelRequestParams, SubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::{ClientHandler, ErrorData, ServiceExt};
use serde_json::json;
use warden_app::{App, RunOptions};
use warden_core::InstanceState;
use warden_store::Location;

const LIMIT: Duration = Duration::from_secs(120);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// A client that can sample and list roots, and records what servers send it.
#[derive(Clone, Default)]
struct Rich {
    name: &'static str,
    progress: Arc<Mutex<Vec<f64>>>,
    logs: Arc<Mutex<Vec<String>>>,
    updates: Arc<Mutex<Vec<String>>>,
    sampled: Arc<AtomicU32>,
}

impl ClientHandler for Rich {
    fn get_info(&self) -> ClientConfig {
        let caps: ClientCapabilities =
            serde_json::from_value(json!({ "sampling": {}, "roots": { "listChanged": true } }))
                .unwrap();
        ClientConfig::new(caps, Implementation::new(self.name, "0"))
    }

    async fn create_message(
        &self,
        _: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.sampled.fetch_add(1, Ordering::SeqCst);
        Ok(serde_json::from_value(json!({
            "role": "assistant",
            "content": { "type": "text", "text": format!("sampled by {}", self.name) },
            "model": "test-model",
            "stopReason": "endTurn",
        }))
        .unwrap())
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(serde_json::from_value(
            json!({ "roots": [{ "uri": format!("file:///tmp/{}", self.name), "name": "root" }] }),
        )
        .unwrap())
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(p.progress);
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(p.logger.unwrap_or_default());
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.updates.lock().unwrap().push(p.uri);
    }
}

struct Served {
    app: App,
    _dir: tempfile::TempDir,
}

/// Warden on `config`, recording under `dir`, serving HTTP on a free loopback port.
async fn start(config: warden_config::Config, dir: tempfile::TempDir) -> Served {
    start_on(config, dir, None).await
}

/// [`start`] with `threads` serving the listener (`None`: one per core).
async fn start_on(
    config: warden_config::Config,
    dir: tempfile::TempDir,
    threads: Option<usize>,
) -> Served {
    let app = App::start(RunOptions {
        config,
        database: Location::Sqlite(dir.path().join("w.db")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        connectors: None,
        http_threads: threads,
    })
    .await
    .unwrap();
    Served { app, _dir: dir }
}

async fn serve_everything() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let entry = format!(
        r#"{{ "command": "node", "args": [{}, "stdio"], {FAST_HEALTH} }}"#,
        json_str(&everything_js())
    );
    let served = start(config(&[("everything", entry), ("m", misbehave(&[], ""))]), dir).await;
    let began = Instant::now();
    while !["everything", "m"].iter().all(|n| {
        let server = served.app.registry().server(n).unwrap();
        server.views().iter().all(|v| v.state == InstanceState::Healthy)
    }) {
        assert!(began.elapsed() < Duration::from_secs(30), "servers did not become healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served
}

impl Served {
    async fn client(&self, path: &str, handler: Rich) -> RunningService<RoleClient, Rich> {
        let url = format!("http://{}{path}", self.app.http_addr().unwrap());
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(url),
        );
        handler.serve(transport).await.expect("the client connects")
    }
}

fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned()).with_arguments(args.as_object().unwrap().clone())
}

fn text(r: &rmcp::model::CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect()
}

async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_resources_templates_and_completion_are_forwarded() {
    limited(async {
        let w = serve_everything().await;
        let c = w.client("/mcp", Rich { name: "a", ..Default::default() }).await;
        let peer = c.peer();

        // Prompts: prefixed on the aggregated endpoint, and they work.
        let prompts = peer.list_all_prompts().await.unwrap();
        let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"everything__simple-prompt"), "{names:?}");
        assert!(
            names.iter().all(|n| n.starts_with("everything__")),
            "only everything has prompts: {names:?}"
        );
        let got = peer
            .get_prompt(GetPromptRequestParams::new("everything__simple-prompt"))
            .await
            .unwrap();
        assert!(!got.messages.is_empty());
        let err = peer.get_prompt(GetPromptRequestParams::new("simple-prompt")).await.unwrap_err();
        assert!(err.to_string().contains("server__prompt"), "{err}");

        // Resources keep their URIs, get prefixed names, and read back.
        let resources = peer.list_all_resources().await.unwrap();
        assert!(!resources.is_empty());
        // Besides Warden's own health resource, everything's, with prefixed names.
        let resources: Vec<_> =
            resources.into_iter().filter(|r| !r.uri.starts_with("health://")).collect();
        assert!(!resources.is_empty());
        assert!(resources.iter().all(|r| r.name.starts_with("everything__")), "{resources:?}");
        let first = &resources[0];
        let read =
            peer.read_resource(ReadResourceRequestParams::new(first.uri.clone())).await.unwrap();
        assert!(!read.contents.is_empty(), "{read:?}");

        // Templates, and a URI only a template matches.
        let templates = peer.list_all_resource_templates().await.unwrap();
        assert!(
            templates.iter().any(|t| t.uri_template == "demo://resource/dynamic/text/{resourceId}"),
            "{templates:?}"
        );
        let read = peer
            .read_resource(ReadResourceRequestParams::new("demo://resource/dynamic/text/7"))
            .await
            .unwrap();
        assert!(!read.contents.is_empty());
        let err =
            peer.read_resource(ReadResourceRequestParams::new("nowhere://x")).await.unwrap_err();
        assert!(err.to_string().contains("no server offers"), "{err}");

        // Completion for a prompt argument, routed by the prefixed prompt name.
        let done = peer
            .complete(CompleteRequestParams::new(
                Reference::for_prompt("everything__completable-prompt"),
                ArgumentInfo::new("department", ""),
            ))
            .await
            .unwrap();
        assert!(!done.completion.values.is_empty(), "{done:?}");

        // The scoped endpoint shows the server's own names.
        let s = w.client("/servers/everything/mcp", Rich { name: "s", ..Default::default() }).await;
        let prompts = s.peer().list_all_prompts().await.unwrap();
        assert!(prompts.iter().any(|p| p.name == "simple-prompt"));
        let got = s.peer().get_prompt(GetPromptRequestParams::new("simple-prompt")).await.unwrap();
        assert!(!got.messages.is_empty());
        let _ = c.cancel().await;
        let _ = s.cancel().await;
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_sampling_roots_and_logs_reach_the_client_that_caused_them() {
    limited(async {
        let w = serve_everything().await;
        let a = Rich { name: "alice", ..Default::default() };
        let b = Rich { name: "bob", ..Default::default() };
        let ca = w.client("/mcp", a.clone()).await;
        let cb = w.client("/mcp", b.clone()).await;

        // Progress: the server reports to Warden's token; the client hears it under its own.
        let r = ca
            .peer()
            .call_tool(call(
                "everything__trigger-long-running-operation",
                json!({"duration": 1, "steps": 3}),
            ))
            .await
            .unwrap();
        assert!(text(&r).contains("completed"), "{r:?}");
        // Warden sends every update before the answer; this client (rmcp) handles
        // notifications in tasks of their own, so give them a moment.
        eventually("three progress notifications", Duration::from_secs(1), || {
            a.progress.lock().unwrap().len() >= 3
        })
        .await;
        assert_eq!(*a.progress.lock().unwrap(), vec![1.0, 2.0, 3.0]);
        assert!(b.progress.lock().unwrap().is_empty(), "bob made no call");

        // Sampling: asked of the client whose call caused it, and only of that one.
        let r = cb
            .peer()
            .call_tool(call(
                "everything__trigger-sampling-request",
                json!({"prompt": "hi", "maxTokens": 5}),
            ))
            .await
            .unwrap();
        assert!(text(&r).contains("sampled by bob"), "{}", text(&r));
        assert_eq!(b.sampled.load(Ordering::SeqCst), 1);
        assert_eq!(a.sampled.load(Ordering::SeqCst), 0);

        // Roots: the same.
        let r = ca.peer().call_tool(call("everything__get-roots-list", json!({}))).await.unwrap();
        assert!(text(&r).contains("file:///tmp/alice"), "{}", text(&r));

        // Logs: to the sessions that set a level, labelled with the server's name.
        ca.peer().set_level(SetLevelRequestParams::new(LoggingLevel::Debug)).await.unwrap();
        let r = ca
            .peer()
            .call_tool(call("everything__toggle-simulated-logging", json!({})))
            .await
            .unwrap();
        assert!(text(&r).contains("Started"), "{}", text(&r));
        eventually("a log message from the server", Duration::from_secs(20), || {
            !a.logs.lock().unwrap().is_empty()
        })
        .await;
        assert!(a.logs.lock().unwrap().iter().all(|l| l.starts_with("everything")), "{:?}", a.logs);
        assert!(b.logs.lock().unwrap().is_empty(), "bob set no level: {:?}", b.logs);
        let _ = ca.cancel().await;
        let _ = cb.cancel().await;
        w.app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_reach_subscribers_and_a_cancelled_call_is_no_failure() {
    limited(async {
        let w = serve_everything().await;
        let a = Rich { name: "alice", ..Default::default() };
        let ca = w.client("/mcp", a.clone()).await;
        let uri = "demo://resource/static/document/architecture.md";
        let resources = ca.peer().list_all_resources().await.unwrap();
        let uri = resources
            .iter()
            .map(|r| r.uri.clone())
            .find(|u| u == uri)
            .or_else(|| resources.iter().map(|r| r.uri.clone()).find(|u| u.starts_with("demo://")))
            .expect("server-everything lists demo:// resources");
        ca.peer().subscribe(SubscribeRequestParams::new(uri.clone())).await.unwrap();
        let r = ca
            .peer()
            .call_tool(call("everything__toggle-subscriber-updates", json!({})))
            .await
            .unwrap();
        assert!(!text(&r).is_empty());
        eventually("a resource update", Duration::from_secs(20), || {
            a.updates.lock().unwrap().contains(&uri)
        })
        .await;

        // Cancel a long call: Warden stops waiting at once, and the server is not blamed.
        let handle = ca
            .peer()
            .send_cancellable_request(
                ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(call(
                    "everything__trigger-long-running-operation",
                    json!({"duration": 30, "steps": 30}),
                ))),
                Default::default(),
            )
            .await
            .unwrap();
        let link = w.app.registry().server("everything").unwrap().link(0).unwrap();
        eventually("the call in flight", Duration::from_secs(5), || link.in_flight() == 1).await;
        handle.cancel(Some("changed my mind".into())).await.unwrap();
        eventually("the call no longer in flight", Duration::from_secs(5), || {
            link.in_flight() == 0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let v = &w.app.registry().server("everything").unwrap().views()[0];
        assert_eq!(v.state, InstanceState::Healthy, "{v:?}");
        assert!(v.stats.error_rate == 0.0, "a cancelled call is not an error: {v:?}");
        let _ = ca.cancel().await;
        w.app.shutdown().await;
    })
    .await;
}

/// A server that connects at once but takes seconds to list its tools: a call that arrives
/// while it is routable but not yet listed goes to it (the server decides) instead of being
/// refused as a call to an unknown tool. (Before: `-32602 unknown tool "echo"`, which a fleet
/// replica restarting under a load balancer answered for a tool its peers serve.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_before_the_first_tool_list_reaches_the_server() {
    limited(async {
        let config = config(&[("slow", misbehave(&["--first-list-delay", "8s"], ""))]);
        let w = start(config, tempfile::tempdir().unwrap()).await;
        let server = w.app.registry().server("slow").unwrap();
        eventually("slow routable", Duration::from_secs(20), || {
            server.views().iter().all(|v| v.state == InstanceState::Healthy)
        })
        .await;
        assert_eq!(
            server.link(0).unwrap().catalog().map(|c| c.tools.len()),
            None,
            "not listed yet"
        );
        let c = w.client("/servers/slow/mcp", Rich::default()).await;
        let r = c
            .peer()
            .call_tool(call("echo", serde_json::json!({ "text": "early" })))
            .await
            .expect("the call reaches the server");
        assert!(text(&r).contains("early"), "{r:?}");
        let _ = c.cancel().await;
        w.app.shutdown().await;
    })
    .await;
}

/// A session on `url` as raw HTTP: initialize (with `capabilities`) and `initialized`; returns
/// the session id.
async fn raw_session(http: &reqwest::Client, url: &str, capabilities: serde_json::Value) -> String {
    let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": capabilities,
        "clientInfo": { "name": "raw", "version": "0" } } });
    let r = raw_post(http, url, None, &init).await;
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.bytes().await;
    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let r = raw_post(http, url, Some(&session), &note).await;
    assert_eq!(r.status(), 202);
    session
}

async fn raw_post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::Response {
    raw_post_with(http, url, session, body).await.unwrap()
}

async fn raw_post_with(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    raw_request(http, url, session, body).send().await
}

/// An MCP POST of `body` (within `session`, if any), to send as it is or with more headers.
fn raw_request(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    let req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    match session {
        Some(s) => req.header("mcp-session-id", s),
        None => req,
    }
}

/// The HTTP lane's two answer forms: a call that ends within a second without progress is
/// one JSON body; one that takes longer (no progress) is moved to a task of its own and
/// answered as SSE; a client that goes away while its call runs on the request's task
/// cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_call_answers_json_when_quick_and_a_stream_when_slow() {
    limited(async {
        let w = serve_everything().await;
        // Quick: `lane_session` waited for an echo answered as one JSON body (the lane's
        // quick form; rmcp's path answers SSE).
        let (http, url, session) = lane_session(&w).await;

        // Three seconds, no progress token: past the window, a stream with only the answer,
        // its headers well before the answer.
        let slow = |id: u32, duration: u32| {
            json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "everything__trigger-long-running-operation",
                "arguments": { "duration": duration, "steps": 1 } } })
        };
        let began = Instant::now();
        let r = raw_post(&http, &url, Some(&session), &slow(2, 3)).await;
        let headers_after = began.elapsed();
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        assert!(headers_after < Duration::from_millis(2800), "headers came at {headers_after:?}");
        let events = sse_events(&r.text().await.unwrap());
        assert_eq!(events.len(), 1, "{events:?}");
        let answer: serde_json::Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(answer["id"], 2);
        assert!(answer["result"]["content"][0]["text"].as_str().unwrap().contains("completed"));

        // A client that gives up within the window (its connection closed while the call runs
        // on the request's task): the call is cancelled, not left running for 30 s, and its id
        // leaves the session's lane calls (a later call with the same id takes the lane).
        let link = w.app.registry().server("everything").unwrap().link(0).unwrap();
        let (h, u, s) = (http.clone(), url.clone(), session.clone());
        let abandoned = tokio::spawn(async move {
            let _ = raw_post_with(&h, &u, Some(&s), &slow(3, 30)).await;
        });
        eventually("the call in flight", Duration::from_secs(10), || link.in_flight() == 1).await;
        abandoned.abort();
        eventually("the abandoned call no longer in flight", Duration::from_secs(5), || {
            link.in_flight() == 0
        })
        .await;
        lane_echo(&http, &url, &session, 3).await;
        w.app.shutdown().await;
    })
    .await;
}

/// A call on a session the fast lane serves still passes the guard first (the listener's own
/// HTTP/1 loop reads it from the head): a foreign Origin or Host is refused, and the lane then
/// serves the session's calls as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_session_call_passes_the_guard_first() {
    limited(async {
        let w = serve_everything().await;
        let (http, url, session) = lane_session(&w).await;
        let echo = json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "everything__echo", "arguments": { "message": "x" } } });
        for (name, value) in
            [("origin", "http://evil.example"), ("origin", "null"), ("host", "evil.example")]
        {
            let r = raw_request(&http, &url, Some(&session), &echo).header(name, value);
            let status = r.send().await.unwrap().status();
            assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{name}: {value}");
        }
        lane_echo(&http, &url, &session, 6).await;
        w.app.shutdown().await;
    })
    .await;
}

/// A plain client's session on `/mcp` of `w`, once its calls take the fast lane (≤ 5 s):
/// rmcp hands the client's `initialized` to the handler (which registers the session with the
/// lane) on a task of its own, so a call posted right after the notification's 202 may still
/// go through rmcp.
/// A result of several hundred kilobytes with every kind of escape comes back whole, over an
/// HTTP upstream and a stdio child: the answer is read as text (`Reply`), its lines and events
/// split with `memchr`, and read into the client's result in one pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_with_escapes_comes_through_whole() {
    limited(async {
        let port = free_port();
        let mut up = misbehave_process(&["--http", &format!("127.0.0.1:{port}")]);
        let remote = format!(r#"{{ "url": "http://127.0.0.1:{port}/mcp", {FAST_HEALTH} }}"#);
        let dir = tempfile::tempdir().unwrap();
        let w = start(config(&[("up", remote), ("m", misbehave(&[], ""))]), dir).await;
        eventually("both servers healthy", Duration::from_secs(30), || {
            ["up", "m"].iter().all(|n| {
                let server = w.app.registry().server(n).unwrap();
                server.views().iter().all(|v| v.state == InstanceState::Healthy)
            })
        })
        .await;
        let url = format!("http://{}/mcp", w.app.http_addr().unwrap());
        let http = reqwest::Client::new();
        let session = raw_session(&http, &url, json!({})).await;
        let text = "é \"q\" \\ \n\t\u{1}\u{1F600} </x> isError: true ".repeat(16_000);
        for (id, tool) in [(1, "up__echo"), (2, "m__echo")] {
            let call = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": { "name": tool, "arguments": { "text": text } } });
            let r = raw_post(&http, &url, Some(&session), &call).await;
            assert_eq!(r.status(), 200, "{tool}");
            let answer = answer_of(r).await;
            assert_eq!(answer["id"], id, "{tool}");
            assert_ne!(answer["result"]["isError"], json!(true), "{tool}");
            let got = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
            assert_eq!(got.len(), text.len(), "{tool}");
            assert!(got == text, "{tool}: the text came back changed");
        }
        let _ = up.kill();
        let _ = up.wait();
    })
    .await;
}

async fn lane_session(w: &Served) -> (reqwest::Client, String, String) {
    let url = format!("http://{}/mcp", w.app.http_addr().unwrap());
    let http = reqwest::Client::new();
    let session = raw_session(&http, &url, json!({})).await;
    lane_echo(&http, &url, &session, 100).await;
    (http, url, session)
}

/// Calls `echo` with request id `id` on `session` until the lane answers it (≤ 5 s).
async fn lane_echo(http: &reqwest::Client, url: &str, session: &str, id: u32) {
    let echo = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "everything__echo", "arguments": { "message": "lane?" } } });
    let answer = until_the_lane(http, url, session, &echo, Duration::from_secs(5)).await;
    assert_eq!(answer["id"], id, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "Echo: lane?", "{answer}");
}

/// Posts `call` on `session` until the lane answers it, within `limit`, and returns the answer:
/// the lane answers a quick call without progress as JSON, rmcp's path as SSE.
async fn until_the_lane(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    call: &serde_json::Value,
    limit: Duration,
) -> serde_json::Value {
    let began = Instant::now();
    loop {
        let r = raw_post(http, url, Some(session), call).await;
        if r.headers()["content-type"] == "application/json" {
            return r.json().await.unwrap();
        }
        let _ = r.bytes().await;
        assert!(began.elapsed() < limit, "{call} never took the lane");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The message answering a raw POST: its JSON body, or its stream's last event (rmcp's path
/// primes the stream with an empty event first).
async fn answer_of(r: reqwest::Response) -> serde_json::Value {
    let json = r.headers()["content-type"] == "application/json";
    let body = r.text().await.unwrap();
    let data = if json { body } else { sse_events(&body).pop().expect("an answer event").1 };
    serde_json::from_str(&data).unwrap()
}

/// The events of an SSE body as (id, data) pairs, in order.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let field = |name: &str| {
                e.lines()
                    .filter_map(|l| l.strip_prefix(name))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
            };
            (field("id:").first().map(|s| s.to_string()), field("data:").join("\n"))
        })
        .collect()
}

/// The HTTP fast lane (`warden-gateway/src/http_lane.rs`), on the wire: a plain client's
/// quick `tools/call` is answered as JSON, one with progress as SSE with its progress and then
/// its result, without rmcp's priming event (rmcp's path sends one first); a cancelled call's
/// stream ends without an answer and the server stops; a client that can answer the server's
/// requests stays on rmcp's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_call_takes_the_fast_lane_with_its_progress_and_cancellation() {
    limited(async {
        let w = serve_everything().await;
        let (http, url, session) = lane_session(&w).await;
        let long = |id: u32, duration: u32, token: &str| {
            json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "everything__trigger-long-running-operation",
                "arguments": { "duration": duration, "steps": duration * 3 },
                "_meta": { "progressToken": token } } })
        };
        let r = raw_post(&http, &url, Some(&session), &long(1, 1, "t1")).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let events = sse_events(&r.text().await.unwrap());
        assert!(events.iter().all(|(id, data)| id.is_none() && !data.is_empty()), "{events:?}");
        let messages: Vec<serde_json::Value> =
            events.iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
        let (answer, progress) = messages.split_last().unwrap();
        assert_eq!(answer["id"], 1, "{answer}");
        assert!(answer["result"]["content"][0]["text"].as_str().unwrap().contains("completed"));
        let steps: Vec<f64> = progress
            .iter()
            .inspect(|m| assert_eq!(m["params"]["progressToken"], "t1", "{m}"))
            .map(|m| m["params"]["progress"].as_f64().unwrap())
            .collect();
        assert_eq!(steps, vec![1.0, 2.0, 3.0]);

        // The session belongs to `/mcp`: on another endpoint it is unknown (rmcp's 404), not
        // served by the lane with this endpoint's handler.
        let elsewhere = url.replace("/mcp", "/servers/everything/mcp");
        let r = raw_post(&http, &elsewhere, Some(&session), &long(9, 1, "t9")).await;
        assert_eq!(r.status(), 404, "{:?}", r.text().await);

        // Cancelled: answered 202, the call's stream ends without an answer, and the server
        // stops reporting progress.
        let mut r = raw_post(&http, &url, Some(&session), &long(2, 30, "t2")).await;
        let first = tokio::time::timeout(Duration::from_secs(10), r.chunk()).await.unwrap();
        assert!(String::from_utf8_lossy(&first.unwrap().unwrap()).contains("t2"));
        let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": { "requestId": 2, "reason": "changed my mind" } });
        assert_eq!(raw_post(&http, &url, Some(&session), &cancel).await.status(), 202);
        let rest = tokio::time::timeout(Duration::from_secs(10), r.text()).await.unwrap().unwrap();
        let after: Vec<serde_json::Value> =
            sse_events(&rest).iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
        assert!(after.iter().all(|m| m.get("method").is_some()), "answered: {after:?}");
        assert!(after.len() <= 1, "progress went on: {after:?}");
        let link = w.app.registry().server("everything").unwrap().link(0).unwrap();
        eventually("the call no longer in flight", Duration::from_secs(5), || {
            link.in_flight() == 0
        })
        .await;

        // A client that declared sampling stays on rmcp's path (its priming event first).
        let sampler = raw_session(&http, &url, json!({ "sampling": {} })).await;
        let echo = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "everything__echo", "arguments": { "message": "hi" } } });
        let r = raw_post(&http, &url, Some(&sampler), &echo).await;
        let events = sse_events(&r.text().await.unwrap());
        assert!(events.first().is_some_and(|(id, _)| id.is_some()), "{events:?}");
        w.app.shutdown().await;
    })
    .await;
}

/// The fast lane is in front of axum's routing (`warden-admin/src/front.rs`), not in front of
/// the guard: within a session whose calls take the lane, a call without the token, from a
/// foreign Origin or to a Host that is not a loopback name is refused as on every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_stands_in_front_of_the_lane() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let app = App::start(RunOptions {
            config: config(&[("m", misbehave(&[], ""))]),
            database: Location::Sqlite(dir.path().join("w.db")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            token: Some("s3cret".into()),
            connectors: None,
            http_threads: None,
        })
        .await
        .unwrap();
        let url = format!("http://{}/servers/m/mcp", app.http_addr().unwrap());
        let mut auth = reqwest::header::HeaderMap::new();
        auth.insert("authorization", "Bearer s3cret".parse().unwrap());
        let http = reqwest::Client::builder().default_headers(auth).build().unwrap();
        let session = raw_session(&http, &url, json!({})).await;
        let echo = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "echo", "arguments": { "text": "x" } } });
        until_the_lane(&http, &url, &session, &echo, Duration::from_secs(10)).await;
        let post = |client: &reqwest::Client| raw_request(client, &url, Some(&session), &echo);
        let bare = reqwest::Client::new();
        assert_eq!(post(&bare).send().await.unwrap().status(), 401, "no token");
        let foreign = post(&http).header("origin", "http://evil.example").send().await.unwrap();
        assert_eq!(foreign.status(), 403, "a foreign Origin");
        let rebound = post(&http).header("host", "evil.example").send().await.unwrap();
        assert_eq!(rebound.status(), 403, "a Host that is not loopback");
        assert_eq!(post(&http).send().await.unwrap().status(), 200, "the lane still answers");
        app.shutdown().await;
    })
    .await;
}

/// A stdio child's output is read on one of the listener's two threads; connections calling it
/// through the lane end up on that thread, whichever they were accepted on, and
/// `warden_http_connections` shows each thread's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_calling_a_stdio_server_move_to_the_thread_reading_it() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let w = start_on(config(&[("m", misbehave(&[], ""))]), dir, Some(2)).await;
        let began = Instant::now();
        while !w
            .app
            .registry()
            .server("m")
            .unwrap()
            .views()
            .iter()
            .all(|v| v.state == InstanceState::Healthy)
        {
            assert!(began.elapsed() < Duration::from_secs(30), "m did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let addr = w.app.http_addr().unwrap();
        let url = format!("http://{addr}/servers/m/mcp");
        // Three clients, one keep-alive connection each, accepted on the two threads in turn.
        let mut clients = vec![];
        for _ in 0..3 {
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let session = raw_session(&http, &url, json!({})).await;
            clients.push((http, session));
        }
        for (http, session) in &clients {
            for id in 0..4 {
                let echo = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                    "name": "echo", "arguments": { "text": "where?" } } });
                let answer =
                    until_the_lane(http, &url, session, &echo, Duration::from_secs(5)).await;
                assert_eq!(answer["result"]["content"][0]["text"], "where?", "{answer}");
            }
        }
        // All three on one thread; this scrape's own connection goes to the other (fewest).
        let metrics =
            reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        let count = |thread: &str| {
            metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("warden_http_connections{{thread=\"{thread}\"}} "))
                })
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let mut counts = [count("0"), count("1")];
        counts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(counts, [Some(1.0), Some(3.0)], "{metrics}");
        drop(clients);
        w.app.shutdown().await;
    })
    .await;
}

/// A `tools/call` whose params do not read (a name that is not a string, arguments that are
/// not an object, no params) is refused as invalid params, saying why, on the wire: rmcp alone
/// answers such a request as an unknown method (-32601, the method's name as the message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_params_do_not_read_is_refused_as_invalid_params() {
    limited(async {
        let w = serve_everything().await;
        let (http, url, session) = lane_session(&w).await;
        for (id, params) in [
            (1, Some(json!({ "name": 5 }))),
            (2, Some(json!({ "name": "everything__echo", "arguments": [1] }))),
            (3, None),
        ] {
            let mut call = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call" });
            if let Some(p) = params {
                call["params"] = p;
            }
            let answer = answer_of(raw_post(&http, &url, Some(&session), &call).await).await;
            assert_eq!(answer["id"], id, "{call}: {answer}");
            assert_eq!(answer["error"]["code"], -32602, "{call}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("tools/call: ") && message.len() > 12, "{answer}");
        }
        w.app.shutdown().await;
    })
    .await;
}
