//! A fleet under fire (issue 16): three `warden run` replicas on one real PostgreSQL, behind a
//! real HAProxy configured from the shipped `deploy/haproxy/warden-fleet.cfg`, while one
//! replica after another is `kill -9`ed every few seconds and started again. An rmcp client
//! talks to the load balancer the whole time.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;
use warden_testkit::postgres::Postgres;

const HAPROXY: &str = "/usr/sbin/haproxy";

/// The shipped HAProxy config with this test's ports, and without what needs root (a
/// `haproxy` user, /run/haproxy, syslog).
fn haproxy_config(front: u16, replicas: &[u16]) -> String {
    let shipped =
        std::fs::read_to_string(workspace_root().join("deploy/haproxy/warden-fleet.cfg")).unwrap();
    let mut out = String::new();
    let mut server = 0;
    for line in shipped.lines() {
        let t = line.trim_start();
        if ["user ", "group ", "stats socket", "log /dev/log"].iter().any(|p| t.starts_with(p)) {
            continue;
        }
        if t.starts_with("bind :7420") {
            out.push_str(&format!("    bind 127.0.0.1:{front}\n"));
        } else if t.starts_with("server warden") {
            out.push_str(&format!(
                "    server warden{} 127.0.0.1:{}\n",
                server + 1,
                replicas[server]
            ));
            server += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(server, 3, "the shipped config names three replicas");
    out
}

/// `warden run` as replica `id` on `port`, recording to `url`.
fn replica(config: &Path, url: &str, state: &Path, id: &str, port: u16) -> tokio::process::Child {
    tokio::process::Command::new(warden())
        .args(["run", "-c"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-dir", "none"])
        .env("WARDEN_DB", url)
        .env("XDG_STATE_HOME", state)
        .env("WARDEN_REPLICA", id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn ready(base: &str, within: Duration) {
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(started.elapsed() < within, "{base} not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn client(url: &str) -> Result<RunningService<RoleClient, ()>, String> {
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    ().serve(transport).await.map_err(|e| e.to_string())
}

/// One read-only call: `tools/list`, or `echo` through the aggregated endpoint.
async fn call(c: &RunningService<RoleClient, ()>, k: u64) -> Result<(), String> {
    if k.is_multiple_of(2) {
        let tools = c.peer().list_all_tools().await.map_err(|e| e.to_string())?;
        if tools.is_empty() {
            return Err("no tools".into());
        }
    } else {
        let args = serde_json::json!({ "text": format!("call {k}") });
        let r = c
            .peer()
            .call_tool(
                CallToolRequestParams::new("alpha__echo")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .map_err(|e| e.to_string())?;
        if r.is_error == Some(true) {
            return Err(format!("tool error: {r:?}"));
        }
    }
    Ok(())
}

/// Read-only calls through HAProxy while a replica is killed every 4 s and started again:
/// none fails after one retry (a call in flight on the dying replica fails fast with a
/// connection error; the client retries it, on the same session, through the balancer); none
/// takes longer than its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_calls_through_haproxy_survive_replicas_killed_one_after_another() {
    assert!(
        Path::new(HAPROXY).exists(),
        "haproxy is missing: install the Debian package (.ci/run does)"
    );
    let pg = Postgres::started().await;
    let url = pg.create_database("chaos");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.json");
    let text = format!(
        r#"{{ "mcpServers": {{ "alpha": {} }} }}"#,
        misbehave(&[], &format!(", {FAST_HEALTH}, {FAST_RESTART}"))
    );
    std::fs::write(&config, text).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let ids = ["replica-0", "replica-1", "replica-2"];
    let state = |k: usize| dir.path().join(format!("r{k}"));
    let mut children: Vec<tokio::process::Child> =
        (0..3).map(|k| replica(&config, &url, &state(k), ids[k], ports[k])).collect();
    for p in &ports {
        ready(&format!("http://127.0.0.1:{p}"), Duration::from_secs(30)).await;
    }
    let front = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front, &ports)).unwrap();
    let _haproxy = tokio::process::Command::new(HAPROXY)
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lb = format!("http://127.0.0.1:{front}");
    ready(&lb, Duration::from_secs(30)).await;

    let mcp = format!("{lb}/mcp");
    // The official Python SDK does the same beside the rmcp client, in its own process.
    let python_client = tokio::process::Command::new(python())
        .arg(workspace_root().join("tests/python/fleet_client.py"))
        .args([&mcp, "28"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let python_client = tokio::spawn(python_client);
    let mut c = client(&mcp).await.expect("the client connects through HAProxy");
    const DEADLINE: Duration = Duration::from_secs(10);
    let (mut calls, mut retried, mut failed, mut slowest) =
        (0_u64, 0_u64, Vec::new(), Duration::ZERO);
    let started = Instant::now();
    let mut next_kill = started + Duration::from_secs(4);
    let mut victim = 0;
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(30) {
        if Instant::now() >= next_kill {
            // kill -9, and started again on the same port under the same name.
            signal(children[victim].id().unwrap(), nix::sys::signal::Signal::SIGKILL);
            let _ = children[victim].wait().await;
            children[victim] = replica(&config, &url, &state(victim), ids[victim], ports[victim]);
            victim = (victim + 1) % 3;
            kills += 1;
            next_kill += Duration::from_secs(4);
        }
        let k = calls;
        calls += 1;
        let t = Instant::now();
        let first = tokio::time::timeout(DEADLINE, call(&c, k)).await;
        let outcome = match first {
            Ok(Ok(())) => Ok(()),
            // Retried once; a client whose connection is gone is made again.
            _ => {
                retried += 1;
                if c.is_closed() {
                    c = match client(&mcp).await {
                        Ok(c) => c,
                        Err(e) => {
                            failed.push(format!("call {k}: reconnect: {e}"));
                            continue;
                        }
                    };
                }
                match tokio::time::timeout(DEADLINE, call(&c, k)).await {
                    Ok(r) => r,
                    Err(_) => Err("past the deadline".into()),
                }
            }
        };
        slowest = slowest.max(t.elapsed());
        if let Err(e) = outcome {
            failed.push(format!("call {k}: {e}"));
        }
    }
    assert!(kills >= 6, "{kills} kills");
    assert!(calls > 100, "{calls} calls in 30 s");
    assert!(
        failed.is_empty(),
        "{} of {calls} read-only calls failed ({retried} retried): {failed:#?}",
        failed.len()
    );
    assert!(slowest < 2 * DEADLINE, "a call took {slowest:?}");
    let out = tokio::time::timeout(Duration::from_secs(60), python_client)
        .await
        .expect("the Python client ends")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let py: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(py["calls"].as_u64().unwrap() > 50, "{py}");
    assert_eq!(py["failed"], serde_json::json!([]), "the Python SDK's read-only calls: {py}");
    assert!(py["slowest"].as_f64().unwrap() < DEADLINE.as_secs_f64(), "{py}");
    let _ = c.cancel().await;
    drop(children);
    drop(pg);
}

async fn health_of(base: &str) -> serde_json::Value {
    reqwest::get(format!("{base}/health/status")).await.unwrap().json().await.unwrap()
}

/// PostgreSQL stopped for 30 s under three replicas: every replica keeps routing calls and
/// recovering its servers (a child killed during the outage is back), says its database is
/// degraded, and once PostgreSQL is back every row of the outage is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_routing_while_postgres_is_down_and_write_everything_after() {
    let pg = Postgres::started().await;
    let pg = std::sync::Arc::new(std::sync::Mutex::new(pg));
    let url = pg.lock().unwrap().create_database("outage");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.json");
    let text = format!(
        r#"{{ "warden": {{ "metrics_interval": "1s" }}, "mcpServers": {{ "alpha": {} }} }}"#,
        misbehave(&[], &format!(", {FAST_HEALTH}, {FAST_RESTART}"))
    );
    std::fs::write(&config, text).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let ids = ["replica-0", "replica-1", "replica-2"];
    let _children: Vec<tokio::process::Child> = (0..3)
        .map(|k| replica(&config, &url, &dir.path().join(format!("r{k}")), ids[k], ports[k]))
        .collect();
    let bases: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    for b in &bases {
        ready(b, Duration::from_secs(30)).await;
    }
    let mut clients = Vec::new();
    for b in &bases {
        clients.push(client(&format!("{b}/mcp")).await.expect("the client connects"));
    }
    let alpha_pid = |v: &serde_json::Value| v["instances"][0]["pid"].as_u64();

    warden_testkit::postgres::stop(&pg).await;
    let down = Instant::now();
    // A crash on replica 0 while the database is down: recovered all the same.
    let before: serde_json::Value = reqwest::get(format!("{}/api/servers/alpha", bases[0]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    signal(alpha_pid(&before).unwrap() as u32, nix::sys::signal::Signal::SIGKILL);
    loop {
        let v: serde_json::Value = reqwest::get(format!("{}/api/servers/alpha", bases[0]))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["instances"][0]["state"] == "healthy" && alpha_pid(&v) != alpha_pid(&before) {
            break;
        }
        assert!(down.elapsed() < Duration::from_secs(20), "alpha not back on replica 0: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut calls = 0_u64;
    let mut degraded = [false; 3];
    while down.elapsed() < Duration::from_secs(30) {
        for (k, c) in clients.iter().enumerate() {
            tokio::time::timeout(Duration::from_secs(5), call(c, calls))
                .await
                .unwrap_or_else(|_| Err("past 5 s".into()))
                .unwrap_or_else(|e| {
                    panic!("call {calls} on replica {k} while PostgreSQL is down: {e}")
                });
            calls += 1;
        }
        for (k, b) in bases.iter().enumerate() {
            let h = health_of(b).await;
            degraded[k] |= h["checks"]["database"]["status"] != "pass";
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(degraded.iter().all(|d| *d), "each replica said its database was down");
    assert!(calls > 100, "{calls} calls during the outage");

    warden_testkit::postgres::start(&pg).await;
    for b in &bases {
        let started = Instant::now();
        loop {
            let h = health_of(b).await;
            if h["checks"]["database"]["status"] == "pass"
                && h["checks"]["database"]["pending_rows"] == 0
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{b} did not write its backlog: {h}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let store = warden_store::Store::open(&warden_store::Location::Postgres(url)).await.unwrap();
    let failures = store.failures(Some("alpha"), 50).await.unwrap();
    let crash = failures
        .iter()
        .find(|f| f.failure_type == "crash")
        .unwrap_or_else(|| panic!("the crash during the outage was written: {failures:#?}"));
    assert!(crash.resolved && crash.recovery_action.as_deref() == Some("restart"), "{crash:?}");
    let recovered = store.events(Some("recovered"), 10).await.unwrap();
    assert!(!recovered.is_empty(), "the recovery event of the outage was written");
    for c in clients {
        let _ = c.cancel().await;
    }
    store.close().await;
}
