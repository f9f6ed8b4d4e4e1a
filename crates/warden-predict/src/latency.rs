//! The latency signal: log seconds, aggregated per second (the mean of the logs, i.e. the
//! geometric mean latency), then per batch (the mean of the observed seconds, each second
//! weighing the same however many calls it held). Seconds without a sample carry nothing: the
//! batch mean is over observed seconds and Holt steps over the gap.

use crate::baseline::{LongRun, Robust, Window};
use crate::cusum::{Cusum, Step};
use crate::hold::Hold;
use crate::holt::Holt;
use crate::learning::Learning;
use crate::{Drift, LatencySeed, Prediction, PredictorConfig, Signal};

/// Batch means are Winsorized at ± this many robust σ for the baseline's mean and σ.
const WINSOR: f64 = 3.0;

#[derive(Clone, Copy, Debug)]
struct Acc {
    /// Second (or batch) index.
    idx: i64,
    /// Sum of the values as the detectors take them (for batches: Winsorized) …
    sum: f64,
    /// … and as they were, for reporting.
    raw: f64,
    n: u32,
}

impl Acc {
    fn new(idx: i64) -> Self {
        Self { idx, sum: 0.0, raw: 0.0, n: 0 }
    }

    fn mean(&self) -> f64 {
        self.sum / f64::from(self.n)
    }

    fn raw_mean(&self) -> f64 {
        self.raw / f64::from(self.n)
    }
}

#[derive(Clone, Copy, Debug)]
struct Baseline {
    /// Per-second values: median and MAD σ (the Holt gate, the clipping of outliers).
    second: Robust,
    /// Batch means: Winsorized mean and long-run σ (the CUSUM).
    batch: LongRun,
}

#[derive(Clone, Debug)]
pub(crate) struct LatencyTrack {
    second: Option<Acc>,
    batch: Option<Acc>,
    holt: Holt,
    per_second: Window,
    batches: Window,
    baseline: Option<Baseline>,
    cusum: Cusum,
    learning: Learning,
    predicted: Hold,
    last_batch: Option<f64>,
}

impl LatencyTrack {
    pub(crate) fn new(cfg: &PredictorConfig) -> Self {
        Self {
            second: None,
            batch: None,
            holt: Holt::new(cfg.holt_sf, cfg.holt_tf),
            per_second: Window::new(cfg.baseline_window),
            batches: Window::new(cfg.baseline_window),
            baseline: None,
            cusum: Cusum::new(cfg.cusum_k, cfg.cusum_h, cfg.cusum_clip),
            learning: Learning::new(),
            predicted: Hold::default(),
            last_batch: None,
        }
    }

    pub(crate) fn armed(&self) -> bool {
        self.learning.armed
    }

    pub(crate) fn seeded(&self) -> bool {
        self.learning.seeded
    }

    /// The baseline this instance learnt from its own data, once armed.
    pub(crate) fn seed(&self) -> Option<LatencySeed> {
        let b = self.baseline.filter(|_| self.learning.own())?;
        Some(LatencySeed {
            second_median: b.second.median,
            second_sigma: b.second.sigma,
            batch_mean: b.batch.mean,
            batch_sigma: b.batch.sigma,
        })
    }

    /// Takes another instance's baseline and arms at once (`seed` must be valid). Whatever this
    /// instance learnt so far is replaced; it learns again once its own warm-up is over.
    pub(crate) fn apply_seed(&mut self, seed: LatencySeed, cfg: &PredictorConfig) {
        let floor = cfg.latency_sigma_floor;
        self.baseline = Some(Baseline {
            second: Robust { median: seed.second_median, sigma: seed.second_sigma.max(floor) },
            batch: LongRun { mean: seed.batch_mean, sigma: seed.batch_sigma.max(floor), rho1: 0.0 },
        });
        self.learning.seeded_now(&mut self.cusum);
    }

    /// A latency of `seconds` observed at `t`. `limit` is ln(call timeout).
    pub(crate) fn observe(&mut self, t: f64, seconds: f64, limit: f64, cfg: &PredictorConfig) {
        if !t.is_finite() || seconds.is_nan() {
            return;
        }
        let x = seconds.clamp(1e-6, 1e6).ln();
        self.advance(t, limit, cfg);
        self.learning.saw(t);
        let sec = t.floor() as i64;
        match self.second.as_mut() {
            // Late samples (an earlier second than the open one) count in the open second.
            Some(acc) if acc.idx >= sec => {
                acc.sum += x;
                acc.raw += x;
                acc.n += 1;
            }
            _ => self.second = Some(Acc { idx: sec, sum: x, raw: x, n: 1 }),
        }
    }

    /// Closes the open second and batch if `t` is past them.
    pub(crate) fn advance(&mut self, t: f64, limit: f64, cfg: &PredictorConfig) {
        if let Some(acc) = self.second {
            if t >= (acc.idx + 1) as f64 {
                self.second = None;
                self.on_second(acc.idx, acc.mean(), limit, cfg);
            }
        }
        let b = i64::from(cfg.batch_seconds);
        if let Some(acc) = self.batch {
            if t >= ((acc.idx + 1) * b) as f64 {
                self.batch = None;
                self.on_batch(acc, cfg);
            }
        }
    }

    fn on_second(&mut self, sec: i64, x: f64, limit: f64, cfg: &PredictorConfig) {
        let idx = sec.div_euclid(i64::from(cfg.batch_seconds));
        if let Some(acc) = self.batch.filter(|a| a.idx != idx) {
            self.batch = None;
            self.on_batch(acc, cfg);
        }
        let (cap, clip) = match self.baseline {
            Some(b) => (
                b.second.median + cfg.outlier_sigmas * b.second.sigma,
                cfg.holt_clip * b.second.sigma.max(cfg.holt_clip_sigma_floor),
            ),
            None => (f64::INFINITY, f64::INFINITY),
        };
        let acc = self.batch.get_or_insert(Acc::new(idx));
        acc.sum += x.min(cap);
        acc.raw += x;
        acc.n += 1;

        // The second's value is known at its end.
        let t = (sec + 1) as f64;
        self.holt.update_clipped(t, x, clip);
        self.per_second.push(t, x);
        if let (true, Some(base), Some(level), Some(trend)) =
            (self.learning.armed, self.baseline, self.holt.level(), self.holt.trend())
        {
            let crossing = level + trend * cfg.horizon >= limit;
            // Elevated above the server's normal — or, whatever the baseline says, already
            // past `near_limit` of the limit: a server that slows from its very start learns
            // its baseline on the ramp, and "above normal" never holds before it fails.
            let elevated = level >= base.second.median + cfg.level_sigmas * base.second.sigma
                || level >= limit + cfg.near_limit.ln();
            self.predicted.observe(t, crossing && elevated, cfg.hold, cfg.clear_after);
        }
    }

    fn on_batch(&mut self, acc: Acc, cfg: &PredictorConfig) {
        let b = i64::from(cfg.batch_seconds);
        let (start, end) = ((acc.idx * b) as f64, ((acc.idx + 1) * b) as f64);
        let mean = acc.mean();
        self.batches.push(end, mean);
        self.learning.batches_seen = self.learning.batches_seen.saturating_add(1);
        self.last_batch = Some(acc.raw_mean());
        if let (true, Some(base)) = (self.learning.armed, self.baseline) {
            let z = (mean - base.batch.mean) / base.batch.sigma;
            if self.cusum.update(start, end, z) == Step::Cleared {
                // The excursion is over: learn from what came since.
                self.learning.baseline_at = f64::NEG_INFINITY;
            }
        }

        let predicting = self.predicted.raised_at().is_some();
        let d =
            self.learning.after_batch(end, &mut self.cusum, predicting, cfg.warmup_batches, cfg);
        if d.relearn {
            self.recompute_baseline(end, cfg);
        }
        self.learning.arm(d, self.baseline.is_some(), &mut self.cusum);
    }

    fn recompute_baseline(&mut self, at: f64, cfg: &PredictorConfig) {
        let floor = cfg.latency_sigma_floor;
        if let (Some(second), Some(batch)) =
            (self.per_second.robust(), self.batches.winsorized(WINSOR))
        {
            let second = Robust { sigma: second.sigma.max(floor), ..second };
            let batch = LongRun { sigma: batch.sigma.max(floor), ..batch };
            self.baseline = Some(Baseline { second, batch });
            self.learning.baseline_at = at;
        }
    }

    pub(crate) fn drift(&self) -> Option<Drift> {
        let base = self.baseline?;
        let recent = self.last_batch.unwrap_or(base.batch.mean).exp();
        self.cusum.drift(Signal::Latency, base.batch.mean.exp(), recent)
    }

    pub(crate) fn prediction(&self, t: f64, limit: f64) -> Option<Prediction> {
        let raised_at = self.predicted.raised_at()?;
        let level = self.holt.level_at(t)?.exp();
        Some(Prediction {
            signal: Signal::Latency,
            eta_seconds: self.holt.eta(t, limit),
            limit: limit.exp(),
            level,
            trend: self.holt.trend()? * level,
            raised_at,
        })
    }

    /// The monitored process was replaced: forget its trend, excursions and alarms; keep the
    /// baseline (the server's normal) and the arming.
    pub(crate) fn restart(&mut self) {
        self.second = None;
        self.batch = None;
        self.holt.reset();
        self.cusum.reset();
        self.predicted.reset();
        self.last_batch = None;
    }
}
