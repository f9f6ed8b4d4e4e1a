//! Tuning: changes to a server's policy at run time — the call timeout, the probe interval and
//! timeout, each instance's balancing weight — learned from what the store recorded, or set
//! by an operator, always inside safe bounds, every one recorded (`tuning_changes`) and
//! reversible. `GET /api/tuning`, `POST /api/tuning/{apply,set,reset}`,
//! `POST /api/tuning/{id}/revert`, `warden tune …`, and the MCP tool
//! `warden__performance_optimizer` (`apply_tuning`, `revert_tuning`).
//!
//! What is learned (over `warden.tuning.lookback`, default 7 days; see [`learn`]):
//!
//! | parameter | rule | change |
//! |---|---|---|
//! | `timeout` | a tool's slowest call ≥ 80 % of the call timeout (≥ 5 calls), or an instance's sampled p95 ≥ 50 % of it | raise to 2 × the slowest seen, whole seconds |
//! | `health.timeout` | ≥ 3 probe timeouts | double |
//! | `health.interval` | ≥ 3 incidents | halve (failures found sooner) |
//! | `weight` | replicas: p50 ≥ 1.5 × the fastest sibling's (≥ 30 samples each), or ≥ 2 incidents while a sibling had none | fastest/p50, or 0.5 (the lower), steps of 0.05; back to 1 when the evidence is gone |
//!
//! Learned changes only ever raise timeouts and shorten the probe interval (what lowers the
//! risk of a false failure or a slow detection); an operator can move any parameter anywhere
//! inside its bounds ([`bounds`]). A change is made only if it can be recorded first. At start,
//! changes still in force are re-applied while the config still holds the value they started
//! from; otherwise they are marked reverted ("the config changed").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use warden_config::{ServerSpec, TuningSettings};
use warden_core::{Event, EventBus, EventKind, InstanceId, TraceId};
use warden_store::{
    FailureStats, InstanceSamples, NewTuning, ProbeTimeouts, ReportRange, TuningRow, UsageStats,
};
use warden_supervisor::{ServerHandle, Tuned};

use crate::api::{error, Params};
use crate::reports::{Refusal, Reports};

/// A call timeout is raised when a call came this close to it…
const SLOW_CALL_SHARE: f64 = 0.8;
/// …(over at least this many calls of the tool), or an instance's p95 reached this share.
const SLOW_CALL_MIN_CALLS: u64 = 5;
const SLOW_P95_SHARE: f64 = 0.5;
/// Probe timeouts in the period after which the probe timeout is doubled.
const PROBE_TIMEOUTS_TO_RAISE: u64 = 3;
/// Incidents in the period after which the probe interval is halved.
const INCIDENTS_TO_PROBE_SOONER: u64 = 3;
/// An instance this much slower (p50) than its fastest sibling gets a lower weight…
const SLOW_REPLICA_RATIO: f64 = 1.5;
/// …when both have this many samples.
const MIN_SAMPLES_FOR_WEIGHT: u64 = 30;
/// Incidents of an instance whose siblings had none that halve its weight.
const INCIDENTS_TO_DEWEIGHT: u64 = 2;
/// Weights move in steps of this.
const WEIGHT_STEP: f64 = 0.05;
/// History rows shown by `GET /api/tuning`.
const HISTORY_LIMIT: u32 = 100;

/// A tunable parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Param {
    CallTimeout,
    ProbeInterval,
    ProbeTimeout,
    Weight,
}

impl Param {
    const ALL: [Param; 4] =
        [Param::CallTimeout, Param::ProbeInterval, Param::ProbeTimeout, Param::Weight];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Param::CallTimeout => "timeout",
            Param::ProbeInterval => "health.interval",
            Param::ProbeTimeout => "health.timeout",
            Param::Weight => "weight",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    fn is_duration(self) -> bool {
        self != Param::Weight
    }

    fn unit(self) -> &'static str {
        if self.is_duration() {
            "ms"
        } else {
            "weight"
        }
    }

    /// The configured value (ms for durations).
    fn base(self, spec: &ServerSpec) -> f64 {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match self {
            Param::CallTimeout => ms(spec.timeout),
            Param::ProbeInterval => ms(spec.health.interval),
            Param::ProbeTimeout => ms(spec.health.timeout),
            Param::Weight => 1.0,
        }
    }

    /// The value in force.
    fn current(self, spec: &ServerSpec, tuned: &Tuned, instance: Option<u32>) -> f64 {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        match self {
            Param::CallTimeout => ms(tuned.call_timeout),
            Param::ProbeInterval => ms(tuned.probe_interval),
            Param::ProbeTimeout => ms(tuned.probe_timeout),
            Param::Weight => Some(tuned.weight(instance.unwrap_or(0))),
        }
        .unwrap_or_else(|| self.base(spec))
    }

    /// Sets `value` in `tuned` (the configured value clears the override).
    fn set(self, spec: &ServerSpec, tuned: &mut Tuned, instance: Option<u32>, value: f64) {
        let is_base = (value - self.base(spec)).abs() < 1e-9;
        let d = (!is_base).then(|| Duration::from_secs_f64(value / 1000.0));
        match self {
            Param::CallTimeout => tuned.call_timeout = d,
            Param::ProbeInterval => tuned.probe_interval = d,
            Param::ProbeTimeout => tuned.probe_timeout = d,
            Param::Weight => {
                let i = instance.unwrap_or(0);
                if is_base {
                    tuned.weights.remove(&i);
                } else {
                    tuned.weights.insert(i, value);
                }
            }
        }
    }

    /// A value for people: `2.5s`, `0.45`.
    /// Whether the parameter means anything for this server: an integration (a check, not an
    /// MCP server) has no calls, so no call timeout and no balancing.
    fn applies_to(self, spec: &ServerSpec) -> bool {
        !(spec.is_check() && matches!(self, Param::CallTimeout | Param::Weight))
    }

    fn show(self, v: f64) -> String {
        if self.is_duration() {
            Duration::try_from_secs_f64(v / 1000.0)
                .map_or_else(|_| format!("{v} ms"), warden_config::format_duration)
        } else {
            format!("{v:.2}")
        }
    }
}

/// The safe range of a parameter for a server, from its configured value:
///
/// - `timeout`: ½ × to 4 × the configured value, within 1 s – 10 min;
/// - `health.interval`: ¼ × to 4 × , within 1 s – 5 min;
/// - `health.timeout`: ½ × to 4 ×, within 500 ms – 10 s and at most half the hang timeout;
/// - `weight`: 0.1 – 1.
///
/// The configured value itself is always inside.
pub(crate) fn bounds(param: Param, spec: &ServerSpec) -> (f64, f64) {
    let base = param.base(spec);
    let (lo, hi) = match param {
        Param::CallTimeout => ((base / 2.0).max(1_000.0), (base * 4.0).min(600_000.0)),
        Param::ProbeInterval => ((base / 4.0).max(1_000.0), (base * 4.0).min(300_000.0)),
        // Shorter than the hang timeout, as the config requires.
        Param::ProbeTimeout => (
            (base / 2.0).max(500.0),
            (base * 4.0).min(10_000.0).min(spec.health.hang_timeout.as_secs_f64() * 1000.0 / 2.0),
        ),
        Param::Weight => (0.1, 1.0),
    };
    (lo.min(base), hi.max(base))
}

/// A change worth making, with its evidence.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Proposal {
    pub(crate) server: String,
    pub(crate) instance: Option<u32>,
    pub(crate) param: Param,
    pub(crate) from: f64,
    pub(crate) to: f64,
    pub(crate) rule: &'static str,
    pub(crate) reason: String,
    pub(crate) evidence: Value,
}

impl Proposal {
    fn to_json(&self) -> Value {
        json!({
            "server": self.server, "instance": self.instance, "parameter": self.param.name(),
            "unit": self.param.unit(), "from": self.from, "to": self.to,
            "from_text": self.param.show(self.from), "to_text": self.param.show(self.to),
            "rule": self.rule, "reason": self.reason, "evidence": self.evidence,
        })
    }
}

/// What the rules read: each server's spec and overrides, and the period's records.
pub(crate) struct Evidence<'a> {
    pub(crate) servers: Vec<(&'a ServerSpec, Tuned)>,
    pub(crate) samples: &'a [InstanceSamples],
    pub(crate) usage: &'a UsageStats,
    pub(crate) failures: &'a FailureStats,
    pub(crate) probe_timeouts: &'a [ProbeTimeouts],
}

fn instance_index(instance: &str) -> Option<u32> {
    instance.rsplit_once('#')?.1.parse().ok()
}

/// The learned proposals (pure; the table in the module docs).
pub(crate) fn learn(e: &Evidence<'_>) -> Vec<Proposal> {
    let mut out = Vec::new();
    for (spec, tuned) in &e.servers {
        let name = spec.name.as_str();
        let mut propose = |param: Param, instance, to: f64, rule, reason: String, evidence| {
            if !param.applies_to(spec) {
                return;
            }
            let from = param.current(spec, tuned, instance);
            let (lo, hi) = bounds(param, spec);
            let to = to.clamp(lo, hi);
            if (to - from).abs() > 1e-9 {
                out.push(Proposal {
                    server: name.to_owned(),
                    instance,
                    param,
                    from,
                    to,
                    rule,
                    reason,
                    evidence,
                });
            }
        };

        // The call timeout: raised when calls come close to it.
        let timeout = Param::CallTimeout.current(spec, tuned, None);
        let slowest_call = e
            .usage
            .tools
            .iter()
            .filter(|t| t.server == name && t.calls >= SLOW_CALL_MIN_CALLS)
            .filter_map(|t| t.max_ms)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let worst_p95 = e
            .samples
            .iter()
            .filter(|s| s.server == name)
            .filter_map(|s| s.p95_ms_max)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let near = slowest_call.is_some_and(|m| m >= SLOW_CALL_SHARE * timeout)
            || worst_p95.is_some_and(|p| p >= SLOW_P95_SHARE * timeout);
        if near {
            let slowest = slowest_call.unwrap_or(0.0).max(worst_p95.unwrap_or(0.0));
            let to = (2.0 * slowest / 1000.0).ceil() * 1000.0;
            if to > timeout {
                propose(
                    Param::CallTimeout,
                    None,
                    to,
                    "slow_calls",
                    format!(
                        "calls came within {:.0} % of the {} timeout",
                        100.0 * (1.0 - slowest / timeout).max(0.0),
                        Param::CallTimeout.show(timeout)
                    ),
                    json!({ "slowest_call_ms": slowest_call, "p95_ms_max": worst_p95, "timeout_ms": timeout }),
                );
            }
        }

        // The probe timeout: doubled after repeated probe timeouts.
        let timeouts: u64 =
            e.probe_timeouts.iter().filter(|p| p.server == name).map(|p| p.count).sum();
        if timeouts >= PROBE_TIMEOUTS_TO_RAISE {
            let cur = Param::ProbeTimeout.current(spec, tuned, None);
            propose(
                Param::ProbeTimeout,
                None,
                cur * 2.0,
                "probe_timeouts",
                format!("{timeouts} probes timed out in the period"),
                json!({ "probe_timeouts": timeouts, "probe_timeout_ms": cur }),
            );
        }

        // The probe interval: halved for a server that keeps failing.
        let incidents = |instance: Option<&str>| -> u64 {
            e.failures
                .by_instance
                .iter()
                .filter(|o| o.server == name)
                .filter(|o| instance.is_none() || o.instance.as_deref() == instance)
                .map(|o| o.count)
                .sum()
        };
        let total = incidents(None);
        if total >= INCIDENTS_TO_PROBE_SOONER {
            let cur = Param::ProbeInterval.current(spec, tuned, None);
            propose(
                Param::ProbeInterval,
                None,
                cur / 2.0,
                "frequent_failures",
                format!(
                    "{total} incidents in the period: probe more often to find the next sooner"
                ),
                json!({ "incidents": total, "probe_interval_ms": cur }),
            );
        }

        // Weights: replicas that are slower or fail more than their siblings.
        if spec.instance_count() >= 2 {
            let mine: Vec<&InstanceSamples> = e
                .samples
                .iter()
                .filter(|s| s.server == name && s.samples >= MIN_SAMPLES_FOR_WEIGHT)
                .collect();
            let fastest = mine
                .iter()
                .filter_map(|s| s.p50_ms_avg)
                .filter(|p| *p > 0.0)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
            let counts: Vec<(u32, u64)> = (0..spec.instance_count())
                .filter(|i| !spec.is_standby(*i))
                .map(|i| (i, incidents(Some(&InstanceId::new(name, i).to_string()))))
                .collect();
            let calmest = counts.iter().map(|(_, n)| *n).min().unwrap_or(0);
            for (i, n) in &counts {
                let p50 = mine
                    .iter()
                    .find(|s| instance_index(&s.instance) == Some(*i))
                    .and_then(|s| s.p50_ms_avg);
                let by_latency = match (p50, fastest) {
                    (Some(p), Some(f)) if p >= SLOW_REPLICA_RATIO * f => f / p,
                    _ => 1.0,
                };
                let by_failures =
                    if *n >= INCIDENTS_TO_DEWEIGHT && calmest == 0 { 0.5 } else { 1.0 };
                let w = ((by_latency.min(by_failures) / WEIGHT_STEP).round() * WEIGHT_STEP)
                    .clamp(0.1, 1.0);
                let cur = Param::Weight.current(spec, tuned, Some(*i));
                if (w - cur).abs() >= WEIGHT_STEP - 1e-9 {
                    let reason = if w >= 1.0 {
                        "no longer slower or failing more than its siblings".to_owned()
                    } else if by_latency <= by_failures {
                        format!(
                            "p50 {:.1} ms against the fastest sibling's {:.1} ms",
                            p50.unwrap_or(0.0),
                            fastest.unwrap_or(0.0)
                        )
                    } else {
                        format!("{n} incidents while a sibling had none")
                    };
                    propose(
                        Param::Weight,
                        Some(*i),
                        w,
                        "replica_balance",
                        reason,
                        json!({ "p50_ms_avg": p50, "fastest_p50_ms_avg": fastest, "incidents": n, "sibling_min_incidents": calmest }),
                    );
                }
            }
        }
    }
    out
}

/// Applies, sets and reverts changes; shared by the API, the MCP tool and the auto loop.
#[derive(Clone)]
pub(crate) struct Tuner {
    reports: Reports,
    bus: Arc<EventBus>,
    settings: TuningSettings,
    /// One change at a time: reading the value in force and recording the change are one step.
    lock: Arc<tokio::sync::Mutex<()>>,
}

fn database(e: impl std::fmt::Display) -> Refusal {
    (StatusCode::SERVICE_UNAVAILABLE, format!("the database did not answer, nothing changed: {e}"))
}

fn row_json(r: &TuningRow) -> Value {
    let p = Param::parse(&r.parameter);
    let show = |v: f64| p.map(|p| p.show(v));
    json!({
        "id": r.id, "at": r.at, "server": r.server, "instance": r.instance,
        "parameter": r.parameter, "unit": p.map(Param::unit),
        "configured": r.base_value, "from": r.old_value, "to": r.new_value,
        "from_text": show(r.old_value), "to_text": show(r.new_value),
        "rule": r.rule, "reason": r.reason, "evidence": r.evidence, "source": r.source,
        "in_force": r.reverted_at.is_none(),
        "reverted_at": r.reverted_at, "reverted_reason": r.reverted_reason,
    })
}

impl Tuner {
    pub(crate) fn new(reports: Reports, bus: Arc<EventBus>, settings: TuningSettings) -> Self {
        Self { reports, bus, settings, lock: Arc::default() }
    }

    fn handle(&self, server: &str) -> Option<&ServerHandle> {
        self.reports.servers.iter().find(|h| h.spec.name == server)
    }

    fn emit(&self, row: &TuningRow, from: f64, to: f64, reverted: bool, reason: &str) {
        let instance = row.instance.map(|i| InstanceId::new(row.server.as_str(), i));
        self.bus.emit(Event::new(
            instance,
            TraceId::random(),
            EventKind::TuningChanged {
                change_id: row.id,
                server: row.server.clone(),
                parameter: row.parameter.clone(),
                from,
                to,
                reverted,
                reason: reason.to_owned(),
            },
        ));
    }

    fn range(&self, since: Option<&str>, server: Option<&str>) -> Result<ReportRange, Refusal> {
        let lookback = format!("{}s", self.settings.lookback.as_secs());
        self.reports.range(Some(since.unwrap_or(&lookback)), None, server, warden_core::now())
    }

    /// What the rules would change now.
    pub(crate) async fn proposals(&self, r: &ReportRange) -> Result<Vec<Proposal>, Refusal> {
        self.reports.usage.flush().await;
        let store = &self.reports.store;
        let usage = store.tool_usage(r).await.map_err(database)?;
        let samples = store.instance_samples(r).await.map_err(database)?;
        let failures = store.failure_stats(r).await.map_err(database)?;
        let probe_timeouts = store.probe_timeouts(r).await.map_err(database)?;
        let servers = self
            .reports
            .servers
            .iter()
            .filter(|h| r.server.as_ref().is_none_or(|s| *s == h.spec.name) && !h.spec.disabled)
            .map(|h| (&*h.spec, h.tuned()))
            .collect();
        Ok(learn(&Evidence {
            servers,
            samples: &samples,
            usage: &usage,
            failures: &failures,
            probe_timeouts: &probe_timeouts,
        }))
    }

    /// Records and applies one change (the caller holds the lock).
    async fn change(&self, p: &Proposal, source: &str) -> Result<TuningRow, Refusal> {
        let h = self
            .handle(&p.server)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no server named {:?}", p.server)))?;
        let at = chrono::Utc::now();
        let change = NewTuning {
            at,
            server: &p.server,
            instance: p.instance,
            parameter: p.param.name(),
            base_value: p.param.base(&h.spec),
            old_value: p.from,
            new_value: p.to,
            rule: p.rule,
            reason: &p.reason,
            evidence: &p.evidence,
            source,
        };
        let id = self.reports.store.record_tuning(&change).await.map_err(database)?;
        let mut tuned = h.tuned();
        p.param.set(&h.spec, &mut tuned, p.instance, p.to);
        h.set_tuned(tuned);
        let row = self
            .reports
            .store
            .tuning_change(id)
            .await
            .map_err(database)?
            .ok_or_else(|| database("the change just recorded is missing"))?;
        self.emit(&row, p.from, p.to, false, &p.reason);
        Ok(row)
    }

    /// Applies the learned proposals (all, or one server's); `dry_run` only lists them.
    pub(crate) async fn apply(
        &self,
        since: Option<&str>,
        server: Option<&str>,
        dry_run: bool,
        source: &str,
    ) -> Result<Value, Refusal> {
        let r = self.range(since, server)?;
        let _one = self.lock.lock().await;
        let proposals = self.proposals(&r).await?;
        if dry_run {
            let list: Vec<Value> = proposals.iter().map(Proposal::to_json).collect();
            return Ok(
                json!({ "dry_run": true, "since": r.since, "proposals": list, "applied": [] }),
            );
        }
        let mut applied = Vec::new();
        for p in &proposals {
            applied.push(row_json(&self.change(p, source).await?));
        }
        Ok(json!({ "dry_run": false, "since": r.since, "applied": applied,
                   "note": if applied.is_empty() { "nothing to change: no rule matched the period's records" } else { "" } }))
    }

    /// An operator's value for one parameter, inside its bounds.
    pub(crate) async fn set(
        &self,
        server: &str,
        instance: Option<u32>,
        parameter: &str,
        value: &Value,
        source: &str,
    ) -> Result<TuningRow, Refusal> {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        let h = self
            .handle(server)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no server named {server:?}")))?;
        let param = Param::parse(parameter).ok_or_else(|| {
            let known: Vec<&str> = Param::ALL.iter().map(|p| p.name()).collect();
            bad(format!("parameter: {parameter:?} is not tunable ({})", known.join(", ")))
        })?;
        if !param.applies_to(&h.spec) {
            return Err(bad(format!(
                "parameter: {server} is an integration ({}), not an MCP server: it has no {}",
                h.spec.kind(),
                if param == Param::Weight { "balancing" } else { "calls" }
            )));
        }
        let instance = match (param, instance) {
            (Param::Weight, Some(i)) if i < h.spec.instance_count() => Some(i),
            (Param::Weight, Some(i)) => {
                return Err(bad(format!("instance: {server} has no instance {i}")))
            }
            (Param::Weight, None) => return Err(bad("instance: a weight is per instance".into())),
            (_, Some(_)) => return Err(bad(format!("instance: {} is server-wide", param.name()))),
            (_, None) => None,
        };
        let v = match value {
            Value::Number(n) if !param.is_duration() => n.as_f64(),
            Value::String(s) if param.is_duration() => {
                warden_config::parse_duration(s).ok().map(|d| d.as_secs_f64() * 1000.0)
            }
            Value::Number(n) if param.is_duration() => n.as_f64(),
            _ => None,
        }
        .ok_or_else(|| {
            bad(format!(
                "value: {value} is not a {}",
                if param.is_duration() { "duration (\"30s\") or milliseconds" } else { "number" }
            ))
        })?;
        let (lo, hi) = bounds(param, &h.spec);
        if !(lo..=hi).contains(&v) {
            return Err(bad(format!(
                "value: {} is outside the safe range {} – {} for {server}",
                param.show(v),
                param.show(lo),
                param.show(hi)
            )));
        }
        let _one = self.lock.lock().await;
        let from = param.current(&h.spec, &h.tuned(), instance);
        let p = Proposal {
            server: server.to_owned(),
            instance,
            param,
            from,
            to: v,
            rule: "operator",
            reason: format!("set by hand to {}", param.show(v)),
            evidence: json!({}),
        };
        self.change(&p, source).await
    }

    /// Undoes change `id`: its parameter goes back to the value before it.
    pub(crate) async fn revert(&self, id: i64, source: &str) -> Result<TuningRow, Refusal> {
        let _one = self.lock.lock().await;
        let store = &self.reports.store;
        let row = store
            .tuning_change(id)
            .await
            .map_err(database)?
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no tuning change {id}")))?;
        if row.reverted_at.is_some() {
            return Err((StatusCode::CONFLICT, format!("change {id} is already reverted")));
        }
        let active = store.tuning_changes(Some(&row.server), true, 0).await.map_err(database)?;
        if let Some(newer) = active
            .iter()
            .find(|r| r.id > id && r.parameter == row.parameter && r.instance == row.instance)
        {
            return Err((
                StatusCode::CONFLICT,
                format!(
                    "change {} to the same parameter came after it: revert that first",
                    newer.id
                ),
            ));
        }
        self.undo(&row, &format!("reverted by {source}")).await?;
        store.tuning_change(id).await.map_err(database)?.ok_or_else(|| database("row vanished"))
    }

    /// Marks `row` reverted and puts its old value back (the caller holds the lock).
    async fn undo(&self, row: &TuningRow, why: &str) -> Result<(), Refusal> {
        self.reports
            .store
            .revert_tuning(&[row.id], why, chrono::Utc::now())
            .await
            .map_err(database)?;
        if let (Some(h), Some(param)) = (self.handle(&row.server), Param::parse(&row.parameter)) {
            let mut tuned = h.tuned();
            let now = param.current(&h.spec, &tuned, row.instance);
            param.set(&h.spec, &mut tuned, row.instance, row.old_value);
            h.set_tuned(tuned);
            self.emit(row, now, row.old_value, true, why);
        }
        Ok(())
    }

    /// Reverts every change in force (of one server), newest first.
    pub(crate) async fn reset(
        &self,
        server: Option<&str>,
        source: &str,
    ) -> Result<Vec<i64>, Refusal> {
        if let Some(s) = server {
            self.handle(s)
                .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no server named {s:?}")))?;
        }
        let _one = self.lock.lock().await;
        let active = self.reports.store.tuning_changes(server, true, 0).await.map_err(database)?;
        let mut done = Vec::new();
        for row in &active {
            self.undo(row, &format!("reset by {source}")).await?;
            done.push(row.id);
        }
        Ok(done)
    }

    /// At start: puts back the changes in force whose configured value is unchanged; marks
    /// the others reverted. Returns how many parameters were restored.
    pub(crate) async fn restore(&self) -> Result<usize, String> {
        let _one = self.lock.lock().await;
        let store = &self.reports.store;
        let active = store.tuning_changes(None, true, 0).await.map_err(|e| e.to_string())?;
        // Newest first: the first row of each parameter holds the value in force.
        let mut newest: BTreeMap<(String, Option<u32>, String), &TuningRow> = BTreeMap::new();
        for row in &active {
            newest.entry((row.server.clone(), row.instance, row.parameter.clone())).or_insert(row);
        }
        let mut restored = 0;
        for ((server, instance, parameter), row) in newest {
            let chain: Vec<i64> = active
                .iter()
                .filter(|r| {
                    r.server == server && r.instance == instance && r.parameter == parameter
                })
                .map(|r| r.id)
                .collect();
            let why = match (self.handle(&server), Param::parse(&parameter)) {
                (Some(h), Some(param)) => {
                    let base = param.base(&h.spec);
                    let (lo, hi) = bounds(param, &h.spec);
                    if instance.is_some_and(|i| i >= h.spec.instance_count()) {
                        Some("the instance is no longer configured".to_owned())
                    } else if (base - row.base_value).abs() > 1e-9 {
                        Some(format!(
                            "the config changed ({} → {})",
                            param.show(row.base_value),
                            param.show(base)
                        ))
                    } else if !(lo..=hi).contains(&row.new_value) {
                        Some("outside the safe range".to_owned())
                    } else {
                        let mut tuned = h.tuned();
                        param.set(&h.spec, &mut tuned, instance, row.new_value);
                        h.set_tuned(tuned);
                        restored += 1;
                        None
                    }
                }
                _ => Some("the server is no longer configured".to_owned()),
            };
            if let Some(why) = why {
                tracing::info!(server, parameter, "a tuning change no longer applies: {why}");
                store
                    .revert_tuning(&chain, &why, chrono::Utc::now())
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(restored)
    }

    /// The values in force, the proposals and the history.
    pub(crate) async fn overview(
        &self,
        since: Option<&str>,
        server: Option<&str>,
    ) -> Result<Value, Refusal> {
        let r = self.range(since, server)?;
        let mut servers = Vec::new();
        for h in self.reports.servers.iter().filter(|h| server.is_none_or(|s| s == h.spec.name)) {
            let tuned = h.tuned();
            let mut params = Vec::new();
            for param in Param::ALL.into_iter().filter(|p| p.applies_to(&h.spec)) {
                let instances: Vec<Option<u32>> = if param == Param::Weight {
                    (0..h.spec.instance_count()).map(Some).collect()
                } else {
                    vec![None]
                };
                for instance in instances {
                    let (lo, hi) = bounds(param, &h.spec);
                    let value = param.current(&h.spec, &tuned, instance);
                    params.push(json!({
                        "parameter": param.name(), "instance": instance, "unit": param.unit(),
                        "configured": param.base(&h.spec), "value": value,
                        "configured_text": param.show(param.base(&h.spec)),
                        "value_text": param.show(value), "tuned": (value - param.base(&h.spec)).abs() > 1e-9,
                        "min": lo, "max": hi,
                    }));
                }
            }
            servers.push(json!({ "server": h.spec.name, "parameters": params }));
        }
        let _one = self.lock.lock().await;
        let proposals = self.proposals(&r).await?;
        let history = self
            .reports
            .store
            .tuning_changes(server, false, HISTORY_LIMIT)
            .await
            .map_err(database)?;
        Ok(json!({
            "auto": self.settings.auto,
            "since": r.since,
            "servers": servers,
            "proposals": proposals.iter().map(Proposal::to_json).collect::<Vec<_>>(),
            "history": history.iter().map(row_json).collect::<Vec<_>>(),
        }))
    }

    /// With `warden.tuning.auto`: applies what was learned every `interval`.
    pub(crate) fn spawn_auto(&self, stop: CancellationToken) {
        if !self.settings.auto {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.settings.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err((_, e)) = this.apply(None, None, false, "auto").await {
                    tracing::warn!("automatic tuning did not run: {e}");
                }
            }
        });
    }
}

#[derive(Deserialize)]
struct Query {
    since: Option<String>,
    server: Option<String>,
}

pub(crate) fn routes(tuner: Tuner) -> Router {
    Router::new()
        .route("/api/tuning", get(overview))
        .route("/api/tuning/apply", post(apply))
        .route("/api/tuning/set", post(set))
        .route("/api/tuning/reset", post(reset))
        .route("/api/tuning/{id}/revert", post(revert))
        .with_state(tuner)
}

fn answer(r: Result<Value, Refusal>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err((status, message)) => error(status, message),
    }
}

fn body(bytes: &[u8]) -> Result<Value, Refusal> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err((StatusCode::BAD_REQUEST, "the body must be a JSON object".into()));
    }
    Ok(v)
}

fn opt_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, Refusal> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err((StatusCode::BAD_REQUEST, format!("{key}: {other} is not a string"))),
    }
}

fn source(v: &Value) -> Result<&str, Refusal> {
    match opt_str(v, "source")? {
        None => Ok("api"),
        Some(s @ ("api" | "cli" | "mcp")) => Ok(s),
        Some(s) => Err((StatusCode::BAD_REQUEST, format!("source: {s:?} is not api, cli or mcp"))),
    }
}

/// `GET /api/tuning?since=&server=`.
async fn overview(AxState(t): AxState<Tuner>, Params(q): Params<Query>) -> Response {
    answer(t.overview(q.since.as_deref(), q.server.as_deref()).await)
}

/// `POST /api/tuning/apply` `{server?, since?, dry_run?}`.
async fn apply(AxState(t): AxState<Tuner>, bytes: axum::body::Bytes) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let dry_run = match v.get("dry_run") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(o) => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("dry_run: {o} is not true or false"),
                    ))
                }
            };
            t.apply(opt_str(&v, "since")?, opt_str(&v, "server")?, dry_run, source(&v)?).await
        }
        .await,
    )
}

/// `POST /api/tuning/set` `{server, parameter, value, instance?}`.
async fn set(AxState(t): AxState<Tuner>, bytes: axum::body::Bytes) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_owned());
            let server = opt_str(&v, "server")?.ok_or_else(|| bad("server: required"))?;
            let parameter = opt_str(&v, "parameter")?.ok_or_else(|| bad("parameter: required"))?;
            let value = v.get("value").ok_or_else(|| bad("value: required"))?;
            let instance = match v.get("instance") {
                None | Some(Value::Null) => None,
                Some(i) => Some(
                    i.as_u64()
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| bad("instance: give the instance's index (0, 1, …)"))?,
                ),
            };
            let row = t.set(server, instance, parameter, value, source(&v)?).await?;
            Ok(row_json(&row))
        }
        .await,
    )
}

/// `POST /api/tuning/reset` `{server?}`.
async fn reset(AxState(t): AxState<Tuner>, bytes: axum::body::Bytes) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let reverted = t.reset(opt_str(&v, "server")?, source(&v)?).await?;
            Ok(json!({ "reverted": reverted }))
        }
        .await,
    )
}

/// `POST /api/tuning/{id}/revert`.
async fn revert(
    AxState(t): AxState<Tuner>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let id: i64 = id
                .parse()
                .map_err(|_| (StatusCode::BAD_REQUEST, format!("id: {id:?} is not a change id")))?;
            Ok(row_json(&t.revert(id, source(&v)?).await?))
        }
        .await,
    )
}

#[cfg(test)]
mod tests;
