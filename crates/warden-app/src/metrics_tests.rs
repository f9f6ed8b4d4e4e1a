//! `/metrics` through the whole app's router: the token, and every family with its units and
//! labels.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use warden_store::Location;

use crate::{App, RunOptions};

const TOKEN: &str = "a-test-token-of-enough-length";

async fn scrape(app: &App, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get("/metrics").header("host", "127.0.0.1:7420");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app.router().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 22).await.unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_and_name_every_family_with_units_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let config = warden_config::compile(
        r#"{ "mcpServers": { "broken": { "command": "/nonexistent/warden-test-command",
             "restart": { "policy": "no" }, "replicas": 2 } } }"#,
        &|_| None,
    )
    .unwrap()
    .config;
    let app = App::start(RunOptions {
        config,
        database: Location::Sqlite(dir.path().join("w.db")),
        listen: None,
        token: Some(TOKEN.into()),
        connectors: None,
        http_threads: None,
    })
    .await
    .unwrap();
    assert_eq!(scrape(&app, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, ctype, text) = scrape(&app, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, warden_metrics::CONTENT_TYPE);
    for family in [
        "# TYPE warden_up gauge",
        "# TYPE warden_build_info gauge",
        "# TYPE warden_start_time_seconds gauge",
        "# UNIT warden_start_time_seconds seconds",
        "# TYPE warden_instance_up gauge",
        "# TYPE warden_instance_state gauge",
        "# TYPE warden_instance_restarts counter",
        "# TYPE warden_calls_in_flight gauge",
        "# TYPE warden_breaker_state gauge",
        "# TYPE warden_breaker_ejections counter",
        "# TYPE warden_server_up gauge",
        "# TYPE warden_server_status gauge",
        "# TYPE warden_store_degraded gauge",
        "# TYPE warden_store_pending_rows gauge",
        "# TYPE warden_store_rows_dropped counter",
        "# TYPE warden_events_dropped counter",
        "# TYPE warden_client_sessions gauge",
        "# TYPE warden_calls_coalesced counter",
        "# TYPE warden_cache_hits counter",
        "# TYPE warden_probe_duration_seconds histogram",
        "# TYPE warden_call_duration_seconds histogram",
        "# TYPE warden_call_errors counter",
        "# TYPE warden_instance_failures counter",
        "# TYPE warden_probe_failures counter",
        "# TYPE warden_incidents counter",
        "# TYPE warden_instance_crash_loops counter",
        "# TYPE warden_retries counter",
        "# TYPE warden_retries_denied counter",
        "# TYPE warden_calls_unavailable counter",
    ] {
        assert!(text.lines().any(|l| l == family), "{family:?} missing:\n{text}");
    }
    // A family with no series is left out: no server here has a fallback.
    assert!(!text.contains("warden_failovers"));
    // Both replicas, each state one-hot, labelled by server and instance.
    for i in ["broken#0", "broken#1"] {
        let states: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("warden_instance_state{")
                    && l.contains(&format!("server_instance=\"{i}\""))
            })
            .collect();
        assert_eq!(states.len(), 7, "{states:?}");
        assert_eq!(states.iter().filter(|l| l.ends_with(" 1")).count(), 1, "{states:?}");
        assert!(states.iter().all(|l| l.contains("server=\"broken\"")), "{states:?}");
    }
    // The start fails: the failure is counted by class, and the instance is down.
    let start = std::time::Instant::now();
    loop {
        let text = scrape(&app, Some(TOKEN)).await.2;
        let failed = text.lines().any(|l| {
            l.starts_with("warden_instance_failures_total{")
                && l.contains("server_instance=\"broken#0\"")
                && !l.ends_with(" 0")
        });
        if failed {
            assert!(text
                .contains("warden_instance_up{server=\"broken\",server_instance=\"broken#0\"} 0"));
            assert!(text.contains("warden_server_up{server=\"broken\"} 0"));
            break;
        }
        assert!(start.elapsed().as_secs() < 10, "no failure counted:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.shutdown().await;
}
