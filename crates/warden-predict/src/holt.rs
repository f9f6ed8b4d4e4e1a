//! Holt's linear (double exponential) smoothing on an irregular time axis: a level and a
//! per-second trend, from which the time to a limit is forecast.
//!
//! The factors are given for a 1 s step (as Prometheus' `double_exponential_smoothing(v, sf,
//! tf)` applies them per sample) and scaled to the actual step `dt`: `a = 1 − (1 − sf)^dt`, the
//! forecast across the gap is `level + trend · dt`, and the trend is the slope of the level
//! over the gap (Wright 1986). With `dt = 1` this is the textbook recursion; an instance probed
//! every 5 s with no traffic gets the same time constants as one with a sample every second.

/// Level and trend of one signal.
#[derive(Clone, Debug)]
pub(crate) struct Holt {
    sf: f64,
    tf: f64,
    state: Option<State>,
}

#[derive(Clone, Copy, Debug)]
struct State {
    /// Time of the last update, seconds.
    at: f64,
    level: f64,
    /// Change of the level per second.
    trend: f64,
}

impl Holt {
    pub(crate) fn new(sf: f64, tf: f64) -> Self {
        Self { sf, tf, state: None }
    }

    /// Feeds the value `x` observed at `t`. Times must increase; a value at or before the last
    /// update's time is folded in as if it came one millisecond later.
    pub(crate) fn update(&mut self, t: f64, x: f64) {
        self.update_clipped(t, x, f64::INFINITY);
    }

    /// As [`update`](Self::update), with the one-step forecast error limited to ±`clip`: the
    /// robust Holt of Gelper, Fried & Croux (2010), so that one wild value moves the level by
    /// at most `a · clip` and the trend by far less.
    pub(crate) fn update_clipped(&mut self, t: f64, x: f64, clip: f64) {
        let Some(s) = self.state.as_mut() else {
            self.state = Some(State { at: t, level: x, trend: 0.0 });
            return;
        };
        let dt = (t - s.at).max(1e-3);
        let a = 1.0 - (1.0 - self.sf).powf(dt);
        let b = 1.0 - (1.0 - self.tf).powf(dt);
        let forecast = s.level + s.trend * dt;
        let level = forecast + a * (x - forecast).clamp(-clip, clip);
        s.trend = b * (level - s.level) / dt + (1.0 - b) * s.trend;
        s.level = level;
        s.at = s.at.max(t);
    }

    /// The level at the last update.
    pub(crate) fn level(&self) -> Option<f64> {
        self.state.map(|s| s.level)
    }

    /// The trend, per second.
    pub(crate) fn trend(&self) -> Option<f64> {
        self.state.map(|s| s.trend)
    }

    /// The level extrapolated to `t` (at least the last update's time).
    pub(crate) fn level_at(&self, t: f64) -> Option<f64> {
        self.state.map(|s| s.level + s.trend * (t - s.at).max(0.0))
    }

    /// Seconds from `t` until the extrapolated level reaches `limit`: `Some(0)` if it already
    /// has, `None` if the trend does not point at it.
    pub(crate) fn eta(&self, t: f64, limit: f64) -> Option<f64> {
        let s = self.state?;
        let now = self.level_at(t)?;
        if now >= limit {
            Some(0.0)
        } else if s.trend > 0.0 {
            Some((limit - now) / s.trend)
        } else {
            None
        }
    }

    pub(crate) fn reset(&mut self) {
        self.state = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_series_has_no_trend() {
        let mut h = Holt::new(0.1, 0.02);
        for t in 0..600 {
            h.update(f64::from(t), 3.0);
        }
        assert!((h.level().unwrap() - 3.0).abs() < 1e-12);
        assert!(h.trend().unwrap().abs() < 1e-12);
        assert_eq!(h.eta(600.0, 5.0), None);
        assert_eq!(h.eta(600.0, 2.0), Some(0.0));
    }

    #[test]
    fn linear_series_converges_to_its_slope() {
        let mut h = Holt::new(0.1, 0.02);
        for t in 0..2000 {
            h.update(f64::from(t), 0.01 * f64::from(t));
        }
        assert!((h.trend().unwrap() - 0.01).abs() < 1e-4, "{:?}", h.trend());
        assert!((h.level().unwrap() - 19.99).abs() < 0.05, "{:?}", h.level());
        // 19.99 → 21.99 at 0.01/s: 200 s.
        let eta = h.eta(1999.0, 21.99).unwrap();
        assert!((eta - 200.0).abs() < 5.0, "{eta}");
    }

    #[test]
    fn sparse_steps_track_the_same_slope() {
        // Probes every 5 s only: the step-scaled factors find the same trend.
        let mut h = Holt::new(0.1, 0.02);
        for i in 0..400 {
            let t = f64::from(i) * 5.0;
            h.update(t, 1.0 + 0.002 * t);
        }
        assert!((h.trend().unwrap() - 0.002).abs() < 1e-4, "{:?}", h.trend());
    }

    #[test]
    fn a_clipped_update_bounds_what_one_outlier_does() {
        let mut h = Holt::new(0.1, 0.02);
        for t in 0..100 {
            h.update_clipped(f64::from(t), 0.0, 1.0);
        }
        h.update_clipped(100.0, 50.0, 1.0);
        assert!((h.level().unwrap() - 0.1).abs() < 1e-12);
        assert!((h.trend().unwrap() - 0.002).abs() < 1e-12);
    }

    #[test]
    fn one_step_is_the_textbook_recursion() {
        let mut h = Holt::new(0.5, 0.5);
        h.update(0.0, 0.0);
        h.update(1.0, 2.0);
        // level = 0.5·2 + 0.5·(0 + 0) = 1; trend = 0.5·(1 − 0) + 0.5·0 = 0.5.
        assert!((h.level().unwrap() - 1.0).abs() < 1e-12);
        assert!((h.trend().unwrap() - 0.5).abs() < 1e-12);
        assert!((h.level_at(3.0).unwrap() - 2.0).abs() < 1e-12);
    }
}
