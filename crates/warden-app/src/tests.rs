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
        http_threads: None,
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
        // Generous: CI runs these beside every other test on two cores.
        assert!(start.elapsed() < Duration::from_secs(30), "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_answer_with_the_model_and_probes_need_no_token() {
    let token = "a-test-token-of-enough-length";
    let (app, _dir) = start(
        &format!(
            r#"{{ "mcpServers": {{ {BROKEN} }}, "warden": {{ "readiness": "all",
                  "metadata": {{ "environment": "staging", "region": "eu-west-1", "team": "ops" }} }} }}"#
        ),
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
    // The seed's HealthCheckResponse, field by field (seed 002), beside Warden's own fields.
    let pool = &v["connection_pool"];
    for key in ["total_connections", "active_connections", "idle_connections", "waiting_requests"] {
        assert!(pool[key].is_u64(), "connection_pool.{key}: {pool}");
    }
    let util = pool["pool_utilization"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&util), "{pool}");
    assert_eq!(v["checks"]["database"]["status"], "pass", "{v}");
    assert!(v["checks"]["database"]["message"].is_string());
    let memory = &v["checks"]["memory"];
    assert_eq!(memory["status"], "pass");
    assert!(
        memory["usage_mb"].as_f64().unwrap() > 0.0 && memory["limit_mb"].as_f64().unwrap() > 0.0
    );
    assert!((0.0..=100.0).contains(&memory["percentage"].as_f64().unwrap()), "{memory}");
    let disk = &v["checks"]["disk"];
    assert!(disk["free_gb"].as_f64().unwrap() > 0.0 && disk["percentage_used"].as_f64().is_some());
    assert!(["pass", "warn"].contains(&disk["status"].as_str().unwrap()));
    assert_eq!(v["metadata"]["environment"], "staging");
    assert_eq!(v["metadata"]["region"], "eu-west-1");
    assert_eq!(v["metadata"]["team"], "ops");
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
    let req = Request::post(path)
        .header("host", "127.0.0.1:7420")
        .header("content-type", "application/json")
        .body(Body::empty())
        .unwrap();
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
    assert_eq!(get(&app, "/api/metrics", None).await.0, StatusCode::OK, "the last hour");
    let (code, v) = get(&app, "/api/failures?limit=all", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("limit"), "{v}");
    until("the failed start recorded, and the operator action", async || {
        let (_, f) = get(&app, "/api/failures?server=broken", None).await;
        let actions = app.store().events(Some("operator_action"), 10).await.unwrap();
        f["failures"].as_array().is_some_and(|a| !a.is_empty()) && !actions.is_empty()
    })
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_log_files_degrade_health_and_show_in_checks_and_the_summary() {
    // The pool's thresholds off: on a loaded machine Warden's four busy pool connections read
    // as utilization 1.0, unhealthy, and this test is about the log files (see the thresholds
    // test below).
    let config = r#"{ "mcpServers": {},
        "warden": { "health_thresholds": { "pool_degraded": 1, "pool_unhealthy": 1 } } }"#;
    let (app, dir) = start(config, None).await;
    let (_, v) = get(&app, "/health/status", None).await;
    assert_eq!(v["checks"]["logs"]["status"], "off", "{v}");
    // Healthy, or degraded already by something else (a nearly full disk on a test machine).
    let before = v["status"].as_str().unwrap().to_owned();
    let liveness = app.liveness();
    assert!(liveness.live());
    assert!(liveness.summary().starts_with(&format!("{before}: 0/0 servers healthy")));
    let logs = crate::LogFilesStatus::new(dir.path().join("logs"));
    app.set_log_files(logs.clone());
    logs.failed(1, &std::io::Error::other("No space left on device"));
    let last = std::sync::Mutex::new(Value::Null);
    let seen = async || {
        let (_, v) = get(&app, "/health/status", None).await;
        let ok = v["checks"]["logs"]["status"] == "failing" && v["status"] == "degraded";
        *last.lock().unwrap() = v;
        ok
    };
    let start = Instant::now();
    while !seen().await {
        let v = last.lock().unwrap().clone();
        assert!(start.elapsed() < Duration::from_secs(30), "not failing and degraded: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, v) = get(&app, "/health/status", None).await;
    assert_eq!(code, StatusCode::OK, "degraded is not unhealthy: {v}");
    assert_eq!(v["checks"]["logs"]["last_error"], "No space left on device");
    assert_eq!(v["checks"]["logs"]["failures"], 1);
    assert!(liveness.summary().contains("log files failing"), "{}", liveness.summary());
    logs.wrote(1, &dir.path().join("logs/warden.log"));
    until("checks.logs ok and Warden as before", async || {
        let (_, v) = get(&app, "/health/status", None).await;
        v["checks"]["logs"]["status"] == "ok" && v["status"] == before.as_str()
    })
    .await;
    assert!(!liveness.summary().contains("log files"), "{}", liveness.summary());
    app.shutdown().await;
}

/// Samples of `known#0` written through the store's own writer: response times 0..7 ms, 15 s
/// apart from `base` (a whole minute). Returns once they are in the database.
async fn write_known_samples(app: &App, base: chrono::DateTime<chrono::Utc>) {
    let (_events, events_rx) = tokio::sync::mpsc::channel(1);
    let (samples, samples_rx) = tokio::sync::mpsc::channel(16);
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = app.store().spawn_writer(
        events_rx,
        samples_rx,
        warden_store::WriterOptions {
            retention: tokio::sync::watch::channel(Duration::from_secs(86_400)).1,
            prune_every: Duration::from_secs(3600),
            bus: None,
            leading: None,
        },
        stop.clone(),
    );
    for k in 0..8 {
        samples
            .send(warden_core::MetricSample {
                instance: warden_core::InstanceId::new("known", 0),
                at: base + chrono::Duration::seconds(15 * k),
                state: warden_core::InstanceState::Healthy,
                response_time_ms: Some(k as f64),
                p95_ms: None,
                p99_ms: None,
                error_rate: 0.0,
                availability: 1.0,
                throughput: 2.0,
            })
            .await
            .unwrap();
    }
    stop.cancel();
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_ranges_take_times_filters_and_a_step_and_name_bad_parameters() {
    let (app, _dir) = start(&format!(r#"{{ "mcpServers": {{ {BROKEN} }} }}"#), None).await;
    let base =
        chrono::DateTime::from_timestamp((warden_core::now().timestamp() - 1800) / 60 * 60, 0)
            .unwrap();
    write_known_samples(&app, base).await;
    let t = |s: i64| {
        (base + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };

    // No parameters: the last hour, every series, each sample.
    let (code, v) = get(&app, "/api/metrics", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let since: chrono::DateTime<chrono::Utc> = v["since"].as_str().unwrap().parse().unwrap();
    let until: chrono::DateTime<chrono::Utc> = v["until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until - since, chrono::Duration::hours(1));
    assert_eq!(v["step"], Value::Null);
    assert_eq!(v["columns"], serde_json::json!(["t", "value"]));
    let known: Vec<&Value> =
        v["series"].as_array().unwrap().iter().filter(|s| s["server"] == "known").collect();
    assert_eq!(known.len(), 4, "one series per metric: {v}");

    // A range and filters: the samples, oldest first.
    let range = format!("since={}&until={}&server=known&metric=response_time", t(0), t(120));
    let (code, v) = get(&app, &format!("/api/metrics?{range}"), None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["series"].as_array().unwrap().len(), 1, "{v}");
    let s = &v["series"][0];
    assert_eq!((&s["instance"], &s["metric"]), (&"known#0".into(), &"response_time".into()));
    let values: Vec<f64> =
        s["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);

    // With a step: one point per minute, [t, avg, min, max, count].
    let (code, v) = get(&app, &format!("/api/metrics?{range}&step=1m"), None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["step"], "1m");
    assert_eq!(v["columns"], serde_json::json!(["t", "avg", "min", "max", "count"]));
    let points = v["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{v}");
    let at = |p: &Value| p[0].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!(at(&points[0]), base);
    assert_eq!(
        points[0].as_array().unwrap()[1..],
        serde_json::json!([1.5, 0.0, 3.0, 4]).as_array().unwrap()[..]
    );
    assert_eq!(at(&points[1]), base + chrono::Duration::minutes(1));
    assert_eq!(
        points[1].as_array().unwrap()[1..],
        serde_json::json!([5.5, 4.0, 7.0, 4]).as_array().unwrap()[..]
    );

    // A relative `since`: the samples of the last 2 h include these.
    let (code, v) = get(&app, "/api/metrics?since=2h&instance=known%230&step=1h", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let counted: i64 = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metric"] == "throughput")
        .flat_map(|s| s["points"].as_array().unwrap().iter().map(|p| p[4].as_i64().unwrap()))
        .sum();
    assert_eq!(counted, 8, "{v}");

    // Bad parameters: 400 in the one error shape, naming the parameter.
    for (query, names) in [
        ("since=yesterday", "since"),
        ("until=2026-13-45T00:00:00Z", "until"),
        (&format!("since={}&until={}", t(60), t(0)) as &str, "until"),
        ("metric=latency", "metric"),
        ("step=500ms", "step"),
        ("step=often", "step"),
        ("limit=many", "limit"),
    ] {
        let (code, v) = get(&app, &format!("/api/metrics?{query}"), None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(v["error"]["status"], 400, "{query}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_answer_empty_and_seeded_periods_and_name_bad_parameters() {
    let (app, _dir) = start(&format!(r#"{{ "mcpServers": {{ {BROKEN} }} }}"#), None).await;
    // Nothing recorded yet for these: zero counts, null numbers, notes — no crash.
    let (code, v) = get(&app, "/api/reports/performance", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["report"], "performance");
    assert_eq!(v["tools"], serde_json::json!([]));
    assert_eq!(v["note"], "no tool calls in the period");
    let at = |k: &str| v[k].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!(at("until") - at("since"), chrono::Duration::days(7), "the default period");
    let (code, v) = get(&app, "/api/reports/capacity?server=broken", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let broken = &v["servers"][0];
    assert_eq!((&broken["server"], &broken["instances"]), (&"broken".into(), &1.into()), "{v}");
    assert_eq!(broken["add_replica"]["now"], false);
    assert!(broken["trend"].is_null(), "{v}");
    assert!(broken["add_replica"]["note"].as_str().unwrap().contains("not enough data"), "{v}");
    let (code, v) = get(&app, "/api/reports/availability?server=broken", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert!(v["servers"][0]["error_budget"].is_null(), "no objective: {v}");

    // Seeded: samples of known#0 (healthy, 2 calls/s), a crash recovered by a restart, and
    // tool calls in the current hour.
    let base =
        chrono::DateTime::from_timestamp((warden_core::now().timestamp() - 1800) / 60 * 60, 0)
            .unwrap();
    write_known_samples(&app, base).await;
    let known = warden_core::InstanceId::new("known", 0);
    let trace = warden_core::TraceId::random();
    let emit = |kind| app.bus().emit(warden_core::Event::new(Some(known.clone()), trace, kind));
    emit(warden_core::EventKind::Failure {
        reason: warden_core::Reason::new(warden_core::FailureClass::Crash, "exited with signal 9"),
        context: "state healthy".into(),
    });
    emit(warden_core::EventKind::Recovered {
        class: warden_core::FailureClass::Crash,
        action: warden_core::RecoveryAction::Restart,
        downtime_seconds: 1.5,
    });
    let hour =
        chrono::DateTime::from_timestamp(warden_core::now().timestamp() / 3600 * 3600, 0).unwrap();
    let usage = warden_core::ToolUsage {
        server: "known".into(),
        tool: "echo".into(),
        hour,
        calls: 4,
        errors: 1,
        total_ms: 40.0,
        max_ms: 25.0,
        repeats: 2,
    };
    app.store().record_tool_usage(&[usage]).await.unwrap();

    until("the crash recorded and resolved", async || {
        let (_, v) = get(&app, "/api/reports/failures?since=1h", None).await;
        v["recoveries"]["restart"]["count"] == 1
    })
    .await;
    let (_, v) = get(&app, "/api/reports/failures?since=1h", None).await;
    assert_eq!(v["by_class"]["crash"]["count"], 1, "{v}");
    assert_eq!(v["by_class"]["crash"]["mttr_seconds"], 1.5, "{v}");
    assert_eq!(v["time_to_recover_seconds"]["p90"], 1.5, "{v}");
    let top = v["top_offenders"].as_array().unwrap();
    assert!(top.iter().any(|o| o["instance"] == "known#0" && o["count"] == 1), "{v}");
    assert_eq!(v["recoveries"]["kill_and_restart"]["count"], 0, "every action is listed");

    let (_, v) = get(&app, "/api/reports/performance?since=2h", None).await;
    let echo = &v["tools"][0];
    assert_eq!(
        (&echo["server"], &echo["tool"], &echo["calls"]),
        (&"known".into(), &"echo".into(), &4.into()),
        "{v}"
    );
    assert_eq!(
        (&echo["error_rate"], &echo["mean_ms"], &echo["repeat_rate"]),
        (&0.25.into(), &10.0.into(), &0.5.into())
    );
    let by_hour =
        v["usage_by_hour"].as_array().unwrap().iter().find(|h| h["server"] == "known").unwrap();
    let h = usize::try_from(chrono::Timelike::hour(&hour)).unwrap();
    assert_eq!(
        (by_hour["calls"][h].as_u64(), by_hour["busiest_hour"].as_u64()),
        (Some(4), Some(h as u64)),
        "{v}"
    );
    let known_perf =
        v["servers"].as_array().unwrap().iter().find(|s| s["server"] == "known").unwrap();
    assert_eq!(known_perf["instances"][0]["p50_ms_max"], 7.0, "{v}");

    // Until an hour from now: the incident's 1.5 s all fall inside the period.
    let later = (warden_core::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, v) =
        get(&app, &format!("/api/reports/availability?since=2h&until={later}"), None).await;
    let known_av =
        v["servers"].as_array().unwrap().iter().find(|s| s["server"] == "known").unwrap();
    assert_eq!(known_av["observed_seconds"], 80.0, "eight 10 s slots: {v}");
    assert_eq!(known_av["downtime_seconds"], 1.5, "the incident's own downtime: {v}");
    assert_eq!(known_av["availability"], 1.0 - 1.5 / 80.0, "{v}");
    assert_eq!(known_av["instances"][0]["incidents"], 1, "{v}");

    let (_, v) = get(&app, "/api/reports/capacity?since=2h", None).await;
    let c = v["servers"].as_array().unwrap().iter().find(|s| s["server"] == "known").unwrap();
    assert_eq!(c["throughput"]["peak_hour"], 2.0, "{v}");
    assert_eq!(c["utilization"]["peak_hour"], 0.2, "2/s of one instance's 10/s: {v}");

    // Bad parameters: 400 naming the parameter; unknown reports and servers: 404.
    for kind in ["failures", "performance", "capacity", "availability"] {
        let (code, v) = get(&app, &format!("/api/reports/{kind}?since=yesterday"), None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{kind}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with("since"), "{kind}: {v}");
    }
    let (code, v) = get(&app, "/api/reports/failures?since=1h&until=2h", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("until"), "{v}");
    let (code, v) = get(&app, "/api/reports/failures?server=nope", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"), "{v}");
    let (code, v) = get(&app, "/api/reports/weather", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("failures"), "lists the reports: {v}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_shape_validate_accepts_can_be_mounted() {
    let names = ["A-b_c.d", "github.com", "_x", "-y", "x1", "a.b.c"];
    let servers: Vec<String> = names
        .iter()
        .map(|n| {
            format!(r#""{n}": {{ "command": "/nonexistent/x", "restart": {{ "policy": "no" }} }}"#)
        })
        .collect();
    let (app, _dir) =
        start(&format!(r#"{{ "mcpServers": {{ {} }} }}"#, servers.join(",")), None).await;
    for n in names {
        // Mounted: the MCP endpoint answers (a GET without a session is refused by the MCP
        // transport, not by the router's "no such route").
        let (code, v) = get(&app, &format!("/servers/{n}/mcp"), None).await;
        assert!(
            !(code == StatusCode::NOT_FOUND && v["error"]["message"] == "no such route"),
            "{n}"
        );
        let (code, _) = get(&app, &format!("/api/servers/{n}"), None).await;
        assert_eq!(code, StatusCode::OK, "{n}");
    }
    app.shutdown().await;
}

/// The seed's status rules, with its thresholds made strict: memory over the `_unhealthy` share
/// makes Warden unhealthy (503) and `mcp_health_status` 0; over `_degraded` only, degraded and
/// 0.5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_status_rules_follow_the_configured_thresholds() {
    for (thresholds, status, code, gauge) in [
        (
            r#""memory_degraded": 0, "memory_unhealthy": 0"#,
            "unhealthy",
            StatusCode::SERVICE_UNAVAILABLE,
            0.0,
        ),
        (r#""memory_degraded": 0, "memory_unhealthy": 1"#, "degraded", StatusCode::OK, 0.5),
    ] {
        // Only memory decides here: on a loaded machine Warden's own four pool connections
        // can all be busy at the snapshot (utilization 1.0, over the default 0.95 → unhealthy),
        // the likely cause of this test's one CI failure (on the helper-seeds branch).
        let thresholds = format!(r#"{thresholds}, "pool_degraded": 1, "pool_unhealthy": 1"#);
        let (app, _dir) = start(
            &format!(r#"{{ "mcpServers": {{}}, "warden": {{ "health_thresholds": {{ {thresholds} }} }} }}"#),
            None,
        )
        .await;
        let (c, v) = get(&app, "/health/status", None).await;
        assert_eq!((c, v["status"].as_str().unwrap()), (code, status), "{v}");
        let memory_status = if status == "unhealthy" { "fail" } else { "warn" };
        assert_eq!(v["checks"]["memory"]["status"], memory_status);
        let req = Request::get("/metrics").header("host", "127.0.0.1:7420");
        let res = app.router().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let text = String::from_utf8(
            axum::body::to_bytes(res.into_body(), 1 << 22).await.unwrap().to_vec(),
        )
        .unwrap();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(value("mcp_health_status"), gauge, "{text}");
        assert_eq!(value("warden_health_status"), gauge);
        assert!(text.lines().any(|l| l.starts_with("mcp_pool_utilization ")));
        assert!(text.lines().any(|l| l.starts_with("mcp_database_latency_ms ")));
        assert_eq!(text.matches("# EOF").count(), 1, "one exposition");
        assert!(text.ends_with("# EOF\n"));
        app.shutdown().await;
    }
}
