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
