//! Warden's own MCP surface on the aggregated endpoint (docs/contract.md): the `health://status`
//! and `health://servers/{name}` resources, and the three tools of the original
//! specification, answered from live state and the store. The failure analysis, usage patterns
//! and optimization suggestions are the reports of `reports.rs`, as the API serves them.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use warden_gateway::{Builtin, FailoverAction, Gateway};
use warden_supervisor::Command;
use warden_upstream::BoxFuture;

use crate::health::Health;
use warden_ops::reports::{Kind, Reports};

#[derive(Clone)]
pub struct Tools {
    pub overview: warden_supervisor::Views,
    pub health: Health,
    pub gateway: Gateway,
    pub servers: warden_supervisor::Views,
    pub reports: Reports,
    pub tuner: warden_ops::tuning::Tuner,
}

fn schema(actions: &[&str], server_required: bool) -> Value {
    let mut required = vec!["action"];
    if server_required {
        required.push("server");
    }
    json!({
        "type": "object",
        "properties": {
            "action": { "type": "string", "enum": actions },
            "server": { "type": "string", "description": "A configured server name" },
        },
        "required": required,
    })
}

/// [`schema`] with the reports' `since`.
fn report_schema(actions: &[&str]) -> Value {
    let mut s = schema(actions, false);
    s["properties"]["since"] = json!({ "type": "string",
        "description": "For the reports: the period's start, a duration before now (7d, 24h) or an RFC 3339 time; default 7d" });
    s
}

/// [`report_schema`] with tuning's `dry_run` and `change_id`.
fn optimizer_schema() -> Value {
    let mut s = report_schema(&[
        "analyze_patterns",
        "suggest_optimizations",
        "apply_tuning",
        "revert_tuning",
        "benchmark_performance",
    ]);
    s["properties"]["dry_run"] = json!({ "type": "boolean",
        "description": "apply_tuning: list the changes without making them" });
    s["properties"]["change_id"] = json!({ "type": "integer",
        "description": "revert_tuning: the change to undo (without it: every change in force)" });
    s
}

/// A tool result carrying `data` both as text and as structured content.
fn result(data: Value, is_error: bool) -> Value {
    json!({
        "content": [{ "type": "text", "text": serde_json::to_string_pretty(&data).unwrap_or_default() }],
        "structuredContent": data,
        "isError": is_error,
    })
}

fn quantile(xs: &mut [f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some(xs[((xs.len() - 1) as f64 * q).round() as usize])
}

impl Tools {
    fn server_view(&self, name: &str) -> Option<Value> {
        let o = self.overview.get();
        o.servers.iter().find(|s| s.name == name).map(|s| json!(s))
    }

    fn health_check(&self, server: Option<&str>) -> Result<Value, String> {
        let snap = self.health.get();
        let status: Value = serde_json::from_slice(&snap.body).unwrap_or_default();
        match server {
            None => Ok(json!({ "warden": status, "servers": self.overview.get() })),
            Some(s) => self
                .server_view(s)
                .map(|v| json!({ "server": v }))
                .ok_or_else(|| format!("no server named {s:?}")),
        }
    }

    fn performance_scan(&self, server: Option<&str>) -> Value {
        let o = self.overview.get();
        let breakers: BTreeMap<String, &'static str> = self
            .gateway
            .breakers()
            .into_iter()
            .map(|(id, st, _)| (id.to_string(), st.as_str()))
            .collect();
        let mut rows: Vec<Value> = o
            .servers
            .iter()
            .filter(|s| server.is_none_or(|want| s.name == want))
            .flat_map(|s| s.instances.iter())
            .map(|i| {
                json!({
                    "instance": i.id,
                    "state": i.state,
                    "p50_ms": i.stats.p50_ms,
                    "p95_ms": i.stats.p95_ms,
                    "p99_ms": i.stats.p99_ms,
                    "error_rate": i.stats.error_rate,
                    "availability": i.stats.availability,
                    "throughput_per_s": i.stats.throughput,
                    "restarts": i.restarts,
                    "breaker": breakers.get(&i.id.to_string()),
                })
            })
            .collect();
        // Slowest first.
        rows.sort_by(|a, b| {
            b["p95_ms"].as_f64().unwrap_or(0.0).total_cmp(&a["p95_ms"].as_f64().unwrap_or(0.0))
        });
        json!({ "instances": rows })
    }

    /// A report over `since` (default 7 days), as `GET /api/reports/{kind}` answers it.
    async fn report(
        &self,
        kind: Kind,
        server: Option<&str>,
        since: Option<&str>,
    ) -> Result<Value, String> {
        let range =
            self.reports.range(since, None, server, warden_core::now()).map_err(|(_, m)| m)?;
        self.reports.build(kind, &range).await.map_err(|(_, m)| m)
    }

    /// The performance report's suggestions, with the capacity report beside them.
    async fn optimizations(
        &self,
        server: Option<&str>,
        since: Option<&str>,
    ) -> Result<Value, String> {
        let perf = self.report(Kind::Performance, server, since).await?;
        let capacity = self.report(Kind::Capacity, server, since).await?;
        Ok(json!({
            "since": perf["since"],
            "until": perf["until"],
            "server": perf["server"],
            "suggestions": perf["suggestions"],
            "live": perf["live"],
            "capacity": capacity,
        }))
    }

    async fn failover(&self, action: &str, server: Option<&str>) -> Result<Value, String> {
        let server = server.ok_or("name the server")?;
        match action {
            "enable_failover" => self.gateway.failover(server, FailoverAction::Enable).await,
            "test_fallback" => self.gateway.failover(server, FailoverAction::Test).await,
            "restore_primary" => self.gateway.failover(server, FailoverAction::Restore).await,
            "trigger_failover" => self.gateway.failover(server, FailoverAction::Trigger).await,
            "trigger_recovery" => {
                let h = self
                    .servers
                    .handle(server)
                    .ok_or_else(|| format!("no server named {server:?}"))?;
                // Failed instances get a reset (clears the crash-loop limit), others that are
                // not routable a restart; routable ones are left alone.
                let mut acted = Vec::new();
                for (i, v) in h.views().iter().enumerate() {
                    let cmd = match v.state {
                        warden_core::InstanceState::Failed => Command::Reset,
                        s if !s.is_routable() => Command::Restart,
                        _ => continue,
                    };
                    if h.command(cmd, Some(i as u32)).await > 0 {
                        acted.push(json!({ "instance": v.id, "action": format!("{cmd:?}").to_lowercase() }));
                    }
                }
                Ok(json!({ "server": server, "recovering": acted }))
            }
            other => Err(format!("unknown action {other:?}")),
        }
    }

    async fn benchmark(&self, server: Option<&str>) -> Result<Value, String> {
        let names: Vec<String> = match server {
            Some(s) => vec![s.to_owned()],
            None => self.servers.handles().iter().map(|h| h.spec.name.clone()).collect(),
        };
        let mut out = Vec::new();
        for name in names {
            for (id, r) in self.gateway.benchmark(&name, 20).await? {
                out.push(match r {
                    Ok(mut rtts) => json!({
                        "instance": id, "pings": rtts.len(),
                        "p50_ms": quantile(&mut rtts, 0.5), "p95_ms": quantile(&mut rtts, 0.95),
                        "max_ms": rtts.iter().copied().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
                    }),
                    Err(e) => json!({ "instance": id, "error": e }),
                });
            }
        }
        Ok(json!({ "method": "20 sequential pings per instance", "instances": out }))
    }

    async fn dispatch(&self, tool: &str, args: Value) -> Result<Value, String> {
        let action = args["action"].as_str().ok_or("\"action\" is required")?.to_owned();
        let server = args["server"].as_str();
        let since = args["since"].as_str();
        let answer = match (tool, action.as_str()) {
            ("integration_monitor", "health_check") => self.health_check(server),
            ("integration_monitor", "performance_scan") => Ok(self.performance_scan(server)),
            ("integration_monitor", "failure_analysis") => {
                self.report(Kind::Failures, server, since).await
            }
            ("integration_monitor", "optimization_report")
            | ("performance_optimizer", "suggest_optimizations") => {
                self.optimizations(server, since).await
            }
            ("failover_manager", a) => self.failover(a, server).await,
            ("performance_optimizer", "analyze_patterns") => {
                self.report(Kind::Performance, server, since).await
            }
            ("performance_optimizer", "benchmark_performance") => self.benchmark(server).await,
            ("performance_optimizer", "apply_tuning") => {
                let dry_run = args["dry_run"].as_bool().unwrap_or(false);
                self.tuner.apply(since, server, dry_run, "mcp").await.map_err(|(_, e)| e)
            }
            ("performance_optimizer", "revert_tuning") => match args["change_id"].as_i64() {
                Some(id) => self
                    .tuner
                    .revert(id, "mcp")
                    .await
                    .map(|r| json!({ "reverted": r.id, "parameter": r.parameter, "server": r.server, "value": r.old_value }))
                    .map_err(|(_, e)| e),
                // Without a change id: every change in force (of `server`).
                None => self
                    .tuner
                    .reset(server, "mcp")
                    .await
                    .map(|ids| json!({ "reverted": ids }))
                    .map_err(|(_, e)| e),
            },
            (_, a) => Err(format!("unknown action {a:?} for warden__{tool}")),
        };
        Ok(match answer {
            Ok(v) => result(v, false),
            // A failed action is the tool's answer (isError), not a protocol error.
            Err(e) => result(json!({ "error": e }), true),
        })
    }
}

impl Builtin for Tools {
    fn tools(&self) -> Vec<Value> {
        vec![
            json!({ "name": "warden__integration_monitor",
                    "description": "Health, performance and failure history of every MCP server Warden supervises.",
                    "inputSchema": report_schema(&["health_check", "performance_scan", "failure_analysis", "optimization_report"]),
                    "annotations": { "readOnlyHint": true, "openWorldHint": false } }),
            json!({ "name": "warden__failover_manager",
                    "description": "Control a server's failover: enable it, fail over now, probe the fallbacks, recover or restore the primary.",
                    "inputSchema": schema(&["enable_failover", "trigger_failover", "trigger_recovery", "test_fallback", "restore_primary"], true),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "openWorldHint": false } }),
            json!({ "name": "warden__performance_optimizer",
                    "description": "Latency and failure patterns, suggestions, a live ping benchmark of the servers' instances, and tuning: apply_tuning changes call timeouts, probe intervals and timeouts and replica weights from what was learned, within safe bounds (dry_run: true only lists the changes); revert_tuning undoes one change (change_id) or every change in force.",
                    "inputSchema": optimizer_schema(),
                    "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false } }),
        ]
    }

    fn call(&self, tool: &str, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        let this = self.clone();
        let tool = tool.to_owned();
        Box::pin(async move {
            if !["integration_monitor", "failover_manager", "performance_optimizer"]
                .contains(&tool.as_str())
            {
                return Err(format!("unknown tool warden__{tool}"));
            }
            this.dispatch(&tool, args).await
        })
    }

    fn resources(&self) -> Vec<Value> {
        vec![json!({ "uri": "health://status", "name": "warden__health",
                     "description": "Warden's own health (the /health/status model)", "mimeType": "application/json" })]
    }

    fn templates(&self) -> Vec<Value> {
        vec![json!({ "uriTemplate": "health://servers/{name}", "name": "warden__server_health",
                     "description": "One server's instances, states and reasons", "mimeType": "application/json" })]
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
