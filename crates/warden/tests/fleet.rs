//! Warden on PostgreSQL (issue 16): real `warden run` processes recording to a real PostgreSQL
//! server started from the Debian binaries (warden_testkit::postgres).

mod common;

use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use serde_json::Value;
use warden_store::{Location, Store};
use warden_testkit::postgres::{Postgres, PASSWORD};

async fn postgres() -> Postgres {
    Postgres::started().await
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

fn replica_state(v: &Value, id: &str) -> String {
    v["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["id"] == id)
        .and_then(|r| r["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

/// Three replicas on one PostgreSQL database: any of them shows the whole fleet (each instance
/// labelled with its replica); a replica killed with SIGKILL reads as gone within 15 s, one
/// stopped cleanly as stopped with its instances gone; `warden status --fleet` prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_shows_the_fleet_and_a_dead_replica_is_gone_within_15_s() {
    let pg = postgres().await;
    let url = pg.create_database("fleet");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let replicas = three_replicas(&config, &url, dir.path()).await;
    let (base0, base1) = (replicas[0].1.clone(), replicas[1].1.clone());
    let v = fleet_until(&base1, "three live replicas, alpha healthy on each", |v| {
        v["replicas_live"] == 3
            && v["servers"][0]["instances"]
                .as_array()
                .is_some_and(|i| i.len() == 3 && i.iter().all(|i| i["state"] == "healthy"))
    })
    .await;
    assert_eq!(v["replica"], "replica-1", "answered by the replica asked");
    assert_eq!(v["status"], "healthy");
    let mut on: Vec<&str> = v["servers"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["replica"].as_str().unwrap())
        .collect();
    on.sort();
    assert_eq!(on, ["replica-0", "replica-1", "replica-2"]);
    assert_eq!(v["servers"][0]["replicas"]["replica-2"]["status"], "healthy");
    let eco = json(&base0, "/health/ecosystem?scope=fleet").await;
    assert_eq!(eco["scope"], "fleet");
    assert_eq!(eco["replicas_live"], 3);
    let (status, body) = get(&base0, "/api/servers?scope=galaxy").await;
    assert_eq!(status, 400, "{body}");

    // SIGKILL: no goodbye; the others see its heartbeat stop.
    let killed = Instant::now();
    signal(replicas[2].0.id().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let v =
        fleet_until(&base0, "replica-2 gone", |v| replica_state(v, "replica-2") == "gone").await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(15), "gone after {took:?}");
    assert_eq!(v["replicas_live"], 2);
    let on_gone: Vec<&Value> = v["servers"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["replica"] == "replica-2")
        .collect();
    assert!(on_gone.iter().all(|i| i["replica_state"] == "gone"), "{v:#}");
    assert_eq!(v["status"], "healthy", "a gone replica's instances do not count: {v:#}");

    // SIGTERM: a clean stop is said so, and its instances leave the view.
    signal(replicas[1].0.id().unwrap(), nix::sys::signal::Signal::SIGTERM);
    let v =
        fleet_until(&base0, "replica-1 stopped", |v| replica_state(v, "replica-1") == "stopped")
            .await;
    assert!(
        v["servers"][0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["replica"] != "replica-1"),
        "{v:#}"
    );

    let out = std::process::Command::new(warden())
        .args(["status", "--fleet", "--url", &base0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("REPLICA") && text.contains("replica-2 (gone)"), "{text}");
    assert!(text.contains("replica-1 stopped") && text.contains("replica-0 live"), "{text}");
    drop(replicas);
    drop(pg);
}

/// With SQLite there is no fleet to share: the fleet is this Warden alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sqlite_the_fleet_is_this_warden_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let (_warden, base) = run_warden(&config, dir.path(), &[("WARDEN_REPLICA", "solo")]).await;
    let v = fleet_until(&base, "alpha healthy", |v| {
        v["servers"][0]["instances"][0]["state"] == "healthy"
    })
    .await;
    assert_eq!(v["replicas_live"], 1);
    assert_eq!(v["replicas"][0]["id"], "solo");
    assert_eq!(v["replicas"][0]["self"], true);
    assert_eq!(v["servers"][0]["instances"][0]["replica"], "solo");
}

/// A server that exits at once (a crash loop, `CrashLoop` fires after 3 restarts) and a
/// webhook receiver at `hook_url`, with 1-second alert timings.
fn crash_loop_config(dir: &std::path::Path, hook_url: &str) -> std::path::PathBuf {
    let config = dir.join("warden.json");
    let text = format!(
        r#"{{ "mcpServers": {{ "crashy": {}, "calm": {} }},
             "warden": {{ "alerts": {{
                "evaluation_interval": "1s", "group_wait": "1s", "group_interval": "1s",
                "webhooks": [ {{ "name": "hook", "url": "{hook_url}" }} ] }} }} }}"#,
        misbehave(&["--exit-on-start"], &format!(", {FAST_HEALTH}, {FAST_RESTART}")),
        misbehave(&[], &format!(", {FAST_HEALTH}, {FAST_RESTART}")),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// A webhook receiver: every JSON body posted to it.
#[derive(Clone, Default)]
struct Hook(std::sync::Arc<std::sync::Mutex<Vec<Value>>>);

impl Hook {
    async fn start() -> (Self, String) {
        let hook = Self::default();
        let got = hook.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let got = got.clone();
                async move {
                    got.0.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, format!("http://{addr}/hook"))
    }

    /// Notifications with `status` for alert `name`.
    fn count(&self, status: &str, name: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["status"] == status && b["groupLabels"]["alertname"] == name)
            .cloned()
            .collect()
    }
}

/// Three replicas see the same crash loop; one leader notifies, once. Killing the leader
/// (`kill -9`) makes another lead within 10 s, and the alert is not notified again: the new
/// leader's dispatcher was fed the same fleet-wide alerts all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_notifies_once_and_another_takes_over_within_10_s() {
    let pg = postgres().await;
    let url = pg.create_database("leader");
    let (hook, hook_url) = Hook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = crash_loop_config(dir.path(), &hook_url);
    let replicas = three_replicas(&config, &url, dir.path()).await;
    let started = Instant::now();
    while hook.count("firing", "CrashLoop").is_empty() {
        assert!(started.elapsed() < LIMIT, "no CrashLoop notification");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = hook.count("firing", "CrashLoop")[0].clone();
    assert_eq!(first["alerts"].as_array().unwrap().len(), 1, "one alert for the fleet: {first:#}");
    let v = fleet_until(&replicas[0].1, "a leader in the fleet view", |v| {
        v["leader"].is_string() && v["replicas_live"] == 3
    })
    .await;
    let leader = v["leader"].as_str().unwrap().to_owned();
    let k: usize = leader.trim_start_matches("replica-").parse().unwrap();

    let killed = Instant::now();
    signal(replicas[k].0.id().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let others: Vec<String> = (0..3).filter(|j| *j != k).map(|j| replicas[j].1.clone()).collect();
    let new = loop {
        let mut leading = Vec::new();
        for base in &others {
            let v = json(base, "/api/servers?scope=fleet").await;
            if v["leading"] == true {
                leading.push(v["replica"].as_str().unwrap().to_owned());
            }
        }
        assert!(leading.len() <= 1, "two leaders: {leading:?}");
        if let Some(l) = leading.pop() {
            break l;
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(10), "a new leader ({new}) after {took:?}");

    // Several evaluations and group intervals later: still one notification, nothing resolved.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let firing = hook.count("firing", "CrashLoop");
    assert_eq!(firing.len(), 1, "notified once across the fleet: {firing:#?}");
    assert!(hook.count("resolved", "CrashLoop").is_empty(), "{:#?}", hook.0.lock().unwrap());
    drop(replicas);
    drop(pg);
}

/// Operator actions made on one replica take effect on every replica: a silence made on
/// replica 0 mutes the alert everywhere (the leader, whichever it is, sends nothing; replica 2
/// shows it muted by that silence); a server stopped through replica 1 is stopped on every
/// replica within 2 s, and started again through replica 2; a tuning change made through
/// replica 0 is in force on replica 2 within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_made_on_one_replica_take_effect_on_every_replica() {
    let pg = postgres().await;
    let url = pg.create_database("silence");
    let (hook, hook_url) = Hook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = crash_loop_config(dir.path(), &hook_url);
    let replicas = three_replicas(&config, &url, dir.path()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/silences", replicas[0].1))
        .json(&serde_json::json!({
            "matchers": ["alertname=CrashLoop"], "duration": "1h", "comment": "fleet test"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let view = json(&replicas[2].1, "/api/alerts").await;
        let firing = view["firing"].as_array().cloned().unwrap_or_default();
        if firing.iter().any(|a| a["name"] == "CrashLoop") {
            assert!(
                firing.iter().all(|a| a["muted"] == format!("silenced by {id}")),
                "muted on replica 2 by replica 0's silence: {view:#}"
            );
            break;
        }
        assert!(started.elapsed() < LIMIT, "CrashLoop never fired on replica 2: {view:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(hook.count("firing", "CrashLoop").is_empty(), "{:#?}", hook.0.lock().unwrap());

    for (through, action, want) in [(1, "stop", "stopped"), (2, "start", "healthy")] {
        let r = reqwest::Client::new()
            .post(format!("{}/api/servers/calm/{action}", replicas[through].1))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let asked = Instant::now();
        for (_, base) in &replicas {
            loop {
                let v = json(base, "/api/servers/calm").await;
                if v["instances"].as_array().unwrap().iter().all(|i| i["state"] == want) {
                    break;
                }
                assert!(asked.elapsed() < LIMIT, "calm not {want} on {base}: {v}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if action == "stop" {
            let took = asked.elapsed();
            assert!(took <= Duration::from_secs(2), "stopped everywhere after {took:?}");
        }
    }

    // A tuning change made through replica 0 is in force on replica 2.
    let timeout_of = |v: &Value| {
        v["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["server"] == "calm" || s["name"] == "calm")
            .and_then(|s| s["parameters"].as_array())
            .and_then(|p| p.iter().find(|p| p["parameter"] == "timeout"))
            .and_then(|p| p["value"].as_f64())
    };
    let base = timeout_of(&json(&replicas[2].1, "/api/tuning").await).expect("calm's timeout");
    let wanted = base * 2.0;
    let r = reqwest::Client::new()
        .post(format!("{}/api/tuning/set", replicas[0].1))
        .json(&serde_json::json!({
            "server": "calm", "parameter": "timeout", "value": format!("{}ms", wanted)
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let asked = Instant::now();
    loop {
        let now = timeout_of(&json(&replicas[2].1, "/api/tuning").await);
        if now == Some(wanted) {
            break;
        }
        assert!(asked.elapsed() < LIMIT, "replica 2's timeout stayed {now:?}, not {wanted}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = asked.elapsed();
    assert!(took <= Duration::from_secs(2), "tuned on replica 2 after {took:?}");
    drop(replicas);
    drop(pg);
}

/// The state of every instance of `server` on `base`.
async fn states(base: &str, server: &str) -> Vec<String> {
    let v = json(base, &format!("/api/servers/{server}")).await;
    v["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["state"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A replica that restarts keeps what the operators decided for the fleet: alpha, stopped
/// through replica 1, is stopped again on replica 2 after replica 2 is killed and started
/// anew (and stays stopped), and starts there when started through replica 0. (Before, the
/// restarted replica ran alpha while the rest of the fleet had it stopped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_keeps_a_server_the_fleet_stopped_stopped() {
    let pg = postgres().await;
    let url = pg.create_database("standing");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut replicas = three_replicas(&config, &url, dir.path()).await;
    healthy_on_every_replica(&replicas[0].1, "alpha").await;
    let post = |base: &str, action: &str| {
        reqwest::Client::new()
            .post(format!("{base}/api/servers/alpha/{action}"))
            .header("content-type", "application/json")
            .send()
    };
    assert_eq!(post(&replicas[1].1, "stop").await.unwrap().status(), 202);
    let asked = Instant::now();
    while states(&replicas[2].1, "alpha").await != ["stopped"] {
        assert!(asked.elapsed() < LIMIT, "alpha not stopped on replica 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    signal(replicas[2].0.id().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let _ = replicas[2].0.wait().await;
    replicas[2] = replica(&config, &url, dir.path(), 2).await;
    let base = replicas[2].1.clone();
    // Stopped from the first answer on: the standing decision is read before supervision
    // starts, so the restarted replica never runs alpha, not even for a moment (before: it
    // ran for about a second, until the decision was replayed).
    for _ in 0..40 {
        assert_eq!(states(&base, "alpha").await, ["stopped"], "alpha stopped from the start");
        tokio::time::sleep(Duration::from_millis(75)).await;
    }

    assert_eq!(post(&replicas[0].1, "start").await.unwrap().status(), 202);
    let asked = Instant::now();
    while states(&base, "alpha").await != ["healthy"] {
        assert!(asked.elapsed() < LIMIT, "alpha not started again on replica 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(replicas);
    drop(pg);
}
