//! `GET /api/health` in mcp-hub's shape, for the hub-monitoring seed (seed 004): the scripts
//! written against mcp-hub (`jq '.servers[] | {name, status, uptime, error}'`,
//! `.mcpEndpoint.activeClients`, `.connections.totalConnections`, …) read Warden unchanged.

use axum::extract::State as AxState;
use axum::response::Json;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use warden_core::InstanceState;
use warden_supervisor::{ServerView, Views};

/// What the hub view reads.
#[derive(Clone)]
pub(crate) struct Hub {
    pub(crate) views: Views,
    pub(crate) gateway: warden_gateway::Gateway,
}

pub(crate) fn routes(hub: Hub) -> Router {
    Router::new().route("/api/health", get(health)).with_state(hub)
}

/// mcp-hub's words for a server's state: `connected` (something routable serves it),
/// `connecting` (starting), `disabled`, else `disconnected`.
fn hub_status(s: &ServerView) -> &'static str {
    if s.disabled {
        "disabled"
    } else if s.is_served() {
        "connected"
    } else if s.instances.iter().any(|i| i.state == InstanceState::Starting) {
        "connecting"
    } else {
        "disconnected"
    }
}

async fn health(AxState(hub): AxState<Hub>) -> Json<Value> {
    let overview = hub.views.get();
    let now = warden_core::now();
    let names = hub.gateway.tool_names();
    let servers: Vec<Value> = overview
        .servers
        .iter()
        .map(|s| {
            let status = hub_status(s);
            // Seconds the longest-serving routable instance has been in its state.
            let uptime = s
                .instances
                .iter()
                .filter(|i| i.state.is_routable())
                .map(|i| (now - i.since).num_milliseconds().max(0) as f64 / 1000.0)
                .fold(0.0_f64, f64::max);
            let error = (status != "connected")
                .then(|| {
                    s.instances.iter().find_map(|i| i.reason.as_ref().map(ToString::to_string))
                })
                .flatten();
            let tools: Vec<Value> = names
                .iter()
                .filter(|(server, _)| *server == s.name)
                .map(|(_, t)| json!({ "name": t }))
                .collect();
            json!({
                "name": s.name,
                "displayName": s.name,
                "status": status,
                "uptime": uptime.round(),
                "error": error,
                "transportType": s.transport,
                "capabilities": { "tools": tools, "resources": [], "prompts": [] },
            })
        })
        .collect();
    let clients = hub.gateway.client_sessions();
    let ready = !overview
        .servers
        .iter()
        .any(|s| s.instances.iter().any(|i| i.state == InstanceState::Starting));
    Json(json!({
        "status": "ok",
        "state": if ready { "ready" } else { "starting" },
        "server_id": "warden",
        "version": env!("CARGO_PKG_VERSION"),
        "activeClients": clients,
        "timestamp": now,
        "servers": servers,
        "connections": { "totalConnections": hub.gateway.http_sessions().await },
        "mcpEndpoint": {
            "activeClients": clients,
            "registeredCapabilities": {
                "tools": names.len(),
                "servers": overview.servers.iter().filter(|s| hub_status(s) == "connected").count(),
            },
        },
        // mcp-hub's workspace cache (other hub instances on this machine): Warden keeps none.
        "workspaces": {},
    }))
}
