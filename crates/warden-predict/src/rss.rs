//! Resource exhaustion: Prometheus' `predict_linear` pattern on the child's RSS. A least
//! squares line through the last `rss_window` seconds of samples; alarm when it reaches the
//! memory limit within `rss_horizon`, held for `rss_hold`. No limit, no forecast.

use crate::baseline::Window;
use crate::hold::Hold;
use crate::{Exhaustion, PredictorConfig};

#[derive(Clone, Copy, Debug)]
struct Fit {
    fitted: f64,
    slope: f64,
    eta: Option<f64>,
}

#[derive(Clone, Debug)]
pub(crate) struct RssTrack {
    window: Window,
    hold: Hold,
    last: Option<Fit>,
    limit: Option<u64>,
}

impl RssTrack {
    pub(crate) fn new(cfg: &PredictorConfig) -> Self {
        Self { window: Window::new(cfg.rss_window), hold: Hold::default(), last: None, limit: None }
    }

    pub(crate) fn observe(
        &mut self,
        t: f64,
        bytes: u64,
        limit: Option<u64>,
        cfg: &PredictorConfig,
    ) {
        if !t.is_finite() {
            return;
        }
        self.window.push(t, bytes as f64);
        self.limit = limit;
        let Some(limit) = limit else {
            self.hold.reset();
            self.last = None;
            return;
        };
        let enough = self.window.len() >= cfg.rss_min_samples as usize
            && self.window.covered() >= cfg.rss_min_span;
        let fit = self.window.linear_fit(t).filter(|_| enough).map(|(fitted, slope)| {
            let limit = limit as f64;
            let eta = if fitted >= limit {
                Some(0.0)
            } else if slope > 0.0 {
                Some((limit - fitted) / slope)
            } else {
                None
            };
            Fit { fitted, slope, eta }
        });
        self.last = fit;
        let cond = fit.and_then(|f| f.eta).is_some_and(|eta| eta <= cfg.rss_horizon);
        self.hold.observe(t, cond, cfg.rss_hold, cfg.rss_hold.max(cfg.clear_after));
    }

    pub(crate) fn exhaustion(&self) -> Option<Exhaustion> {
        let raised_at = self.hold.raised_at()?;
        let fit = self.last?;
        Some(Exhaustion {
            eta_seconds: fit.eta,
            limit_bytes: self.limit?,
            fitted_bytes: fit.fitted,
            slope_bytes_per_second: fit.slope,
            raised_at,
        })
    }

    /// A new process: its memory starts afresh.
    pub(crate) fn restart(&mut self) {
        self.window.clear();
        self.hold.reset();
        self.last = None;
    }
}
