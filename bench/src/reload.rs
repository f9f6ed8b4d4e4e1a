//! Live reload at scale: 50 stdio servers behind one Warden that watches its config file; one
//! server changes per round (its policy, then its process), written the way editors save (a new
//! file renamed over the old). Measured: the time from the file's rename to the change applied
//! (the new policy in force; the new process serving), and the calls to the 49 others meanwhile
//! (errors, and latency against a quiet window of the same run).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;
use warden_app::{App, RunOptions};
use warden_core::InstanceState;
use warden_store::Location;

use crate::{misbehave, quantile, servers_json};

const SERVERS: usize = 50;
const CLIENTS: usize = 4;

/// One call: when it ended, how long it took (ms), whether it failed.
type Sample = (Instant, f64, bool);

fn file(warden: &Path, changed: &str, latency: &str) -> String {
    let servers: Vec<(String, String)> = (0..SERVERS)
        .map(|i| {
            let name = format!("s{i:02}");
            let spec = if i == 0 {
                misbehave(warden, &["--latency", latency], changed)
            } else {
                misbehave(warden, &[], "")
            };
            (name, spec)
        })
        .collect();
    servers_json(&servers)
}

fn save(path: &Path, text: &str) -> Instant {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).unwrap();
    let at = Instant::now();
    std::fs::rename(&tmp, path).unwrap();
    at
}

async fn until(within: Duration, f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

pub(crate) fn reload(warden: &Path, rounds: usize) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(warden, rounds))
}

async fn run(warden: &Path, rounds: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.json");
    std::fs::write(&path, file(warden, r#", "timeout": "30s""#, "0ms")).unwrap();
    let config = warden_config::load(&path).unwrap().config;
    let mut app = App::start(RunOptions {
        config,
        database: Location::Sqlite(dir.path().join("b.db")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        connectors: None,
        http_threads: None,
    })
    .await
    .unwrap();
    app.enable_reload(path.clone(), None);
    let healthy = |app: &App| {
        app.registry()
            .servers()
            .iter()
            .all(|s| s.views().iter().all(|v| v.state == InstanceState::Healthy))
    };
    assert!(until(Duration::from_secs(60), || healthy(&app)).await, "servers did not start");
    let url = format!("http://{}/mcp", app.http_addr().unwrap());

    // Load on the 49 servers that never change.
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let mut load = Vec::new();
    for c in 0..CLIENTS {
        let t = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(url.clone()),
        );
        let client = ().serve(t).await.expect("connect");
        let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
        load.push(tokio::spawn(async move {
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                let server = 1 + n % (SERVERS - 1);
                n += CLIENTS;
                let args = serde_json::json!({ "text": "x" }).as_object().unwrap().clone();
                let call =
                    CallToolRequestParams::new(format!("s{server:02}__echo")).with_arguments(args);
                let t = Instant::now();
                let r = client.peer().call_tool(call).await;
                let failed = !matches!(&r, Ok(r) if r.is_error != Some(true));
                samples.lock().unwrap().push((
                    Instant::now(),
                    t.elapsed().as_secs_f64() * 1000.0,
                    failed,
                ));
            }
        }));
    }
    // A quiet window first: the latency the reload windows are compared with.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = (Instant::now(), Instant::now() + Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut policy_ms = Vec::new();
    let mut process_ms = Vec::new();
    let mut windows = Vec::new();
    for round in 0..rounds {
        // The policy: `timeout` flips between 30 s and 31 s (applied in place).
        let secs = if round % 2 == 0 { 31 } else { 30 };
        let latency = if round % 2 == 0 { "0ms" } else { "1ms" };
        let timeout = Duration::from_secs(secs);
        let written = save(&path, &file(warden, &format!(r#", "timeout": "{secs}s""#), latency));
        let s00 = || app.registry().server("s00").unwrap();
        let ok = until(Duration::from_secs(10), || s00().spec.timeout == timeout).await;
        assert!(ok, "the policy change was not applied");
        policy_ms.push(written.elapsed().as_secs_f64() * 1000.0);
        windows.push((written, Instant::now() + Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(1500)).await;

        // The process: its arguments change (a new process, started before the old one stops).
        let before = s00().views()[0].pid;
        let latency = if round % 2 == 0 { "1ms" } else { "0ms" };
        let written = save(&path, &file(warden, &format!(r#", "timeout": "{secs}s""#), latency));
        let serving = || {
            let h = s00();
            let v = &h.views()[0];
            // Swapped in (the handle's first slot is the new process), routable and listed:
            // what the gateway needs to send it calls.
            v.pid != before
                && v.state.is_routable()
                && h.link(0).and_then(|l| l.catalog()).is_some()
        };
        assert!(until(Duration::from_secs(15), serving).await, "the new process did not serve");
        process_ms.push(written.elapsed().as_secs_f64() * 1000.0);
        windows.push((written, Instant::now() + Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    let samples = samples.lock().unwrap().clone();
    let pick = |w: &[(Instant, Instant)]| -> (Vec<f64>, usize) {
        let inside: Vec<&Sample> =
            samples.iter().filter(|(at, ..)| w.iter().any(|(a, b)| at >= a && at <= b)).collect();
        (inside.iter().map(|s| s.1).collect(), inside.iter().filter(|s| s.2).count())
    };
    let (quiet_ms, quiet_errors) = pick(&[quiet]);
    let (reload_ms, reload_errors) = pick(&windows);
    let total_errors = samples.iter().filter(|s| s.2).count();
    app.shutdown().await;

    let mut out = String::new();
    out += "\n## Live reload: 50 servers, one changed\n\n";
    out += &format!(
        "{SERVERS} stdio servers (`warden misbehave`) behind one Warden watching its config file; \
         {rounds} rounds, each renaming a new file over the old one twice: `s00`'s `timeout` \
         (applied in place) and then its arguments (a new process, started and serving before the \
         old one is drained). Meanwhile {CLIENTS} MCP sessions call `echo` on the 49 others back \
         to back.\n\n"
    );
    out += "| change | median ms | p95 ms | max ms | n |\n|---|---|---|---|---|\n";
    for (what, xs) in [
        ("policy (in place), write → in force", &policy_ms),
        ("process, write → new process routable (listed, swapped in)", &process_ms),
    ] {
        out += &format!(
            "| {what} | {:.0} | {:.0} | {:.0} | {} |\n",
            quantile(xs, 0.5),
            quantile(xs, 0.95),
            xs.iter().copied().fold(f64::NAN, f64::max),
            xs.len()
        );
    }
    out +=
        "\n| calls to the 49 others | calls | errors | p50 ms | p99 ms |\n|---|---|---|---|---|\n";
    for (what, xs, errors) in [
        ("quiet window (5 s, no reload)", &quiet_ms, quiet_errors),
        ("during reloads (write → applied + 1 s)", &reload_ms, reload_errors),
    ] {
        out += &format!(
            "| {what} | {} | {errors} | {:.2} | {:.2} |\n",
            xs.len(),
            quantile(xs, 0.5),
            quantile(xs, 0.99)
        );
    }
    out += &format!(
        "\nErrors over the whole run, every call counted: {total_errors} of {}.\n",
        samples.len()
    );
    out
}
