//! What the fleet tests share: replicas of `warden run` on one PostgreSQL database, and plain
//! HTTP to their APIs and MCP endpoints.

use std::path::Path;
use std::time::{Duration, Instant};

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
            .unwrap_or(Value::Null)
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
