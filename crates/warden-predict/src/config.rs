//! The caller's hard limits and the detectors' tuning (defaults: research §10.8).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The hard limits a forecast is measured against. They come from the instance's policy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// A call that takes this long fails: the latency forecast's limit.
    pub call_timeout: Duration,
    /// The failure ratio at which the circuit breaker opens (0..1; Warden's breaker: 0.5).
    pub error_ratio_limit: f64,
    /// The child's memory limit; without one there is no RSS forecast.
    pub memory_limit_bytes: Option<u64>,
}

impl Limits {
    /// `call_timeout`, the default breaker threshold (0.5) and no memory limit.
    pub fn new(call_timeout: Duration) -> Self {
        Self { call_timeout, error_ratio_limit: 0.5, memory_limit_bytes: None }
    }
}

/// Tuning. Every time is in seconds. The defaults are the research's (§7.3, §10.8); where this
/// crate adds a number of its own, the field says why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictorConfig {
    /// Batch length for the CUSUM (and the error-ratio batches). Batch means absorb most of the
    /// autocorrelation that makes a 1 Hz CUSUM raise hundreds of false alarms a day.
    pub batch_seconds: u32,
    /// Trailing window of the robust baseline (median, 1.4826 · MAD).
    pub baseline_window: f64,
    /// How often an unfrozen baseline is recomputed.
    pub baseline_every: f64,
    /// Nothing alarms before this much data …
    pub warmup: f64,
    /// … and this many latency batches (an idle instance probed every 5 s has 2 samples each).
    pub warmup_batches: u32,
    /// A drift alarm that lasts this long with no predicted failure is taken as the new normal:
    /// the baseline is recomputed from the window (by then all post-shift data) and the CUSUM
    /// reset. Without it a permanent, harmless slowdown would hold `warning` forever.
    pub rebaseline_after: f64,
    /// CUSUM reference value, in σ of batch means.
    pub cusum_k: f64,
    /// CUSUM decision interval, in σ. The research's h = 8 (run length ≈ 20 000 batches) holds
    /// for a *known* σ; estimated from 30 minutes of batch means it measured 0.6–0.8 false
    /// warnings per instance-day on pure noise (target ≤ 0.5). h = 9 measured 0.29 and costs
    /// about 3 s of the warning's lead on the fastest (60 s) ramp (`docs/benchmarks.md`).
    pub cusum_h: f64,
    /// Standardized batch means are clipped to this before they enter the CUSUM, so one
    /// outlying batch (a stall) adds at most `clip − k`: with 4, 0.5 and 9, three elevated
    /// batches are needed to alarm, whatever their size.
    pub cusum_clip: f64,
    /// Once there is a baseline, per-second latencies enter the batch means Winsorized at the
    /// baseline median plus this many σ, so that a long stall split across two batches cannot
    /// add two full batches to the CUSUM.
    pub outlier_sigmas: f64,
    /// Holt smoothing factor at a 1 s step (scaled to the actual step).
    pub holt_sf: f64,
    /// Holt trend factor at a 1 s step. The research's 0.02 measured a p10 lead of 145–150 s
    /// on 900 s ramps (target ≥ 150); 0.025 measures 160. Larger factors lead further but
    /// overshoot more on a lasting step: 0.025 raises a predicted failure on about a quarter of
    /// lasting 3× steps, 0.02 on 5 %, 0.03 on 70 % (`docs/benchmarks.md`).
    pub holt_tf: f64,
    /// Once there is a baseline, Holt's one-step forecast error on latency is clipped at this
    /// many σ of per-second values (robust Holt): a stall whose calls wait seconds moves the
    /// level a little, not the forecast to the timeout. Infinite: plain Holt.
    pub holt_clip: f64,
    /// … with σ taken as at least this (log latency). A steady server's σ sits at
    /// `latency_sigma_floor` (0.1): clipped at 0.2 a second, Holt followed a fast climb so
    /// slowly that a 40 s ramp (25 ms → 2 s) was predicted as it failed; at 0.3 — the noise of
    /// research §7.3's traces, so their figures do not move — it leads by 20 s.
    pub holt_clip_sigma_floor: f64,
    /// Forecast horizon: a crossing of the limit within this raises `PredictedFailure`.
    pub horizon: f64,
    /// … and only while the level is at least this many σ above the baseline. The research
    /// says 3; 4 measured no false prediction in 100 instance-days with 6 stalls an hour
    /// (3: 0.03–0.08 a day, from stalls whose calls time out) for 1 s less lead on 60 s ramps.
    pub level_sigmas: f64,
    /// … or while the level is at least this share of the limit, whatever the baseline (a
    /// server that slows from its start has learnt its baseline on the ramp). At half the
    /// limit, crossing within the horizon needs a trend of ln 2 / 120 s — far above what noise
    /// gives Holt's trend.
    pub near_limit: f64,
    /// … and only once both have held this long (no alarm from a single spike).
    pub hold: f64,
    /// A raised prediction clears when its condition has been false this long.
    pub clear_after: f64,
    /// Floor of σ for log latency (per second and per batch mean). A perfectly steady server
    /// would otherwise have σ ≈ 0 and alarm at every millisecond; 0.1 means changes under about
    /// 10 % are never called drift.
    pub latency_sigma_floor: f64,
    /// An error batch closes at a batch boundary only once it holds this many outcomes (a low
    /// traffic batch is carried into the next; 10 is the breaker's own minimum).
    pub error_min_outcomes: u32,
    /// A carried error batch that reaches no minimum within this long is dropped.
    pub error_max_batch_span: f64,
    /// How long the error-ratio forecast must hold, measured between batch ends (20 s: three
    /// batches in a row). One batch is not enough: a single stall whose calls time out can
    /// fail half the calls of the two batches it straddles.
    pub error_hold: f64,
    /// The breaker trips on the ratio *observed* in a window of n calls, which at a true ratio
    /// p has a binomial spread √(p(1−p)/n): it opens by chance while p is still below its
    /// threshold. The error forecast therefore aims at the threshold minus this many binomial σ
    /// at the batch's count (for 20 calls and 0.5: 0.39).
    pub error_limit_margin: f64,
    /// Error batches needed, besides `warmup`, before the error-ratio detectors arm.
    pub error_warmup_batches: u32,
    /// The binomial σ of an error batch is computed with at least this failure ratio …
    pub error_ratio_floor: f64,
    /// … and at most this many outcomes, so a busy instance's tiny binomial σ does not turn
    /// every clustered failure into drift.
    pub error_outcomes_cap: u32,
    /// RSS forecast: least squares over this trailing window …
    pub rss_window: f64,
    /// … raising when the fitted line reaches the memory limit within this …
    pub rss_horizon: f64,
    /// … once the window holds at least this many samples …
    pub rss_min_samples: u32,
    /// … over at least this span …
    pub rss_min_span: f64,
    /// … and the condition has held this long.
    pub rss_hold: f64,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        Self {
            batch_seconds: 10,
            baseline_window: 1800.0,
            baseline_every: 60.0,
            warmup: 600.0,
            warmup_batches: 30,
            rebaseline_after: 1800.0,
            cusum_k: 0.5,
            cusum_h: 9.0,
            cusum_clip: 4.0,
            outlier_sigmas: 3.0,
            holt_sf: 0.1,
            holt_tf: 0.025,
            holt_clip: 2.0,
            holt_clip_sigma_floor: 0.3,
            horizon: 120.0,
            level_sigmas: 4.0,
            near_limit: 0.5,
            hold: 5.0,
            clear_after: 30.0,
            latency_sigma_floor: 0.1,
            error_min_outcomes: 10,
            error_max_batch_span: 120.0,
            error_hold: 20.0,
            error_limit_margin: 1.0,
            error_warmup_batches: 10,
            error_ratio_floor: 0.05,
            error_outcomes_cap: 50,
            rss_window: 600.0,
            rss_horizon: 600.0,
            rss_min_samples: 6,
            rss_min_span: 120.0,
            rss_hold: 30.0,
        }
    }
}
