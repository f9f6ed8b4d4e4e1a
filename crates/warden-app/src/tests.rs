//! The HTTP routes driven without a socket (`App::router` + `oneshot`), against a real
//! database and real (failing) child processes.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use warden_store::Location;

use crate::{App, RunOptions};

fn config(text: &str) -> warden_config::Config {
    warden_config::compile(text, &|_| None).expect("a valid test config").config
}

async fn start(text: &str, token: Option<&str>) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(RunOptions {
        config: config(text),
        database: Location::Sqlite(dir.path().join("w.db")),
        listen: None,
        token: token.map(str::to_owned),
        connectors: None,
    })
    .await
    .unwrap();
    (app, dir)
}

async fn get(app: &App, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(path).header("host", "127.0.0.1:7420");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app.router().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A server whose command does not exist: it never becomes routable.
const BROKEN: &str =
    r#""broken": { "command": "/nonexistent/warden-test-command", "restart": { "policy": "no" } }"#;

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(10), "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_answer_with_the_model_and_probes_need_no_token() {
    let token = "a-test-token-of-enough-length";
    let (app, _dir) = start(
        &format!(r#"{{ "mcpServers": {{ {BROKEN} }}, "warden": {{ "readiness": "all" }} }}"#),
        Some(token),
    )
    .await;
    // Probes answer without the token; everything else needs it.
    assert_eq!(get(&app, "/livez", None).await.0, StatusCode::OK);
    assert_eq!(get(&app, "/health/status", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, "/health/ecosystem", None).await.0, StatusCode::UNAUTHORIZED);
    until("the server's start to fail", async || {
        let (_, v) = get(&app, "/health/ecosystem", Some(token)).await;
        let state = &v["servers"][0]["instances"][0]["state"];
        state.is_string() && state != "starting"
    })
    .await;
    // The snapshot is refreshed every second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, v) = get(&app, "/health/status", Some(token)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "nothing routable: unhealthy, 503: {v}");
    assert_eq!(v["status"], "unhealthy");
    for key in ["timestamp", "database_status", "uptime_seconds", "connection_pool", "metadata"] {
        assert!(!v[key].is_null(), "{key} missing: {v}");
    }
    for check in ["database", "memory", "disk", "upstreams", "event_loop"] {
        assert!(v["checks"][check].is_object(), "check {check} missing: {v}");
    }
    assert_eq!(v["database_status"], "connected");
    assert!(v["checks"]["database"]["latency_ms"].as_f64().is_some());
    assert!(v["checks"]["memory"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(v["checks"]["disk"]["free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["metadata"]["version"], env!("CARGO_PKG_VERSION"));
    // Readiness "all": not ready, and says why.
    let (code, v) = get(&app, "/readyz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["reason"].as_str().unwrap().contains("broken"), "{v}");
    let (code, v) = get(&app, "/health/ecosystem", Some(token)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["servers"][0]["name"], "broken");
    assert!(v["servers"][0]["instances"][0]["reason"]["class"].is_string(), "{v}");
    // Unknown routes get the one JSON error type.
    let (code, v) = get(&app, "/nope", Some(token)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["status"], 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_critical_servers_by_default() {
    let (app, _dir) = start(
        &format!(
            r#"{{ "mcpServers": {{ {BROKEN}, "other": {{ "command": "/nonexistent/x", "critical": true, "restart": {{ "policy": "no" }} }} }} }}"#
        ),
        None,
    )
    .await;
    until("readyz to refuse", async || {
        let (code, v) = get(&app, "/readyz", None).await;
        code == StatusCode::SERVICE_UNAVAILABLE && v["reason"].as_str().unwrap().contains("other")
    })
    .await;
    let (_, v) = get(&app, "/readyz", None).await;
    assert!(!v["reason"].as_str().unwrap().contains("broken"), "only critical servers count: {v}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_status_degrades_while_the_database_cannot_be_written_and_recovers() {
    let (app, _dir) = start(&format!(r#"{{ "mcpServers": {{ {BROKEN} }} }}"#), None).await;
    until("a healthy database", async || {
        get(&app, "/health/status", None).await.1["database_status"] == "connected"
    })
    .await;
    // A real SQLITE_FULL, exactly as on a full disk: the database may not grow, and events
    // keep coming.
    app.store().set_max_pages(Some(1));
    let big = "x".repeat(8000);
    for _ in 0..50 {
        app.bus().emit(warden_core::Event::new(
            None,
            warden_core::TraceId::random(),
            warden_core::EventKind::OperatorAction { action: big.clone() },
        ));
    }
    until("database_status degraded", async || {
        let (_, v) = get(&app, "/health/status", None).await;
        v["database_status"] == "degraded" && v["checks"]["database"]["error"].is_string()
    })
    .await;
    app.store().set_max_pages(None);
    until("database_status connected again", async || {
        get(&app, "/health/status", None).await.1["database_status"] == "connected"
    })
    .await;
    app.shutdown().await;
}

async fn post(app: &App, path: &str) -> (StatusCode, Value) {
    let req = Request::post(path).header("host", "127.0.0.1:7420").body(Body::empty()).unwrap();
    let res = app.router().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_inspects_acts_and_answers_errors_in_one_shape() {
    let (app, _dir) = start(&format!(r#"{{ "mcpServers": {{ {BROKEN} }} }}"#), None).await;
    let (code, v) = get(&app, "/api/servers/broken", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["name"], "broken");
    let (code, v) = get(&app, "/api/servers/nope", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"), "{v}");
    let (code, v) = get(&app, "/api/servers/broken/instances/0", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["id"], "broken#0");
    assert_eq!(v["breaker"]["state"], "closed");
    assert_eq!(v["in_flight"], 0);
    assert!(v["stats"].is_object() && v["restarts"].is_number(), "{v}");
    assert_eq!(get(&app, "/api/servers/broken/instances/3", None).await.0, StatusCode::NOT_FOUND);
    let (code, v) = post(&app, "/api/servers/broken/explode").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["status"], 404);
    let (code, v) = post(&app, "/api/servers/broken/reset").await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["instances"], 1);
    let (code, v) = post(&app, "/api/failover/broken/trigger").await;
    assert_eq!(code, StatusCode::CONFLICT, "no fallback to fail over to: {v}");
    let (code, v) = post(&app, "/api/failover/broken/enable").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["failover_enabled"], true);
    assert_eq!(get(&app, "/api/metrics", None).await.0, StatusCode::BAD_REQUEST);
    until("the failed start recorded, and the operator action", async || {
        let (_, f) = get(&app, "/api/failures?server=broken", None).await;
        let actions = app.store().events(Some("operator_action"), 10).await.unwrap();
        f["failures"].as_array().is_some_and(|a| !a.is_empty()) && !actions.is_empty()
    })
    .await;
    app.shutdown().await;
}
