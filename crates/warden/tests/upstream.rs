//! End to end: how Warden reaches its servers. A remote server busy with a long call is not
//! taken for a hung one (while a silent one still is); children start with a cleared
//! environment.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use warden_core::{FailureClass, InstanceState};
use warden_upstream::Call;

const LIMIT: Duration = Duration::from_secs(90);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// Probes every 500 ms; a probe that times out while calls run counts as "busy" only if the
/// server sent something in the last second; hung after 3 s of silence.
const HEALTH: &str = r#""health": { "interval": "500ms", "timeout": "400ms", "edge_interval": "200ms", "busy_window": "1s", "hang_timeout": "3s" }"#;

/// A misbehaving server over Streamable HTTP, killed when dropped.
struct Remote(std::process::Child);

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn remote(args: &[&str]) -> (Remote, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut all = vec!["--http", &addr];
    all.extend_from_slice(args);
    let child = Remote(misbehave_process(&all));
    (child, format!(r#"{{ "url": "http://{addr}/mcp", {HEALTH}, {FAST_RESTART} }}"#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_streaming_progress_for_a_long_call_is_busy_not_hung() {
    limited(async {
        let (_server, entry) = remote(&["--busy-ignores-probes"]);
        let mut w = start(config(&[("busy", entry)])).await;
        w.wait_state("busy", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let link = w.app.registry().server("busy").unwrap().link(0).unwrap();
        let session = link.session().expect("connected");
        // As the gateway does: the call is in flight on the instance while it runs. 8 s with
        // progress every 100 ms; no ping is answered meanwhile.
        let changes_before = w.events_named("busy#0", "state_changed").len();
        let _in_flight = link.begin_call();
        let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel();
        let mut call = Call::new(
            "tools/call",
            Some(json!({ "name": "sleep", "arguments": { "ms": 8000 } })),
            Duration::from_secs(5),
        );
        call.progress = Some(progress);
        let answer = session.request(call).await.expect("the call completes").value().unwrap();
        assert_eq!(answer["content"][0]["text"], "slept 8000 ms", "{answer}");
        assert!(updates.try_recv().is_ok(), "progress was relayed");
        let v = w.view("busy", 0);
        assert_eq!(v.restarts, 0, "never reconnected: {v:?}");
        assert!(w.events_named("busy#0", "hang_killed").is_empty());
        let went_bad: Vec<_> = w
            .events_named("busy#0", "state_changed")
            .into_iter()
            .skip(changes_before)
            .filter(|e| matches!(&e.kind, warden_core::EventKind::StateChanged { to, .. } if !to.is_routable()))
            .collect();
        assert!(went_bad.is_empty(), "{went_bad:?}");
        w.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_that_answers_nothing_is_still_detected_as_hung() {
    limited(async {
        let (_server, entry) = remote(&["--hang-after", "3s"]);
        let mut w = start(config(&[("silent", entry)])).await;
        w.wait_state("silent", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let v = w
            .wait("silent", 0, Duration::from_secs(20), "offline as hung", |v| {
                v.reason.as_ref().is_some_and(|r| r.class == FailureClass::Hang)
            })
            .await;
        assert!(!v.state.is_routable(), "{v:?}");
        w.wait_event("silent#0", "hang_killed", Duration::from_secs(5)).await;
        w.stop().await;
    })
    .await;
}

/// `sh -c SCRIPT` as a JSON list of args.
fn sh(script: &str) -> String {
    serde_json::to_string(&["-c", script]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_get_the_allow_list_and_their_own_env_never_wardens_secrets() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let out = |name: &str| dir.path().join(format!("{name}.env"));
        let dump = |name: &str| format!("env > {}.tmp && mv {0}.tmp {0}", out(name).display());
        // Stdio servers that write their environment, then serve MCP.
        let server = |name: &str, extra: &str| {
            let script = format!("{} && exec {} misbehave", dump(name), warden());
            format!(r#"{{ "command": "/bin/sh", "args": {} {extra} }}"#, sh(&script))
        };
        let check = |name: &str, extra: &str| {
            format!(r#"{{ "command": "/bin/sh", "args": {} {extra} }}"#, sh(&dump(name)))
        };
        let text = format!(
            r#"{{ "mcpServers": {{
                    "a": {a}, "b": {b}, "c": {c} }},
                  "integrations": {{ "chk": {chk}, "chk_all": {chk_all},
                                     "down": {{ "command": "/bin/false" }} }},
                  "warden": {{ "alerts": {{
                    "evaluation_interval": "1s", "group_wait": "1s", "group_interval": "1s",
                    "commands": [ {{ "name": "hook", "command": "/bin/sh", "args": {hook} }},
                                  {{ "name": "hook_all", "command": "/bin/sh", "args": {hook_all},
                                     "inherit_env": true }} ],
                    "rules": [ {{ "alert": "Down", "metric": "up", "op": "<", "threshold": 1,
                                 "match": {{ "server": "down" }}, "for": "0s",
                                 "severity": "critical" }} ] }} }} }}"#,
            a = server("a", r#", "env": { "A_SECRET": "${env:A_SECRET}" }"#),
            b = server("b", ""),
            c = server("c", r#", "inherit_env": true"#),
            chk = check("chk", ""),
            chk_all = check("chk_all", r#", "inherit_env": true"#),
            hook = sh(&dump("hook")),
            hook_all = sh(&dump("hook_all")),
        );
        let cfg = dir.path().join("warden.json");
        std::fs::write(&cfg, text).unwrap();
        // The real binary, with a token and server a's secret in its environment.
        let mut warden = tokio::process::Command::new(warden())
            .args(["run", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("w.db"))
            .arg("-c")
            .arg(&cfg)
            .env("WARDEN_TOKEN", "tok-e2e-0123456789abcdef")
            .env("A_SECRET", "a-secret-5678")
            .env("XDG_STATE_HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("warden.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let names = ["a", "b", "c", "chk", "chk_all", "hook", "hook_all"];
        let started = std::time::Instant::now();
        while !names.iter().all(|n| out(n).exists()) {
            let missing: Vec<_> = names.iter().filter(|n| !out(n).exists()).collect();
            let exited = warden.try_wait().unwrap();
            assert!(
                exited.is_none() && started.elapsed() < Duration::from_secs(60),
                "no environment from {missing:?}; warden's log:\n{}",
                std::fs::read_to_string(dir.path().join("warden.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal(warden.id().unwrap(), nix::sys::signal::Signal::SIGTERM);
        let _ = tokio::time::timeout(Duration::from_secs(20), warden.wait()).await;
        let env = |name: &str| std::fs::read_to_string(out(name)).unwrap();
        let has =
            |name: &str, var: &str| env(name).lines().any(|l| l.starts_with(&format!("{var}=")));
        for name in ["a", "b", "chk", "hook"] {
            assert!(!has(name, "WARDEN_TOKEN"), "{name} got Warden's token:\n{}", env(name));
            assert!(has(name, "PATH") && has(name, "HOME"), "{name}:\n{}", env(name));
        }
        assert!(env("a").contains("A_SECRET=a-secret-5678"), "its own secret");
        for name in ["b", "chk", "hook"] {
            assert!(!has(name, "A_SECRET"), "{name} got server a's secret:\n{}", env(name));
        }
        assert!(has("hook", "WARDEN_ALERT_STATUS"), "{}", env("hook"));
        for name in ["c", "chk_all", "hook_all"] {
            assert!(
                env(name).contains("WARDEN_TOKEN=tok-e2e-0123456789abcdef"),
                "{name}:\n{}",
                env(name)
            );
            assert!(has(name, "A_SECRET"), "{name}: inherit_env passes everything");
        }
    })
    .await;
}

/// A remote server that redirects to another origin would hand it the configured headers (an
/// API key in `X-Api-Key` survives a cross-host redirect in reqwest): the redirect is refused,
/// the secret never arrives, and the reason says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_never_receives_the_configured_headers() {
    limited(async {
        use std::sync::{Arc, Mutex};
        // The other origin records every header it is sent.
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = Arc::clone(&seen);
        let other = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                for (k, v) in &headers {
                    record.lock().unwrap().push(format!("{k}: {}", v.to_str().unwrap_or("")));
                }
                axum::http::StatusCode::NOT_FOUND
            }
        });
        let other_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other_listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(other_listener, other).await });
        // The configured server answers every request with a redirect there.
        let target = format!("http://{other_addr}/mcp");
        let redirector = axum::Router::new().fallback(move || {
            let target = target.clone();
            async move {
                (axum::http::StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, target)])
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, redirector).await });

        let entry = format!(
            r#"{{ "url": "http://{addr}/mcp", "headers": {{ "X-Api-Key": "key-that-must-stay-home" }}, {HEALTH}, {FAST_RESTART} }}"#
        );
        let mut w = start(config(&[("r", entry)])).await;
        let v = w
            .wait("r", 0, Duration::from_secs(20), "a failed connection", |v| v.reason.is_some())
            .await;
        let reason = v.reason.unwrap();
        assert!(reason.message.contains("redirect"), "{reason:?}");
        assert!(!reason.message.contains("key-that-must-stay-home"), "{reason:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leaked = seen.lock().unwrap().iter().any(|h| h.contains("key-that-must-stay-home"));
        assert!(!leaked, "the other origin received the key: {:?}", seen.lock().unwrap());
        w.stop().await;
    })
    .await;
}

/// A stdio child's output is read on the runtime `Relay::set_homes` gives it (Warden's HTTP
/// threads, where the calls are served): calls through the lane and through rmcp are answered
/// while that runtime runs, and when it ends the reader ends with it (a lane call then fails at
/// once: the child's stdout is no longer read), which it would not if it were read elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_childs_output_is_read_on_its_home_runtime() {
    limited(async {
        let home = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let handle = home.handle().clone();
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            home.block_on(async {
                let _ = end_rx.await;
            });
            home.shutdown_timeout(Duration::from_secs(1));
        });
        let relay = warden_upstream::Relay::default();
        relay.set_homes(vec![handle]);
        let cfg = config(&[("io", misbehave(&[], ""))]);
        let connector = warden_upstream::connector_for(&cfg.servers[0], &relay);
        let connected = connector
            .connect(warden_core::InstanceId::new("io", 0), Duration::from_secs(30))
            .await
            .expect("the child starts");
        let echo = || {
            Call::new(
                "tools/call",
                Some(json!({ "name": "echo", "arguments": { "text": "hi" } })),
                Duration::from_secs(10),
            )
        };
        for _ in 0..3 {
            let answer =
                connected.session.request(echo()).await.expect("answered").value().unwrap();
            assert_eq!(answer["content"][0]["text"], "hi", "{answer}");
        }
        let list = Call::new("tools/list", None, Duration::from_secs(10));
        let tools = connected.session.request(list).await.expect("listed").value().unwrap();
        assert!(tools["tools"].as_array().is_some_and(|t| !t.is_empty()), "{tools}");
        // The home runtime ends: its reader with it.
        end_tx.send(()).unwrap();
        tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap();
        let after = tokio::time::timeout(Duration::from_secs(5), connected.session.request(echo()))
            .await
            .expect("fails at once, not at the call's timeout");
        assert!(after.is_err(), "nothing reads the child's stdout any more: {after:?}");
    })
    .await;
}
