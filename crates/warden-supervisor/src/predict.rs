//! One instance's failure prediction: two predictors, one on probes and one on real calls.
//! Their latencies live on different scales (a `ping` answered in 2 ms, a tool in 300 ms);
//! mixed, every change in traffic would look like a shift, and the spread would hide a real
//! ramp. Probes give an idle instance a baseline; calls show what clients will feel.

use warden_predict::{Assessment, InstancePredictor, Limits, PredictorConfig};

/// Seconds without a call after which the calls' trends are dropped: a draining instance gets
/// no calls, so its last verdict would otherwise stand for ever.
const CALLS_STALE: f64 = 60.0;

#[derive(Debug)]
pub(crate) struct Predictors {
    probes: InstancePredictor,
    calls: InstancePredictor,
    /// When the last call was observed, and whether its trends were dropped since.
    last_call: Option<f64>,
    calls_dropped: bool,
}

impl Predictors {
    pub(crate) fn new(limits: Limits, cfg: PredictorConfig) -> Self {
        Self {
            probes: InstancePredictor::new(limits, cfg.clone()),
            calls: InstancePredictor::new(limits, cfg),
            last_call: None,
            calls_dropped: false,
        }
    }

    /// A probe (`call: false`) or a call ended at `t`; `latency` when it has one.
    pub(crate) fn observe(&mut self, t: f64, call: bool, latency: Option<f64>, ok: bool) {
        if call {
            self.last_call = Some(t);
            self.calls_dropped = false;
        }
        let p = if call { &mut self.calls } else { &mut self.probes };
        if let Some(l) = latency {
            p.observe_latency(t, l);
        }
        p.observe_outcome(t, ok);
    }

    /// The call timeout changed (tuning): the latency forecasts aim at the new limit.
    pub(crate) fn set_call_timeout(&mut self, timeout: std::time::Duration) {
        for p in [&mut self.probes, &mut self.calls] {
            let mut limits = *p.limits();
            limits.call_timeout = timeout;
            p.set_limits(limits);
        }
    }

    pub(crate) fn observe_rss(&mut self, t: f64, bytes: u64) {
        self.probes.observe_rss(t, bytes);
    }

    /// Both verdicts in one: the earlier drift, the nearer predicted crossing.
    pub(crate) fn evaluate(&mut self, t: f64) -> Assessment {
        if !self.calls_dropped && self.last_call.is_some_and(|l| t - l > CALLS_STALE) {
            // No call for a minute: what the calls said no longer describes the instance (its
            // baseline stays). Calls that come back start a fresh trend.
            self.calls.restart();
            self.calls_dropped = true;
        }
        let a = self.probes.evaluate(t);
        let b = self.calls.evaluate(t);
        let eta = |p: &warden_predict::Prediction| p.eta_seconds.unwrap_or(f64::INFINITY);
        Assessment {
            at: t,
            armed: a.armed || b.armed,
            drift: match (a.drift, b.drift) {
                (Some(x), Some(y)) => Some(if y.raised_at < x.raised_at { y } else { x }),
                (x, y) => x.or(y),
            },
            predicted: match (a.predicted, b.predicted) {
                (Some(x), Some(y)) => Some(if eta(&y) < eta(&x) { y } else { x }),
                (x, y) => x.or(y),
            },
            rss_exhaustion: a.rss_exhaustion,
        }
    }

    pub(crate) fn restart(&mut self) {
        self.probes.restart();
        self.calls.restart();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use warden_predict::{Limits, PredictorConfig};

    use super::Predictors;

    #[test]
    fn a_call_prediction_is_dropped_a_minute_after_the_last_call() {
        let cfg = PredictorConfig { warmup: 60.0, warmup_batches: 4, ..Default::default() };
        let mut p = Predictors::new(Limits::new(Duration::from_secs(2)), cfg);
        // Probes steady at 2 ms; calls steady at 50 ms for 2 minutes, then ramping toward
        // the 2 s timeout until predicted.
        let mut t = 0.0;
        let mut predicted_at = None;
        while t < 600.0 {
            p.observe(t, false, Some(0.002), true);
            let latency = if t < 120.0 { 0.05 } else { 0.05 * (1.0 + (t - 120.0) / 4.0) };
            p.observe(t, true, Some(latency.min(1.9)), true);
            if p.evaluate(t).predicted.is_some() {
                predicted_at = Some(t);
                break;
            }
            t += 1.0;
        }
        let at = predicted_at.expect("the call ramp is predicted");
        // No more calls (the instance is drained): probes alone, steady.
        let mut cleared = None;
        for s in 1..=120 {
            let now = at + f64::from(s);
            p.observe(now, false, Some(0.002), true);
            if p.evaluate(now).predicted.is_none() {
                cleared = Some(f64::from(s));
                break;
            }
        }
        let after = cleared.expect("cleared without calls");
        assert!(after > 60.0 && after <= 62.0, "cleared {after} s after the last call");
    }
}
