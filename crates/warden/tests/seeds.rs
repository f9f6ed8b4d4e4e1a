//! The seeds' dialect, end to end: what scripts written against the mission's seed documents
//! read from Warden (`../shared/seeds/`).

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// Seed 004 (hub monitoring) reads mcp-hub's `GET /api/health`: each of its `jq` lines has an
/// answer — `.servers[] | {name, status, uptime, error}` with mcp-hub's four statuses,
/// `.capabilities.tools`, `.mcpEndpoint.activeClients`, `.mcpEndpoint.registeredCapabilities`,
/// `.connections.totalConnections`, `{status, state}` and `.workspaces`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_seeds_health_commands_read_warden() {
    limited(async {
        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{
                "filesystem": {},
                "github": {},
                "dead": {},
                "off": {} }} }}"#,
            misbehave(&[], ""),
            misbehave(&["--startup-delay", "60s"], r#", "health": { "startup_timeout": "120s" }"#),
            misbehave(&["--exit-on-start"], r#", "restart": { "policy": "no" }"#),
            misbehave(&[], r#", "disabled": true"#),
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "filesystem").await;
        let get = async |p: &str| -> serde_json::Value {
            reqwest::get(format!("http://{addr}{p}")).await.unwrap().json().await.unwrap()
        };
        let started = Instant::now();
        let health = loop {
            let h = get("/api/health").await;
            let status = |n: &str| {
                h["servers"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let tools = h["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "filesystem")
                .unwrap()["capabilities"]["tools"]
                .as_array()
                .map_or(0, Vec::len);
            if status("dead") == "disconnected" && tools > 0 {
                break h;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{h:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(health["status"], "ok");
        assert_eq!(health["state"], "starting", "github is still starting");
        let server = |n: &str| {
            health["servers"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone()
        };
        // jq '.servers[] | {name, status, uptime, error}'
        let fs = server("filesystem");
        assert_eq!(fs["status"], "connected");
        assert!(fs["uptime"].as_f64().is_some() && fs["error"].is_null(), "{fs}");
        assert_eq!(server("github")["status"], "connecting");
        assert_eq!(server("off")["status"], "disabled");
        let dead = server("dead");
        assert_eq!(dead["status"], "disconnected");
        assert!(dead["error"].as_str().is_some_and(|e| !e.is_empty()), "{dead}");
        // jq '.servers[] | select(.name=="filesystem") | .capabilities.tools | length'
        let tools = fs["capabilities"]["tools"].as_array().unwrap();
        assert!(tools.iter().any(|t| t["name"] == "echo"), "{fs}");
        // jq '.mcpEndpoint.activeClients', '.mcpEndpoint.registeredCapabilities',
        // '.connections.totalConnections', '.workspaces'
        assert!(health["mcpEndpoint"]["activeClients"].is_u64());
        assert_eq!(health["mcpEndpoint"]["registeredCapabilities"]["tools"], tools.len());
        assert!(health["connections"]["totalConnections"].is_u64());
        assert!(health["workspaces"].is_object());
        app.shutdown().await;
    })
    .await;
}

/// Collects the `data:` lines of an SSE response until `done` holds for what came (or 20 s).
async fn sse_until(
    res: reqwest::Response,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    use futures::StreamExt;
    let mut stream = res.bytes_stream();
    let mut text = String::new();
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(&lines) {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await else {
            break;
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            for l in frame.lines().filter_map(|l| l.strip_prefix("data: ")) {
                lines.push(serde_json::from_str(l).unwrap_or(serde_json::Value::String(l.into())));
            }
        }
    }
    lines
}

/// Seed 004 logs to console, file and SSE: `GET /logs` streams Warden's own log lines as JSON,
/// scrubbed of secrets like the files, and `?level=` keeps that level and above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_over_sse_scrubbed_and_filtered_by_level() {
    limited(async {
        let secret = "s3cr3t-for-the-log-test-4711";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.json");
        let watch_off = r#""warden": { "reload": { "watch": false } }"#;
        std::fs::write(&path, format!(r#"{{ {watch_off}, "mcpServers": {{ "a": {} }} }}"#, misbehave(&[], ""))).unwrap();
        let (mut child, base) = run_warden(&path, dir.path(), &[("WARDEN_TEST_SECRET", secret)]).await;
        let http = reqwest::Client::new();
        let all = http.get(format!("{base}/logs")).send().await.unwrap();
        assert_eq!(all.status(), 200);
        let errors = http.get(format!("{base}/logs?level=error")).send().await.unwrap();
        assert_eq!(
            http.get(format!("{base}/logs?level=loud")).send().await.unwrap().status(),
            400,
            "a level that is none is refused"
        );
        // A server whose stderr line carries the secret (Warden logs stderr lines at info).
        let leaky = r#""leaky": { "command": "sh", "args": ["-c", "echo token=$S >&2; sleep 60"], "env": { "S": "${env:WARDEN_TEST_SECRET}" } }"#;
        std::fs::write(&path, format!(r#"{{ {watch_off}, "mcpServers": {{ "a": {}, {leaky} }} }}"#, misbehave(&[], ""))).unwrap();
        let out = tokio::process::Command::new(warden()).args(["reload", "--url", &base]).output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let seen = sse_until(all, |l| {
            let text = serde_json::Value::Array(l.to_vec()).to_string();
            text.contains("config reloaded") && text.contains("token=")
        })
        .await;
        let text = serde_json::Value::Array(seen.clone()).to_string();
        assert!(text.contains("config reloaded"), "{text}");
        assert!(text.contains("token="), "the server's stderr line is there: {text}");
        assert!(!text.contains(secret), "the secret is scrubbed: {text}");
        assert!(seen.iter().all(|l| l["level"].is_string()), "{text}");

        // A refused config is logged at error level: the error-only stream has it, and nothing
        // below error.
        std::fs::write(&path, "{ \"mcpServers\": ").unwrap();
        let out = tokio::process::Command::new(warden()).args(["reload", "--url", &base]).output().await.unwrap();
        assert_eq!(out.status.code(), Some(64));
        let seen = sse_until(errors, |l| l.iter().any(|x| x.to_string().contains("config rejected"))).await;
        assert!(seen.iter().any(|x| x.to_string().contains("config rejected")), "{seen:?}");
        assert!(seen.iter().all(|x| x["level"] == "ERROR"), "{seen:?}");

        signal(child.id().unwrap(), nix::sys::signal::Signal::SIGTERM);
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    })
    .await;
}

/// Runs `tests/python/seed002/run_seed.py MODE URL`; returns its exit code and output.
async fn seed002(mode: &str, addr: &str) -> (i32, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python())
            .arg(workspace_root().join("tests/python/seed002/run_seed.py"))
            .args([mode, &format!("http://{addr}")])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the seed's script finished")
    .expect("python runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The script's `Pool Utilization: 25.0%` line (a number formatted as the seed's `{:.1%}`).
fn pool_line(out: &str) -> bool {
    out.lines().any(|l| {
        l.trim()
            .strip_prefix("Pool Utilization: ")
            .and_then(|v| v.strip_suffix('%'))
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(whole, tenth)| {
                whole.parse::<u32>().is_ok() && tenth.len() == 1 && tenth.parse::<u8>().is_ok()
            })
    })
}

/// The value of the exporter's gauge `name` (its sample line `name value`).
fn gauge(out: &str, name: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} sample in {out}"))
}

/// Seed 002's own health-check script and Prometheus exporter, unchanged (verbatim copies in
/// `tests/python/seed002/`), read Warden's `health://status` on `/mcp`: a healthy Warden exits 0
/// and prints HEALTHY, connected and the pool's utilization, and the exporter serves
/// `mcp_health_status 1.0`, `mcp_pool_utilization` and `mcp_database_latency_ms`; over its
/// (configured) memory `_degraded` threshold the script prints DEGRADED and exits 1 and the
/// exporter says 0.5; over the `_unhealthy` one UNHEALTHY, exit 1, 0.0.
///
/// `run_seed.py` runs them, and deviates from the seed only outside its code: it supplies the
/// `mcp.Client` the seed imports (the official SDK has none) as an adapter over the SDK's
/// Streamable HTTP client and `ClientSession.read_resource` (`Client(url)` talks to `url/mcp`,
/// `get_resource` returns the resource's text); the exporter fragment's `check_health` is one
/// returning the health dict read through that Client (the seed's own returns an exit code), and
/// its `start_http_server(9090)` binds a free loopback port; the fragment's hard-coded
/// `http://localhost:8000` is Warden's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_seeds_script_and_exporter_run_unchanged_against_warden() {
    limited(async {
        // A loaded machine may slow a probe (the instance is `warning` for a moment) or the
        // database round trip: the healthy case is retried until the seed's script sees it.
        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{ "a": {} }},
                 "warden": {{ "health_thresholds": {{ "database_latency_degraded": "10s" }} }} }}"#,
            misbehave(&[], "")
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "a").await;
        let started = Instant::now();
        let (code, out) = loop {
            let (code, out) = seed002("check", &addr).await;
            if code == 0 || started.elapsed() > Duration::from_secs(30) {
                break (code, out);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Status: HEALTHY") && out.contains("Database: connected"), "{out}");
        assert!(pool_line(&out), "{out}");
        let started = Instant::now();
        let out = loop {
            let (code, out) = seed002("export", &addr).await;
            assert_eq!(code, 0, "{out}");
            if out.lines().any(|l| l == "mcp_health_status 1.0")
                || started.elapsed() > Duration::from_secs(30)
            {
                break out;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(out.lines().any(|l| l == "mcp_health_status 1.0"), "{out}");
        let utilization = gauge(&out, "mcp_pool_utilization");
        assert!((0.0..=1.0).contains(&utilization), "{out}");
        assert!(gauge(&out, "mcp_database_latency_ms") >= 0.0, "{out}");
        app.shutdown().await;

        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{ "a": {} }},
                 "warden": {{ "health_thresholds": {{ "memory_degraded": 0.00001, "memory_unhealthy": 1.0 }} }} }}"#,
            misbehave(&[], "")
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "a").await;
        let (code, out) = seed002("check", &addr).await;
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("Status: DEGRADED") && pool_line(&out), "{out}");
        let (_, out) = seed002("export", &addr).await;
        assert!(out.lines().any(|l| l == "mcp_health_status 0.5"), "{out}");
        app.shutdown().await;

        let cfg = config_text(&format!(
            r#"{{ "mcpServers": {{ "a": {} }},
                 "warden": {{ "health_thresholds": {{ "memory_degraded": 0.00001, "memory_unhealthy": 0.00002 }} }} }}"#,
            misbehave(&[], "")
        ));
        let (app, _dir, addr) = listening(cfg, None).await;
        healthy_pid(&app, "a").await;
        let (code, out) = seed002("check", &addr).await;
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("Status: UNHEALTHY"), "{out}");
        let (_, out) = seed002("export", &addr).await;
        assert!(out.lines().any(|l| l == "mcp_health_status 0.0"), "{out}");
        app.shutdown().await;
    })
    .await;
}
