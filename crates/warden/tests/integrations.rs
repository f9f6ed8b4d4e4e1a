//! Integrations that are not MCP servers, end to end against real things: an HTTP endpoint
//! served here whose answer the test switches, a TCP listener closed and reopened, a command
//! whose exit code follows a file, a SQLite file replaced by garbage and removed, a real
//! PostgreSQL server started in a temporary directory — watched with the same states,
//! incidents, store rows and alerts as MCP servers, and never offered as MCP endpoints.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::Value;
use warden_config::Config;
use warden_core::{EventKind, FailureClass, InstanceState, Reason};
use warden_supervisor::InstanceView;

const LIMIT: Duration = Duration::from_secs(150);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// The one secret the configs use (as `${env:T}`): it must never be stored or shown.
const SECRET: &str = "sekrit-token-4f9a2c";

fn compile(text: &str) -> Config {
    let lookup = |name: &str| match name {
        "T" => Some(SECRET.to_owned()),
        _ => None,
    };
    match warden_config::compile(text, &lookup) {
        Ok(l) => l.config,
        Err(e) => panic!("test config is invalid: {e}\n{text}"),
    }
}

/// An HTTP endpoint whose answer (status, body) the test switches; it also keeps every
/// Authorization header it got and every JSON body POSTed to `/hook` (an alert receiver).
#[derive(Clone)]
struct Endpoint {
    answer: Arc<Mutex<(u16, String)>>,
    auth: Arc<Mutex<Vec<String>>>,
    hooks: Arc<Mutex<Vec<Value>>>,
}

impl Endpoint {
    async fn start() -> (Self, SocketAddr) {
        let me = Self {
            answer: Arc::new(Mutex::new((200, r#"{"status":"ok"}"#.to_owned()))),
            auth: Arc::default(),
            hooks: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(healthz))
            .route("/hook", axum::routing::post(hook))
            .with_state(me.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (me, addr)
    }

    fn set(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_owned());
    }

    /// Alert notifications received so far.
    fn hook_count(&self) -> usize {
        self.hooks.lock().unwrap().len()
    }

    /// Waits for an alert notification `pred` accepts, among those after the first `skip`.
    async fn wait_hook(
        &self,
        skip: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) {
        let start = Instant::now();
        while !self.hooks.lock().unwrap().iter().skip(skip).any(&pred) {
            assert!(start.elapsed() < within, "no {what} within {within:?}: {:#?}", self.hooks);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn healthz(State(ep): State<Endpoint>, headers: HeaderMap) -> (StatusCode, String) {
    if let Some(a) = headers.get("authorization") {
        ep.auth.lock().unwrap().push(a.to_str().unwrap_or("").to_owned());
    }
    let (status, body) = ep.answer.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), body)
}

async fn hook(State(ep): State<Endpoint>, body: axum::Json<Value>) -> StatusCode {
    ep.hooks.lock().unwrap().push(body.0);
    StatusCode::OK
}

/// Waits for a failed probe (check) whose reason `pred` accepts; returns that reason. (A
/// state's reason is the failure that caused it; each later failed check is an event.)
async fn wait_probe_failed(
    w: &mut Running,
    instance: &str,
    what: &str,
    pred: impl Fn(&Reason) -> bool,
) -> Reason {
    let start = Instant::now();
    loop {
        let found =
            w.events_named(instance, "probe_failed").into_iter().find_map(|e| match &e.kind {
                EventKind::ProbeFailed { reason, .. } if pred(reason) => Some(reason.clone()),
                _ => None,
            });
        if let Some(r) = found {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no failed check: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reason_is(v: &InstanceView, class: FailureClass) -> bool {
    v.reason.as_ref().is_some_and(|r| r.class == class)
}

fn message(v: &InstanceView) -> String {
    v.reason.as_ref().map(|r| r.message.clone()).unwrap_or_default()
}

/// No file in `dir` (the database, its WAL, the event log) holds `secret`.
fn assert_nowhere_in(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_nowhere_in(&path, secret);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret was written to {}",
                path.display()
            );
        }
    }
}

fn alert_status(b: &Value, name: &str, status: &str) -> bool {
    b["status"] == status
        && b["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_endpoint_goes_critical_alerts_and_recovers() {
    limited(async {
        let (ep, addr) = Endpoint::start().await;
        let text = format!(
            r#"{{ "integrations": {{ "api": {{
                   "http": {{ "url": "http://{addr}/healthz?key=${{env:T}}",
                              "headers": {{ "Authorization": "Bearer ${{env:T}}" }},
                              "json_field": "status", "json_equals": "ok" }},
                   {FAST_HEALTH}, {FAST_RESTART} }} }},
                 "warden": {{ "alerts": {{
                   "evaluation_interval": "1s", "group_wait": "1s", "group_interval": "1s",
                   "webhooks": [ {{ "name": "hook", "url": "http://{addr}/hook" }} ],
                   "rules": [ {{ "alert": "ApiDown", "metric": "up", "op": "<", "threshold": 1,
                                "match": {{ "server": "api" }}, "for": "0s",
                                "severity": "critical" }} ] }} }} }}"#
        );
        let mut w = start(compile(&text)).await;
        w.wait_state("api", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        assert!(ep.auth.lock().unwrap().iter().all(|a| a == &format!("Bearer {SECRET}")));
        assert!(!ep.auth.lock().unwrap().is_empty(), "the configured header is sent");

        // The server view: kind and a secret-free target; no tools.
        let overview = w.app.registry().overview();
        let view = serde_json::to_value(&overview).unwrap();
        let api = &view["servers"][0];
        assert_eq!(api["kind"], "http");
        assert_eq!(api["target"], format!("http://{addr}/…"));
        assert_eq!(api["tools"], 0);
        assert!(!view.to_string().contains(SECRET), "{view}");

        // 503: warning, then critical, classified server_error. (Notifications from the
        // start, while it was not yet routable, do not count.)
        let mark = ep.hook_count();
        ep.set(503, "{}");
        let v = w.wait_state("api", 0, InstanceState::Warning, Duration::from_secs(10)).await;
        assert!(reason_is(&v, FailureClass::ServerError), "{:?}", v.reason);
        assert_eq!(message(&v), "HTTP 503 (expected 2xx)");
        w.wait_state("api", 0, InstanceState::Critical, Duration::from_secs(10)).await;
        w.wait_event("api#0", "failure", Duration::from_secs(5)).await;
        ep.wait_hook(mark, Duration::from_secs(20), "ApiDown firing", |b| {
            alert_status(b, "ApiDown", "firing")
        })
        .await;

        // A 200 whose field says "down": a protocol error, still critical.
        ep.set(200, r#"{"status":"down"}"#);
        let r = wait_probe_failed(&mut w, "api#0", "json field mismatch", |r| {
            r.class == FailureClass::ProtocolError
        })
        .await;
        assert_eq!(r.message, r#"json field status is "down" (expected "ok")"#);
        assert_eq!(w.view("api", 0).state, InstanceState::Critical);

        // Not JSON at all.
        ep.set(200, "<html>");
        let r = wait_probe_failed(&mut w, "api#0", "a body that is not JSON", |r| {
            r.message.starts_with("body is not JSON")
        })
        .await;
        assert_eq!(r.class, FailureClass::ProtocolError);

        // Rate limited and refused credentials have classes of their own.
        ep.set(429, "{}");
        let r = wait_probe_failed(&mut w, "api#0", "rate_limit", |r| {
            r.class == FailureClass::RateLimit
        })
        .await;
        assert_eq!(r.message, "HTTP 429 (expected 2xx)");
        ep.set(401, "{}");
        wait_probe_failed(&mut w, "api#0", "authentication", |r| {
            r.class == FailureClass::Authentication
        })
        .await;

        // Well again: critical → warning → healthy, the incident resolved, the alert too.
        let mark = ep.hook_count();
        ep.set(200, r#"{"status":"ok"}"#);
        w.wait_state("api", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        w.wait_event("api#0", "recovered", Duration::from_secs(5)).await;
        ep.wait_hook(mark, Duration::from_secs(20), "ApiDown resolved", |b| {
            alert_status(b, "ApiDown", "resolved")
        })
        .await;

        let (store, dir) = w.stop().await;
        let failures = store.failures(Some("api"), 10).await.unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        let f = &failures[0];
        assert_eq!(f.failure_type, "server_error");
        assert!(f.error_details.as_deref().unwrap_or("").contains("HTTP 503"), "{f:?}");
        assert!(f.resolved);
        assert_eq!(f.recovery_action.as_deref(), Some("self_recovered"));
        store.close().await;
        assert_nowhere_in(dir.path(), SECRET);
    })
    .await;
}

/// Accepts (and drops) connections on `listener` until aborted.
fn accept_all(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            drop(sock);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_port_that_closes_is_offline_and_reconnected_when_it_reopens() {
    limited(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = accept_all(listener);
        let text = format!(
            r#"{{ "integrations": {{ "cache": {{ "tcp": "{addr}", {FAST_HEALTH}, {FAST_RESTART} }} }} }}"#
        );
        let mut w = start(compile(&text)).await;
        let v = w.wait_state("cache", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        assert!(v.latency_ms.is_some() && v.pid.is_none());
        let view = serde_json::to_value(w.app.registry().overview()).unwrap();
        assert_eq!(view["servers"][0]["kind"], "tcp");
        assert_eq!(view["servers"][0]["target"], addr.to_string());

        acceptor.abort();
        let _ = acceptor.await;
        let v = w
            .wait("cache", 0, Duration::from_secs(10), "offline (connection_error)", |v| {
                v.state == InstanceState::Offline && reason_is(v, FailureClass::ConnectionError)
            })
            .await;
        assert!(message(&v).contains("refused"), "{}", message(&v));
        w.wait_event("cache#0", "failure", Duration::from_secs(5)).await;

        // Reopened on the same port: connected again, the incident resolved by a reconnect.
        let start_bind = Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(start_bind.elapsed() < Duration::from_secs(10), "rebind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let acceptor = accept_all(listener);
        w.wait_state("cache", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        w.wait_event("cache#0", "recovered", Duration::from_secs(5)).await;
        let (store, _dir) = w.stop().await;
        acceptor.abort();
        let failures = store.failures(Some("cache"), 10).await.unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].failure_type, "connection_error");
        assert!(failures[0].resolved);
        assert_eq!(failures[0].recovery_action.as_deref(), Some("reconnect"));
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_check_follows_its_exit_code_and_a_slow_one_is_killed_whole() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("flag");
        std::fs::write(&flag, b"").unwrap();
        let pidfile = dir.path().join("sleep.pid");
        // No shell: `ls FILE` exits 2 with a line on stderr when FILE is missing.
        let text = format!(
            r#"{{ "integrations": {{
                 "job": {{ "command": "/bin/ls", "args": [{flag}], {FAST_HEALTH}, {FAST_RESTART} }},
                 "slow": {{ "command": "/bin/sh", "args": ["-c", {script}],
                            "health": {{ "startup_timeout": "1s" }},
                            "restart": {{ "policy": "no" }} }} }} }}"#,
            flag = json_str(&flag.display().to_string()),
            script = json_str(&format!("sleep 30 & echo $! > {}; wait", pidfile.display())),
        );
        let mut w = start(compile(&text)).await;
        w.wait_state("job", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let view = serde_json::to_value(w.app.registry().overview()).unwrap();
        assert_eq!(view["servers"][0]["kind"], "command");
        assert_eq!(view["servers"][0]["target"], "/bin/ls");

        std::fs::remove_file(&flag).unwrap();
        let v = w.wait_state("job", 0, InstanceState::Critical, Duration::from_secs(10)).await;
        assert!(reason_is(&v, FailureClass::ServerError), "{:?}", v.reason);
        let m = message(&v);
        assert!(m.starts_with("exit code 2: "), "{m}");
        assert!(m.contains("No such file or directory") && m.chars().count() <= 220, "{m}");

        std::fs::write(&flag, b"").unwrap();
        w.wait_state("job", 0, InstanceState::Healthy, Duration::from_secs(20)).await;

        // The slow check never answers within its start-up deadline: a timeout, and the
        // whole process group (the shell and its `sleep`) is killed.
        let v = w.wait_state("slow", 0, InstanceState::Offline, Duration::from_secs(10)).await;
        assert!(reason_is(&v, FailureClass::Timeout), "{:?}", v.reason);
        let sleep_pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        let start_kill = Instant::now();
        while alive(sleep_pid) {
            assert!(start_kill.elapsed() < Duration::from_secs(5), "sleep {sleep_pid} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (store, _dir) = w.stop().await;
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_garbled_then_removed_fails_then_goes_offline() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let store =
            warden_store::Store::open(&warden_store::Location::Sqlite(db.clone())).await.unwrap();
        store.close().await;
        let text = format!(
            r#"{{ "integrations": {{ "local": {{ "sqlite": {}, {FAST_HEALTH}, {FAST_RESTART} }} }} }}"#,
            json_str(&db.display().to_string())
        );
        let mut w = start(compile(&text)).await;
        w.wait_state("local", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let view = serde_json::to_value(w.app.registry().overview()).unwrap();
        assert_eq!(view["servers"][0]["kind"], "sqlite");
        assert_eq!(view["servers"][0]["target"], db.display().to_string());

        for side in ["app.db-wal", "app.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(side));
        }
        std::fs::write(&db, vec![b'x'; 8192]).unwrap();
        let v = w.wait_state("local", 0, InstanceState::Critical, Duration::from_secs(10)).await;
        assert!(reason_is(&v, FailureClass::ServerError), "{:?}", v.reason);
        assert!(message(&v).contains("not a database"), "{}", message(&v));

        std::fs::remove_file(&db).unwrap();
        let v = w
            .wait("local", 0, Duration::from_secs(10), "offline (connection_error)", |v| {
                v.state == InstanceState::Offline && reason_is(v, FailureClass::ConnectionError)
            })
            .await;
        assert!(message(&v).contains("no such file"), "{}", message(&v));
        assert!(!db.exists(), "a read-only check never creates the file");
        let (store, _dir) = w.stop().await;
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_are_never_mcp_endpoints_and_show_in_the_api() {
    limited(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port_addr = listener.local_addr().unwrap();
        let acceptor = accept_all(listener);
        let text = format!(
            r#"{{ "mcpServers": {{ "srv": {srv} }},
                 "integrations": {{ "port": {{ "tcp": "{port_addr}", {FAST_HEALTH} }} }} }}"#,
            srv = misbehave(&[], &format!(", {FAST_HEALTH}")),
        );
        let (app, _dir, addr) = listening(compile(&text), None).await;
        for name in ["srv", "port"] {
            let start = Instant::now();
            while app.registry().server(name).unwrap().views()[0].state != InstanceState::Healthy {
                assert!(start.elapsed() < Duration::from_secs(30), "{name} not healthy");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        // /mcp lists the MCP server's tools only.
        use rmcp::transport::streamable_http_client::{
            StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
        };
        use rmcp::ServiceExt;
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
        );
        let client = ().serve(transport).await.expect("the client connects");
        let names: Vec<String> = client
            .peer()
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("srv__")), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("port__")), "{names:?}");
        let _ = client.cancel().await;

        // No endpoint of its own.
        let http = reqwest::Client::new();
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}});
        let post = |path: &str| {
            http.post(format!("http://{addr}{path}"))
                .header("accept", "application/json, text/event-stream")
                .json(&init)
                .send()
        };
        assert_eq!(post("/servers/port/mcp").await.unwrap().status(), 404);
        assert_eq!(post("/servers/srv/mcp").await.unwrap().status(), 200);

        // The API shows it, with its kind and target.
        let servers: Value = http
            .get(format!("http://{addr}/api/servers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list = servers["servers"].as_array().cloned().unwrap_or_default();
        let port = list.iter().find(|s| s["name"] == "port").expect("listed");
        assert_eq!(port["kind"], "tcp");
        assert_eq!(port["target"], port_addr.to_string());
        assert_eq!(port["status"], "healthy");
        assert_eq!(port["tools"], 0);
        let srv = list.iter().find(|s| s["name"] == "srv").expect("listed");
        assert_eq!(srv["kind"], "mcp");
        app.shutdown().await;
        acceptor.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_check_reports_integrations() {
    limited(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port_addr = listener.local_addr().unwrap();
        let acceptor = accept_all(listener);
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("warden.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{ "integrations": {{ "port": {{ "tcp": "{port_addr}" }},
                                         "ok": {{ "command": "/bin/true" }},
                                         "gone": {{ "sqlite": {} }} }} }}"#,
                json_str(&dir.path().join("missing.db").display().to_string())
            ),
        )
        .unwrap();
        let out = tokio::process::Command::new(warden())
            .args(["check", "--json", "--timeout", "10s", "-c"])
            .arg(&cfg)
            .env("XDG_STATE_HOME", dir.path())
            .output()
            .await
            .unwrap();
        acceptor.abort();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(&stdout).unwrap();
        let by_name = |n: &str| {
            v["servers"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone()
        };
        assert_eq!(by_name("port")["status"], "healthy");
        assert_eq!(by_name("port")["kind"], "tcp");
        assert_eq!(by_name("ok")["status"], "healthy");
        assert_eq!(by_name("ok")["kind"], "command");
        let gone = by_name("gone");
        assert_eq!(gone["status"], "unhealthy");
        assert_eq!(gone["instances"][0]["reason"]["class"], "connection_error");
        assert!(!dir.path().join("missing.db").exists());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a real server in a temporary directory (warden_testkit::postgres).

use warden_testkit::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_is_checked_with_a_new_connection_each_time() {
    limited(async {
        let mut pg = Postgres::init(SECRET);
        let text = format!(
            r#"{{ "integrations": {{ "db": {{
                   "postgres": "postgres://warden:${{env:T}}@127.0.0.1:{port}/postgres",
                   "health": {{ "interval": "500ms", "timeout": "2s", "edge_interval": "200ms",
                                "hang_timeout": "10s" }}, {FAST_RESTART} }} }} }}"#,
            port = pg.port
        );
        let mut w = start(compile(&text)).await;
        w.wait_state("db", 0, InstanceState::Healthy, Duration::from_secs(60)).await;
        let view = serde_json::to_value(w.app.registry().overview()).unwrap();
        assert_eq!(view["servers"][0]["kind"], "postgres");
        assert_eq!(
            view["servers"][0]["target"],
            format!("postgres://127.0.0.1:{}/postgres", pg.port)
        );

        // The password changes under it: every new connection is refused its login.
        pg.psql("ALTER USER warden PASSWORD 'another-password'");
        let v = w
            .wait("db", 0, Duration::from_secs(15), "critical (authentication)", |v| {
                v.state == InstanceState::Critical && reason_is(v, FailureClass::Authentication)
            })
            .await;
        assert!(message(&v).contains("authentication failed"), "{}", message(&v));
        assert!(!message(&v).contains("warden"), "no user name in the reason: {}", message(&v));
        pg.psql(&format!("ALTER USER warden PASSWORD '{SECRET}'"));
        w.wait_state("db", 0, InstanceState::Healthy, Duration::from_secs(20)).await;

        // The server stops: connections are refused, the instance is offline.
        pg.stop();
        w.wait("db", 0, Duration::from_secs(15), "offline (connection_error)", |v| {
            v.state == InstanceState::Offline && reason_is(v, FailureClass::ConnectionError)
        })
        .await;
        let (store, dir) = w.stop().await;
        let failures = store.failures(Some("db"), 10).await.unwrap();
        let classes: Vec<&str> = failures.iter().map(|f| f.failure_type.as_str()).collect();
        assert!(classes.contains(&"authentication"), "{classes:?}");
        assert!(classes.contains(&"connection_error"), "{classes:?}");
        store.close().await;
        assert_nowhere_in(dir.path(), SECRET);
    })
    .await;
}
