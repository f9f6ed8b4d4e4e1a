//! One instance's predictor: the three signals behind one small API.

use crate::errors::ErrorTrack;
use crate::latency::LatencyTrack;
use crate::rss::RssTrack;
use crate::{Assessment, Limits, PredictorConfig, Seed};

/// Everything the predictor keeps about one instance (a few tens of KiB: 30 minutes of
/// per-second values and batch means). Feed it samples with their times, in non-decreasing
/// order, and ask [`evaluate`](Self::evaluate) whenever a verdict is wanted: the detectors run
/// as samples arrive, so how often `evaluate` is called changes nothing but when the caller
/// hears of it.
#[derive(Clone, Debug)]
pub struct InstancePredictor {
    cfg: PredictorConfig,
    limits: Limits,
    latency: LatencyTrack,
    errors: ErrorTrack,
    rss: RssTrack,
}

impl InstancePredictor {
    pub fn new(limits: Limits, cfg: PredictorConfig) -> Self {
        Self {
            latency: LatencyTrack::new(&cfg),
            errors: ErrorTrack::new(&cfg),
            rss: RssTrack::new(&cfg),
            cfg,
            limits,
        }
    }

    /// The hard limits changed (a configuration reload).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A probe or call answered (or timed out: pass the timeout) after `seconds`, at `t`
    /// seconds on the caller's clock.
    pub fn observe_latency(&mut self, t: f64, seconds: f64) {
        let limit = self.latency_limit();
        self.latency.observe(t, seconds, limit, &self.cfg);
    }

    /// A probe or call ended at `t`, successfully or not.
    pub fn observe_outcome(&mut self, t: f64, ok: bool) {
        self.errors.observe(t, ok, self.limits.error_ratio_limit, &self.cfg);
    }

    /// The child's resident set size at `t`.
    pub fn observe_rss(&mut self, t: f64, bytes: u64) {
        self.rss.observe(t, bytes, self.limits.memory_limit_bytes, &self.cfg);
    }

    /// Closes the seconds and batches that ended by `t` and reports every detector.
    pub fn evaluate(&mut self, t: f64) -> Assessment {
        let limit = self.latency_limit();
        self.latency.advance(t, limit, &self.cfg);
        self.errors.advance(t, self.limits.error_ratio_limit, &self.cfg);

        let drift = match (self.latency.drift(), self.errors.drift()) {
            (Some(a), Some(b)) => Some(if b.raised_at < a.raised_at { b } else { a }),
            (a, b) => a.or(b),
        };
        let predicted = match (
            self.latency.prediction(t, limit),
            self.errors.prediction(t, self.limits.error_ratio_limit, &self.cfg),
        ) {
            (Some(a), Some(b)) => {
                let eta = |p: &crate::Prediction| p.eta_seconds.unwrap_or(f64::INFINITY);
                Some(if eta(&b) < eta(&a) { b } else { a })
            }
            (a, b) => a.or(b),
        };
        Assessment {
            at: t,
            armed: self.latency.armed(),
            drift,
            predicted,
            rss_exhaustion: self.rss.exhaustion(),
        }
    }

    /// The baselines this instance learnt from its own data, for a new instance of the same
    /// server ([`apply_seed`](Self::apply_seed)); `None` until a signal has armed on its own.
    pub fn seed(&self) -> Option<Seed> {
        let seed = Seed { latency: self.latency.seed(), errors: self.errors.seed() };
        (seed.latency.is_some() || seed.errors.is_some()).then_some(seed)
    }

    /// Starts from another instance's baselines: armed at once, the seed standing until this
    /// instance's own warm-up is over. A seed that is not a baseline (non-finite, σ ≤ 0, a ratio
    /// outside 0..1) is refused: `false`, and nothing changes.
    pub fn apply_seed(&mut self, seed: &Seed) -> bool {
        if !seed.is_valid() {
            return false;
        }
        if let Some(l) = seed.latency {
            self.latency.apply_seed(l, &self.cfg);
        }
        if let Some(e) = seed.errors {
            self.errors.apply_seed(e);
        }
        true
    }

    /// The latency detectors have a baseline (as [`Assessment::armed`]).
    pub fn is_armed(&self) -> bool {
        self.latency.armed()
    }

    /// Some detector still stands on a seed rather than on this instance's own data.
    pub fn is_seeded(&self) -> bool {
        self.latency.seeded() || self.errors.seeded()
    }

    /// The monitored process was replaced (restart, reconnect): forget trends, excursions,
    /// alarms and RSS history, which described the old process; keep the baselines and the
    /// arming, which describe the server.
    pub fn restart(&mut self) {
        self.latency.restart();
        self.errors.restart();
        self.rss.restart();
    }

    fn latency_limit(&self) -> f64 {
        self.limits.call_timeout.as_secs_f64().max(1e-6).ln()
    }
}
