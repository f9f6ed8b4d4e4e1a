//! The performance report and the suggestions made from every report's numbers.

use serde_json::{json, Value};
use warden_store::ReportRange;

use super::*;

use super::capacity::Capacity;

impl Reports {
    pub(super) async fn performance(&self, r: &ReportRange) -> Result<Value, Refusal> {
        // The counts still in the gateway go to the store first, so the report is current.
        self.usage.flush().await;
        let usage = self.store.tool_usage(r).await.map_err(database)?;
        let samples = self.store.instance_samples(r).await.map_err(database)?;
        let failures = self.store.failure_stats(r).await.map_err(database)?;
        let capacity = self.capacity_of(r, &samples).await?;
        let servers: Vec<Value> = capacity
            .iter()
            .map(|c| {
                json!({
                    "server": c.server,
                    "instances": samples.iter().filter(|s| s.server == c.server).collect::<Vec<_>>(),
                    "throughput_per_day": c.trend().map(|t| t.1),
                })
            })
            .collect();
        let tools: Vec<Value> = usage.tools.iter().map(tool_json).collect();
        let mut slowest: Vec<&ToolStats> = usage.tools.iter().filter(|t| t.calls > 0).collect();
        slowest.sort_by(|a, b| b.mean_ms.unwrap_or(0.0).total_cmp(&a.mean_ms.unwrap_or(0.0)));
        let by_hour: Vec<Value> = usage
            .by_hour_of_day
            .iter()
            .map(|h| {
                let busiest = (0..24).filter(|&i| h.calls[i] > 0).max_by_key(|&i| h.calls[i]);
                json!({ "server": h.server, "calls": h.calls, "errors": h.errors, "busiest_hour": busiest })
            })
            .collect();
        let (coalesced, hits) = self.gateway.optimized_calls();
        Ok(json!({
            "servers": servers,
            "tools": tools,
            "usage_by_hour": by_hour,
            "busiest_tools": usage.tools.iter().take(5).map(tool_json).collect::<Vec<_>>(),
            "slowest_tools": slowest.into_iter().take(5).map(tool_json).collect::<Vec<_>>(),
            "suggestions": self.suggestions(&samples, &usage, &failures, &capacity),
            "live": { "coalesced_calls": coalesced, "cache_hits": hits },
            "note": usage.tools.is_empty().then_some("no tool calls in the period"),
        }))
    }

    /// Suggestions by explicit rules; each names its evidence and the config key to change.
    ///
    /// - `cache`: a read-only tool, not cached, with ≥ 50 calls of which ≥ 30 % repeat one of
    ///   the tool's last 8 argument sets → `mcpServers.S.cache`.
    /// - `timeout`: an instance's worst sampled p95 ≥ half the call timeout, or a tool's slowest
    ///   call ≥ 80 % of it → `mcpServers.S.timeout` (or `replicas`).
    /// - `errors`: ≥ 5 % of ≥ 20 tool calls failed, or an instance's sampled error rate averaged
    ///   ≥ 5 % → investigate (with the server's incidents and restarts as evidence).
    /// - `add_replica`: the peak hour used ≥ 70 % of planned capacity, or a lone stdio instance
    ///   failed in the period → `mcpServers.S.replicas`.
    /// - `reduce_replicas`: two or more replicas, a day of data, the peak hour < 5 % of
    ///   capacity and no failure → `mcpServers.S.replicas`.
    /// - `fallback` (live): not healthy now and no fallback → `mcpServers.S.fallback`.
    /// - `breaker` (live): an instance's circuit breaker has opened → investigate.
    pub(super) fn suggestions(
        &self,
        samples: &[InstanceSamples],
        usage: &UsageStats,
        failures: &FailureStats,
        capacity: &[Capacity],
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let key = |server: &str, k: &str| Some(format!("mcpServers.{server}.{k}"));
        for t in &usage.tools {
            let Some(spec) = self.spec(&t.server) else { continue };
            let repeat_rate = ratio(t.repeats, t.calls).unwrap_or(0.0);
            if !spec.cache.contains_key(&t.tool)
                && t.calls >= CACHE_MIN_CALLS
                && repeat_rate >= CACHE_MIN_REPEAT_RATE
                && self.read_only(&t.server, &t.tool)
            {
                out.push(suggestion(
                    "cache",
                    &t.server,
                    Some(("tool", &t.tool)),
                    format!("cache {}'s results: \"cache\": {{\"{}\": \"30s\"}}", t.tool, t.tool),
                    key(&t.server, "cache"),
                    json!({ "calls": t.calls, "repeats": t.repeats, "repeat_rate": repeat_rate, "read_only": true }),
                ));
            }
            let timeout_ms = spec.timeout.as_secs_f64() * 1000.0;
            if let Some(max) = t.max_ms.filter(|m| *m >= 0.8 * timeout_ms) {
                out.push(suggestion(
                    "timeout",
                    &t.server,
                    Some(("tool", &t.tool)),
                    "raise \"timeout\": the slowest call came within 20 % of it".to_owned(),
                    key(&t.server, "timeout"),
                    json!({ "max_ms": max, "mean_ms": t.mean_ms, "timeout_ms": timeout_ms }),
                ));
            }
        }
        for s in samples {
            let Some(spec) = self.spec(&s.server) else { continue };
            let timeout_ms = spec.timeout.as_secs_f64() * 1000.0;
            if let Some(p95) = s.p95_ms_max.filter(|p| *p >= timeout_ms / 2.0) {
                out.push(suggestion(
                    "timeout",
                    &s.server,
                    Some(("instance", &s.instance)),
                    "raise \"timeout\" or add replicas: p95 reached half the call timeout"
                        .to_owned(),
                    key(&s.server, "timeout"),
                    json!({ "p95_ms_max": p95, "p95_ms_avg": s.p95_ms_avg, "timeout_ms": timeout_ms }),
                ));
            }
        }
        for c in capacity {
            let server = c.server.as_str();
            let incidents: u64 =
                failures.by_instance.iter().filter(|o| o.server == server).map(|o| o.count).sum();
            let downtime: f64 = failures
                .by_instance
                .iter()
                .filter(|o| o.server == server)
                .map(|o| o.downtime_seconds)
                .sum();
            let recovered: u64 = failures
                .by_instance
                .iter()
                .filter(|o| o.server == server)
                .map(|o| o.count - o.open)
                .sum();
            let (calls, errors) = usage
                .tools
                .iter()
                .filter(|t| t.server == server)
                .fold((0, 0), |(c, e), t| (c + t.calls, e + t.errors));
            let worst_instance = samples
                .iter()
                .filter(|s| s.server == server)
                .filter_map(|s| s.error_rate_avg)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            let tool_rate = ratio(errors, calls).filter(|_| calls >= ERROR_MIN_CALLS);
            if tool_rate.is_some_and(|r| r >= ERROR_RATE_TO_INVESTIGATE)
                || worst_instance.is_some_and(|r| r >= ERROR_RATE_TO_INVESTIGATE)
            {
                let also = if incidents > 0 { " alongside its failures" } else { "" };
                out.push(suggestion(
                    "errors",
                    server,
                    None,
                    format!("investigate its errors{also}: the circuit breaker ejects an instance at 50 %"),
                    None,
                    json!({ "tool_calls": calls, "tool_errors": errors, "tool_error_rate": ratio(errors, calls),
                            "instance_error_rate_avg_max": worst_instance, "incidents": incidents,
                            "recovered_incidents": recovered }),
                ));
            }
            let spec = self.spec(server);
            let utilization = c.peak_utilization();
            if utilization.is_some_and(|u| u >= ADD_REPLICA_AT) {
                out.push(suggestion(
                    "add_replica",
                    server,
                    None,
                    format!("add a replica: \"replicas\": {}", c.instances + 1),
                    key(server, "replicas"),
                    json!({ "peak_hour_calls_per_s": c.peak.map(|p| p.1), "planned_capacity": c.planned(),
                            "peak_utilization": utilization, "instances": c.instances }),
                ));
            } else if c.instances == 1
                && incidents >= LONE_INSTANCE_INCIDENTS
                && spec.is_some_and(|s| s.is_stdio())
            {
                out.push(suggestion(
                    "add_replica",
                    server,
                    None,
                    "add a replica (\"replicas\": 2) so calls fail over while it restarts"
                        .to_owned(),
                    key(server, "replicas"),
                    json!({ "incidents": incidents, "downtime_seconds": downtime, "instances": 1 }),
                ));
            }
            if c.instances >= 2
                && c.hourly.len() >= MIN_POINTS_TO_REDUCE
                && incidents == 0
                && utilization.is_some_and(|u| u < REDUCE_REPLICAS_BELOW)
            {
                out.push(suggestion(
                    "reduce_replicas",
                    server,
                    None,
                    format!("consider one replica fewer: \"replicas\": {}", c.instances - 1),
                    key(server, "replicas"),
                    json!({ "peak_hour_calls_per_s": c.peak.map(|p| p.1), "planned_capacity": c.planned(),
                            "peak_utilization": utilization, "instances": c.instances, "incidents": 0 }),
                ));
            }
        }
        // Live state: what the views and the gateway see now.
        let overview = warden_supervisor::Overview::from_parts(
            self.servers.handles().iter().map(warden_supervisor::ServerHandle::parts).collect(),
        );
        for s in &overview.servers {
            let in_scope = capacity.iter().any(|c| c.server == s.name);
            let no_fallback = self.spec(&s.name).is_some_and(|sp| sp.fallback.is_empty());
            if in_scope && no_fallback && s.status != warden_core::ServerStatus::Healthy {
                out.push(suggestion(
                    "fallback",
                    &s.name,
                    None,
                    "configure a \"fallback\" server for when it has nothing routable".to_owned(),
                    key(&s.name, "fallback"),
                    json!({ "status_now": s.status.as_str() }),
                ));
            }
        }
        for (id, _, opened) in self.gateway.breakers() {
            if opened > 0 && capacity.iter().any(|c| c.server == id.server()) {
                out.push(suggestion(
                    "breaker",
                    id.server(),
                    Some(("instance", &id.to_string())),
                    "its circuit breaker has opened: check the server's errors and latency"
                        .to_owned(),
                    None,
                    json!({ "breaker_opened": opened }),
                ));
            }
        }
        out
    }
}
