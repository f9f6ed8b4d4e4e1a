//! The learning rules, pure: what the store recorded ([`Evidence`]) in, proposed changes out,
//! each inside its parameter's safe [`bounds`]. No I/O; the [`super::Tuner`] applies them.

use std::time::Duration;

use serde_json::{json, Value};
use warden_config::ServerSpec;
use warden_core::InstanceId;
use warden_store::{FailureStats, InstanceSamples, ProbeTimeouts, UsageStats};
use warden_supervisor::Tuned;

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
pub(super) const HISTORY_LIMIT: u32 = 100;

/// A tunable parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Param {
    CallTimeout,
    ProbeInterval,
    ProbeTimeout,
    Weight,
}

impl Param {
    pub const ALL: [Param; 4] =
        [Param::CallTimeout, Param::ProbeInterval, Param::ProbeTimeout, Param::Weight];

    pub fn name(self) -> &'static str {
        match self {
            Param::CallTimeout => "timeout",
            Param::ProbeInterval => "health.interval",
            Param::ProbeTimeout => "health.timeout",
            Param::Weight => "weight",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    pub fn is_duration(self) -> bool {
        self != Param::Weight
    }

    pub fn unit(self) -> &'static str {
        if self.is_duration() {
            "ms"
        } else {
            "weight"
        }
    }

    /// The configured value (ms for durations).
    pub fn base(self, spec: &ServerSpec) -> f64 {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match self {
            Param::CallTimeout => ms(spec.timeout),
            Param::ProbeInterval => ms(spec.health.interval),
            Param::ProbeTimeout => ms(spec.health.timeout),
            Param::Weight => 1.0,
        }
    }

    /// The value in force.
    pub fn current(self, spec: &ServerSpec, tuned: &Tuned, instance: Option<u32>) -> f64 {
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
    pub fn set(self, spec: &ServerSpec, tuned: &mut Tuned, instance: Option<u32>, value: f64) {
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
    pub fn applies_to(self, spec: &ServerSpec) -> bool {
        !(spec.is_check() && matches!(self, Param::CallTimeout | Param::Weight))
    }

    pub fn show(self, v: f64) -> String {
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
pub fn bounds(param: Param, spec: &ServerSpec) -> (f64, f64) {
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
pub struct Proposal {
    pub server: String,
    pub instance: Option<u32>,
    pub param: Param,
    pub from: f64,
    pub to: f64,
    pub rule: &'static str,
    pub reason: String,
    pub evidence: Value,
}

impl Proposal {
    pub fn to_json(&self) -> Value {
        json!({
            "server": self.server, "instance": self.instance, "parameter": self.param.name(),
            "unit": self.param.unit(), "from": self.from, "to": self.to,
            "from_text": self.param.show(self.from), "to_text": self.param.show(self.to),
            "rule": self.rule, "reason": self.reason, "evidence": self.evidence,
        })
    }
}

/// What the rules read: each server's spec and overrides, and the period's records.
pub struct Evidence<'a> {
    pub servers: Vec<(&'a ServerSpec, Tuned)>,
    pub samples: &'a [InstanceSamples],
    pub usage: &'a UsageStats,
    pub failures: &'a FailureStats,
    pub probe_timeouts: &'a [ProbeTimeouts],
}

fn instance_index(instance: &str) -> Option<u32> {
    instance.rsplit_once('#')?.1.parse().ok()
}

/// The learned proposals (pure; the table in the module docs).
pub fn learn(e: &Evidence<'_>) -> Vec<Proposal> {
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
