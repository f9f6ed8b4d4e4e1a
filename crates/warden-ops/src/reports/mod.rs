//! Reports over a period (default: the last 7 days), from the store and the live views:
//! `GET /api/reports/{failures,performance,capacity,availability}?since=&until=&server=` (its
//! route is warden-admin's),
//! `warden report …`, and the MCP tools' `failure_analysis`, `analyze_patterns`,
//! `optimization_report` and `suggest_optimizations` — all built by [`Reports::build`].
//!
//! Numbers, not prose. Every report answers for an empty period: zero counts, `null` for what
//! cannot be computed, and a `note` saying why. How each number is derived:
//!
//! - **failures**: `integration_failures` rows that occurred in the period — counts by class and
//!   instance, time to recover (mean, p50, p90, max of `resolution_time_seconds`), recoveries by
//!   action; every incident still open; `alerts` that fired in the period, per rule.
//! - **performance**: the samples' rolling-window latency (p50, p95), error rate and throughput
//!   per instance; per tool, the gateway's `tool_usage` rollup; calls by UTC hour of day; and
//!   suggestions from explicit rules ([`Reports::suggestions`]), each with its evidence and the
//!   config key to change.
//! - **capacity**: per server, hourly throughput (the sum of its instances' hourly means, probes
//!   included) against a planned [`CAPACITY_PER_INSTANCE`] calls/s per instance; the trend is a
//!   least-squares line through the hourly points, and "add a replica" is the date that line,
//!   scaled by the period's peak-to-mean ratio, reaches [`ADD_REPLICA_AT`] of capacity — a
//!   linear projection, nothing more.
//! - **availability**: `1 − downtime / observed`. Downtime is the incidents' own record: each
//!   failure row is down from `occurred_at` for its `resolution_time_seconds` (open ones until
//!   the period's end); a server is down while all its instances are. Sub-second crash-restart
//!   cycles count exactly, where 10-second samples would miss them. Observed time is the
//!   period's metrics-interval slots holding a sample (time Warden was not running is left
//!   out; `coverage` says how much was watched); incidents Warden abandoned at shutdown have no
//!   known end and are left out. The error budget is `1 − objective` of the observed time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};
use warden_config::ServerSpec;
use warden_core::{RecoveryAction, Timestamp};
use warden_gateway::Gateway;
use warden_store::{
    Durations, FailureStats, InstanceSamples, MetricQuery, ReportRange, Store, ToolStats,
    UsageStats,
};

use crate::usage::UsageFlusher;
use crate::{parse_instant, Refusal};

mod availability;
mod capacity;
mod performance;

/// Calls per second one instance is planned to take (probes included). A constant, not a
/// measurement: MCP servers differ too much for one number to be right, so it is shown in
/// every capacity report.
pub const CAPACITY_PER_INSTANCE: f64 = 10.0;
/// Share of planned capacity, in the peak hour, at which a replica should be added.
pub const ADD_REPLICA_AT: f64 = 0.7;
/// Below this share in the peak hour, with two or more replicas and no failure, one fewer.
const REDUCE_REPLICAS_BELOW: f64 = 0.05;
/// Hourly points a trend needs.
const MIN_TREND_POINTS: usize = 12;
/// Hourly points (a day) before fewer replicas are suggested.
const MIN_POINTS_TO_REDUCE: usize = 24;
/// Projections further out than this are not made.
const MAX_PROJECTION_DAYS: f64 = 365.0;
/// The period when no `since` is given.
pub const DEFAULT_SINCE: &str = "7d";
/// A cache is suggested for a read-only tool with this many calls, this share of them repeats.
const CACHE_MIN_CALLS: u64 = 50;
const CACHE_MIN_REPEAT_RATE: f64 = 0.3;
/// Error rate (of ≥ 20 calls, or an instance's sampled mean) worth investigating.
const ERROR_RATE_TO_INVESTIGATE: f64 = 0.05;
const ERROR_MIN_CALLS: u64 = 20;
/// Incidents of a lone stdio instance in the period after which a replica is suggested: each
/// one left the server's calls without an instance until the restart.
const LONE_INSTANCE_INCIDENTS: u64 = 1;

/// The four reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Failures,
    Performance,
    Capacity,
    Availability,
}

impl Kind {
    pub const ALL: [(Kind, &'static str); 4] = [
        (Kind::Failures, "failures"),
        (Kind::Performance, "performance"),
        (Kind::Capacity, "capacity"),
        (Kind::Availability, "availability"),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("", |(_, n)| n)
    }
}

/// What the reports read.
#[derive(Clone)]
pub struct Reports {
    pub store: Store,
    /// Every server, as the last reload left them.
    pub servers: warden_supervisor::Views,
    pub gateway: Gateway,
    pub usage: Arc<UsageFlusher>,
    pub metrics_interval: Duration,
}

fn database(e: impl std::fmt::Display) -> Refusal {
    (StatusCode::SERVICE_UNAVAILABLE, format!("the database did not answer: {e}"))
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A suggestion: which rule, about what, what to do, the config key, and the numbers behind it.
fn suggestion(
    rule: &str,
    server: &str,
    about: Option<(&str, &str)>,
    action: String,
    config: Option<String>,
    evidence: Value,
) -> Value {
    let mut v = json!({ "rule": rule, "server": server, "action": action, "config": config, "evidence": evidence });
    if let Some((key, name)) = about {
        v[key] = json!(name);
    }
    v
}

impl Reports {
    fn spec(&self, server: &str) -> Option<Arc<ServerSpec>> {
        self.servers.handle(server).map(|h| h.spec)
    }

    /// The period and server of a request; the message names the bad parameter.
    pub fn range(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        server: Option<&str>,
        now: Timestamp,
    ) -> Result<ReportRange, Refusal> {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        let until = until.map_or(Ok(now), |t| parse_instant("until", t, now)).map_err(bad)?;
        // As in /api/metrics: a duration is before now; no `since` is the default before `until`.
        let since = match since {
            Some(t) => parse_instant("since", t, now),
            None => parse_instant("since", DEFAULT_SINCE, until),
        }
        .map_err(bad)?;
        if until <= since {
            return Err(bad(format!("until ({until}) must be after since ({since})")));
        }
        if let Some(s) = server {
            if self.spec(s).is_none() {
                return Err((StatusCode::NOT_FOUND, format!("no server named {s:?}")));
            }
        }
        Ok(ReportRange { since, until, server: server.map(str::to_owned) })
    }

    /// One report as JSON.
    pub async fn build(&self, kind: Kind, r: &ReportRange) -> Result<Value, Refusal> {
        let mut v = match kind {
            Kind::Failures => self.failures(r).await,
            Kind::Performance => self.performance(r).await,
            Kind::Capacity => self.capacity(r).await,
            Kind::Availability => self.availability(r).await,
        }?;
        v["report"] = json!(kind.name());
        v["since"] = json!(r.since);
        v["until"] = json!(r.until);
        v["server"] = json!(r.server);
        v["generated_at"] = json!(warden_core::now());
        Ok(v)
    }

    /// Configured servers (or the one asked for), then any others the data names.
    fn server_names<'a>(
        &self,
        r: &ReportRange,
        found: impl Iterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut names: Vec<String> = self
            .servers
            .handles()
            .iter()
            .map(|h| h.spec.name.clone())
            .filter(|n| r.server.as_ref().is_none_or(|s| s == n))
            .collect();
        for n in found {
            if !names.iter().any(|have| have == n) {
                names.push(n.to_owned());
            }
        }
        names
    }

    async fn failures(&self, r: &ReportRange) -> Result<Value, Refusal> {
        let f = self.store.failure_stats(r).await.map_err(database)?;
        let alerts = self.store.alert_stats(r).await.map_err(database)?;
        let ttr = |d: &Durations| json!({ "mttr_seconds": d.mean, "time_to_recover_seconds": d });
        let by_class: serde_json::Map<String, Value> = f
            .by_class
            .iter()
            .map(|c| {
                let mut v = ttr(&c.time_to_recover);
                v["count"] = json!(c.count);
                v["open"] = json!(c.open);
                (c.class.clone(), v)
            })
            .collect();
        // Every action, zero or not.
        let mut recoveries: serde_json::Map<String, Value> = [
            RecoveryAction::Restart,
            RecoveryAction::KillAndRestart,
            RecoveryAction::Reconnect,
            RecoveryAction::SelfRecovered,
            RecoveryAction::Operator,
            RecoveryAction::Abandoned,
        ]
        .iter()
        .map(|a| (a.as_str().to_owned(), json!({ "count": 0, "mttr_seconds": null })))
        .collect();
        for a in &f.recoveries {
            let mut v = ttr(&a.time_to_recover);
            v["count"] = json!(a.count);
            recoveries.insert(a.action.clone(), v);
        }
        Ok(json!({
            "total": f.total,
            "resolved": f.resolved,
            "open": f.open,
            "mttr_seconds": f.time_to_recover.mean,
            "time_to_recover_seconds": f.time_to_recover,
            "by_class": by_class,
            "top_offenders": f.by_instance.iter().take(10).collect::<Vec<_>>(),
            "recoveries": recoveries,
            "open_incidents": f.open_incidents,
            "alerts": alerts,
            "note": (f.total == 0).then_some("no failures in the period"),
        }))
    }

    /// Whether `server` describes `tool` as read-only (any instance's catalog).
    fn read_only(&self, server: &str, tool: &str) -> bool {
        self.servers.handle(server).is_some_and(|h| {
            (0..h.views().len())
                .filter_map(|i| h.link(i)?.catalog())
                .any(|c| c.tools.iter().any(|t| t.name == tool && t.read_only))
        })
    }
}

fn tool_json(t: &ToolStats) -> Value {
    let mut v = json!(t);
    v["repeat_rate"] = json!(ratio(t.repeats, t.calls));
    v
}
