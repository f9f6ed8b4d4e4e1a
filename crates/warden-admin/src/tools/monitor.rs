//! `integration_monitor`: health (at three depths, with optional recovery), performance,
//! failures and optimizations of the servers `server_types` names.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use warden_core::InstanceState;
use warden_ops::reports::Kind;
use warden_supervisor::Command;

use super::{select, Tools};

impl Tools {
    /// The servers named by `server_types` or `server` (`None`: every server).
    pub(super) fn chosen(&self, args: &Value) -> Result<Option<Vec<String>>, String> {
        let mut wanted: Vec<&str> = args["server_types"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(s) = args["server"].as_str() {
            wanted.push(s);
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        select(&self.servers, &wanted, "server_types").map(Some)
    }

    pub(super) async fn monitor(&self, args: &Value) -> Result<Value, String> {
        let chosen = self.chosen(args)?;
        let since = args["since"].as_str();
        match args["action"].as_str().unwrap_or_default() {
            "health_check" => {
                let depth = args["check_depth"].as_str().unwrap_or("basic");
                let recover = args["auto_recovery"].as_bool().unwrap_or(false);
                self.health_check(chosen.as_deref(), depth, recover).await
            }
            "performance_scan" => Ok(self.performance_scan(chosen.as_deref())),
            "failure_analysis" => self.per_server(Kind::Failures, chosen, since).await,
            _ => self.optimizations_of(chosen, since).await,
        }
    }

    /// A report for every chosen server: one report when one or all are chosen, else one
    /// per server under `servers`.
    async fn per_server(
        &self,
        kind: Kind,
        chosen: Option<Vec<String>>,
        since: Option<&str>,
    ) -> Result<Value, String> {
        match chosen.as_deref() {
            None => self.report(kind, None, since).await,
            Some([one]) => self.report(kind, Some(one), since).await,
            Some(many) => {
                let mut out = Vec::new();
                for s in many {
                    out.push(self.report(kind, Some(s), since).await?);
                }
                Ok(json!({ "servers": out }))
            }
        }
    }

    async fn optimizations_of(
        &self,
        chosen: Option<Vec<String>>,
        since: Option<&str>,
    ) -> Result<Value, String> {
        match chosen.as_deref() {
            None => self.optimizations(None, since, "all").await,
            Some([one]) => self.optimizations(Some(one), since, "all").await,
            Some(many) => {
                let mut out = Vec::new();
                for s in many {
                    out.push(self.optimizations(Some(s), since, "all").await?);
                }
                Ok(json!({ "servers": out }))
            }
        }
    }

    /// A report over `since` (default 7 days), as `GET /api/reports/{kind}` answers it.
    pub(super) async fn report(
        &self,
        kind: Kind,
        server: Option<&str>,
        since: Option<&str>,
    ) -> Result<Value, String> {
        let range =
            self.reports.range(since, None, server, warden_core::now()).map_err(|(_, m)| m)?;
        self.reports.build(kind, &range).await.map_err(|(_, m)| m)
    }

    /// `basic`: the views as they are; `deep`: each instance probed and listed now;
    /// `comprehensive`: and its smoke test called. `recover`: what is down is restarted (or
    /// reconnected), what gave up is reset.
    async fn health_check(
        &self,
        chosen: Option<&[String]>,
        depth: &str,
        recover: bool,
    ) -> Result<Value, String> {
        let snap = self.health.get();
        let warden: Value = serde_json::from_slice(&snap.body).unwrap_or_default();
        let overview = self.overview.get();
        let mut servers = Vec::new();
        for view in overview.servers.iter().filter(|s| chosen.is_none_or(|c| c.contains(&s.name))) {
            let mut v = json!(view);
            if depth != "basic" && !view.disabled && view.kind == "mcp" {
                let spec = self.servers.handle(&view.name).map(|h| h.spec.clone());
                let smoke = match (depth, spec.as_ref().and_then(|s| s.smoke_test.as_ref())) {
                    ("comprehensive", None) => {
                        v["smoke_test"] = json!("none configured (mcpServers.NAME.smoke_test)");
                        None
                    }
                    (_, smoke) if depth == "comprehensive" => smoke,
                    _ => None,
                };
                v["checked_now"] = json!(self.gateway.check_now(&view.name, smoke).await?);
            }
            if recover {
                v["recovery"] = json!(self.recover(&view.name).await);
            }
            servers.push(v);
        }
        let healthy = servers.iter().all(|s| {
            s["status"] == "healthy"
                && s["checked_now"]
                    .as_array()
                    .is_none_or(|rows| rows.iter().all(|r| r["ok"] == true))
        });
        Ok(json!({
            "warden": warden,
            "check_depth": depth,
            "auto_recovery": recover,
            "healthy": healthy,
            "servers": servers,
        }))
    }

    /// Restarts (stdio) or reconnects (remote) the instances of `server` that are down, and
    /// resets those that gave up; routable, starting and stopped ones are left alone.
    pub(super) async fn recover(&self, server: &str) -> Vec<Value> {
        let Some(h) = self.servers.handle(server) else { return vec![] };
        let remote = !h.spec.is_stdio() && !h.spec.is_check();
        let mut acted = Vec::new();
        for (i, v) in h.views().iter().enumerate() {
            let (cmd, what) = match v.state {
                InstanceState::Failed => (Command::Reset, "reset"),
                InstanceState::Offline | InstanceState::Critical if remote => {
                    (Command::Restart, "reconnect")
                }
                InstanceState::Offline | InstanceState::Critical => (Command::Restart, "restart"),
                _ => continue,
            };
            if h.command(cmd, Some(i as u32)).await > 0 {
                acted.push(json!({ "instance": v.id, "was": v.state, "action": what }));
            }
        }
        acted
    }

    fn performance_scan(&self, chosen: Option<&[String]>) -> Value {
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
            .filter(|s| chosen.is_none_or(|c| c.contains(&s.name)))
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
}
