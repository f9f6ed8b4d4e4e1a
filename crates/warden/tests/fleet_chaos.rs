//! A fleet under fire (issue 16): three `warden run` replicas on one real PostgreSQL, behind a
//! real HAProxy configured from the shipped `deploy/haproxy/warden-fleet.cfg`, while one
//! replica after another is `kill -9`ed every few seconds and started again. rmcp and the
//! official Python SDK talk to the load balancer the whole time, on legacy (`Mcp-Session-Id`)
//! and 2026-07-28 (stateless) sessions.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fleet::{call, client, client_reconnecting};
use common::*;
use rmcp::model::CallToolRequestParams;
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

/// `alpha`, a misbehaving server with fast probes and restarts, in `dir/warden.json` (with
/// `warden` as the config's `warden` block).
fn alpha_config(dir: &Path, warden: &str) -> std::path::PathBuf {
    let config = dir.join("warden.json");
    let text = format!(
        r#"{{ "warden": {warden}, "mcpServers": {{ "alpha": {} }} }}"#,
        misbehave(&[], &format!(", {FAST_HEALTH}, {FAST_RESTART}"))
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// `replica-0..n` on free ports (their state under `dir/rk`), once each is ready.
async fn start_replicas(
    config: &Path,
    url: &str,
    dir: &Path,
    n: usize,
) -> (Vec<u16>, Vec<tokio::process::Child>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let children = (0..n)
        .map(|k| {
            let state = dir.join(format!("r{k}"));
            replica(config, url, &state, &format!("replica-{k}"), ports[k])
        })
        .collect();
    for p in &ports {
        ready(&format!("http://127.0.0.1:{p}"), Duration::from_secs(30)).await;
    }
    (ports, children)
}

/// HAProxy on the config `text` (written to `dir/haproxy.cfg`); its standard output (the
/// request log, when the config sends it there) to the file `log`.
fn haproxy(dir: &Path, text: &str, log: Option<&std::ffi::OsStr>) -> tokio::process::Child {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, text).unwrap();
    tokio::process::Command::new(HAPROXY)
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(match log {
            Some(path) => std::fs::File::create(path).unwrap().into(),
            None => std::process::Stdio::null(),
        })
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

/// How long a read-only call may take before the client gives up on it.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long a client waits before it retries a failed read-only call.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What one client saw.
struct Driven {
    calls: u64,
    retried: u64,
    failed: Vec<String>,
    slowest: Duration,
}

/// Read-only calls on one rmcp client session (legacy, or 2026-07-28 when `modern`) through
/// the balancer at `mcp` until `until`: a failed call is retried once, after [`RETRY_PAUSE`],
/// on a new connection if the old one is gone.
async fn drive(mcp: String, modern: bool, until: Instant) -> Driven {
    let mut d = Driven { calls: 0, retried: 0, failed: Vec::new(), slowest: Duration::ZERO };
    let mut c = client(&mcp, modern).await.expect("the client connects through HAProxy");
    let mut first_error = String::new();
    while Instant::now() < until {
        let k = d.calls;
        d.calls += 1;
        let t = Instant::now();
        let outcome = match tokio::time::timeout(DEADLINE, call(&c, k)).await {
            Ok(Ok(())) => Ok(()),
            first => {
                first_error = match first {
                    Ok(Err(e)) => e,
                    _ => "past the deadline".into(),
                };
                d.retried += 1;
                // As clients retry: after a short pause (the balancer takes the dead replica
                // out on the first error it sees; an immediate retry can race that).
                tokio::time::sleep(RETRY_PAUSE).await;
                if c.is_closed() {
                    c = match client(&mcp, modern).await {
                        Ok(c) => c,
                        Err(e) => {
                            d.failed.push(format!("call {k}: reconnect: {e}"));
                            continue;
                        }
                    };
                }
                let again = match tokio::time::timeout(DEADLINE, call(&c, k)).await {
                    Ok(r) => r,
                    Err(_) => Err("past the deadline".into()),
                };
                match again {
                    // Warden's own answer for a server not up yet (a replica restarted on the
                    // same port before the balancer saw it go): wait as it says, as clients
                    // are told to (the contract's `retry_after_ms`), then once more.
                    Err(e) if e.contains("retry_after_ms") => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match tokio::time::timeout(DEADLINE, call(&c, k)).await {
                            Ok(r) => r,
                            Err(_) => Err("past the deadline".into()),
                        }
                    }
                    other => other,
                }
            }
        };
        d.slowest = d.slowest.max(t.elapsed());
        if let Err(e) = outcome {
            d.failed.push(format!(
                "call {k} at {}: {e} (first attempt: {first_error})",
                chrono::Utc::now().format("%H:%M:%S%.3f")
            ));
        }
    }
    let _ = c.cancel().await;
    d
}

/// Read-only calls through HAProxy while a replica is killed every 4 s and started again:
/// none fails after one retry (a call in flight on the dying replica fails fast with a
/// connection error; the client retries it, on the same session, through the balancer); none
/// takes longer than its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // each client's counts, for whoever reads the test log
async fn read_only_calls_through_haproxy_survive_replicas_killed_one_after_another() {
    assert!(
        Path::new(HAPROXY).exists(),
        "haproxy is missing: install the Debian package (.ci/run does)"
    );
    let pg = Postgres::started().await;
    let url = pg.create_database("chaos");
    let dir = tempfile::tempdir().unwrap();
    let config = alpha_config(dir.path(), "{}");
    let ids = ["replica-0", "replica-1", "replica-2"];
    let state = |k: usize| dir.path().join(format!("r{k}"));
    let (ports, mut children) = start_replicas(&config, &url, dir.path(), 3).await;
    let front = free_port();
    // FLEET_CHAOS_HAPROXY_LOG=FILE keeps HAProxy's request log (and its servers going down and
    // up) for a failure's post-mortem.
    let log = std::env::var_os("FLEET_CHAOS_HAPROXY_LOG");
    let mut text = haproxy_config(front, &ports);
    if log.is_some() {
        text = text.replace("global\n", "global\n    log stdout format raw local0\n");
    }
    let _haproxy = haproxy(dir.path(), &text, log.as_deref());
    let lb = format!("http://127.0.0.1:{front}");
    ready(&lb, Duration::from_secs(30)).await;

    let mcp = format!("{lb}/mcp");
    const SECONDS: u64 = 30;
    // Four clients at once, each on its own session: rmcp and the official Python SDK (in its
    // own process), each on a legacy (`initialize`, Mcp-Session-Id) and a 2026-07-28
    // (`server/discover`, stateless) session.
    let python = |mode: &str| {
        let run = tokio::process::Command::new(python())
            .arg(workspace_root().join("tests/python/fleet_client.py"))
            .args([&mcp, &(SECONDS - 2).to_string(), mode])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::spawn(run)
    };
    let pythons = [("legacy", python("legacy")), ("modern", python("modern"))];
    let started = Instant::now();
    let until = started + Duration::from_secs(SECONDS);
    let rmcps =
        [false, true].map(|modern| (modern, tokio::spawn(drive(mcp.clone(), modern, until))));
    let mut next_kill = started + Duration::from_secs(4);
    let mut victim = 0;
    let mut kills = 0;
    while Instant::now() < until {
        tokio::time::sleep_until(next_kill.min(until).into()).await;
        if Instant::now() >= until {
            break;
        }
        // kill -9, and started again on the same port under the same name.
        signal(children[victim].id().unwrap(), nix::sys::signal::Signal::SIGKILL);
        let _ = children[victim].wait().await;
        children[victim] = replica(&config, &url, &state(victim), ids[victim], ports[victim]);
        victim = (victim + 1) % 3;
        kills += 1;
        next_kill += Duration::from_secs(4);
    }
    assert!(kills >= 6, "{kills} kills");
    for (modern, task) in rmcps {
        let d = task.await.unwrap();
        let which = if modern { "2026-07-28" } else { "legacy" };
        eprintln!(
            "rmcp {which}: {} calls, {} retried, {} failed, slowest {:?}",
            d.calls,
            d.retried,
            d.failed.len(),
            d.slowest
        );
        assert!(d.calls > 100, "rmcp {which}: {} calls in {SECONDS} s", d.calls);
        assert!(
            d.failed.is_empty(),
            "rmcp {which}: {} of {} read-only calls failed ({} retried): {:#?}",
            d.failed.len(),
            d.calls,
            d.retried,
            d.failed
        );
        assert!(d.slowest < 2 * DEADLINE, "rmcp {which}: a call took {:?}", d.slowest);
    }
    for (mode, task) in pythons {
        let out = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the Python client ends")
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mode}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let py: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        eprintln!("Python SDK {mode}: {py}");
        assert!(py["calls"].as_u64().unwrap() > 50, "{mode}: {py}");
        assert_eq!(py["failed"], serde_json::json!([]), "the Python SDK's {mode} calls: {py}");
        assert!(py["slowest"].as_f64().unwrap() < DEADLINE.as_secs_f64(), "{mode}: {py}");
    }
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
    let config = alpha_config(dir.path(), r#"{ "metrics_interval": "1s" }"#);
    let (ports, _children) = start_replicas(&config, &url, dir.path(), 3).await;
    let bases: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let mut clients = Vec::new();
    for b in &bases {
        clients.push(client(&format!("{b}/mcp"), false).await.expect("the client connects"));
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

/// A legacy session's call in flight on a replica that dies fails fast, though the balancer
/// sends the client's attempt to resume the stream to a live replica: that replica continues
/// the session but cannot replay a stream it never had, so the client must not be told it
/// can resume one (no SSE priming when sessions are shared). Before, the resumed stream
/// stayed open without the answer and the call hung until the client's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_on_a_dying_replica_fails_fast_behind_the_balancer() {
    let pg = Postgres::started().await;
    let url = pg.create_database("in_flight");
    let dir = tempfile::tempdir().unwrap();
    let config = alpha_config(dir.path(), "{}");
    let (ports, mut children) = start_replicas(&config, &url, dir.path(), 2).await;
    // Every request to replica 0 while it lives; replica 1 takes over when it is gone.
    let front = free_port();
    let text = format!(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 5m\n    \
         timeout server 5m\n\nfrontend f\n    bind 127.0.0.1:{front}\n    default_backend b\n\n\
         backend b\n    option httpchk GET /readyz\n    \
         http-check send ver HTTP/1.1 hdr Host 127.0.0.1\n    \
         retries 3\n    option redispatch 1\n    retry-on conn-failure\n    \
         http-request set-header Host 127.0.0.1\n    \
         default-server check inter 1s fall 2 rise 2 observe layer7 error-limit 1 on-error mark-down\n    \
         server w0 127.0.0.1:{}\n    server w1 127.0.0.1:{} backup\n",
        ports[0], ports[1]
    );
    let _haproxy = haproxy(dir.path(), &text, None);
    let lb = format!("http://127.0.0.1:{front}");
    ready(&lb, Duration::from_secs(30)).await;
    // A client that reconnects a broken stream (twice, with backoff): it resumes from the last
    // event id it saw (the sleep's progress), and the live replica must refuse that at once.
    let c = client_reconnecting(&format!("{lb}/mcp"), false, 2).await.expect("a legacy session");
    let args = serde_json::json!({ "ms": 8000 });
    let call = c.peer().call_tool(
        CallToolRequestParams::new("alpha__sleep")
            .with_arguments(args.as_object().unwrap().clone()),
    );
    let killer = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        signal(children[0].id().unwrap(), nix::sys::signal::Signal::SIGKILL);
        Instant::now()
    };
    let (outcome, killed) = tokio::join!(tokio::time::timeout(DEADLINE, call), killer);
    let took = killed.elapsed();
    match outcome {
        Ok(Err(_)) => {}
        Ok(Ok(r)) => panic!("the call on the dead replica answered: {r:?}"),
        Err(_) => panic!("the call hung until the client's deadline ({DEADLINE:?})"),
    }
    // Refused (405): the client stops reconnecting and the call fails.
    assert!(took < DEADLINE / 2, "the call failed {took:?} after its replica died");
    // The session goes on on replica 1 — after one retry 250 ms later, as clients are told
    // (docs/scale.md, "Clients"): the balancer may still send the first request on a pooled
    // connection to the dead replica (502) before it has marked it down.
    let tools = match c.peer().list_all_tools().await {
        Ok(t) => t,
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(250)).await;
            c.peer().list_all_tools().await.expect("the session goes on on replica 1")
        }
    };
    assert!(!tools.is_empty());
    let _ = c.cancel().await;
    let _ = children[0].wait().await;
    drop(children);
    drop(pg);
}
