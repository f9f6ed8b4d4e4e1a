//! One instance's failure prediction: two predictors, one on probes and one on real calls.
//! Their latencies live on different scales (a `ping` answered in 2 ms, a tool in 300 ms);
//! mixed, every change in traffic would look like a shift, and the spread would hide a real
//! ramp. Probes give an idle instance a baseline; calls show what clients will feel.

use warden_predict::{Assessment, InstancePredictor, Limits, PredictorConfig};

#[derive(Debug)]
pub(crate) struct Predictors {
    probes: InstancePredictor,
    calls: InstancePredictor,
}

impl Predictors {
    pub(crate) fn new(limits: Limits, cfg: PredictorConfig) -> Self {
        Self {
            probes: InstancePredictor::new(limits, cfg.clone()),
            calls: InstancePredictor::new(limits, cfg),
        }
    }

    /// A probe (`call: false`) or a call ended at `t`; `latency` when it has one.
    pub(crate) fn observe(&mut self, t: f64, call: bool, latency: Option<f64>, ok: bool) {
        let p = if call { &mut self.calls } else { &mut self.probes };
        if let Some(l) = latency {
            p.observe_latency(t, l);
        }
        p.observe_outcome(t, ok);
    }

    pub(crate) fn observe_rss(&mut self, t: f64, bytes: u64) {
        self.probes.observe_rss(t, bytes);
    }

    /// Both verdicts in one: the earlier drift, the nearer predicted crossing.
    pub(crate) fn evaluate(&mut self, t: f64) -> Assessment {
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
