//! Tool search and the static choice of tools (issue 14) with about 500 tools: 36 servers,
//! each the misbehaving server serving one of four real catalogs (server-everything,
//! filesystem, memory, fetch: their captured `tools/list` answers) beside its own five tools.
//! Round trips of `warden__search_tools` and `warden__analyze_prompt` through `/mcp`, beside the
//! floor of the same hop (`echo` of one server, in the same run), and the time Warden spent
//! inside (the tools' `ms`); then the memory a session with a chosen exposure costs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use warden_app::{App, RunOptions};
use warden_core::InstanceState;
use warden_store::Location;

use crate::quantile;

const SERVERS: usize = 36;
const CATALOGS: [&str; 4] = ["everything", "filesystem", "memory", "fetch"];
const SESSIONS: usize = 200;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/warden-gateway/tests/fixtures")
}

fn rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

async fn client(url: &str) -> RunningService<RoleClient, ()> {
    let t = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    ().serve(t).await.expect("connect")
}

async fn call(c: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> (f64, Value) {
    let t = Instant::now();
    let r = c
        .peer()
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .expect("the call succeeds");
    (t.elapsed().as_secs_f64() * 1000.0, r.structured_content.unwrap_or_default())
}

pub(crate) fn report(warden: &Path, calls: usize) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(warden, calls))
}

async fn run(warden: &Path, calls: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<String> = (0..SERVERS)
        .map(|i| {
            let catalog = fixtures().join(format!("{}.json", CATALOGS[i % CATALOGS.len()]));
            format!(
                r#""s{i:02}": {{ "command": {}, "args": ["misbehave", "--catalog", {}] }}"#,
                json!(warden.display().to_string()),
                json!(catalog.display().to_string())
            )
        })
        .collect();
    let text = format!(
        r#"{{ "mcpServers": {{ {} }}, "warden": {{ "tools": {{ "exposure": "meta" }} }} }}"#,
        servers.join(", ")
    );
    let config = warden_config::compile(&text, &|_| None).expect("a valid config").config;
    let app = App::start(RunOptions {
        config,
        database: Location::Sqlite(dir.path().join("b.db")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        connectors: None,
        http_threads: None,
    })
    .await
    .unwrap();
    let start = Instant::now();
    while !app
        .registry()
        .servers()
        .iter()
        .all(|s| s.views().iter().all(|v| v.state == InstanceState::Healthy && v.tools > 0))
    {
        assert!(start.elapsed() < Duration::from_secs(60), "servers did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://{}/mcp", app.http_addr().unwrap());
    let c = client(&url).await;
    let prompts: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("prompts.json")).unwrap())
            .unwrap();
    let prompt = |i: usize| prompts[i % prompts.len()]["prompt"].as_str().unwrap().to_owned();
    // Warm-up: the first search builds the index.
    call(&c, "warden__search_tools", json!({ "query": "x", "limit": 1 })).await;
    let total: usize = app.registry().servers().iter().map(|s| s.views()[0].tools).sum();

    // Interleaved: the floor (one server's echo through the same hop), search, analyze.
    let (mut floor, mut search, mut analyze, mut search_in, mut analyze_in) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..calls {
        let (ms, _) = call(&c, "s00__echo", json!({ "text": "x" })).await;
        floor.push(ms);
        let (ms, v) =
            call(&c, "warden__search_tools", json!({ "query": prompt(i), "limit": 10 })).await;
        search.push(ms);
        search_in.push(v["ms"].as_f64().unwrap_or(f64::NAN));
        let (ms, v) = call(&c, "warden__analyze_prompt", json!({ "prompt": prompt(i) })).await;
        analyze.push(ms);
        analyze_in.push(v["ms"].as_f64().unwrap_or(f64::NAN));
    }

    // Memory: SESSIONS sessions; each first searches (the same work, no exposure change: the
    // control), then each chooses (its exposure changes); the second step's growth beyond the
    // first's is what a chosen exposure costs, and the gateway's own accounting beside it.
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(client(&url).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_kib();
    for (i, s) in sessions.iter().enumerate() {
        call(s, "warden__search_tools", json!({ "query": prompt(i), "limit": 15 })).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let searched = rss_kib();
    for (i, s) in sessions.iter().enumerate() {
        call(s, "warden__analyze_prompt", json!({ "prompt": prompt(i) })).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let chosen = rss_kib();
    let held = app.gateway().exposure_heap_bytes();
    drop(sessions);
    drop(c);
    app.shutdown().await;

    let row = |name: &str, xs: &[f64], inside: Option<&[f64]>| {
        format!(
            "| {name} | {:.0} | {:.0} | {} |\n",
            quantile(xs, 0.5) * 1000.0,
            quantile(xs, 0.95) * 1000.0,
            inside.map_or("—".to_owned(), |x| format!(
                "{:.0} / {:.0}",
                quantile(x, 0.5) * 1000.0,
                quantile(x, 0.95) * 1000.0
            )),
        )
    };
    let mut out = format!(
        "## Tool search and choice (issue 14)\n\n\
         {SERVERS} servers, {total} tools (the misbehaving server serving the captured catalogs \
         of server-everything, filesystem, memory and fetch beside its own), {calls} calls of \
         each kind, interleaved, one client, through `/mcp`; prompts from the labelled set. \
         Round trip in µs; inside: the time Warden spent choosing, as the tool reports it.\n\n\
         | call | p50 µs | p95 µs | inside p50 / p95 µs |\n|---|---|---|---|\n"
    );
    out += &row("`s00__echo` (the hop's floor)", &floor, None);
    out += &row("`warden__search_tools`", &search, Some(&search_in));
    out += &row("`warden__analyze_prompt` (static)", &analyze, Some(&analyze_in));
    out += &format!(
        "\nMemory, {SESSIONS} sessions: the exposures they chose hold {:.2} KiB per session \
         (the gateway's accounting of entries, names and map slots). RSS of the whole bench \
         process per session (clients in the same process): {:.1} KiB for each session's first \
         call (search, no exposure change: buffers warming up), then {:.1} KiB for each choosing \
         (analyze_prompt: the exposure, the call's transients and the client's list_changed) — \
         an upper bound on what a chosen exposure costs.\n\n",
        held as f64 / 1024.0 / SESSIONS as f64,
        (searched - base) / SESSIONS as f64,
        (chosen - searched) / SESSIONS as f64,
    );
    out
}
