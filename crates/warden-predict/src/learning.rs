//! When a signal's baseline is learnt again and when its detectors arm — the same rules for
//! latency and for the failure ratio:
//!
//! - the baseline is recomputed every `baseline_every` while nothing is raised (frozen during
//!   a drift or a predicted failure, so an excursion never becomes its own normal), and at once
//!   when an excursion has cleared;
//! - a drift that lasts `rebaseline_after` without a predicted failure is accepted as the new
//!   normal;
//! - the detectors arm once the warm-up is over (`warmup` seconds and enough batches) and there
//!   is a baseline — or at once on a [`crate::Seed`], which then stands, not relearnt, until
//!   this instance's own warm-up is over.

use crate::cusum::Cusum;
use crate::PredictorConfig;

#[derive(Clone, Debug)]
pub(crate) struct Learning {
    /// When the baseline was last computed (`-∞`: at the next batch).
    pub(crate) baseline_at: f64,
    /// The first sample's time.
    pub(crate) first_at: Option<f64>,
    pub(crate) batches_seen: u32,
    pub(crate) armed: bool,
    /// The baseline came from another instance.
    pub(crate) seeded: bool,
}

/// What [`Learning::after_batch`] decided; hand it back to [`Learning::arm`].
#[must_use]
pub(crate) struct Decision {
    /// Recompute the baseline now.
    pub(crate) relearn: bool,
    warm: bool,
}

impl Learning {
    pub(crate) fn new() -> Self {
        Self {
            baseline_at: f64::NEG_INFINITY,
            first_at: None,
            batches_seen: 0,
            armed: false,
            seeded: false,
        }
    }

    /// A sample arrived at `t`.
    pub(crate) fn saw(&mut self, t: f64) {
        self.first_at.get_or_insert(t);
    }

    /// A batch closed at `end` (counted here); `predicting`: a failure is predicted now.
    /// `warmup_batches` is the signal's own count.
    pub(crate) fn after_batch(
        &mut self,
        end: f64,
        cusum: &mut Cusum,
        predicting: bool,
        warmup_batches: u32,
        cfg: &PredictorConfig,
    ) -> Decision {
        let drifting = cusum.alarm();
        let frozen = drifting.is_some() || predicting;
        let accept =
            drifting.is_some_and(|a| end - a.raised_at >= cfg.rebaseline_after) && !predicting;
        if accept {
            cusum.reset();
        }
        let warm = self.batches_seen >= warmup_batches
            && self.first_at.is_some_and(|f| end - f >= cfg.warmup);
        // A seed stands until this instance has seen as much as an unseeded one arms on.
        self.seeded &= !warm;
        let learn = !frozen && !self.seeded && end - self.baseline_at >= cfg.baseline_every;
        Decision { relearn: accept || learn, warm }
    }

    /// Arms once warm, if there is a baseline.
    pub(crate) fn arm(&mut self, d: Decision, has_baseline: bool, cusum: &mut Cusum) {
        if !self.armed && has_baseline && d.warm {
            self.armed = true;
            cusum.reset();
        }
    }

    /// A seed was taken: armed at once, relearnt once this instance's warm-up is over.
    pub(crate) fn seeded_now(&mut self, cusum: &mut Cusum) {
        self.baseline_at = f64::NEG_INFINITY;
        self.armed = true;
        self.seeded = true;
        cusum.reset();
    }

    /// Whether the baseline is this instance's own and armed (it may be passed on).
    pub(crate) fn own(&self) -> bool {
        self.armed && !self.seeded
    }
}
