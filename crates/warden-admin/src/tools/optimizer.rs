//! `performance_optimizer`: patterns and suggestions over a learning period, narrowed to an
//! optimization scope; a live ping benchmark; tuning applied and reverted.

use serde_json::{json, Value};
use warden_ops::reports::Kind;

use super::Tools;

/// The suggestion rules (warden-ops' reports) that speak to each scope.
fn rules_of(scope: &str) -> &'static [&'static str] {
    match scope {
        "response_times" => &["timeout", "cache"],
        "error_rates" => &["errors", "breaker", "fallback"],
        "throughput" => &["add_replica", "reduce_replicas", "cache"],
        "resource_usage" => &["add_replica", "reduce_replicas"],
        _ => &[],
    }
}

/// The performance report's parts each scope keeps (`servers` and `suggestions` always).
fn sections_of(scope: &str) -> &'static [&'static str] {
    match scope {
        "response_times" => &["slowest_tools", "tools"],
        "error_rates" => &["tools", "usage_by_hour"],
        "throughput" => &["busiest_tools", "usage_by_hour", "live"],
        "resource_usage" => &[],
        _ => &["tools", "usage_by_hour", "busiest_tools", "slowest_tools", "live", "note"],
    }
}

fn quantile(xs: &mut [f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some(xs[((xs.len() - 1) as f64 * q).round() as usize])
}

impl Tools {
    /// `learning_period` (session, hour, day, week or a duration) or `since`, as a report's
    /// start; both at once is refused.
    fn period(&self, args: &Value) -> Result<Option<String>, String> {
        let since = args["since"].as_str();
        let Some(p) = args["learning_period"].as_str() else {
            return Ok(since.map(str::to_owned));
        };
        if since.is_some() {
            return Err("give learning_period or since, not both".to_owned());
        }
        Ok(Some(match p {
            "session" => self.started.to_rfc3339(),
            "hour" => "1h".to_owned(),
            "day" => "24h".to_owned(),
            "week" => "7d".to_owned(),
            other => match warden_config::parse_duration(other) {
                Ok(_) => other.to_owned(),
                Err(_) => {
                    return Err(format!(
                        "{other:?} is not a learning_period; accepted: session, hour, day, week, or a duration like 36h or 14d"
                    ))
                }
            },
        }))
    }

    pub(super) async fn optimizer(&self, args: &Value) -> Result<Value, String> {
        let server = args["server"].as_str();
        let since = self.period(args)?;
        let since = since.as_deref();
        let scope = args["optimization_scope"].as_str().unwrap_or("all");
        match args["action"].as_str().unwrap_or_default() {
            "analyze_patterns" => {
                let mut v = self.report(Kind::Performance, server, since).await?;
                narrow(&mut v, scope);
                if scope == "resource_usage" {
                    v["capacity"] = self.report(Kind::Capacity, server, since).await?;
                }
                Ok(v)
            }
            "suggest_optimizations" => self.optimizations(server, since, scope).await,
            "benchmark_performance" => {
                let chosen = self.chosen(args)?;
                self.benchmark(chosen).await
            }
            "apply_tuning" => {
                if scope != "all" {
                    return Err(format!(
                        "apply_tuning tunes timeouts, probes and weights together: optimization_scope must be all, not {scope:?}"
                    ));
                }
                let dry_run = args["dry_run"].as_bool().unwrap_or(false);
                self.tuner.apply(since, server, dry_run, "mcp").await.map_err(|(_, e)| e)
            }
            _ => match args["change_id"].as_i64() {
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
        }
    }

    /// The performance report's suggestions in `scope`, with the capacity report beside them.
    pub(super) async fn optimizations(
        &self,
        server: Option<&str>,
        since: Option<&str>,
        scope: &str,
    ) -> Result<Value, String> {
        let mut perf = self.report(Kind::Performance, server, since).await?;
        narrow(&mut perf, scope);
        let capacity = self.report(Kind::Capacity, server, since).await?;
        Ok(json!({
            "since": perf["since"],
            "until": perf["until"],
            "server": perf["server"],
            "optimization_scope": scope,
            "suggestions": perf["suggestions"],
            "live": perf["live"],
            "capacity": capacity,
        }))
    }

    async fn benchmark(&self, chosen: Option<Vec<String>>) -> Result<Value, String> {
        let names: Vec<String> = match chosen {
            Some(c) => c,
            None => self
                .servers
                .handles()
                .iter()
                .filter(|h| !h.spec.is_check())
                .map(|h| h.spec.name.clone())
                .collect(),
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
}

/// Keeps the parts of a performance report, and the suggestions, that `scope` speaks to.
fn narrow(report: &mut Value, scope: &str) {
    report["optimization_scope"] = json!(scope);
    if scope == "all" {
        return;
    }
    let rules = rules_of(scope);
    if let Some(s) = report["suggestions"].as_array_mut() {
        s.retain(|x| x["rule"].as_str().is_some_and(|r| rules.contains(&r)));
    }
    let keep = sections_of(scope);
    if let Some(o) = report.as_object_mut() {
        o.retain(|k, _| {
            !["tools", "usage_by_hour", "busiest_tools", "slowest_tools", "live", "note"]
                .contains(&k.as_str())
                || keep.contains(&k.as_str())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_keeps_its_suggestions_and_sections() {
        let report = json!({
            "servers": [], "tools": [], "usage_by_hour": [], "busiest_tools": [],
            "slowest_tools": [], "live": {},
            "suggestions": [{ "rule": "timeout" }, { "rule": "errors" }, { "rule": "add_replica" }],
        });
        let mut r = report.clone();
        narrow(&mut r, "error_rates");
        assert_eq!(r["suggestions"], json!([{ "rule": "errors" }]));
        assert!(r.get("slowest_tools").is_none() && r.get("tools").is_some());
        let mut r = report.clone();
        narrow(&mut r, "response_times");
        assert_eq!(r["suggestions"], json!([{ "rule": "timeout" }]));
        assert!(r.get("slowest_tools").is_some() && r.get("busiest_tools").is_none());
        let mut r = report;
        narrow(&mut r, "all");
        assert_eq!(r["suggestions"].as_array().unwrap().len(), 3);
    }
}
