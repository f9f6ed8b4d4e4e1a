//! The event stream, `/api/events` and the JSONL event log, driven without a socket
//! (`App::router` + `oneshot`). The WebSocket and slow consumers over real sockets are in
//! `crates/warden/tests/events.rs`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use serde_json::Value;
use tower::ServiceExt;
use warden_core::{Event, EventKind, TraceId};
use warden_store::Location;

use crate::{App, RunOptions};

const TOKEN: &str = "a-test-token-of-enough-length";

async fn start_in(dir: &std::path::Path, servers: &str) -> App {
    let text = format!(r#"{{ "mcpServers": {{ {servers} }} }}"#);
    App::start(RunOptions {
        config: warden_config::compile(&text, &|_| None).expect("a valid test config").config,
        database: Location::Sqlite(dir.join("w.db")),
        listen: None,
        token: Some(TOKEN.into()),
        connectors: None,
        http_threads: None,
    })
    .await
    .unwrap()
}

async fn get(app: &App, path: &str, auth: bool) -> (StatusCode, Value) {
    let mut req = Request::get(path).header("host", "127.0.0.1:7420");
    if auth {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    let res = app.router().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(10), "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn operator(app: &App, what: &str) {
    app.bus().emit(Event::new(
        None,
        TraceId::random(),
        EventKind::OperatorAction { action: what.into() },
    ));
}

/// The `data:` payloads of an SSE body, as they arrive.
struct Sse {
    body: axum::body::BodyDataStream,
    buf: String,
}

impl Sse {
    async fn next_data(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an SSE frame within 10 s")
                .expect("the stream is open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_on_sse_in_the_wire_form_filtered_and_the_query_token_is_only_for_streams() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_in(dir.path(), "").await;
    // No token, no stream; `?token=` opens the streams but nothing else.
    assert_eq!(get(&app, "/events", false).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, "/events?token=wrong-token-wrong-token", false).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, &format!("/api/servers?token={TOKEN}"), false).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, &format!("/api/events?token={TOKEN}"), false).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A bad query is a JSON error naming the problem, as everywhere else.
    let (status, body) = get(&app, "/events?kind=a&kind=b", true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("kind"), "{body}");

    let req = Request::get(format!("/events?token={TOKEN}&kind=operator_action"))
        .header("host", "127.0.0.1:7420")
        .body(Body::empty())
        .unwrap();
    let res = app.router().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut sse = Sse { body: res.into_body().into_data_stream(), buf: String::new() };
    // Filtered out by kind, then one that passes.
    app.bus().emit(Event::new(None, TraceId::random(), EventKind::StoreRecovered));
    operator(&app, "restart a");
    let v = sse.next_data().await;
    assert_eq!(v["kind"], "operator_action", "{v}");
    assert_eq!(v["message"], "operator: restart a");
    assert_eq!(v["data"]["action"], "restart a");
    assert!(v["seq"].as_u64().unwrap() >= 1);
    assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
    assert!(v["traceparent"].as_str().unwrap().starts_with("00-"));
    assert!(v["at"].is_string() && v["instance"].is_null() && v["server"].is_null());
    operator(&app, "restart b");
    let w = sse.next_data().await;
    assert_eq!(w["data"]["action"], "restart b");
    assert_eq!(w["seq"].as_u64(), v["seq"].as_u64().map(|s| s + 1));

    // The health snapshot counts the subscriber (refreshed every second).
    until("the subscriber to be counted", async || {
        get(&app, "/health/status", true).await.1["checks"]["event_stream"]["subscribers"] == 1
    })
    .await;
    drop(sse);
    until("the subscriber to be forgotten", async || {
        get(&app, "/health/status", true).await.1["checks"]["event_stream"]["subscribers"] == 0
    })
    .await;

    // The same events from the store, newest first, in the same form.
    until("the events to be recorded", async || {
        let (code, v) = get(&app, "/api/events?kind=operator_action&limit=10", true).await;
        code == StatusCode::OK && v["events"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let (_, r) = get(&app, "/api/events?kind=operator_action&limit=10", true).await;
    assert_eq!(r["events"][0], w, "stored and live forms are the same");
    assert_eq!(r["events"][1], v);
    let (_, both) = get(&app, "/api/events?kind=store_recovered,operator_action", true).await;
    assert_eq!(both["events"].as_array().unwrap().len(), 3, "comma lists: {both}");
    let (_, none) = get(&app, "/api/events?server=nope", true).await;
    assert_eq!(none["events"], serde_json::json!([]));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_appended_to_the_days_jsonl_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_in(
        dir.path(),
        r#""broken": { "command": "/nonexistent/warden-test-command", "restart": { "policy": "no" } }"#,
    )
    .await;
    operator(&app, "hello log");
    let file = dir.path().join(format!("events-{}.jsonl", warden_core::now().format("%Y-%m-%d")));
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    };
    until("the log to hold the operator action and the failed start", async || {
        let l = lines();
        l.iter().any(|v| v["data"]["action"] == "hello log")
            && l.iter().any(|v| v["kind"] == "state_changed" && v["instance"] == "broken#0")
    })
    .await;
    for v in lines() {
        assert!(v["seq"].is_u64() && v["trace_id"].is_string() && v["kind"].is_string(), "{v}");
    }
    until("the health check to count the lines", async || {
        let (_, v) = get(&app, "/health/status", true).await;
        let c = &v["checks"]["event_log"];
        c["status"] == "ok" && c["lines_written"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    app.shutdown().await;
    // Shutdown writes the last events too (the instance stopping).
    let after = lines();
    assert!(after.len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_event_log_degrades_its_check_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where each day's file should be: every write fails, even as root.
    let today = warden_core::now().date_naive();
    for d in [today, today + chrono::Days::new(1)] {
        std::fs::create_dir(dir.path().join(format!("events-{}.jsonl", d.format("%Y-%m-%d"))))
            .unwrap();
    }
    let app = start_in(dir.path(), "").await;
    operator(&app, "while the log fails");
    until("checks.event_log to fail", async || {
        let (code, v) = get(&app, "/health/status", true).await;
        let c = &v["checks"]["event_log"];
        code == StatusCode::OK
            && c["status"] == "failing"
            && c["lines_lost"].as_u64().unwrap_or(0) >= 1
            && c["last_error"].is_string()
            && v["status"] == "degraded"
    })
    .await;
    // Everything else carries on: the database records, the API answers.
    until("the event to reach the database", async || {
        let (_, v) = get(&app, "/api/events?kind=operator_action", true).await;
        v["events"][0]["data"]["action"] == "while the log fails"
    })
    .await;
    assert_eq!(get(&app, "/livez", false).await.0, StatusCode::OK);
    // Once the path is writable again, the log recovers by itself.
    for d in [today, today + chrono::Days::new(1)] {
        std::fs::remove_dir(dir.path().join(format!("events-{}.jsonl", d.format("%Y-%m-%d"))))
            .unwrap();
    }
    operator(&app, "after the repair");
    until("checks.event_log to recover", async || {
        get(&app, "/health/status", true).await.1["checks"]["event_log"]["status"] == "ok"
    })
    .await;
    app.shutdown().await;
}
