//! End to end through the `warden` binary itself: validate, check, run and SIGTERM.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("config.json");
    std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
    path
}

fn warden_cmd(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(warden());
    // Keep every default path inside the test's directory.
    c.env("XDG_STATE_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env_remove("WARDEN_CONFIG");
    c
}

/// `warden run` on `listen` with config `cfg` and database `db`, output discarded.
fn run_cmd(
    dir: &tempfile::TempDir,
    cfg: &std::path::Path,
    db: &std::path::Path,
    listen: &str,
) -> Command {
    let mut c = warden_cmd(dir);
    c.args(["run", "--listen", listen, "--db"])
        .arg(db)
        .arg("-c")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn validate_reports_every_error_with_its_path_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        r#"{ "mcpServers": {
            "x": { "command": "c", "health": { "interval": "5 parsecs" }, "replicass": 2 },
            "y": { "url": "ftp://nope" } } }"#,
    );
    let out = warden_cmd(&dir).args(["validate", "-c"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(r#"mcpServers.x.health.interval: "5 parsecs" is not a duration"#),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"mcpServers.y.url: "ftp://nope" is not an http:// or https:// URL"#),
        "{stderr}"
    );
    assert!(
        stderr
            .contains(r#"warning: mcpServers.x.replicass: unknown key (did you mean "replicas"?)"#),
        "{stderr}"
    );

    let good = write_config(&dir, r#"{ "mcpServers": { "a": { "command": "true" } } }"#);
    let out = warden_cmd(&dir).args(["validate", "-c"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 servers, 1 instances"));
}

#[test]
fn secrets_do_not_appear_in_errors_or_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        r#"{ "mcpServers": { "r": { "url": "http://127.0.0.1:9/mcp", "headers": { "Authorization": "Bearer ${env:SECRET_TOKEN}" },
             "health": { "timeout": "nonsense" } } } }"#,
    );
    let out = warden_cmd(&dir)
        .env("SECRET_TOKEN", "tok-4c2b9f")
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let all =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(64));
    assert!(!all.contains("tok-4c2b9f"), "{all}");
}

#[test]
fn a_secret_in_a_url_or_header_never_reaches_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        &dir,
        &format!(
            r#"{{ "mcpServers": {{ "r": {{ "url": "http://127.0.0.1:{port}/mcp?api_key=${{env:SECRET_KEY}}",
                 "headers": {{ "Authorization": "Bearer ${{env:SECRET_KEY}}" }} }} }} }}"#
        ),
    );
    let out = warden_cmd(&dir)
        .env("SECRET_KEY", "sk-71f0c3")
        .args(["check", "--json", "--timeout", "5s", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let all =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(!all.contains("sk-71f0c3"), "{all}");
    let v: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let reason = &v["servers"][0]["instances"][0]["reason"];
    assert_eq!(reason["class"], "connection_error", "{reason}");
}

#[test]
fn check_exits_0_for_healthy_with_the_server_view_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            r#"{{ "mcpServers": {{ "everything": {{ "command": "node", "args": [{}, "stdio"] }} }} }}"#,
            json_str(&everything_js())
        ),
    );
    let out = warden_cmd(&dir).args(["check", "--json", "-c"]).arg(&cfg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["status"], "healthy");
    let s = &v["servers"][0];
    assert_eq!(s["name"], "everything");
    assert_eq!(s["status"], "healthy");
    assert_eq!(s["served_by"], "everything");
    assert!(s["tools"].as_u64().unwrap() >= 10, "{s}");
    let i = &s["instances"][0];
    assert_eq!(i["id"], "everything#0");
    assert_eq!(i["state"], "healthy");
    for key in ["since", "reason", "latency_ms", "restarts", "last_check"] {
        assert!(i.get(key).is_some(), "instance view lacks {key}: {i}");
    }
    assert!(i["pid"].as_u64().is_some());
}

#[test]
fn check_exits_1_when_degraded_and_2_when_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let good = misbehave(&[], "");
    let bad = misbehave(&["--exit-on-start"], "");
    let cfg =
        write_config(&dir, &format!(r#"{{ "mcpServers": {{ "good": {good}, "bad": {bad} }} }}"#));
    let out = warden_cmd(&dir).args(["check", "-c"]).arg(&cfg).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("SERVER") && table.contains("good#0") && table.contains("bad#0"),
        "{table}"
    );
    assert!(table.contains("overall: degraded"), "{table}");

    let out = warden_cmd(&dir).args(["check", "--server", "bad", "-c"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("crash: exited with code 1 during start-up")
    );

    let out =
        warden_cmd(&dir).args(["check", "--server", "nope", "-c"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// Waits until `url` answers with JSON for which `pred` holds.
fn poll_json(
    url: &str,
    within: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        let got = rt.block_on(async {
            client.get(url).send().await.ok()?.json::<serde_json::Value>().await.ok()
        });
        if let Some(v) = got {
            if pred(&v) {
                return v;
            }
        }
        assert!(
            start.elapsed() < within,
            "{url} did not reach the expected state within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn no_process_of_any_tree_survives_sigterm_and_the_database_is_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let exe = json_str(warden());
    // A direct child with a grandchild, replicas, and a `sh -c` wrapper around a server.
    let cfg = write_config(
        &dir,
        &format!(
            r#"{{ "mcpServers": {{
                "direct": {{ "command": {exe}, "args": ["misbehave", "--spawn-child"], "replicas": 2 }},
                "wrapped": {{ "command": "sh", "args": ["-c", "\"$0\" misbehave --spawn-child", {exe}] }}
            }} }}"#
        ),
    );
    let port = free_port();
    let db = dir.path().join("w.db");
    let mut child = run_cmd(&dir, &cfg, &db, &format!("127.0.0.1:{port}")).spawn().unwrap();
    let warden_pid = child.id();
    let view =
        poll_json(&format!("http://127.0.0.1:{port}/api/servers"), Duration::from_secs(30), |v| {
            v["status"] == "healthy"
        });
    assert_eq!(view["servers"].as_array().unwrap().len(), 2);
    let health =
        poll_json(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(5), |_| true);
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["version"].is_string() && health["uptime_seconds"].is_u64());

    let tree = descendants(warden_pid);
    // 3 servers, each with a grandchild `sleep`, plus the `sh` wrapper.
    assert!(tree.len() >= 7, "expected the whole tree, saw {tree:?}");
    signal(warden_pid, Signal::SIGTERM);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "warden did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let survivors: Vec<u32> = tree.into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "processes outlived warden: {survivors:?}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = warden_store::Store::open(&warden_store::Location::Sqlite(db)).await.unwrap();
        let started = store.events(Some("process_started"), 100).await.unwrap();
        assert_eq!(started.len(), 3, "{started:?}");
        let exited = store.events(Some("process_exited"), 100).await.unwrap();
        assert_eq!(exited.len(), 3, "every stop recorded before exit: {exited:?}");
        assert_eq!(store.count("failover_configurations").await.unwrap(), 2);
    });
}

#[test]
fn the_http_surface_checks_token_host_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        write_config(&dir, &format!(r#"{{ "mcpServers": {{ "a": {} }} }}"#, misbehave(&[], "")));
    let port = free_port();
    let token = "t0ken-abcdefghijklmnop";
    let mut child = run_cmd(&dir, &cfg, &dir.path().join("w.db"), &format!("127.0.0.1:{port}"))
        .env("WARDEN_TOKEN", token)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // Health probes answer without the token.
    poll_json(&format!("{base}/health"), Duration::from_secs(20), |v| v["status"].is_string());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = |path: &str, headers: &[(&str, &str)]| -> u16 {
        rt.block_on(async {
            let mut req = reqwest::Client::new().get(format!("{base}{path}"));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send().await.unwrap().status().as_u16()
        })
    };
    let bearer = format!("Bearer {token}");
    assert_eq!(status("/api/servers", &[]), 401);
    assert_eq!(status("/api/servers", &[("Authorization", "Bearer wrong-token-0000000")]), 401);
    assert_eq!(status("/api/servers", &[("Authorization", &bearer)]), 200);
    assert_eq!(status("/mcp", &[]), 401, "the MCP endpoint is guarded too");
    assert_eq!(
        status("/api/servers", &[("Authorization", &bearer), ("Origin", "https://evil.example")]),
        403
    );
    assert_eq!(
        status(
            "/api/servers",
            &[("Authorization", &bearer), ("Origin", &format!("http://localhost:{port}"))]
        ),
        200
    );
    assert_eq!(
        status("/api/servers", &[("Authorization", &bearer), ("Host", "evil.example")]),
        403,
        "DNS rebinding"
    );
    signal(child.id(), Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_listener_beyond_loopback_serves_mcp_by_other_host_names_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        write_config(&dir, &format!(r#"{{ "mcpServers": {{ "a": {} }} }}"#, misbehave(&[], "")));
    let port = free_port();
    let token = "team-token-0123456789";
    let mut child = run_cmd(&dir, &cfg, &dir.path().join("w.db"), &format!("0.0.0.0:{port}"))
        .args(["--token", token])
        .spawn()
        .unwrap();
    // Traffic goes to loopback only; the Host header names the machine as a team would.
    poll_json(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(20), |v| {
        v["status"].is_string()
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let post = |auth: Option<&str>| -> u16 {
        rt.block_on(async {
            let mut req = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/mcp"))
                .header("Host", format!("warden.team.internal:{port}"))
                .header("Accept", "application/json, text/event-stream")
                .json(&init);
            if let Some(a) = auth {
                req = req.header("Authorization", format!("Bearer {a}"));
            }
            req.send().await.unwrap().status().as_u16()
        })
    };
    assert_eq!(post(None), 401);
    assert_eq!(post(Some(token)), 200, "rmcp's loopback-only Host list is off beyond loopback");
    signal(child.id(), Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
}

#[test]
fn run_refuses_a_taken_port_and_an_unsupported_database_url_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, r#"{ "mcpServers": { "a": { "command": "true" } } }"#);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = warden_cmd(&dir).args(["run", "--listen", &addr, "-c"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {addr}")));

    for url in ["mysql://u:hunter2@db/w", "postgres://u:hunter2@/w"] {
        let out = warden_cmd(&dir).args(["run", "--db", url, "-c"]).arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains("://") && !err.contains("hunter2"), "{err}");
    }
}

/// `WARDEN_WORKER_THREADS` sets how many runtime workers `warden run` has (one per core
/// otherwise), and as many HTTP threads serve its listener; a value that is not a positive number is refused before anything starts.
#[test]
fn the_runtime_has_the_workers_asked_for_and_refuses_a_bad_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, r#"{ "mcpServers": { "a": { "command": "true" } } }"#);
    for bad in ["0", "many", ""] {
        let out = warden_cmd(&dir)
            .env("WARDEN_WORKER_THREADS", bad)
            .args(["validate", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains("WARDEN_WORKER_THREADS must be a positive number"), "{err}");
    }
    let port = free_port();
    let mut child = run_cmd(&dir, &cfg, &dir.path().join("w.db"), &format!("127.0.0.1:{port}"))
        .env("WARDEN_WORKER_THREADS", "3")
        .spawn()
        .unwrap();
    let (found, http) = threads_once_listening(&mut child, port);
    assert_eq!(found, 3);
    assert_eq!(http, 3, "as many HTTP threads as workers");
}

/// Once `child` listens on `port` (its runtime, whose workers start when it is built, is up):
/// its runtime workers and HTTP threads; then it is stopped.
fn threads_once_listening(child: &mut std::process::Child, port: u16) -> (usize, usize) {
    let began = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(began.elapsed() < Duration::from_secs(20), "warden never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = (runtime_workers(child.id()), http_threads(child.id()));
    let _ = child.kill();
    let _ = child.wait();
    found
}

/// `WARDEN_HTTP_THREADS` sets how many HTTP threads serve the listener, apart from the
/// runtime's workers; a value that is not a positive number is refused before anything starts.
#[test]
fn the_listener_has_the_http_threads_asked_for_and_refuses_a_bad_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, r#"{ "mcpServers": { "a": { "command": "true" } } }"#);
    for bad in ["0", "-1", "two"] {
        let port = free_port();
        let mut child = run_cmd(&dir, &cfg, &dir.path().join("w.db"), &format!("127.0.0.1:{port}"))
            .env("WARDEN_HTTP_THREADS", bad)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a run that took the value would serve until killed.
        let began = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if began.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("warden ran with WARDEN_HTTP_THREADS={bad:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains("WARDEN_HTTP_THREADS must be a positive number"), "{err}");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listened");
    }
    let port = free_port();
    let mut child = run_cmd(&dir, &cfg, &dir.path().join("w.db"), &format!("127.0.0.1:{port}"))
        .env("WARDEN_WORKER_THREADS", "3")
        .env("WARDEN_HTTP_THREADS", "1")
        .spawn()
        .unwrap();
    let (found, http) = threads_once_listening(&mut child, port);
    assert_eq!((found, http), (3, 1));
}

#[test]
fn status_and_actions_work_against_a_running_warden() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        write_config(&dir, &format!(r#"{{ "mcpServers": {{ "a": {} }} }}"#, misbehave(&[], "")));
    let port = free_port();
    let token = "t0ken-abcdefghijklmnop";
    let mut child = run_cmd(&dir, &cfg, &dir.path().join("w.db"), &format!("127.0.0.1:{port}"))
        .env("WARDEN_TOKEN", token)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    poll_json(&format!("{url}/health"), Duration::from_secs(20), |v| v["status"] == "ok");
    let cli = |args: &[&str], with_token: bool| {
        let mut c = warden_cmd(&dir);
        c.args(args).args(["--url", &url]).env_remove("WARDEN_TOKEN");
        if with_token {
            c.env("WARDEN_TOKEN", token);
        }
        c.output().unwrap()
    };
    // Without the token: a clear message, exit 1.
    let out = cli(&["status"], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"), "{out:?}");
    // The table, and the JSON view.
    let out = cli(&["status"], true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("a#0") && table.contains("healthy") && table.contains("overall"),
        "{table}"
    );
    assert!(!table.contains("\x1b["), "no colors when not on a terminal");
    let out = cli(&["status", "--json"], true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = v["servers"][0]["instances"][0]["pid"].as_u64().unwrap();
    // Restart: a new process serves.
    let out = cli(&["restart", "a"], true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let start = Instant::now();
    loop {
        let out = cli(&["status", "--json"], true);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let now = v["servers"][0]["instances"][0]["pid"].as_u64();
        if now.is_some_and(|p| p != pid) && v["servers"][0]["instances"][0]["state"] != "starting" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no new process after restart: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Errors from the API are shown as they are.
    let out = cli(&["failover", "a", "trigger"], true);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no fallback"), "{out:?}");
    let out = cli(&["stop", "nope"], true);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server named"), "{out:?}");
    signal(child.id(), Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
    // Nobody there: exit 69, and credentials in the URL are not echoed.
    let out = warden_cmd(&dir)
        .args(["status", "--url", &format!("http://me:s3cret-pw@127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach") && !err.contains("s3cret"), "{err}");
}

/// The bundled test server logs with Warden's filter: rmcp's lines for every session ("Service
/// initialized as server", each notification received) are left out unless `--log-level` asks
/// for them — on a session-less (2026-07-28) upstream that was three lines a call, a tenth of
/// the echo server's CPU behind Warden in the benchmarks.
#[test]
fn misbehave_logs_with_wardens_filter() {
    use std::io::{BufRead, Read};
    let session = |level: Option<&str>| -> String {
        let mut cmd = Command::new(warden());
        cmd.arg("misbehave").env_remove("WARDEN_LOG");
        if let Some(l) = level {
            cmd.args(["--log-level", l]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let lines = [
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        ];
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
        stdin.flush().unwrap();
        let mut answers = 0;
        let mut line = String::new();
        while answers < 2 {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "misbehave ended early");
            answers += usize::from(line.contains(r#""id":"#));
        }
        drop(stdin);
        std::thread::sleep(Duration::from_millis(300));
        let _ = child.kill();
        let _ = child.wait();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        err
    };
    let quiet = session(None);
    assert!(!quiet.contains("Service initialized"), "{quiet}");
    let chatty = session(Some("info"));
    assert!(chatty.contains("Service initialized as server"), "{chatty}");
}
