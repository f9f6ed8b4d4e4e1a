//! What the predictor says about one instance at one moment; serializable for events and APIs.

use serde::{Deserialize, Serialize};

/// The signal an alarm is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Response time (probes and calls), in seconds; the detectors work on its logarithm.
    Latency,
    /// Failed / all outcomes per batch.
    ErrorRatio,
    /// Resident set size of the child process, in bytes.
    Rss,
}

impl Signal {
    /// The name used in serialized forms: `latency`, `error_ratio`, `rss`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::ErrorRatio => "error_ratio",
            Self::Rss => "rss",
        }
    }
}

/// The state of every detector at `at`. Times are seconds on the caller's clock.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub at: f64,
    /// The latency detectors have their baseline (warm-up done). Before that nothing but the
    /// RSS forecast, which needs no baseline, can alarm.
    pub armed: bool,
    /// A sustained upward drift (CUSUM) ⇒ `warning`.
    pub drift: Option<Drift>,
    /// A hard limit forecast to be crossed within the horizon ⇒ `PredictedFailure`.
    pub predicted: Option<Prediction>,
    /// The memory limit forecast to be reached within the RSS horizon.
    pub rss_exhaustion: Option<Exhaustion>,
}

impl Assessment {
    /// No alarm of any kind.
    pub fn is_quiet(&self) -> bool {
        self.drift.is_none() && self.predicted.is_none() && self.rss_exhaustion.is_none()
    }
}

/// A CUSUM alarm. When both signals drift, the one raised first.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub signal: Signal,
    /// Start of the batch where the CUSUM left zero: the estimated onset.
    pub since: f64,
    pub raised_at: f64,
    /// The CUSUM statistic in σ of batch means (held at h while raised).
    pub cusum: f64,
    /// The baseline median: seconds for latency, a ratio for errors.
    pub baseline: f64,
    /// The last batch: its geometric mean latency in seconds, or its failure ratio.
    pub recent: f64,
}

/// A Holt forecast that crosses a hard limit within the horizon. When both signals predict,
/// the one with the nearer crossing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub signal: Signal,
    /// Seconds from `Assessment::at` until the smoothed level reaches the limit; 0 if it has;
    /// `None` if the trend has turned away while the alarm waits to clear.
    pub eta_seconds: Option<f64>,
    /// The limit: the call timeout in seconds, or the breaker's failure ratio.
    pub limit: f64,
    /// The smoothed level now, in the same unit.
    pub level: f64,
    /// The level's change per second, in the same unit (for latency: the log-space trend times
    /// the level, i.e. seconds of latency gained per second).
    pub trend: f64,
    pub raised_at: f64,
}

/// A least squares line through the recent RSS samples that reaches the memory limit soon.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exhaustion {
    /// Seconds from the last RSS sample until the line reaches the limit; 0 if it has; `None`
    /// if the slope has turned away while the alarm waits to clear.
    pub eta_seconds: Option<f64>,
    pub limit_bytes: u64,
    /// The line's value at the last sample.
    pub fitted_bytes: f64,
    pub slope_bytes_per_second: f64,
    pub raised_at: f64,
}

impl Exhaustion {
    /// The same forecast in the shape of a [`Prediction`] (signal `rss`, bytes), for callers
    /// that treat every time-to-limit alike.
    pub fn as_prediction(&self) -> Prediction {
        Prediction {
            signal: Signal::Rss,
            eta_seconds: self.eta_seconds,
            limit: self.limit_bytes as f64,
            level: self.fitted_bytes,
            trend: self.slope_bytes_per_second,
            raised_at: self.raised_at,
        }
    }
}
