//! What the fleet tests share: replicas of `warden run` on one PostgreSQL database, and plain
//! HTTP to their APIs and MCP endpoints.

use std::path::Path;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService, ServiceError,
};
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::ServiceExt;
use serde_json::Value;

use super::{misbehave, run_warden_on, FAST_HEALTH, FAST_RESTART};

/// How long a fleet test waits for what it expects.
pub const LIMIT: Duration = Duration::from_secs(30);

pub async fn get(base: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn json(base: &str, path: &str) -> Value {
    let (status, body) = get(base, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Replica `k`: `warden run` as `replica-k` (state under `dir/rk`) on the database at `url`.
pub async fn replica(
    config: &Path,
    url: &str,
    dir: &Path,
    k: usize,
) -> (tokio::process::Child, String) {
    let state = dir.join(format!("r{k}"));
    let id = format!("replica-{k}");
    let envs = [
        ("WARDEN_DB", url),
        ("XDG_STATE_HOME", state.to_str().unwrap()),
        ("WARDEN_REPLICA", id.as_str()),
    ];
    run_warden_on(config, None, &envs).await
}

/// `replica-0..2` (see [`replica`]).
pub async fn three_replicas(
    config: &Path,
    url: &str,
    dir: &Path,
) -> Vec<(tokio::process::Child, String)> {
    let mut replicas = Vec::new();
    for k in 0..3 {
        replicas.push(replica(config, url, dir, k).await);
    }
    replicas
}

/// Waits (`LIMIT` at most) until `/api/servers?scope=fleet` on `base` satisfies `ok`.
pub async fn fleet_until(base: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let v = json(base, "/api/servers?scope=fleet").await;
        if ok(&v) {
            return v;
        }
        assert!(started.elapsed() < LIMIT, "{what} did not happen: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the fleet view on `base` shows `server`'s one instance healthy on each of
/// three replicas.
pub async fn healthy_on_every_replica(base: &str, server: &str) {
    fleet_until(base, &format!("{server} healthy on every replica"), |v| {
        v["servers"][0]["instances"]
            .as_array()
            .is_some_and(|i| i.len() == 3 && i.iter().all(|i| i["state"] == "healthy"))
    })
    .await;
}

/// One JSON-RPC message to `base`'s aggregated endpoint, in a session when given: the HTTP
/// status, the session id answered, and the JSON-RPC answer (from JSON or from the SSE stream).
pub async fn mcp(base: &str, session: Option<&str>, body: Value) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .json(&body);
    if let Some(s) = session {
        req = req.header("Mcp-Session-Id", s).header("MCP-Protocol-Version", "2025-06-18");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = r.text().await.unwrap();
    let answer = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            // Not JSON-RPC (an HTTP error's own text, say): the text, for the failure message.
            .unwrap_or(Value::String(text))
    });
    (status, id, answer)
}

/// A config of one misbehaving server, `alpha`, with fast probes and restarts.
pub fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("warden.json");
    let text = format!(
        r#"{{ "mcpServers": {{ "alpha": {} }} }}"#,
        misbehave(&[], &format!(", {FAST_HEALTH}, {FAST_RESTART}"))
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// An rmcp client session on `url`: legacy (`initialize`), or 2026-07-28 (`server/discover`,
/// no session) when `modern`. It does not reconnect a broken SSE stream (it retries the call
/// instead): rmcp's default reconnects forever, and re-requests a POST's stream broken by its
/// replica's death by GET even with no event id to resume from; the live replica that gets
/// that GET opens the session's notification stream, which never carries the answer, and the
/// call waits for its deadline (docs/scale.md, "Clients").
pub async fn client(url: &str, modern: bool) -> Result<RunningService<RoleClient, ()>, String> {
    client_reconnecting(url, modern, 0).await
}

/// [`client`], reconnecting a broken SSE stream up to `times` times (200 ms, then doubling).
pub async fn client_reconnecting(
    url: &str,
    modern: bool,
    times: usize,
) -> Result<RunningService<RoleClient, ()>, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    let mut reconnect = ExponentialBackoff::default();
    reconnect.max_times = Some(times);
    reconnect.base_duration = Duration::from_millis(200);
    reconnect.max_delay = Some(Duration::from_secs(1));
    config.retry_config = std::sync::Arc::new(reconnect);
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    if !modern {
        return ().serve(transport).await.map_err(|e| e.to_string());
    }
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: None,
    };
    let c = ().serve_with_lifecycle(transport, lifecycle).await.map_err(|e| e.to_string())?;
    let version = c.peer().peer_info().map(|p| p.protocol_version.clone());
    if version != Some(ProtocolVersion::V_2026_07_28) {
        return Err(format!("negotiated {version:?}, not 2026-07-28"));
    }
    Ok(c)
}

/// A call's error and every error under it (rmcp's transport errors do not name their
/// source; the one under them says what the connection did).
fn chain(e: &ServiceError) -> String {
    let ServiceError::TransportSend(t) = e else { return e.to_string() };
    let mut out = e.to_string();
    let mut next = std::error::Error::source(t);
    while let Some(s) = next {
        out.push_str(&format!(": {s}"));
        next = s.source();
    }
    out
}

/// One read-only call: `tools/list`, or `echo` through the aggregated endpoint.
pub async fn call(c: &RunningService<RoleClient, ()>, k: u64) -> Result<(), String> {
    if k.is_multiple_of(2) {
        let tools = c.peer().list_all_tools().await.map_err(|e| chain(&e))?;
        if tools.is_empty() {
            return Err("no tools".into());
        }
    } else {
        let args = serde_json::json!({ "text": format!("call {k}") });
        let r = c
            .peer()
            .call_tool(
                CallToolRequestParams::new("alpha__echo")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .map_err(|e| chain(&e))?;
        if r.is_error == Some(true) {
            return Err(format!("tool error: {r:?}"));
        }
    }
    Ok(())
}
