//! Warden's own MCP surface on the aggregated endpoint (docs/contract.md): the `health://status`
//! and `health://servers/{name}` resources, and the tools of the seeds (`integration_monitor`,
//! `failover_manager`, `performance_optimizer`, `failover_coordinator`) with the seeds'
//! parameters, named `warden__…` or with `warden.tools.prefix` (`orchestrator_…`). Every call's
//! arguments are checked against the tool's schema first (`schema.rs`); the failure analysis,
//! usage patterns and optimization suggestions are the reports of warden-ops, as the API serves
//! them.

mod failover;
mod meta;
mod monitor;
mod optimizer;
mod schema;

use serde_json::{json, Value};
use warden_core::Timestamp;
use warden_gateway::{Builtin, Gateway};
use warden_upstream::BoxFuture;

use crate::health::Health;
use warden_ops::reports::Reports;

/// The tools, without their prefix.
const TOOLS: [&str; 7] = [
    "integration_monitor",
    "failover_manager",
    "performance_optimizer",
    "failover_coordinator",
    "analyze_prompt",
    "search_tools",
    "expose_tools",
];

/// The meta-tools: shown to every session whatever its exposure.
const META: [&str; 3] = ["analyze_prompt", "search_tools", "expose_tools"];

#[derive(Clone)]
pub struct Tools {
    pub overview: warden_supervisor::Views,
    pub health: Health,
    pub gateway: Gateway,
    pub servers: warden_supervisor::Views,
    pub reports: Reports,
    pub tuner: warden_ops::tuning::Tuner,
    /// Before each tool's name (`warden.tools.prefix`).
    pub prefix: String,
    /// When Warden started (`learning_period: session`).
    pub started: Timestamp,
    /// Where exposure changes are announced.
    pub bus: std::sync::Arc<warden_core::EventBus>,
    /// The model that chooses tools for a prompt, when one is configured.
    pub picker: Option<std::sync::Arc<warden_ops::toolpick::ToolPicker>>,
}

/// A tool result carrying `data` both as text and as structured content.
fn result(data: Value, is_error: bool) -> Value {
    json!({
        "content": [{ "type": "text", "text": serde_json::to_string_pretty(&data).unwrap_or_default() }],
        "structuredContent": data,
        "isError": is_error,
    })
}

/// Which servers a `server_types` entry (or `integration_type`, `server_type`) names: a server
/// by name, every server of a kind (`mcp`, `http`, `tcp`, …) or with a tag. An entry that names
/// none is an error that lists what would have.
pub(super) fn select(
    servers: &warden_supervisor::Views,
    wanted: &[&str],
    param: &str,
) -> Result<Vec<String>, String> {
    let specs = servers.specs();
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        let hit: Vec<&str> = specs
            .iter()
            .filter(|s| s.name == *w || s.kind() == *w || s.tags.iter().any(|t| t == w))
            .map(|s| s.name.as_str())
            .collect();
        if hit.is_empty() {
            let mut known: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
            known.extend(specs.iter().map(|s| s.kind().to_owned()));
            known.extend(specs.iter().flat_map(|s| s.tags.iter().cloned()));
            known.sort();
            known.dedup();
            return Err(format!(
                "{param}: {w:?} names no server, kind or tag; known: {}",
                known.join(", ")
            ));
        }
        for h in hit {
            if !out.iter().any(|o| o == h) {
                out.push(h.to_owned());
            }
        }
    }
    Ok(out)
}

impl Tools {
    fn server_view(&self, name: &str) -> Option<Value> {
        let o = self.overview.get();
        o.servers.iter().find(|s| s.name == name).map(|s| json!(s))
    }

    fn schema(&self, tool: &str) -> Value {
        match tool {
            "integration_monitor" => schema::monitor(),
            "failover_manager" => schema::failover(),
            "performance_optimizer" => schema::optimizer(),
            "analyze_prompt" => schema::analyze_prompt(),
            "search_tools" => schema::search_tools(),
            "expose_tools" => schema::expose_tools(),
            _ => schema::coordinator(),
        }
    }

    async fn dispatch(&self, tool: &str, args: Value, session: warden_upstream::Origin) -> Value {
        let name = format!("{}{tool}", self.prefix);
        let answer = match schema::validate(&name, &self.schema(tool), &args) {
            Err(e) => Err(e),
            Ok(()) => match tool {
                "integration_monitor" => self.monitor(&args).await,
                "failover_manager" => self.failover(&args).await,
                "performance_optimizer" => self.optimizer(&args).await,
                "analyze_prompt" => self.analyze_prompt(&args, session).await,
                "search_tools" => Ok(self.search_tools(&args)),
                "expose_tools" => self.expose_tools(&args, session).await,
                _ => self.coordinate(&args).await,
            },
        };
        match answer {
            Ok(v) => result(v, false),
            // A refused or failed action is the tool's answer (isError), not a protocol error.
            Err(e) => result(json!({ "error": e }), true),
        }
    }
}

impl Builtin for Tools {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn has_tool(&self, tool: &str) -> bool {
        TOOLS.contains(&tool)
    }

    fn is_meta(&self, tool: &str) -> bool {
        META.contains(&tool)
    }

    fn tools(&self) -> Vec<Value> {
        let p = &self.prefix;
        vec![
            json!({ "name": format!("{p}integration_monitor"),
                    "description": "Health, performance and failure history of the MCP servers and integrations Warden supervises; a health check can probe now (deep), call each server's smoke test (comprehensive) and recover what it finds down (auto_recovery).",
                    "inputSchema": schema::monitor(),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "openWorldHint": false } }),
            json!({ "name": format!("{p}failover_manager"),
                    "description": "Control failover of a server (or every server of a kind or tag): enable or disable it, fail over now, probe the fallbacks, recover or restore the primary, and set what happens to its calls while it is down (fallback_strategy).",
                    "inputSchema": schema::failover(),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "openWorldHint": false } }),
            json!({ "name": format!("{p}performance_optimizer"),
                    "description": "Latency, error and load patterns over a learning period, suggestions, a live ping benchmark of the servers' instances, and tuning: apply_tuning changes call timeouts, probe intervals and timeouts and replica weights from what was learned, within safe bounds (dry_run: true only lists the changes); revert_tuning undoes one change (change_id) or every change in force.",
                    "inputSchema": schema::optimizer(),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false } }),
            json!({ "name": format!("{p}failover_coordinator"),
                    "description": "Which recovery Warden takes for a class of failure on a server (or a kind or tag of servers) — restart, reconnect, kill and restart, fail over to fallbacks, or wait — and, with apply: true, takes it now.",
                    "inputSchema": schema::coordinator(),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "openWorldHint": false } }),
            json!({ "name": format!("{p}analyze_prompt"),
                    "description": "Call this first with the user's task: picks the categories and tools it needs from every server Warden serves, and from then on this session is shown only those (and these meta-tools). Returns the categories, the tools, the method and why.",
                    "inputSchema": schema::analyze_prompt(),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false } }),
            json!({ "name": format!("{p}search_tools"),
                    "description": "Find tools by what they do across every server Warden serves (ranked, with their server and categories); shows nothing new by itself — use expose_tools for that.",
                    "inputSchema": schema::search_tools(),
                    "annotations": { "readOnlyHint": true, "openWorldHint": false } }),
            json!({ "name": format!("{p}expose_tools"),
                    "description": "Choose what this session is shown: add tools or categories, replace the choice, or reset to the default.",
                    "inputSchema": schema::expose_tools(),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false } }),
        ]
    }

    fn call(
        &self,
        tool: &str,
        args: Value,
        session: warden_upstream::Origin,
    ) -> BoxFuture<'static, Result<Value, String>> {
        let this = self.clone();
        let tool = tool.to_owned();
        Box::pin(async move {
            if !TOOLS.contains(&tool.as_str()) {
                return Err(format!("unknown tool {}{tool}", this.prefix));
            }
            Ok(this.dispatch(&tool, args, session).await)
        })
    }

    fn resources(&self) -> Vec<Value> {
        vec![json!({ "uri": "health://status", "name": format!("{}health", self.prefix),
                     "description": "Warden's own health (the /health/status model)", "mimeType": "application/json" })]
    }

    fn templates(&self) -> Vec<Value> {
        vec![
            json!({ "uriTemplate": "health://servers/{name}", "name": format!("{}server_health", self.prefix),
                     "description": "One server's instances, states and reasons", "mimeType": "application/json" }),
        ]
    }

    fn read(&self, uri: &str) -> Option<BoxFuture<'static, Result<Value, String>>> {
        let body = if uri == "health://status" {
            let snap = self.health.get();
            Ok(String::from_utf8_lossy(&snap.body).into_owned())
        } else if let Some(name) = uri.strip_prefix("health://servers/") {
            self.server_view(name)
                .map(|v| v.to_string())
                .ok_or_else(|| format!("no server named {name:?}"))
        } else {
            return None;
        };
        let uri = uri.to_owned();
        Some(Box::pin(async move {
            let text = body?;
            Ok(
                json!({ "contents": [{ "uri": uri, "mimeType": "application/json", "text": text }] }),
            )
        }))
    }
}
