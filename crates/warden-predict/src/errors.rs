//! The failure-ratio signal: outcomes counted in batches that close on a batch boundary once
//! they hold `error_min_outcomes` (a quiet instance's batch is carried on, so a ratio is never
//! taken over two or three probes). CUSUM and Holt run on the batch ratios.
//!
//! σ of a batch ratio is the larger of the baseline batches' own standard deviation (which
//! includes any clustering of failures) and the binomial σ at the baseline ratio, with the ratio
//! floored at `error_ratio_floor` and the count capped at `error_outcomes_cap`: a healthy
//! instance with no failures at all would otherwise have σ = 0.

use std::collections::VecDeque;

use crate::cusum::{Cusum, Step};
use crate::hold::Hold;
use crate::holt::Holt;
use crate::learning::Learning;
use crate::{Drift, ErrorSeed, Prediction, PredictorConfig, Signal};

#[derive(Clone, Copy, Debug)]
struct Open {
    /// The batch window the last outcome fell in.
    idx: i64,
    start: f64,
    failures: u32,
    total: u32,
}

#[derive(Clone, Copy, Debug)]
struct Baseline {
    ratio: f64,
    sigma: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct ErrorTrack {
    open: Option<Open>,
    holt: Holt,
    /// Closed batches: (end, failures, total).
    window: VecDeque<(f64, u32, u32)>,
    baseline: Option<Baseline>,
    cusum: Cusum,
    learning: Learning,
    predicted: Hold,
    last_ratio: Option<f64>,
}

impl ErrorTrack {
    pub(crate) fn new(cfg: &PredictorConfig) -> Self {
        Self {
            open: None,
            holt: Holt::new(cfg.holt_sf, cfg.holt_tf),
            window: VecDeque::new(),
            baseline: None,
            cusum: Cusum::new(cfg.cusum_k, cfg.cusum_h, cfg.cusum_clip),
            learning: Learning::new(),
            predicted: Hold::default(),
            last_ratio: None,
        }
    }

    pub(crate) fn seeded(&self) -> bool {
        self.learning.seeded
    }

    /// The baseline this instance learnt from its own outcomes, once armed.
    pub(crate) fn seed(&self) -> Option<ErrorSeed> {
        let b = self.baseline.filter(|_| self.learning.own())?;
        Some(ErrorSeed { ratio: b.ratio, sigma: b.sigma })
    }

    /// Takes another instance's baseline and arms at once (`seed` must be valid).
    pub(crate) fn apply_seed(&mut self, seed: ErrorSeed) {
        self.baseline = Some(Baseline { ratio: seed.ratio, sigma: seed.sigma });
        self.learning.seeded_now(&mut self.cusum);
    }

    pub(crate) fn observe(&mut self, t: f64, ok: bool, limit: f64, cfg: &PredictorConfig) {
        if !t.is_finite() {
            return;
        }
        self.advance(t, limit, cfg);
        self.learning.saw(t);
        let b = f64::from(cfg.batch_seconds);
        let idx = (t / b).floor() as i64;
        let open =
            self.open.get_or_insert(Open { idx, start: idx as f64 * b, failures: 0, total: 0 });
        open.idx = open.idx.max(idx);
        open.total += 1;
        open.failures += u32::from(!ok);
    }

    /// Closes the open batch if `t` is past its window and it holds enough outcomes; drops it
    /// if it has been open too long without.
    pub(crate) fn advance(&mut self, t: f64, limit: f64, cfg: &PredictorConfig) {
        let b = f64::from(cfg.batch_seconds);
        let Some(open) = self.open else { return };
        let end = (open.idx + 1) as f64 * b;
        if t < end {
            return;
        }
        if open.total >= cfg.error_min_outcomes {
            self.open = None;
            self.on_batch(open.start, end, open.failures, open.total, limit, cfg);
        } else if t - open.start > cfg.error_max_batch_span {
            self.open = None;
        }
    }

    fn sigma(&self, base: Baseline, total: u32, cfg: &PredictorConfig) -> f64 {
        let q = base.ratio.max(cfg.error_ratio_floor).min(0.5);
        let n = f64::from(total.clamp(1, cfg.error_outcomes_cap.max(1)));
        base.sigma.max((q * (1.0 - q) / n).sqrt())
    }

    fn on_batch(
        &mut self,
        start: f64,
        end: f64,
        failures: u32,
        total: u32,
        limit: f64,
        cfg: &PredictorConfig,
    ) {
        let ratio = f64::from(failures) / f64::from(total);
        self.window.push_back((end, failures, total));
        while self.window.front().is_some_and(|w| w.0 <= end - cfg.baseline_window) {
            self.window.pop_front();
        }
        self.learning.batches_seen = self.learning.batches_seen.saturating_add(1);
        self.last_ratio = Some(ratio);
        self.holt.update(end, ratio);
        if let (true, Some(base)) = (self.learning.armed, self.baseline) {
            let sigma = self.sigma(base, total, cfg);
            if self.cusum.update(start, end, (ratio - base.ratio) / sigma) == Step::Cleared {
                self.learning.baseline_at = f64::NEG_INFINITY;
            }
            if let (Some(level), Some(trend)) = (self.holt.level(), self.holt.trend()) {
                let limit = effective_limit(limit, total, cfg);
                let crossing = level + trend * cfg.horizon >= limit;
                let elevated = level >= base.ratio + cfg.level_sigmas * sigma;
                self.predicted.observe(end, crossing && elevated, cfg.error_hold, cfg.clear_after);
            }
        }

        let predicting = self.predicted.raised_at().is_some();
        let d = self.learning.after_batch(
            end,
            &mut self.cusum,
            predicting,
            cfg.error_warmup_batches,
            cfg,
        );
        if d.relearn {
            self.recompute_baseline(end);
        }
        self.learning.arm(d, self.baseline.is_some(), &mut self.cusum);
    }

    fn recompute_baseline(&mut self, at: f64) {
        let (failures, total) = self
            .window
            .iter()
            .fold((0u64, 0u64), |(f, n), w| (f + u64::from(w.1), n + u64::from(w.2)));
        if total == 0 || self.window.len() < 2 {
            return;
        }
        let ratio = failures as f64 / total as f64;
        let k = self.window.len() as f64;
        let var = self
            .window
            .iter()
            .map(|w| (f64::from(w.1) / f64::from(w.2) - ratio).powi(2))
            .sum::<f64>()
            / (k - 1.0);
        self.baseline = Some(Baseline { ratio, sigma: var.sqrt() });
        self.learning.baseline_at = at;
    }

    pub(crate) fn drift(&self) -> Option<Drift> {
        let base = self.baseline?;
        self.cusum.drift(Signal::ErrorRatio, base.ratio, self.last_ratio.unwrap_or(base.ratio))
    }

    pub(crate) fn prediction(
        &self,
        t: f64,
        limit: f64,
        cfg: &PredictorConfig,
    ) -> Option<Prediction> {
        let raised_at = self.predicted.raised_at()?;
        let target = effective_limit(limit, self.last_total(), cfg);
        Some(Prediction {
            signal: Signal::ErrorRatio,
            eta_seconds: self.holt.eta(t, target),
            limit,
            level: self.holt.level_at(t)?.clamp(0.0, 1.0),
            trend: self.holt.trend()?,
            raised_at,
        })
    }

    /// The count of the last closed batch (for the effective limit when reporting).
    fn last_total(&self) -> u32 {
        self.window.back().map_or(0, |w| w.2)
    }

    pub(crate) fn restart(&mut self) {
        self.open = None;
        self.holt.reset();
        self.cusum.reset();
        self.predicted.reset();
        self.last_ratio = None;
    }
}

/// The ratio the forecast aims at: the breaker's threshold less `error_limit_margin` binomial
/// σ for a batch of `total` outcomes (see the config field).
fn effective_limit(limit: f64, total: u32, cfg: &PredictorConfig) -> f64 {
    let p = limit.clamp(0.0, 1.0);
    let spread = (p * (1.0 - p) / f64::from(total.max(1))).sqrt();
    (limit - cfg.error_limit_margin * spread).max(limit / 2.0)
}
