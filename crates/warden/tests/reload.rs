//! Live reload, end to end: real child processes, a real config file rewritten the ways editors
//! save, the real binary for SIGHUP and `warden reload`, real MCP clients on the HTTP endpoint.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::{ClientHandler, ServiceExt};
use warden_app::App;
use warden_core::InstanceState;

const LIMIT: Duration = Duration::from_secs(120);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// A client that counts `tools/list_changed` notifications.
#[derive(Clone, Default)]
struct Client {
    tools_changed: Arc<AtomicU32>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("reload-test", "0"))
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.tools_changed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn connect(addr: &str, handler: Client) -> RunningService<RoleClient, Client> {
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
    );
    handler.serve(transport).await.expect("the client connects")
}

async fn tools(c: &RunningService<RoleClient, Client>) -> Vec<String> {
    let mut names: Vec<String> = c
        .peer()
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .filter(|n| !n.starts_with("warden__"))
        .collect();
    names.sort();
    names
}

async fn echo(
    c: &RunningService<RoleClient, Client>,
    tool: &str,
) -> Result<rmcp::model::CallToolResult, rmcp::ServiceError> {
    let args = serde_json::json!({ "text": "hi" }).as_object().unwrap().clone();
    c.peer().call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await
}

/// A config file's text: `warden` settings and servers.
fn file_text(warden: &str, servers: &[(&str, String)]) -> String {
    let body: Vec<String> = servers.iter().map(|(n, s)| format!("{}: {s}", json_str(n))).collect();
    format!(r#"{{ "warden": {{ {warden} }}, "mcpServers": {{ {} }} }}"#, body.join(",\n"))
}

fn server(extra: &str) -> String {
    misbehave(&[], &format!(", {FAST_HEALTH}{extra}"))
}

/// How editors save: a new file renamed over the old one.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Truncate, then write in place.
fn save_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Several writes in a row, the file half-written (not valid JSON) in between.
fn save_in_pieces(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    let (a, b) = text.split_at(text.len() / 2);
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    f.write_all(b.as_bytes()).unwrap();
}

/// How the kubelet updates a mounted ConfigMap: the files live in a timestamped directory,
/// `..data` is a symlink to it and `config.json` a symlink to `..data/config.json`; an update
/// writes a new directory and renames a new `..data` symlink over the old one — the name
/// `config.json` is never touched.
fn configmap_update(dir: &Path, generation: u32, text: &str) {
    let data = dir.join(format!("..2026_12_05_{generation}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("config.json"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("config.json");
    if !link.exists() {
        std::os::unix::fs::symlink("..data/config.json", &link).unwrap();
    }
}

async fn start(path: &Path, dir: &Path) -> App {
    let config = warden_config::load(path).expect("the test config loads").config;
    let mut app = start_in(config, dir, true, None).await;
    app.enable_reload(path.to_owned(), None);
    app
}

/// Every instance of `server` healthy (30 s at most); their pids.
async fn healthy(app: &App, server: &str) -> Vec<u32> {
    let start = Instant::now();
    loop {
        if let Some(h) = app.registry().server(server) {
            let views = h.views();
            if views.iter().all(|v| v.state == InstanceState::Healthy) {
                return views.iter().map(|v| v.pid.unwrap()).collect();
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{server} did not become healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<warden_core::Event>>,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(serde_json::to_value(&*e).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_the_file_changes_only_what_changed_and_sessions_stay() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.json");
        std::fs::write(
            &path,
            file_text("", &[("a", server("")), ("b", server("")), ("c", server(""))]),
        )
        .unwrap();
        let app = start(&path, dir.path()).await;
        let mut bus = app.bus().subscribe();
        let (a, b, c) =
            (healthy(&app, "a").await, healthy(&app, "b").await, healthy(&app, "c").await);
        let addr = app.http_addr().unwrap().to_string();
        let handler = Client::default();
        let client = connect(&addr, handler.clone()).await;
        until("every server's tools listed", Duration::from_secs(10), async || {
            let t = tools(&client).await;
            ["a__echo", "b__echo", "c__echo"].iter().all(|n| t.iter().any(|x| x == n))
        })
        .await;

        // 1. Renamed over: b removed, d added, c's timeout changed (in place).
        save_by_rename(
            &path,
            &file_text(
                "",
                &[("a", server("")), ("c", server(r#", "timeout": "7s""#)), ("d", server(""))],
            ),
        );
        until("d serves and b is gone from the list", Duration::from_secs(20), async || {
            let t = tools(&client).await;
            t.iter().any(|n| n.starts_with("d__")) && !t.iter().any(|n| n.starts_with("b__"))
        })
        .await;
        healthy(&app, "d").await;
        assert_eq!(healthy(&app, "a").await, a, "a did not change: same process");
        assert_eq!(healthy(&app, "c").await, c, "c's policy changed in place: same process");
        assert_eq!(app.registry().server("c").unwrap().spec.timeout, Duration::from_secs(7));
        until("b's process stopped", Duration::from_secs(15), async || !alive(b[0])).await;
        assert!(app.registry().server("b").is_none());
        echo(&client, "a__echo").await.expect("the session works after the reload");
        until("the client was told the tool list changed", Duration::from_secs(5), async || {
            handler.tools_changed.load(Ordering::SeqCst) >= 1
        })
        .await;
        let told = handler.tools_changed.load(Ordering::SeqCst);

        // 2. Truncated and written in place: a gets a second replica, nothing else changes.
        save_in_place(
            &path,
            &file_text(
                "",
                &[
                    ("a", server(r#", "replicas": 2"#)),
                    ("c", server(r#", "timeout": "7s""#)),
                    ("d", server("")),
                ],
            ),
        );
        until("a has two healthy instances", Duration::from_secs(20), async || {
            app.registry().server("a").is_some_and(|h| {
                h.views().len() == 2 && h.views().iter().all(|v| v.state == InstanceState::Healthy)
            })
        })
        .await;
        let a2 = healthy(&app, "a").await;
        assert_eq!(a2[0], a[0], "a's first instance kept its process");
        let d = healthy(&app, "d").await;

        // 3. Several writes, half-written in between: d's arguments change (a new process).
        save_in_pieces(
            &path,
            &file_text(
                "",
                &[
                    ("a", server(r#", "replicas": 2"#)),
                    ("c", server(r#", "timeout": "7s""#)),
                    ("d", misbehave(&["--latency", "1ms"], &format!(", {FAST_HEALTH}"))),
                ],
            ),
        );
        until("d runs a new process", Duration::from_secs(20), async || {
            app.registry().server("d").is_some_and(|h| {
                let v = h.views();
                v[0].state == InstanceState::Healthy && v[0].pid != Some(d[0])
            })
        })
        .await;
        until("d's old process stopped", Duration::from_secs(15), async || !alive(d[0])).await;
        assert_eq!(healthy(&app, "a").await, a2, "a untouched");
        assert_eq!(healthy(&app, "c").await, c, "c untouched");
        // Resizing a (same tools) and replacing d's process changed no list, beyond d's own.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            handler.tools_changed.load(Ordering::SeqCst) <= told + 1,
            "the list was announced as changed only for d's new catalog"
        );
        echo(&client, "c__echo").await.expect("the session still works");

        let seen = events(&mut bus);
        let reloads: Vec<_> = seen.iter().filter(|e| e["type"] == "config_reloaded").collect();
        assert_eq!(reloads.len(), 3, "one reload per save: {reloads:#?}");
        assert!(reloads.iter().all(|e| e["trigger"] == "file"));
        assert_eq!(reloads[0]["added"], serde_json::json!(["d"]));
        assert_eq!(reloads[0]["removed"], serde_json::json!(["b"]));
        assert_eq!(reloads[0]["changed_in_place"], serde_json::json!(["c"]));
        assert_eq!(reloads[2]["restarted"], serde_json::json!(["d"]));
        assert!(
            !seen.iter().any(|e| e["type"] == "config_rejected"),
            "a half-written file is never applied nor refused while it is being written"
        );
        client.cancel().await.ok();
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_removed_during_a_call_finishes_the_call_then_stops() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.json");
        let watch_off = r#""reload": { "watch": false }"#;
        std::fs::write(&path, file_text(watch_off, &[("keep", server("")), ("gone", server(""))]))
            .unwrap();
        let app = start(&path, dir.path()).await;
        let gone = healthy(&app, "gone").await;
        let keep = healthy(&app, "keep").await;
        let addr = app.http_addr().unwrap().to_string();
        let client = connect(&addr, Client::default()).await;
        until("gone's tools listed", Duration::from_secs(10), async || {
            tools(&client).await.iter().any(|t| t == "gone__sleep")
        })
        .await;
        let peer = client.peer().clone();
        let call = tokio::spawn(async move {
            let args = serde_json::json!({ "ms": 3000 }).as_object().unwrap().clone();
            peer.call_tool(CallToolRequestParams::new("gone__sleep").with_arguments(args)).await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::write(&path, file_text(watch_off, &[("keep", server(""))])).unwrap();
        let started = Instant::now();
        let diff = app.reload("api").await.expect("the new config is applied");
        assert_eq!(diff["removed"], serde_json::json!(["gone"]));
        // No new call reaches it at once.
        until("gone left the list", Duration::from_secs(5), async || {
            !tools(&client).await.iter().any(|t| t.starts_with("gone__"))
        })
        .await;
        assert!(alive(gone[0]), "the call in flight is given its grace");
        // A reload meanwhile is not held up by the drain.
        std::fs::write(&path, file_text(watch_off, &[("keep", server("")), ("fresh", server(""))]))
            .unwrap();
        app.reload("api").await.expect("applied during the drain");
        healthy(&app, "fresh").await;
        assert!(alive(gone[0]), "fresh served while gone was still draining");
        let result = call.await.unwrap().expect("the call in flight completes");
        assert_ne!(result.is_error, Some(true), "{result:?}");
        until("gone's process stopped after the call", Duration::from_secs(15), async || {
            !alive(gone[0])
        })
        .await;
        assert!(started.elapsed() >= Duration::from_secs(2), "stopped only after the call ended");
        assert_eq!(healthy(&app, "keep").await, keep);
        client.cancel().await.ok();
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_two_three_one_under_load_fail_no_read_only_call() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.json");
        let watch_off = r#""reload": { "watch": false }"#;
        let with =
            |n: u32| file_text(watch_off, &[("r", server(&format!(r#", "replicas": {n}"#)))]);
        std::fs::write(&path, with(2)).unwrap();
        let app = start(&path, dir.path()).await;
        healthy(&app, "r").await;
        let addr = app.http_addr().unwrap().to_string();
        let client = connect(&addr, Client::default()).await;
        until("r's tools listed", Duration::from_secs(10), async || {
            tools(&client).await.iter().any(|t| t == "r__echo")
        })
        .await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let mut load = Vec::new();
        for _ in 0..4 {
            let peer = client.peer().clone();
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            load.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let args = serde_json::json!({ "text": "x" }).as_object().unwrap().clone();
                    match peer
                        .call_tool(CallToolRequestParams::new("r__echo").with_arguments(args))
                        .await
                    {
                        Ok(r) if r.is_error != Some(true) => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            tracing::warn!("failed call: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            }));
        }
        for n in [3, 1] {
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::fs::write(&path, with(n)).unwrap();
            app.reload("api").await.expect("applied");
            until(
                "the replica count is reached, every instance healthy",
                Duration::from_secs(30),
                async || {
                    app.registry().server("r").is_some_and(|h| {
                        h.views().len() == n as usize
                            && h.views().iter().all(|v| v.state == InstanceState::Healthy)
                    })
                },
            )
            .await;
        }
        // The stopped replicas' processes are gone.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
        for l in load {
            l.await.unwrap();
        }
        let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
        assert!(ok > 50, "the load ran: {ok} calls");
        assert_eq!(failed, 0, "no read-only call failed across 2 → 3 → 1 ({ok} succeeded)");
        client.cancel().await.ok();
        app.shutdown().await;
    })
    .await;
}

/// The binary: a broken file is refused by `warden reload` (exit 64, every error printed) and
/// shown in `/health/status`; SIGHUP applies the fixed file; untouched servers keep their pids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_until_fixed_and_sighup_applies_it() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.json");
        let watch_off = r#""reload": { "watch": false }"#;
        std::fs::write(&path, file_text(watch_off, &[("a", server(""))])).unwrap();
        let (mut child, base) = run_warden(&path, dir.path(), &[]).await;
        let http = reqwest::Client::new();
        let servers = async || -> serde_json::Value {
            match http.get(format!("{base}/api/servers")).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            }
        };
        let pid_of = |v: &serde_json::Value, name: &str| -> Option<u64> {
            v["servers"].as_array()?.iter().find(|s| s["name"] == name)?["instances"][0]["pid"]
                .as_u64()
        };
        let state_of = |v: &serde_json::Value, name: &str| -> Option<String> {
            Some(
                v["servers"].as_array()?.iter().find(|s| s["name"] == name)?["instances"][0]
                    ["state"]
                    .as_str()?
                    .to_owned(),
            )
        };
        let mut a_pid = None;
        until("a is healthy", Duration::from_secs(30), async || {
            let v = servers().await;
            a_pid = pid_of(&v, "a");
            state_of(&v, "a").as_deref() == Some("healthy")
        })
        .await;

        // A syntax error, then a bad duration: refused, with every error.
        for broken in [
            "{ \"mcpServers\": { \"a\": ".to_owned(),
            file_text(
                watch_off,
                &[("a", server("")), ("b", server(r#", "timeout": "5 parsecs""#))],
            ),
        ] {
            std::fs::write(&path, &broken).unwrap();
            let out = tokio::process::Command::new(warden())
                .args(["reload", "--url", &base])
                .output()
                .await
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "refused: {stderr}");
            assert!(stderr.contains("error:"), "{stderr}");
        }
        let out = tokio::process::Command::new(warden())
            .args(["reload", "--url", &base])
            .output()
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("mcpServers.b.timeout"),
            "the error names its path"
        );
        // The health snapshot is refreshed every second.
        let config_check = async || -> serde_json::Value {
            let s: serde_json::Value = http
                .get(format!("{base}/health/status"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            s["checks"]["config"].clone()
        };
        until("/health/status shows the refusal", Duration::from_secs(10), async || {
            config_check().await["status"] == "rejected"
        })
        .await;
        let check = config_check().await;
        assert!(check["errors"][0].as_str().unwrap().contains("mcpServers.b.timeout"), "{check:#}");
        assert_eq!(check["file"], path.display().to_string());
        let v = servers().await;
        assert!(pid_of(&v, "b").is_none(), "nothing of the broken config was applied");
        assert_eq!(pid_of(&v, "a"), a_pid);

        // Fixed, and SIGHUP (what `systemctl reload` sends): applied; a untouched.
        std::fs::write(
            &path,
            file_text(watch_off, &[("a", server("")), ("b", server(r#", "timeout": "5s""#))]),
        )
        .unwrap();
        signal(child.id().unwrap(), nix::sys::signal::Signal::SIGHUP);
        until("b is healthy after SIGHUP", Duration::from_secs(30), async || {
            state_of(&servers().await, "b").as_deref() == Some("healthy")
        })
        .await;
        assert_eq!(pid_of(&servers().await, "a"), a_pid, "a kept its process");
        until("a good config clears the errors", Duration::from_secs(10), async || {
            config_check().await["status"] == "ok"
        })
        .await;
        let check = config_check().await;
        assert_eq!(check["last_reload"]["trigger"], "signal", "{check:#}");
        assert!(child.try_wait().unwrap().is_none(), "SIGHUP does not stop Warden");

        // `warden reload` with nothing changed: applied, no change.
        let out = tokio::process::Command::new(warden())
            .args(["reload", "--url", &base])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("no change"));

        signal(child.id().unwrap(), nix::sys::signal::Signal::SIGTERM);
        let exit =
            tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
        assert!(exit.success());
    })
    .await;
}

/// `warden` settings: alerts (receivers, rules), tuning, retention and the log level apply
/// live; the listen address and the token are reported as needing a restart, and the rest of
/// the reload is still applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_settings_apply_live_and_the_rest_is_reported_as_needing_a_restart() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.json");
        let watch_off = r#""reload": { "watch": false }"#;
        std::fs::write(&path, file_text(watch_off, &[("a", server(""))])).unwrap();
        let app = start(&path, dir.path()).await;
        let a = healthy(&app, "a").await;
        let addr = app.http_addr().unwrap().to_string();
        let get = async |p: &str| -> serde_json::Value {
            reqwest::get(format!("http://{addr}{p}")).await.unwrap().json().await.unwrap()
        };
        assert_eq!(get("/api/alerts").await["receivers"].as_array().map(Vec::len), Some(0));
        assert_eq!(get("/api/tuning").await["auto"], false);

        let settings = format!(
            r#"{watch_off}, "listen": "127.0.0.1:1", "token": "a-token-long-enough-1234",
               "retention": "2d", "log_level": "warden=debug,info",
               "tuning": {{ "auto": true }},
               "alerts": {{ "webhooks": [ {{ "name": "ops", "url": "http://127.0.0.1:9/hook" }} ],
                            "rules": [ {{ "alert": "Slow", "metric": "latency_p50_ms", "op": ">",
                                         "threshold": 1000, "for": "1m" }} ] }}"#
        );
        std::fs::write(&path, file_text(&settings, &[("a", server("")), ("b", server(""))]))
            .unwrap();
        let diff = app.reload("api").await.expect("applied");
        let live: Vec<&str> =
            diff["applied_live"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        for want in ["warden.retention", "warden.log_level", "warden.alerts", "warden.tuning"] {
            assert!(live.contains(&want), "{want} applies live: {diff:#}");
        }
        assert_eq!(diff["needs_restart"], serde_json::json!(["warden.listen", "warden.token"]));
        assert_eq!(diff["added"], serde_json::json!(["b"]), "the rest is applied: {diff:#}");
        healthy(&app, "b").await;
        until("the new receiver is in use", Duration::from_secs(5), async || {
            get("/api/alerts").await["receivers"].as_array().map(Vec::len) == Some(1)
        })
        .await;
        until("tuning follows", Duration::from_secs(5), async || {
            get("/api/tuning").await["auto"] == true
        })
        .await;
        assert_eq!(app.settings().borrow().retention, Duration::from_secs(2 * 86_400));
        assert_eq!(healthy(&app, "a").await, a);
        // Still listening where it started, without a token (those need a restart).
        assert!(reqwest::get(format!("http://{addr}/api/servers"))
            .await
            .unwrap()
            .status()
            .is_success());
        app.shutdown().await;
    })
    .await;
}

/// The official Python SDK client keeps its session across reloads of the watched file, gets
/// `tools/list_changed` when a server is added (and calls its tool in the same session), and
/// none when only a policy changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_session_survives_reloads_and_hears_only_real_list_changes() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.json");
        std::fs::write(&path, file_text("", &[("a", server(""))])).unwrap();
        let step1 = dir.path().join("step1.json");
        std::fs::write(&step1, file_text("", &[("a", server("")), ("b", server(""))])).unwrap();
        let step2 = dir.path().join("step2.json");
        std::fs::write(
            &step2,
            file_text("", &[("a", server(r#", "timeout": "9s""#)), ("b", server(""))]),
        )
        .unwrap();
        let app = start(&path, dir.path()).await;
        let a = healthy(&app, "a").await;
        let url = format!("http://{}/mcp", app.http_addr().unwrap());
        let out = tokio::process::Command::new(python())
            .arg(workspace_root().join("tests/python/reload_check.py"))
            .arg(&url)
            .arg(&path)
            .arg(&step1)
            .arg(&step2)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let seen: serde_json::Value =
            serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
        assert!(seen["added_notified"].as_u64() >= Some(1), "{seen}");
        assert_eq!(seen["policy_notified"], 0, "{seen}");
        assert_eq!(app.registry().server("a").unwrap().spec.timeout, Duration::from_secs(9));
        assert_eq!(healthy(&app, "a").await, a, "a kept its process through both reloads");
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_configmap_update_is_reloaded() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let mounted = dir.path().join("configmap");
        std::fs::create_dir(&mounted).unwrap();
        configmap_update(&mounted, 1, &file_text("", &[("a", server(""))]));
        let app = start(&mounted.join("config.json"), dir.path()).await;
        healthy(&app, "a").await;
        configmap_update(&mounted, 2, &file_text("", &[("a", server("")), ("b", server(""))]));
        until("b added from the new ConfigMap", Duration::from_secs(15), async || {
            app.registry().server("b").is_some()
        })
        .await;
        healthy(&app, "b").await;
        app.shutdown().await;
    })
    .await;
}
