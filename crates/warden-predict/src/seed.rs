//! What one instance has learnt about its server's normal, passed to a new instance of the same
//! server (a replica, a standby, the same server after Warden restarted) so it is watched from
//! its first sample instead of after the warm-up. Only baselines travel: trends, alarms and RSS
//! history describe a process, not the server.

use serde::{Deserialize, Serialize};

/// The baselines of both signals; either may be missing (a signal that never armed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Seed {
    pub latency: Option<LatencySeed>,
    pub errors: Option<ErrorSeed>,
}

/// The latency baseline, in log seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySeed {
    /// Per-second values: median and robust σ.
    pub second_median: f64,
    pub second_sigma: f64,
    /// Batch means: Winsorized mean and long-run σ.
    pub batch_mean: f64,
    pub batch_sigma: f64,
}

/// The failure-ratio baseline.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorSeed {
    pub ratio: f64,
    pub sigma: f64,
}

impl LatencySeed {
    /// Finite values, positive σ, a median and mean a latency could have (1 µs .. 1e6 s).
    pub(crate) fn is_valid(&self) -> bool {
        let log_range = (1e-6f64).ln()..=(1e6f64).ln();
        log_range.contains(&self.second_median)
            && log_range.contains(&self.batch_mean)
            && [self.second_sigma, self.batch_sigma].iter().all(|s| s.is_finite() && *s > 0.0)
    }
}

impl ErrorSeed {
    pub(crate) fn is_valid(&self) -> bool {
        (0.0..=1.0).contains(&self.ratio) && self.sigma.is_finite() && self.sigma >= 0.0
    }
}

impl Seed {
    /// Every part present is a baseline (and at least one is present).
    pub fn is_valid(&self) -> bool {
        (self.latency.is_some() || self.errors.is_some())
            && self.latency.is_none_or(|l| l.is_valid())
            && self.errors.is_none_or(|e| e.is_valid())
    }
}
