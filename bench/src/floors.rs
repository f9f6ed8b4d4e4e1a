//! The gateway against the floors of issue 17, all in one run, in interleaved rounds: the same
//! echo server (`warden misbehave`) reached directly, through nginx (the Debian package, one
//! worker process, keep-alive upstream, no buffering: what any HTTP hop costs), through a
//! minimal tokio byte proxy on Warden's runtime layout (`byteproxy`, on one thread and on two:
//! what the runtime and the kernel cost a Rust hop that does no MCP work), through Warden
//! (scoped `/servers/{name}/mcp` and aggregated `/mcp`), and through joshrotenberg's
//! `mcp-proxy` 0.6.0 (the Rust peer, when installed) — over HTTP and to a stdio child — and the
//! desktop path: a client launching `warden run --stdio` against launching the server itself.
//! CPU per call is read from /proc for every process of the hop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;

use crate::gateway::client;
use crate::proc::{cpu_ticks, free_port, run_warden, run_warden_env, wait_http, Proc};
use crate::quantile;

const NGINX: &str = "/usr/sbin/nginx";
/// Turns of sequential calls per round (after a warm-up), one call on each path a turn.
const SEQ: usize = 400;
/// Seconds of the 8-client phase per path and round.
const SECS: f64 = 3.0;

/// A way to reach `tool` at `url`, through the processes `hop`.
fn path(label: &'static str, url: String, tool: &str, hop: &[u32]) -> Path_ {
    Path_ { label, url, tool: tool.to_owned(), hop: hop.to_vec() }
}

/// One way to reach the echo tool over HTTP.
struct Path_ {
    label: &'static str,
    url: String,
    tool: String,
    /// The processes whose CPU is the hop's (not the upstream's, not the client's).
    hop: Vec<u32>,
}

#[derive(Default)]
struct Rounds {
    p50_us: Vec<f64>,
    /// Each call's latency minus direct's in the same turn, the median.
    added_us: Vec<f64>,
    one_per_s: Vec<f64>,
    eight_per_s: Vec<f64>,
    hop_cpu_us: Vec<f64>,
    up_cpu_us: Vec<f64>,
    /// The bench's own CPU (the eight clients) per call.
    client_cpu_us: Vec<f64>,
    /// CPU time no process used, per call (both cores' idle ticks).
    idle_us: Vec<f64>,
}

/// The 8-client phase of one path in one round.
struct Eight {
    per_s: f64,
    hop: f64,
    up: f64,
    client: f64,
    idle: f64,
}

/// The machine's idle ticks so far (all cores), from /proc/stat.
fn idle_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // cpu  user nice system idle iowait ...
    stat.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn call(tool: &str) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_owned())
        .with_arguments(serde_json::json!({"text": "x"}).as_object().unwrap().clone())
}

/// One call's latency, µs.
async fn timed(peer: &Peer<RoleClient>, tool: &str) -> f64 {
    let t = Instant::now();
    peer.call_tool(call(tool)).await.expect("call");
    t.elapsed().as_secs_f64() * 1e6
}

/// The latencies (µs) of `n` turns of sequential calls, one on each path per turn in an order
/// shuffled each turn, after a warm-up: every path is measured over the same seconds, so a
/// difference between two paths is taken call by call, at the same moment of a noisy machine
/// (two p50s measured seconds apart differ by more than some of the costs compared). Shuffled,
/// not rotated: in a fixed cycle a path would always follow the same one (the aggregated
/// endpoint would always find Warden just woken by the scoped one's call).
async fn turns(paths: &[(&Peer<RoleClient>, &str)], n: usize) -> Vec<Vec<f64>> {
    use rand::seq::SliceRandom;
    for (peer, tool) in paths {
        for _ in 0..50 {
            peer.call_tool(call(tool)).await.expect("warm-up call");
        }
    }
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(17);
    let mut order: Vec<usize> = (0..paths.len()).collect();
    let mut lat = vec![Vec::with_capacity(n); paths.len()];
    for _ in 0..n {
        order.shuffle(&mut rng);
        for &k in &order {
            lat[k].push(timed(paths[k].0, paths[k].1).await);
        }
    }
    lat
}

/// The median of `a[i] - b[i]`.
fn median_gap(a: &[f64], b: &[f64]) -> f64 {
    med(&a.iter().zip(b).map(|(a, b)| a - b).collect::<Vec<_>>())
}

/// Calls answered by `peers` (each calling back to back, several may share a session) in
/// [`SECS`], and the CPU µs per call of `hop`, `upstream`, the clients (this process) and of
/// nothing (idle) meanwhile: where the two cores went.
async fn eight(peers: &[Peer<RoleClient>], tool: &str, hop: &[u32], up: &[u32]) -> Eight {
    let ticks = |pids: &[u32]| pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>();
    let me = std::process::id();
    let (hop0, up0, me0, idle0) = (ticks(hop), ticks(up), cpu_ticks(me), idle_ticks());
    let began = Instant::now();
    let stop = began + Duration::from_secs_f64(SECS);
    let mut tasks = vec![];
    for p in peers {
        let (p, tool) = (p.clone(), tool.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                p.call_tool(call(&tool)).await.expect("call");
                n += 1;
            }
            n
        }));
    }
    let mut calls = 0;
    for t in tasks {
        calls += t.await.unwrap();
    }
    let secs = began.elapsed().as_secs_f64();
    let per_call = |t: u64| t as f64 * 10_000.0 / calls.max(1) as f64;
    Eight {
        per_s: calls as f64 / secs,
        hop: per_call(ticks(hop) - hop0),
        up: per_call(ticks(up) - up0),
        client: per_call(cpu_ticks(me) - me0),
        idle: per_call(idle_ticks() - idle0),
    }
}

fn nginx(dir: &Path, port: u16, upstream: u16) -> Option<Proc> {
    if !Path::new(NGINX).exists() {
        return None;
    }
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\nevents {{}}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         upstream up {{ server 127.0.0.1:{upstream}; keepalive 32; }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n      \
         proxy_set_header Host $host;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      \
         proxy_buffering off;\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        // One process: the worker itself (its CPU is the hop's).
        .arg("-g")
        .arg(format!("daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Proc(child))
}

fn mcp_proxy(dir: &Path, port: u16, upstream: u16, warden: &Path) -> Option<Proc> {
    let exe = std::env::var_os("WARDEN_BENCH_MCP_PROXY").unwrap_or_else(|| "mcp-proxy".into());
    let w = warden.display();
    let conf = format!(
        "[proxy]\nname = \"bench\"\nseparator = \"/\"\n\n[proxy.listen]\nhost = \"127.0.0.1\"\nport = {port}\n\n\
         [[backends]]\nname = \"up\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:{upstream}/mcp\"\n\n\
         [[backends]]\nname = \"io\"\ntransport = \"stdio\"\ncommand = \"{w}\"\nargs = [\"misbehave\"]\n"
    );
    std::fs::write(dir.join("proxy.toml"), conf).unwrap();
    let child = Command::new(exe)
        .arg("--config")
        .arg(dir.join("proxy.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Proc(child))
}

/// The pids of `pid`'s children (a gateway's stdio servers), from every process's parent.
fn children(pid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return vec![] };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { return false };
            // The parent is the second field after the command name.
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1))
                == Some(pid.to_string().as_str())
        })
        .collect()
}

/// A session on `url` whose `tool` answers, within 30 s.
async fn ready(url: &str, tool: &str) -> RunningService<RoleClient, ()> {
    let began = Instant::now();
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(5), async {
            let t = StreamableHttpClientTransport::with_client(
                reqwest::Client::new(),
                StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
            );
            let c = ().serve(t).await.ok()?;
            c.peer().call_tool(call(tool)).await.ok().map(|_| c)
        });
        if let Ok(Some(c)) = attempt.await {
            return c;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{url}: {tool} never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn floors(warden: &Path, rounds: usize) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    if std::env::var("WARDEN_BENCH_FLOORS_ONLY").as_deref() == Ok("desktop") {
        return desktop(&rt, warden, dir.path(), rounds);
    }
    let up_port = free_port();
    let up = Proc(
        Command::new(warden)
            .args(["misbehave", "--http", &format!("127.0.0.1:{up_port}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let exe = serde_json::to_string(&warden.display().to_string()).unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ "mcpServers": {{ "up": {{ "url": "http://127.0.0.1:{up_port}/mcp" }},
                "io": {{ "command": {exe}, "args": ["misbehave"] }} }} }}"#
        ),
    )
    .unwrap();
    let w_port = free_port();
    let w = run_warden(warden, dir.path(), &cfg, w_port);
    let ngx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&ngx_dir).unwrap();
    let n_port = free_port();
    let ngx = nginx(&ngx_dir, n_port, up_port);
    // The tokio byte proxy on one thread and on two (Warden's layout on these machines).
    let byte_proxy = |threads: &str| {
        let port = free_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--serve-proxy", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{up_port}")])
            .arg(threads)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (port, Proc(child))
    };
    let (x1_port, x1) = byte_proxy("1");
    let (x2_port, x2) = byte_proxy("2");
    let mp_dir = dir.path().join("mcp-proxy");
    std::fs::create_dir_all(&mp_dir).unwrap();
    let m_port = free_port();
    let mp = mcp_proxy(&mp_dir, m_port, up_port, warden);

    // Optionally another build (e.g. the commit before a change) on the same config, measured
    // in the same rounds: before/after without run-to-run noise.
    let baseline = std::env::var_os("WARDEN_BENCH_BASELINE").map(std::path::PathBuf::from);
    let b_dir = tempfile::tempdir().unwrap();
    let b_port = free_port();
    // `WARDEN_BENCH_BASELINE_HTTP_THREADS=n`: the baseline serves on n threads (e.g. the same
    // build on one thread against two).
    let b_threads = std::env::var("WARDEN_BENCH_BASELINE_HTTP_THREADS").ok();
    let b_env: Vec<(&str, String)> =
        b_threads.iter().map(|t| ("WARDEN_HTTP_THREADS", t.clone())).collect();
    let b = baseline.as_ref().map(|b| run_warden_env(b, b_dir.path(), &cfg, b_port, &b_env));
    let bh = format!("http://127.0.0.1:{b_port}");
    let wh = format!("http://127.0.0.1:{w_port}");
    let mh = format!("http://127.0.0.1:{m_port}/");
    let mut paths = vec![path(
        "direct Streamable HTTP",
        format!("http://127.0.0.1:{up_port}/mcp"),
        "echo",
        &[],
    )];
    if let Some(n) = &ngx {
        paths.push(path(
            "nginx, one worker, keep-alive upstream",
            format!("http://127.0.0.1:{n_port}/mcp"),
            "echo",
            &[n.pid()],
        ));
    }
    paths.push(path(
        "tokio byte proxy, one thread, keep-alive upstream",
        format!("http://127.0.0.1:{x1_port}/mcp"),
        "echo",
        &[x1.pid()],
    ));
    paths.push(path(
        "tokio byte proxy, two threads, keep-alive upstream",
        format!("http://127.0.0.1:{x2_port}/mcp"),
        "echo",
        &[x2.pid()],
    ));
    paths.push(path(
        "Warden `/servers/up/mcp` → HTTP upstream",
        format!("{wh}/servers/up/mcp"),
        "echo",
        &[w.pid()],
    ));
    paths.push(path(
        "Warden `/mcp` (aggregated) → HTTP upstream",
        format!("{wh}/mcp"),
        "up__echo",
        &[w.pid()],
    ));
    if let Some(m) = &mp {
        paths.push(path("mcp-proxy 0.6.0 → HTTP upstream", mh.clone(), "up/echo", &[m.pid()]));
    }
    paths.push(path(
        "Warden `/servers/io/mcp` → stdio child",
        format!("{wh}/servers/io/mcp"),
        "echo",
        &[w.pid()],
    ));
    if let Some(b) = &b {
        paths.push(path(
            "baseline Warden `/servers/up/mcp` → HTTP upstream",
            format!("{bh}/servers/up/mcp"),
            "echo",
            &[b.pid()],
        ));
        paths.push(path(
            "baseline Warden `/servers/io/mcp` → stdio child",
            format!("{bh}/servers/io/mcp"),
            "echo",
            &[b.pid()],
        ));
    }
    if let Some(m) = &mp {
        paths.push(path("mcp-proxy 0.6.0 → stdio child", mh.clone(), "io/echo", &[m.pid()]));
    }
    // For an experiment on one path: `WARDEN_BENCH_FLOORS_ONLY=stdio` measures direct and the
    // paths whose label contains it, and leaves out the targets (they need every path);
    // `=desktop` only the desktop path (above).
    let only = std::env::var("WARDEN_BENCH_FLOORS_ONLY").ok();
    if let Some(o) = &only {
        paths.retain(|p| p.hop.is_empty() || p.label.contains(o.as_str()));
    }
    rt.block_on(async {
        wait_http(&format!("{wh}/health")).await;
        if b.is_some() {
            wait_http(&format!("{bh}/health")).await;
        }
        for p in &paths {
            ready(&p.url, &p.tool).await;
        }
    });
    // The stdio children's CPU counts as the upstream's.
    let stdio_children: Vec<u32> =
        [Some(w.pid()), b.as_ref().map(Proc::pid), mp.as_ref().map(Proc::pid)]
            .into_iter()
            .flatten()
            .flat_map(children)
            .collect();
    let mut results: Vec<Rounds> = paths.iter().map(|_| Rounds::default()).collect();
    let scoped = paths.iter().position(|p| p.label.starts_with("Warden `/servers/up"));
    let aggregated = paths.iter().position(|p| p.label.starts_with("Warden `/mcp`"));
    // Per round, aggregated minus scoped call by call, the median.
    let mut routing: Vec<f64> = vec![];
    for _ in 0..rounds {
        rt.block_on(async {
            // One client: every path in turn (`turns`).
            let mut ones = vec![];
            for p in &paths {
                ones.push(client(&p.url).await);
            }
            let each: Vec<_> = ones.iter().zip(&paths).map(|(c, p)| (c.peer(), &*p.tool)).collect();
            let lat = turns(&each, SEQ).await;
            for (l, r) in lat.iter().zip(results.iter_mut()) {
                r.p50_us.push(med(l));
                r.added_us.push(median_gap(l, &lat[0]));
                r.one_per_s.push(l.len() as f64 * 1e6 / l.iter().sum::<f64>());
            }
            if let (Some(s), Some(a)) = (scoped, aggregated) {
                routing.push(median_gap(&lat[a], &lat[s]));
            }
            for c in ones {
                let _ = c.cancel().await;
            }
        });
        // Eight clients: one path at a time.
        for (p, r) in paths.iter().zip(results.iter_mut()) {
            rt.block_on(async {
                let mut sessions = vec![];
                for _ in 0..8 {
                    sessions.push(client(&p.url).await);
                }
                let peers: Vec<_> = sessions.iter().map(|s| s.peer().clone()).collect();
                let upstream =
                    if p.label.contains("stdio") { stdio_children.clone() } else { vec![up.pid()] };
                let e = eight(&peers, &p.tool, &p.hop, &upstream).await;
                r.eight_per_s.push(e.per_s);
                r.hop_cpu_us.push(e.hop);
                r.up_cpu_us.push(e.up);
                r.client_cpu_us.push(e.client);
                r.idle_us.push(e.idle);
                for s in sessions {
                    let _ = s.cancel().await;
                }
            });
        }
    }
    if only.is_some() {
        return table(&paths, &results, rounds);
    }
    let desktop = desktop(&rt, warden, dir.path(), rounds);
    report(&paths, &results, &routing, ngx.is_some(), mp.is_some(), rounds) + &desktop
}

fn med(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// The added latency against direct, call by call in the same turns, over the rounds.
fn added(r: &[Rounds], i: usize) -> f64 {
    med(&r[i].added_us)
}

/// The measurements, a row per path.
fn table(paths: &[Path_], r: &[Rounds], rounds: usize) -> String {
    let direct = &r[0];
    // Per round, against the same round's direct path.
    let of_direct = |i: usize| -> f64 {
        med(&r[i]
            .eight_per_s
            .iter()
            .zip(&direct.eight_per_s)
            .map(|(a, d)| a / d)
            .collect::<Vec<_>>())
    };
    let mut out = format!(
        "## Gateway against same-run floors (issue 17), {rounds} interleaved rounds, medians\n\n\
         | path (same echo server) | p50 µs | added p50 µs | calls/s, 1 client | calls/s, 8 clients | of direct at 8 | hop CPU µs/call at 8 | upstream CPU µs/call | client CPU µs/call | idle µs/call |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (i, (p, x)) in paths.iter().zip(r).enumerate() {
        let hop =
            if p.hop.is_empty() { "—".to_owned() } else { format!("{:.0}", med(&x.hop_cpu_us)) };
        out += &format!(
            "| {} | {:.0} | {} | {:.0} | {:.0} | {:.0} % | {hop} | {:.0} | {:.0} | {:.0} |\n",
            p.label,
            med(&x.p50_us),
            if i == 0 { "—".to_owned() } else { format!("{:+.0}", added(r, i)) },
            med(&x.one_per_s),
            med(&x.eight_per_s),
            of_direct(i) * 100.0,
            med(&x.up_cpu_us),
            med(&x.client_cpu_us),
            med(&x.idle_us),
        );
    }
    out
}

fn report(
    paths: &[Path_],
    r: &[Rounds],
    routing: &[f64],
    nginx: bool,
    proxy: bool,
    rounds: usize,
) -> String {
    let mut out = table(paths, r, rounds);
    if let Ok(t) = std::env::var("WARDEN_BENCH_BASELINE_HTTP_THREADS") {
        out +=
            &format!("\nThe baseline rows serve on {t} HTTP thread(s) (`WARDEN_HTTP_THREADS`).\n");
    }
    let added = |i: usize| added(r, i);
    let find = |prefix: &str| paths.iter().position(|p| p.label.starts_with(prefix));
    let ratio = |a: usize, b: usize, f: &dyn Fn(usize) -> f64| f(a) / f(b);
    out += "\nTargets (issue 17), each a ratio within this run:\n\n";
    let w_http = find("Warden `/servers/up").unwrap();
    let w_io = find("Warden `/servers/io").unwrap();
    let thr = |i: usize| med(&r[i].eight_per_s);
    if nginx {
        let n = find("nginx").unwrap();
        out += &format!(
            "- HTTP upstream, added p50 vs nginx's: {:.2}× (target ≤ 2×); 8-client calls/s vs nginx's: {:.2}× (target ≥ 0.75×)\n",
            ratio(w_http, n, &added),
            ratio(w_http, n, &thr),
        );
    } else {
        out +=
            "- nginx not installed (`apt-get install nginx-light`): no HTTP-hop floor this run\n";
    }
    if proxy {
        let mh = find("mcp-proxy 0.6.0 → HTTP").unwrap();
        let ms = find("mcp-proxy 0.6.0 → stdio").unwrap();
        out += &format!(
            "- HTTP upstream, 8-client calls/s vs mcp-proxy's: {:.2}× (target ≥ 1.3×)\n\
             - stdio upstream, added p50 vs mcp-proxy's: {:.2}× (target ≤ 0.7×); 8-client calls/s vs mcp-proxy's: {:.2}× (target ≥ 1.3×)\n",
            ratio(w_http, mh, &thr),
            ratio(w_io, ms, &added),
            ratio(w_io, ms, &thr),
        );
    } else {
        out += "- mcp-proxy not installed (`cargo install mcp-proxy --version 0.6.0`): no peer floor this run\n";
    }
    out += &format!(
        "- aggregated `/mcp` minus scoped `/servers/up/mcp`, call by call: {:+.0} µs (target ≤ 20 µs)\n",
        med(routing),
    );
    out
}

/// A client launching `warden run --stdio` (one stdio server behind it) against the client
/// launching that server itself: p50 of sequential calls taken in turns with direct (`turns`), and calls/s with 8 requests in flight
/// on the one session.
fn desktop(rt: &tokio::runtime::Runtime, warden: &Path, dir: &Path, rounds: usize) -> String {
    let exe = serde_json::to_string(&warden.display().to_string()).unwrap();
    let cfg = dir.join("desktop.json");
    std::fs::write(
        &cfg,
        format!(r#"{{ "mcpServers": {{ "io": {{ "command": {exe}, "args": ["misbehave"] }} }} }}"#),
    )
    .unwrap();
    // Direct, through this Warden, and through the baseline build if one is given.
    let baseline = std::env::var_os("WARDEN_BENCH_BASELINE").map(std::path::PathBuf::from);
    let mut vias: Vec<Option<&Path>> = vec![None, Some(warden)];
    if let Some(b) = &baseline {
        vias.push(Some(b));
    }
    let launch = |via: Option<&Path>| {
        let mut cmd = tokio::process::Command::new(via.unwrap_or(warden));
        if via.is_some() {
            cmd.args(["run", "--stdio", "--log-level", "warn", "--db"])
                .arg(dir.join("desktop.db"))
                .arg("-c")
                .arg(&cfg)
                .env("WARDEN_LOG_DIR", "none")
                .env_remove("WARDEN_TOKEN");
        } else {
            cmd.arg("misbehave");
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        cmd.spawn().unwrap()
    };
    let mut p50s = vec![vec![]; vias.len()];
    // Per round and via, the median over calls of its latency minus direct's in the same turn.
    let mut addeds = vec![vec![]; vias.len()];
    let mut eights = vec![vec![]; vias.len()];
    for _ in 0..rounds {
        rt.block_on(async {
            // Every path up at once, called in turns (order shuffled each turn), so each
            // call's latency is set against direct's at the same moment of a noisy machine.
            let mut up = vec![];
            for via in &vias {
                let mut child = launch(*via);
                let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
                let c = ().serve(io).await.expect("a stdio session");
                let tool = if via.is_some() { "io__echo" } else { "echo" };
                let began = Instant::now();
                while c.peer().call_tool(call(tool)).await.is_err() {
                    assert!(began.elapsed() < Duration::from_secs(30), "{tool} never answered");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                up.push((child, c, tool));
            }
            let each: Vec<_> = up.iter().map(|(_, c, tool)| (c.peer(), *tool)).collect();
            let lat = turns(&each, SEQ).await;
            for (k, l) in lat.iter().enumerate() {
                p50s[k].push(med(l));
                addeds[k].push(median_gap(l, &lat[0]));
            }
            for (k, (_, c, tool)) in up.iter().enumerate() {
                let peers: Vec<_> = (0..8).map(|_| c.peer().clone()).collect();
                let calls = eight(&peers, tool, &[], &[]).await.per_s;
                eights[k].push(calls);
            }
            for (mut child, c, _) in up {
                let _ = c.cancel().await;
                let _ = child.kill().await;
            }
        });
    }
    let vs_direct = |k: usize| -> (f64, f64) {
        let share: Vec<f64> = eights[k].iter().zip(&eights[0]).map(|(v, d)| v / d).collect();
        (med(&addeds[k]), med(&share))
    };
    let (added, share) = vs_direct(1);
    let mut out = format!(
        "\n### The desktop path: a client launching `warden run --stdio` vs launching the server itself\n\n\
         | path | p50 µs | calls/s, 8 in flight on one session |\n|---|---|---|\n\
         | client → stdio server | {:.0} | {:.0} |\n| client → `warden run --stdio` → stdio server | {:.0} | {:.0} |\n",
        med(&p50s[0]),
        med(&eights[0]),
        med(&p50s[1]),
        med(&eights[1]),
    );
    if let Some(b) = &baseline {
        out += &format!(
            "| client → baseline `warden run --stdio` → stdio server | {:.0} | {:.0} |\n",
            med(&p50s[2]),
            med(&eights[2])
        );
        let (b_added, b_share) = vs_direct(2);
        out += &format!(
            "\nBaseline (`{}`): added p50 {b_added:+.0} µs, {:.0} % of direct at 8 in flight.\n",
            b.display(),
            b_share * 100.0
        );
    }
    out += &format!(
        "\nAdded p50: {added:+.0} µs, the median of each call's latency minus direct's in the same turn \
         (target ≤ 100 µs); throughput at 8 in flight: {:.0} % of direct (target ≥ 60 %).\n\n",
        share * 100.0,
    );
    out
}
