//! The gateway's cost: the same upstream (`warden misbehave --http`) called directly and
//! through `warden run` (`/servers/up/mcp`), interleaved in one run; and client-visible errors
//! while one replica of two is killed every 2 s.

use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;

use crate::proc::{free_port, run_warden, wait_healthy, wait_http, Proc};
use crate::{quantile, summary};

pub(crate) async fn client(url: &str) -> RunningService<RoleClient, ()> {
    let t = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    ().serve(t).await.expect("connect")
}

pub(crate) fn echo() -> CallToolRequestParams {
    CallToolRequestParams::new("echo")
        .with_arguments(serde_json::json!({"text": "x"}).as_object().unwrap().clone())
}

/// Latencies (ms) of `n` sequential calls on one session.
async fn sequential(url: &str, n: usize) -> Vec<f64> {
    let c = client(url).await;
    for _ in 0..50 {
        c.peer().call_tool(echo()).await.unwrap();
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.peer().call_tool(echo()).await.unwrap();
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

/// Calls per second with `clients` sessions calling back to back for `secs`.
async fn throughput(url: &str, clients: usize, secs: u64) -> f64 {
    let calls = concurrent(url, clients, Until::Elapsed(Duration::from_secs(secs))).await;
    calls.len() as f64 / secs as f64
}

/// When each client of [`concurrent`] stops calling.
#[derive(Clone, Copy)]
enum Until {
    /// After this many calls.
    Calls(usize),
    /// Once this long has passed since every session was open.
    Elapsed(Duration),
}

/// Latencies (ms) of `echo` calls from `clients` sessions, each calling back to back.
async fn concurrent(url: &str, clients: usize, until: Until) -> Vec<f64> {
    let mut sessions = vec![];
    for _ in 0..clients {
        sessions.push(client(url).await);
    }
    let start = Instant::now();
    let mut tasks = vec![];
    for s in sessions {
        tasks.push(tokio::spawn(async move {
            let mut out = vec![];
            while match until {
                Until::Calls(n) => out.len() < n,
                Until::Elapsed(d) => start.elapsed() < d,
            } {
                let t = Instant::now();
                s.peer().call_tool(echo()).await.unwrap();
                out.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            out
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

pub(crate) fn overhead(warden: &std::path::Path, rounds: usize) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up_port = free_port();
    let _up = Proc(
        std::process::Command::new(warden)
            .args(["misbehave", "--http", &format!("127.0.0.1:{up_port}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(r#"{{ "mcpServers": {{ "up": {{ "url": "http://127.0.0.1:{up_port}/mcp" }} }} }}"#),
    )
    .unwrap();
    let w_port = free_port();
    let _w = run_warden(warden, dir.path(), &cfg, w_port);
    let direct = format!("http://127.0.0.1:{up_port}/mcp");
    let via = format!("http://127.0.0.1:{w_port}/servers/up/mcp");
    // Optionally a second Warden (another build, e.g. the commit before a change) in front of
    // the same upstream, measured in the same rounds: before/after without run-to-run noise.
    let baseline = std::env::var_os("WARDEN_BENCH_BASELINE").map(std::path::PathBuf::from);
    let b_dir = tempfile::tempdir().unwrap();
    let b_port = free_port();
    let _b = baseline.as_ref().map(|b| run_warden(b, b_dir.path(), &cfg, b_port));
    let via_b = format!("http://127.0.0.1:{b_port}/servers/up/mcp");
    let mut gateways = vec![(w_port, via.clone())];
    if baseline.is_some() {
        gateways.push((b_port, via_b.clone()));
    }
    rt.block_on(async {
        for (port, url) in &gateways {
            wait_http(&format!("http://127.0.0.1:{port}/health")).await;
            // Until the upstream is routable, calls are refused: wait for one to succeed.
            let start = Instant::now();
            loop {
                let c = client(url).await;
                if c.peer().call_tool(echo()).await.is_ok() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "the upstream never became routable"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let (mut d1, mut w1, mut d8, mut w8) = (vec![], vec![], vec![], vec![]);
    let (mut dm, mut wm) = (vec![], vec![]);
    let (mut b1, mut bm, mut b8) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        rt.block_on(async {
            let d = sequential(&direct, 1000).await;
            let w = sequential(&via, 1000).await;
            dm.push(quantile(&d, 0.5));
            wm.push(quantile(&w, 0.5));
            d1.extend(d);
            w1.extend(w);
            if baseline.is_some() {
                let b = sequential(&via_b, 1000).await;
                bm.push(quantile(&b, 0.5));
                b1.extend(b);
            }
            d8.push(throughput(&direct, 8, 5).await);
            w8.push(throughput(&via, 8, 5).await);
            if baseline.is_some() {
                b8.push(throughput(&via_b, 8, 5).await);
            }
        });
    }
    let added_us: Vec<f64> = wm.iter().zip(&dm).map(|(w, d)| (w - d) * 1000.0).collect();
    let ratios: Vec<f64> = w8.iter().zip(&d8).map(|(w, d)| w / d).collect();
    let mut out = format!(
        "## Gateway overhead (Streamable HTTP, `echo`, direct vs through `/servers/up/mcp`), {rounds} interleaved rounds\n\n\
         | path | median ms | p95 ms | p99 ms | max ms | n |\n|---|---|---|---|---|---|\n\
         | direct, 1 client | {} |\n| through Warden, 1 client | {} |\n\n\
         Added latency per round (median through − median direct): {:.0} µs (median of rounds; target ≤ 100 µs).\n\n\
         | 8 concurrent clients | median calls/s over rounds |\n|---|---|\n| direct | {:.0} |\n| through Warden | {:.0} |\n\n\
         Throughput through Warden is {:.0} % of direct (median of per-round ratios; target ≥ 80 %).\n\n",
        summary(&d1),
        summary(&w1),
        quantile(&added_us, 0.5),
        quantile(&d8, 0.5),
        quantile(&w8, 0.5),
        quantile(&ratios, 0.5) * 100.0,
    );
    if let Some(b) = &baseline {
        let added_b: Vec<f64> = bm.iter().zip(&dm).map(|(w, d)| (w - d) * 1000.0).collect();
        let ratios_b: Vec<f64> = b8.iter().zip(&d8).map(|(w, d)| w / d).collect();
        out += &format!(
            "Baseline Warden (`{}`) in the same rounds:\n\n\
             | path | median ms | p95 ms | p99 ms | max ms | n |\n|---|---|---|---|---|---|\n\
             | through the baseline, 1 client | {} |\n\n\
             Baseline: added {:.0} µs; 8 clients {:.0} calls/s, {:.0} % of direct.\n\n",
            b.display(),
            summary(&b1),
            quantile(&added_b, 0.5),
            quantile(&b8, 0.5),
            quantile(&ratios_b, 0.5) * 100.0,
        );
    }
    out
}

/// Two stdio replicas of a trusted server; one is SIGKILLed every 2 s for `secs`, while a
/// client calls the read-only `echo` back to back. Counts client-visible errors.
pub(crate) fn replica_kills(warden: &std::path::Path, secs: u64) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = serde_json::to_string(&warden.display().to_string()).unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(&cfg, format!(r#"{{ "mcpServers": {{ "pair": {{ "command": {exe}, "args": ["misbehave"], "replicas": 2, "trusted": true }} }} }}"#)).unwrap();
    let port = free_port();
    let _w = run_warden(warden, dir.path(), &cfg, port);
    let base = format!("http://127.0.0.1:{port}");
    let (calls, errors, kills, seen) = rt.block_on(async {
        wait_healthy(&base, Duration::from_secs(30)).await;
        let c = client(&format!("{base}/mcp")).await;
        let call = CallToolRequestParams::new("pair__echo")
            .with_arguments(serde_json::json!({"text": "x"}).as_object().unwrap().clone());
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut next_kill = Instant::now() + Duration::from_secs(2);
        let (mut calls, mut errors, mut kills) = (0u64, 0u64, 0u64);
        let mut seen: Vec<String> = vec![];
        while Instant::now() < deadline {
            if Instant::now() >= next_kill {
                next_kill += Duration::from_secs(2);
                let v: serde_json::Value = reqwest::get(format!("{base}/api/servers"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                // Always the same replica (pair#0), whenever it has a process: it crash-loops
                // into `failed` under the restart intensity limit, and pair#1 serves.
                if let Some(pid) = v["servers"][0]["instances"][0]["pid"].as_u64() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    kills += 1;
                }
            }
            calls += 1;
            if let Err(e) = c.peer().call_tool(call.clone()).await {
                errors += 1;
                let text = e.to_string();
                if seen.len() < 3 && !seen.contains(&text) {
                    seen.push(text);
                }
            }
        }
        (calls, errors, kills, seen)
    });
    format!(
        "## Failover under load: one replica of two SIGKILLed every 2 s for {secs} s\n\n\
         | calls | replica kills | client-visible errors |\n|---|---|---|\n| {calls} | {kills} | {errors} |\n\n\
         Read-only `echo` on a trusted server, one client calling back to back through `/mcp`; the same\n\
         replica is killed each time it has a process (it reaches `failed` after 6 starts). Target: 0 errors.\n\n{}",
        seen.iter().map(|s| format!("- first errors seen: `{s}`\n")).collect::<String>()
    )
}

/// Two remote replicas, one 5× slower than the other (2 ms and 10 ms per call); the same
/// load through a server balanced by P2C on peak EWMA and through one balanced round-robin,
/// interleaved in one run.
pub(crate) fn balancing(warden: &std::path::Path, rounds: usize) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = |latency: &str| {
        let port = free_port();
        let p = Proc(
            std::process::Command::new(warden)
                .args(["misbehave", "--http", &format!("127.0.0.1:{port}"), "--latency", latency])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        (p, format!("http://127.0.0.1:{port}/mcp"))
    };
    let (_fast, fast) = upstream("2ms");
    let (_slow, slow) = upstream("10ms");
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ "mcpServers": {{
                "p2c": {{ "url": ["{fast}", "{slow}"] }},
                "rr": {{ "url": ["{fast}", "{slow}"], "balance": "round_robin" }} }} }}"#
        ),
    )
    .unwrap();
    let port = free_port();
    let _w = run_warden(warden, dir.path(), &cfg, port);
    let base = format!("http://127.0.0.1:{port}");
    rt.block_on(wait_healthy(&base, Duration::from_secs(30)));
    let mut out = format!(
        "## Balancing: two replicas, one 5× slower (2 ms vs 10 ms per call), {rounds} interleaved rounds\n\n\
         | clients | policy | median ms | p95 ms | p99 ms | max ms | n | p95 lower with P2C |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for clients in [1usize, 4, 8] {
        let per_client = 1200 / clients;
        let (mut p2c, mut rr, mut p2c95, mut rr95) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            rt.block_on(async {
                let calls = Until::Calls(per_client);
                let a = concurrent(&format!("{base}/servers/p2c/mcp"), clients, calls).await;
                let b = concurrent(&format!("{base}/servers/rr/mcp"), clients, calls).await;
                p2c95.push(quantile(&a, 0.95));
                rr95.push(quantile(&b, 0.95));
                p2c.extend(a);
                rr.extend(b);
            });
        }
        let lower: Vec<f64> = p2c95.iter().zip(&rr95).map(|(p, r)| 1.0 - p / r).collect();
        out += &format!(
            "| {clients} | P2C, peak EWMA × (in flight + 1) | {} | {:.0} % |\n| {clients} | round-robin | {} | |\n",
            summary(&p2c),
            quantile(&lower, 0.5) * 100.0,
            summary(&rr),
        );
    }
    out += "\n\"p95 lower\" is the median over rounds of 1 − p95(P2C) / p95(round-robin); target ≥ 40 %.\n\
            The upstream sleeps per call and serves calls in parallel, so its latency does not grow\n\
            with load; the (in flight + 1) factor of the cost still moves calls to the slow replica\n\
            once the fast one has several in flight, which is what bounds P2C's p95 at 8 clients.\n\n";
    out
}
