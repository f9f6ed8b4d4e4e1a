//! Warden on PostgreSQL (issue 16): real `warden run` processes recording to a real PostgreSQL
//! server started from the Debian binaries (warden_testkit::postgres).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use warden_store::{Location, Store};
use warden_testkit::postgres::{Postgres, PASSWORD};

const LIMIT: Duration = Duration::from_secs(30);

async fn postgres() -> Postgres {
    tokio::task::spawn_blocking(|| {
        let pg = Postgres::init(PASSWORD);
        pg.wait_ready();
        pg
    })
    .await
    .unwrap()
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn json(base: &str, path: &str) -> Value {
    let (status, body) = get(base, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The pid of `server`'s first instance once it is healthy (and not `not`).
async fn healthy_pid_of(base: &str, server: &str, not: Option<u64>) -> u64 {
    let started = Instant::now();
    loop {
        let v = json(base, &format!("/api/servers/{server}")).await;
        let i = &v["instances"][0];
        if i["state"] == "healthy" && i["pid"].as_u64().is_some() && i["pid"].as_u64() != not {
            return i["pid"].as_u64().unwrap();
        }
        assert!(started.elapsed() < LIMIT, "{server} not healthy: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `warden run` with `WARDEN_DB=postgres://…` records every table there: a crash and its
/// recovery, events, samples; the database is reported healthy, and the password is in no
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_records_to_postgres_and_never_shows_the_password() {
    let pg = postgres().await;
    let url = pg.create_database("run");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.json");
    let text = format!(
        r#"{{ "warden": {{ "metrics_interval": "1s" }},
             "mcpServers": {{ "alpha": {} }} }}"#,
        misbehave(&[], &format!(", {FAST_HEALTH}, {FAST_RESTART}"))
    );
    std::fs::write(&config, text).unwrap();
    // The event log and disk checks go to the state directory with PostgreSQL.
    let state = dir.path().to_str().unwrap();
    let envs = [("WARDEN_DB", url.as_str()), ("XDG_STATE_HOME", state)];
    let (mut warden, base) = run_warden_on(&config, None, &envs).await;

    let pid = healthy_pid_of(&base, "alpha", None).await;
    signal(pid as u32, nix::sys::signal::Signal::SIGKILL);
    healthy_pid_of(&base, "alpha", Some(pid)).await;

    // The store is PostgreSQL, healthy, named without its password.
    let health = json(&base, "/health/status").await;
    let db = &health["checks"]["database"];
    assert_eq!(db["status"], "pass", "{health}");
    let location = db["location"].as_str().unwrap_or_default();
    assert!(location.starts_with("postgres://warden:***@127.0.0.1:"), "{health}");
    let events = health["checks"]["event_log"]["path"].as_str().unwrap_or_default();
    assert!(events.starts_with(state), "{health}");
    for path in ["/health", "/health/status", "/api/servers", "/metrics", "/api/events?limit=50"] {
        let (_, body) = get(&base, path).await;
        assert!(!body.contains(PASSWORD), "{path} shows the password: {body}");
    }

    // Every kind of row is in PostgreSQL.
    let store = Store::open(&Location::Postgres(url)).await.unwrap();
    let started = Instant::now();
    loop {
        let failures = store.failures(Some("alpha"), 10).await.unwrap();
        let metrics = store.count("integration_health_metrics").await.unwrap();
        if failures.iter().any(|f| f.failure_type == "crash" && f.resolved) && metrics >= 4 {
            break;
        }
        assert!(started.elapsed() < LIMIT, "rows missing: {failures:?}, {metrics} samples");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.count("events").await.unwrap() > 2);
    assert_eq!(store.count("failover_configurations").await.unwrap(), 1);

    signal(warden.id().unwrap(), nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(LIMIT, warden.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    store.close().await;
    drop(pg);
}
