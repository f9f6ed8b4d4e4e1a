//! Alerting, as pure logic: rules evaluated into pending → firing → resolved alerts
//! ([`Evaluator`]), the built-in rules and SLO burn rates computed from what the supervisor
//! knows ([`Builtins`]), and an Alertmanager-style [`Dispatcher`] (silences, inhibition,
//! grouping, `group_wait` / `group_interval` / `repeat_interval`) that decides which
//! notifications go out. Payloads in Alertmanager's formats come from [`payload`].
//!
//! Nothing here sleeps, spawns or reads a clock: every call takes a [`Now`]. The app owns the
//! task, the store and the network (warden-ops/src/alerting/).

mod builtin;
mod dispatch;
mod eval;
pub mod payload;
mod series;
mod slo;

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use builtin::{
    Drift, InstanceFacts, Prediction, RuleSet, ServerFacts, CRASH_LOOP_RESTARTS, CRASH_LOOP_WINDOW,
    PREDICTION_HORIZON,
};
pub use dispatch::{DispatchConfig, Dispatcher, Matcher, Notification, Silence, INHIBITING_RULE};
pub use eval::{Active, Evaluator, RuleDef, Transition};
pub use series::{parse_exposition, Series};
pub use slo::{BurnWindow, SloWindows, MIN_EVENTS, SLO_WINDOWS};
pub use warden_config::Severity;

/// Label names to values, sorted (the identity of an alert).
pub type Labels = BTreeMap<String, String>;

/// The current time, both ways: `at` measures durations (monotonic), `wall` stamps payloads.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub at: Instant,
    pub wall: DateTime<Utc>,
}

impl Now {
    /// This instant.
    pub fn current() -> Self {
        Self { at: Instant::now(), wall: Utc::now() }
    }

    /// `self` moved forward by `d` (tests and simulations).
    pub fn after(self, d: std::time::Duration) -> Self {
        Self {
            at: self.at + d,
            wall: self.wall + chrono::Duration::from_std(d).unwrap_or_default(),
        }
    }
}

/// Whether an alert is still firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert: a rule firing for one label set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// The rule's name (also the `alertname` label).
    pub name: String,
    pub status: AlertStatus,
    pub severity: Severity,
    /// `alertname`, `severity`, the series' labels (`server`, `server_instance`, …) and the
    /// rule's labels.
    pub labels: Labels,
    /// `summary` (and `description` when there is more to say).
    pub annotations: Labels,
    /// The value that made the condition true, at the last evaluation where it was.
    pub value: f64,
    /// When the condition first held (the start of `pending`).
    pub starts_at: DateTime<Utc>,
    /// When it resolved (`None` while firing).
    pub ends_at: Option<DateTime<Utc>>,
    /// 16 hex digits: FNV-1a 64 over the sorted labels, as Alertmanager computes it.
    pub fingerprint: String,
}

/// Alertmanager's label-set fingerprint: FNV-1a 64 over `name 0xff value 0xff` for every label
/// in name order.
pub fn fingerprint(labels: &Labels) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        eat(k.as_bytes());
        eat(&[0xff]);
        eat(v.as_bytes());
        eat(&[0xff]);
    }
    format!("{h:016x}")
}

/// The JSON stamp Alertmanager uses (`2026-11-21T10:00:00.000Z`).
pub(crate) fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
