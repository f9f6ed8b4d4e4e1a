//! Reports over a period (default: the last 7 days), from the store and the live views:
//! `GET /api/reports/{failures,performance,capacity,availability}?since=&until=&server=`,
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

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use warden_config::ServerSpec;
use warden_core::{RecoveryAction, Timestamp};
use warden_gateway::Gateway;
use warden_store::{
    Durations, FailureStats, InstanceSamples, MetricQuery, ReportRange, Store, ToolStats,
    UsageStats,
};
use warden_supervisor::ServerHandle;

use crate::api::{error, parse_instant, Params};
use crate::usage::UsageFlusher;

/// Calls per second one instance is planned to take (probes included). A constant, not a
/// measurement: MCP servers differ too much for one number to be right, so it is shown in
/// every capacity report.
pub(crate) const CAPACITY_PER_INSTANCE: f64 = 10.0;
/// Share of planned capacity, in the peak hour, at which a replica should be added.
pub(crate) const ADD_REPLICA_AT: f64 = 0.7;
/// Below this share in the peak hour, with two or more replicas and no failure, one fewer.
const REDUCE_REPLICAS_BELOW: f64 = 0.05;
/// Hourly points a trend needs.
const MIN_TREND_POINTS: usize = 12;
/// Hourly points (a day) before fewer replicas are suggested.
const MIN_POINTS_TO_REDUCE: usize = 24;
/// Projections further out than this are not made.
const MAX_PROJECTION_DAYS: f64 = 365.0;
/// The period when no `since` is given.
pub(crate) const DEFAULT_SINCE: &str = "7d";
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
pub(crate) enum Kind {
    Failures,
    Performance,
    Capacity,
    Availability,
}

impl Kind {
    const ALL: [(Kind, &'static str); 4] = [
        (Kind::Failures, "failures"),
        (Kind::Performance, "performance"),
        (Kind::Capacity, "capacity"),
        (Kind::Availability, "availability"),
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
    }

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("", |(_, n)| n)
    }
}

/// What the reports read.
#[derive(Clone)]
pub(crate) struct Reports {
    pub(crate) store: Store,
    pub(crate) servers: Arc<Vec<ServerHandle>>,
    pub(crate) gateway: Gateway,
    pub(crate) usage: Arc<UsageFlusher>,
    pub(crate) metrics_interval: Duration,
}

/// Why a report could not be made: the status to answer with, and the message.
pub(crate) type Refusal = (StatusCode, String);

fn database(e: impl std::fmt::Display) -> Refusal {
    (StatusCode::SERVICE_UNAVAILABLE, format!("the database did not answer: {e}"))
}

#[derive(Deserialize)]
struct Query {
    since: Option<String>,
    until: Option<String>,
    server: Option<String>,
}

pub(crate) fn routes(reports: Reports) -> Router {
    Router::new().route("/api/reports/{kind}", get(report)).with_state(reports)
}

/// `GET /api/reports/{kind}?since=7d&until=&server=`.
async fn report(
    AxState(reports): AxState<Reports>,
    Path(kind): Path<String>,
    Params(q): Params<Query>,
) -> Response {
    let Some(kind) = Kind::parse(&kind) else {
        let known: Vec<&str> = Kind::ALL.iter().map(|(_, n)| *n).collect();
        return error(StatusCode::NOT_FOUND, format!("no report {kind:?} ({})", known.join(", ")));
    };
    let answer = match reports.range(
        q.since.as_deref(),
        q.until.as_deref(),
        q.server.as_deref(),
        warden_core::now(),
    ) {
        Ok(r) => reports.build(kind, &r).await,
        Err(refusal) => Err(refusal),
    };
    match answer {
        Ok(v) => Json(v).into_response(),
        Err((status, message)) => error(status, message),
    }
}

/// Least-squares line through `(x, y)`: `(intercept, slope)`; `None` without spread in `x`.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| {
        let slope = sxy / sxx;
        (my - slope * mx, slope)
    })
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// One server's throughput and planned capacity over the period.
struct Capacity {
    server: String,
    instances: u32,
    /// Hourly server throughput (calls/s), oldest first, `x` in days since the period began.
    hourly: Vec<(f64, f64)>,
    avg: Option<f64>,
    peak: Option<(Timestamp, f64)>,
    /// Mean of the instances' sampled p50 latency.
    p50_ms: Option<f64>,
}

impl Capacity {
    fn planned(&self) -> f64 {
        f64::from(self.instances.max(1)) * CAPACITY_PER_INSTANCE
    }

    fn peak_utilization(&self) -> Option<f64> {
        self.peak.map(|(_, p)| p / self.planned())
    }

    /// `(intercept, slope per day)` of the hourly points, if there are enough.
    fn trend(&self) -> Option<(f64, f64)> {
        (self.hourly.len() >= MIN_TREND_POINTS).then(|| least_squares(&self.hourly)).flatten()
    }
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
    fn spec(&self, server: &str) -> Option<&Arc<ServerSpec>> {
        self.servers.iter().find(|h| h.spec.name == server).map(|h| &h.spec)
    }

    /// The period and server of a request; the message names the bad parameter.
    pub(crate) fn range(
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
    pub(crate) async fn build(&self, kind: Kind, r: &ReportRange) -> Result<Value, Refusal> {
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

    /// Hourly throughput per server (sum of its instances' hourly means), from the stored
    /// samples through the metric-range query.
    async fn capacity_of(
        &self,
        r: &ReportRange,
        samples: &[InstanceSamples],
    ) -> Result<Vec<Capacity>, Refusal> {
        let range = self
            .store
            .metric_range(&MetricQuery {
                since: r.since,
                until: r.until,
                server: r.server.clone(),
                instance: None,
                metric: Some("throughput".into()),
                step: Some(Duration::from_secs(3600)),
                limit: 100_000,
            })
            .await
            .map_err(database)?;
        let mut hours: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
        for s in &range.series {
            for p in &s.points {
                *hours.entry(&s.server).or_default().entry(&p.at).or_default() += p.avg;
            }
        }
        let names = self.server_names(r, samples.iter().map(|s| s.server.as_str()));
        Ok(names
            .into_iter()
            .map(|server| {
                let mine: Vec<&InstanceSamples> =
                    samples.iter().filter(|s| s.server == server).collect();
                let instances =
                    self.spec(&server).map_or(mine.len() as u32, |s| s.instance_count());
                let points: Vec<(Timestamp, f64)> = hours
                    .get(server.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|(at, v)| Some((at.parse::<Timestamp>().ok()?, *v)))
                    .collect();
                let hourly: Vec<(f64, f64)> =
                    points.iter().map(|(t, v)| (seconds(*t - r.since) / 86_400.0, *v)).collect();
                let avg = (!hourly.is_empty())
                    .then(|| hourly.iter().map(|p| p.1).sum::<f64>() / hourly.len() as f64);
                let peak = points.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
                let p50s: Vec<f64> = mine.iter().filter_map(|s| s.p50_ms_avg).collect();
                let p50_ms =
                    (!p50s.is_empty()).then(|| p50s.iter().sum::<f64>() / p50s.len() as f64);
                Capacity { server, instances, hourly, avg, peak, p50_ms }
            })
            .collect())
    }

    async fn capacity(&self, r: &ReportRange) -> Result<Value, Refusal> {
        let samples = self.store.instance_samples(r).await.map_err(database)?;
        let rows = self.capacity_of(r, &samples).await?;
        let servers: Vec<Value> = rows.iter().map(|c| self.capacity_json(c, r)).collect();
        Ok(json!({
            "method": format!(
                "planned capacity: {CAPACITY_PER_INSTANCE} calls/s per instance (probes included); \
                 trend: least squares through hourly throughput; add a replica when the peak hour \
                 reaches {:.0} % of capacity, projected linearly (trend × peak/mean ratio)",
                ADD_REPLICA_AT * 100.0
            ),
            "capacity_per_instance": CAPACITY_PER_INSTANCE,
            "add_replica_at_utilization": ADD_REPLICA_AT,
            "servers": servers,
        }))
    }

    fn capacity_json(&self, c: &Capacity, r: &ReportRange) -> Value {
        let handle = self.servers.iter().find(|h| h.spec.name == c.server);
        let views = handle.map(|h| h.views()).unwrap_or_default();
        let in_flight: usize = handle
            .map_or(0, |h| (0..views.len()).filter_map(|i| h.link(i)).map(|l| l.in_flight()).sum());
        let planned = c.planned();
        let per_instance = c.avg.map(|a| a / f64::from(c.instances.max(1)));
        let trend = c.trend();
        let threshold = ADD_REPLICA_AT * planned;
        let (now, projected, note) = match (c.peak, c.avg, trend) {
            (Some((_, peak)), _, _) if peak >= threshold => {
                (true, None, format!("the peak hour ({peak:.2}/s) is past {threshold:.2}/s"))
            }
            (None, _, _) => (false, None, "not enough data: no samples in the period".to_owned()),
            (_, _, None) => (
                false,
                None,
                format!(
                    "not enough data for a trend: {} hourly points, {MIN_TREND_POINTS} needed",
                    c.hourly.len()
                ),
            ),
            (_, _, Some((_, slope))) if slope <= 0.0 => {
                (false, None, "throughput is not rising".to_owned())
            }
            (Some((_, peak)), Some(avg), Some((a, b))) if avg > 0.0 => {
                // When (a + b·x) × peak/avg reaches the threshold, x in days since `since`.
                let x = (threshold * avg / peak - a) / b;
                match projected_at(r.since, r.until, x) {
                    None => (
                        false,
                        None,
                        format!("not within {MAX_PROJECTION_DAYS} days at this trend"),
                    ),
                    Some(at) => {
                        let days = seconds(at - r.until) / 86_400.0;
                        let note = format!("linear projection, {days:.1} days after the period");
                        (false, Some(at), note)
                    }
                }
            }
            _ => (false, None, "no throughput in the period".to_owned()),
        };
        json!({
            "server": c.server,
            "instances": c.instances,
            "routable_now": views.iter().filter(|v| v.state.is_routable()).count(),
            "in_flight_now": in_flight,
            "throughput": {
                "avg": c.avg,
                "per_instance_avg": per_instance,
                "peak_hour": c.peak.map(|p| p.1),
                "peak_hour_at": c.peak.map(|p| p.0),
                "hours": c.hourly.len(),
            },
            "planned_capacity": planned,
            "utilization": { "avg": c.avg.map(|a| a / planned), "peak_hour": c.peak_utilization() },
            // Little's law: mean calls in flight per instance ≈ throughput × latency.
            "busy_per_instance": per_instance.zip(c.p50_ms).map(|(t, ms)| t * ms / 1000.0),
            "trend": trend.map(|(a, b)| json!({
                "throughput_per_day": b,
                "utilization_per_day": b / planned,
                "fitted_now": a + b * seconds(r.until - r.since) / 86_400.0,
            })),
            "add_replica": { "now": now, "projected_at": projected, "note": note },
        })
    }

    async fn availability(&self, r: &ReportRange) -> Result<Value, Refusal> {
        let slots = self.store.server_slots(r, self.metrics_interval).await.map_err(database)?;
        let samples = self.store.instance_samples(r).await.map_err(database)?;
        let spans = self.store.incident_spans(r).await.map_err(database)?;
        let interval = self.metrics_interval.as_secs().max(1) as f64;
        let period = seconds(r.until - r.since);
        let names = self.server_names(r, slots.iter().map(|s| s.server.as_str()));
        let down_of = |instance: &str| {
            union(
                spans.iter().filter(|s| s.instance == instance).map(|s| (s.start, s.end)).collect(),
            )
        };
        let servers: Vec<Value> = names
            .iter()
            .map(|name| {
                let observed =
                    slots.iter().find(|s| &s.server == name).map_or(0.0, |s| s.slots as f64 * interval);
                // Every instance the server has (configured, else seen), down together.
                let mut ids: Vec<String> = match self.spec(name) {
                    Some(spec) => (0..spec.instance_count()).map(|i| format!("{name}#{i}")).collect(),
                    None => Vec::new(),
                };
                for id in samples.iter().filter(|s| &s.server == name).map(|s| &s.instance) {
                    if !ids.contains(id) {
                        ids.push(id.clone());
                    }
                }
                let down = ids
                    .iter()
                    .map(|id| down_of(id))
                    .reduce(|a, b| intersect(&a, &b))
                    .unwrap_or_default();
                let downtime = total(&down).min(observed);
                let availability = (observed > 0.0).then(|| 1.0 - downtime / observed);
                let objective = self.spec(name).and_then(|s| s.objective);
                let budget = objective.zip(availability).map(|(o, _)| {
                    let allowed = (1.0 - o) * observed;
                    json!({
                        "allowed_seconds": allowed,
                        "consumed_seconds": downtime,
                        "remaining_seconds": allowed - downtime,
                        "remaining": (allowed > 0.0).then(|| 1.0 - downtime / allowed),
                    })
                });
                let instances: Vec<Value> = samples
                    .iter()
                    .filter(|s| &s.server == name)
                    .map(|s| {
                        let down = down_of(&s.instance);
                        let observed = s.samples as f64 * interval;
                        let downtime = total(&down).min(observed);
                        json!({
                            "instance": s.instance,
                            "availability": (observed > 0.0).then(|| 1.0 - downtime / observed),
                            "observed_seconds": observed,
                            "downtime_seconds": downtime,
                            "incidents": spans.iter().filter(|x| x.instance == s.instance).count(),
                            "samples_by_status": s.by_status,
                        })
                    })
                    .collect();
                json!({
                    "server": name,
                    "objective": objective,
                    "availability": availability,
                    "met": objective.zip(availability).map(|(o, a)| a >= o),
                    "observed_seconds": observed,
                    "coverage": if period > 0.0 { (observed / period).min(1.0) } else { 0.0 },
                    "downtime_seconds": downtime,
                    "error_budget": budget,
                    "instances": instances,
                    "note": (observed == 0.0).then_some("not enough data: no samples in the period"),
                })
            })
            .collect();
        Ok(json!({
            "method": format!(
                "downtime: the incidents' recorded downtime (every instance down at once, for a \
                 server), over the time Warden observed it ({interval:.0} s sample slots)"
            ),
            "servers": servers,
        }))
    }

    async fn performance(&self, r: &ReportRange) -> Result<Value, Refusal> {
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

    /// Whether `server` describes `tool` as read-only (any instance's catalog).
    fn read_only(&self, server: &str, tool: &str) -> bool {
        self.servers.iter().filter(|h| h.spec.name == server).any(|h| {
            (0..h.views().len())
                .filter_map(|i| h.link(i)?.catalog())
                .any(|c| c.tools.iter().any(|t| t.name == tool && t.read_only))
        })
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
    fn suggestions(
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
            self.servers.iter().map(warden_supervisor::ServerHandle::parts).collect(),
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

type Spans = Vec<(Timestamp, Timestamp)>;

/// Spans merged where they overlap or touch, in order.
fn union(mut spans: Spans) -> Spans {
    spans.sort();
    let mut out: Spans = Vec::new();
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The time in both (each merged and in order).
fn intersect(a: &Spans, b: &Spans) -> Spans {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (start, end) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if start < end {
            out.push((start, end));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn total(spans: &Spans) -> f64 {
    spans.iter().map(|(start, end)| seconds(*end - *start)).sum()
}

fn tool_json(t: &ToolStats) -> Value {
    let mut v = json!(t);
    v["repeat_rate"] = json!(ratio(t.repeats, t.calls));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn downtime_spans_merge_per_instance_and_intersect_across_instances() {
        let a = union(vec![(t(10), t(20)), (t(0), t(5)), (t(15), t(30)), (t(30), t(31))]);
        assert_eq!(a, [(t(0), t(5)), (t(10), t(31))], "overlapping and touching spans merge");
        let b = union(vec![(t(3), t(12)), (t(25), t(40))]);
        assert_eq!(intersect(&a, &b), [(t(3), t(5)), (t(10), t(12)), (t(25), t(31))]);
        assert_eq!(total(&intersect(&a, &b)), 10.0);
        assert!(intersect(&a, &Vec::new()).is_empty(), "an instance never down keeps it up");
    }

    #[test]
    fn least_squares_finds_the_line_and_needs_spread() {
        let (a, b) = least_squares(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
        assert_eq!(least_squares(&[(1.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(least_squares(&[(1.0, 1.0)]), None);
    }
}

/// `since` + `x_days`, or `None` when that is not a time within [`MAX_PROJECTION_DAYS`] after
/// `until` (a nearly flat trend puts `x` beyond any date chrono can hold, or makes it NaN).
fn projected_at(
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    x_days: f64,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let period_days = seconds(until - since) / 86_400.0;
    if !x_days.is_finite() || x_days - period_days > MAX_PROJECTION_DAYS {
        return None;
    }
    // Bounded now: at most the period plus MAX_PROJECTION_DAYS, in milliseconds.
    let ms = (x_days * 86_400_000.0).round();
    since.checked_add_signed(chrono::Duration::try_milliseconds(ms as i64)?)
}

#[cfg(test)]
mod projection_tests {
    use super::*;

    #[test]
    fn a_projection_beyond_any_date_is_none_not_a_panic() {
        let until = chrono::Utc::now();
        let since = until - chrono::Duration::days(7);
        // A nearly flat trend: `x` in the 1e300s of days, beyond every i64 of milliseconds.
        for x in [1e300, f64::INFINITY, f64::NAN, 1e18, 7.0 + 366.0, -1e300] {
            assert_eq!(projected_at(since, until, x), None, "{x}");
        }
        let at = projected_at(since, until, 10.0).expect("3 days after the period");
        assert_eq!((at - since).num_days(), 10);
    }
}
