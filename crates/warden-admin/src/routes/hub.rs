//! `GET /api/health` in mcp-hub's shape, for the hub-monitoring seed (seed 004): the scripts
//! written against mcp-hub (`jq '.servers[] | {name, status, uptime, error}'`,
//! `.mcpEndpoint.activeClients`, `.connections.totalConnections`, …) read Warden unchanged.
//! `GET /api/servers` is Warden's own server view (its `status` stays Warden's: healthy,
//! degraded, unhealthy), with mcp-hub's `uptime`, `error`, `hubStatus` and
//! `capabilities.tools` beside it, so the seed's `/api/servers` lines have answers too.

use axum::extract::State as AxState;
use axum::response::{IntoResponse, Json};
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
    pub(crate) fleet: warden_ops::fleet::Fleet,
}

pub(crate) fn routes(hub: Hub) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/servers", get(servers))
        .with_state(hub)
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

/// mcp-hub's fields of one server: `status`, `uptime` (seconds the longest-serving routable
/// instance has been so), `error` (why it is not connected) and `capabilities`.
fn hub_fields(s: &ServerView, names: &[(String, String)], now: warden_core::Timestamp) -> Value {
    let status = hub_status(s);
    let uptime = s
        .instances
        .iter()
        .filter(|i| i.state.is_routable())
        .map(|i| (now - i.since).num_milliseconds().max(0) as f64 / 1000.0)
        .fold(0.0_f64, f64::max);
    let error = (status != "connected")
        .then(|| s.instances.iter().find_map(|i| i.reason.as_ref().map(ToString::to_string)))
        .flatten();
    let tools: Vec<Value> = names
        .iter()
        .filter(|(server, _)| *server == s.name)
        .map(|(_, t)| json!({ "name": t }))
        .collect();
    json!({
        "status": status,
        "uptime": uptime.round(),
        "error": error,
        "capabilities": { "tools": tools, "resources": [], "prompts": [] },
    })
}

async fn servers(
    AxState(hub): AxState<Hub>,
    axum::extract::Query(scope): axum::extract::Query<crate::router::Scope>,
) -> axum::response::Response {
    match scope.fleet() {
        Ok(true) => return crate::router::fleet_document(&hub.fleet).await,
        Ok(false) => {}
        Err(message) => return crate::api::error(axum::http::StatusCode::BAD_REQUEST, message),
    }
    let overview = hub.views.get();
    let now = warden_core::now();
    let names = hub.gateway.tool_names();
    let mut v = json!(overview);
    if let Some(rows) = v["servers"].as_array_mut() {
        for (row, s) in rows.iter_mut().zip(&overview.servers) {
            let hub = hub_fields(s, &names, now);
            row["hubStatus"] = hub["status"].clone();
            for k in ["uptime", "error", "capabilities"] {
                row[k] = hub[k].clone();
            }
        }
    }
    Json(v).into_response()
}

async fn health(AxState(hub): AxState<Hub>) -> Json<Value> {
    let overview = hub.views.get();
    let now = warden_core::now();
    let names = hub.gateway.tool_names();
    let servers: Vec<Value> = overview
        .servers
        .iter()
        .map(|s| {
            let mut v = hub_fields(s, &names, now);
            v["name"] = json!(s.name);
            v["displayName"] = json!(s.name);
            v["transportType"] = json!(s.transport);
            v
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
