//! Run-time overrides of a server's policy ("tuning"): the call timeout, the probe interval
//! and timeout, and each instance's balancing weight. Set by `warden-ops`' tuning (learned or
//! by hand, always within bounds and recorded there); read by every instance task (probes) and
//! by the gateway (deadlines, balancing) through a `watch` channel, so a change takes effect at
//! the next probe or call without a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use warden_config::{HealthPolicy, ServerSpec};

/// What differs from the config now (`None` / absent: the configured value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuned {
    pub call_timeout: Option<Duration>,
    pub probe_interval: Option<Duration>,
    pub probe_timeout: Option<Duration>,
    /// Balancing weight per instance index, in (0, 1]; absent = 1.
    pub weights: BTreeMap<u32, f64>,
}

impl Tuned {
    /// The server's health policy with the overrides applied.
    pub fn health(&self, base: &HealthPolicy) -> HealthPolicy {
        let mut p = base.clone();
        if let Some(i) = self.probe_interval {
            p.interval = i;
        }
        if let Some(t) = self.probe_timeout {
            p.timeout = t;
        }
        p
    }

    /// The deadline of one call to the server.
    pub fn call_timeout(&self, spec: &ServerSpec) -> Duration {
        self.call_timeout.unwrap_or(spec.timeout)
    }

    /// Instance `index`'s balancing weight.
    pub fn weight(&self, index: u32) -> f64 {
        self.weights.get(&index).copied().unwrap_or(1.0)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
