//! The instance's failure prediction and resource samples: what the predictors are fed, what
//! their verdict does to the view and the state machine, and the seeds they take and publish.

use super::*;

/// Why the predictor thinks an instance is degrading, as a state reason (`None`: it does not).
pub(super) fn degradation(a: &warden_predict::Assessment) -> Option<Reason> {
    use warden_predict::Signal;
    let class = |s: Signal| match s {
        Signal::Latency => FailureClass::Timeout,
        Signal::ErrorRatio => FailureClass::ServerError,
        Signal::Rss => FailureClass::Crash,
    };
    let value = |s: Signal, v: f64| match s {
        Signal::Latency if v >= 1.0 => format!("{v:.1} s"),
        Signal::Latency => format!("{:.1} ms", v * 1000.0),
        Signal::ErrorRatio => format!("{:.0} %", v * 100.0),
        Signal::Rss => format!("{:.0} MiB", v / 1_048_576.0),
    };
    if let Some(p) = &a.predicted {
        let when = p.eta_seconds.map_or("soon".to_owned(), |s| format!("in {s:.0} s"));
        return Some(Reason::new(
            class(p.signal),
            format!(
                "{} forecast to reach its limit ({}) {when}",
                p.signal.as_str().replace('_', " "),
                value(p.signal, p.limit)
            ),
        ));
    }
    if let Some(e) = &a.rss_exhaustion {
        let when = e.eta_seconds.map_or("soon".to_owned(), |s| format!("in {s:.0} s"));
        return Some(Reason::new(
            FailureClass::Crash,
            format!(
                "memory forecast to reach its limit ({}) {when}",
                value(Signal::Rss, e.limit_bytes as f64)
            ),
        ));
    }
    a.drift.map(|d| {
        Reason::new(
            class(d.signal),
            format!(
                "{} drifting up: {} → {}",
                d.signal.as_str().replace('_', " "),
                value(d.signal, d.baseline),
                value(d.signal, d.recent)
            ),
        )
    })
}

impl Runner {
    /// Feeds the predictor one probe or call outcome (with its latency when it has one).
    pub(super) fn observe(
        &mut self,
        now: Instant,
        call: bool,
        latency: Option<Duration>,
        ok: bool,
    ) {
        let t = now.saturating_duration_since(self.origin).as_secs_f64();
        if let Some(p) = &mut self.predictor {
            p.observe(t, call, latency.map(|l| l.as_secs_f64()), ok);
        }
    }

    /// Reads the predictor's verdict into the view; a predicted failure drains the instance.
    pub(super) fn predict(&mut self) {
        let now = Instant::now();
        self.next_predict = now + PREDICT_EVERY;
        let t = now.saturating_duration_since(self.origin).as_secs_f64();
        let Some(p) = &mut self.predictor else { return };
        let a = p.evaluate(t);
        let status = Some(p.status());
        let seeds = (now >= self.next_publish).then(|| p.seeds());
        // A drift or a forecast failure holds the instance in `warning` (docs/contract.md, default policy).
        if let Some(t) = self.machine.on_degraded(degradation(&a)) {
            self.apply(t);
        }
        if let Some((probes, calls)) = seeds {
            if probes.is_some() || calls.is_some() {
                self.ctx.seeds.publish(&self.spec().name, probes, calls, warden_core::now());
                self.next_publish = now + PUBLISH_SEEDS_EVERY;
            }
        }
        self.show_prediction((!a.is_quiet()).then_some(a), status);
    }

    /// Publishes the verdict (`None`: quiet) and the predictor's status when either changed; a
    /// predicted failure or memory running out drains the instance.
    fn show_prediction(
        &mut self,
        shown: Option<warden_predict::Assessment>,
        status: Option<crate::PredictorStatus>,
    ) {
        let view = self.ctx.view.borrow();
        let changed = shown.is_some() || view.prediction.is_some() || view.predictor != status;
        drop(view);
        if changed {
            let draining =
                shown.as_ref().is_some_and(|a| a.predicted.is_some() || a.rss_exhaustion.is_some());
            self.update(|v| {
                v.prediction = shown;
                v.draining = draining;
                v.predictor = status;
            });
        }
    }

    /// A new process or connection: its trends start over (the server's baseline stays).
    /// A predictor not armed yet takes the server's seed (docs/contract.md, prediction).
    pub(super) fn predictor_restart(&mut self) {
        let seed = self.ctx.seeds.get(&self.spec().name);
        let Some(p) = &mut self.predictor else { return };
        p.restart();
        if seed.is_some_and(|s| p.seed_from(&s, warden_core::now())) {
            tracing::debug!(instance = %self.ctx.id, "prediction armed from the server's learnt baselines");
        }
        let status = Some(p.status());
        self.show_prediction(None, status);
    }

    pub(super) fn sample(&mut self) {
        let now = Instant::now();
        self.next_sample = now + self.ctx.metrics_interval;
        let snap = self.stats.snapshot(now);
        let restarts = self.restarts;
        // Each child leads its own process group: its RSS is the group's.
        let rss = self.rss.sample(self.view().pid.filter(|_| self.spec().is_stdio()));
        if let (Some(bytes), Some(p)) = (rss, &mut self.predictor) {
            p.observe_rss(now.saturating_duration_since(self.origin).as_secs_f64(), bytes);
        }
        self.update(|v| {
            v.stats = snap.clone();
            v.restarts = restarts;
            v.rss_bytes = rss;
        });
        if let Some(tx) = &self.ctx.samples {
            let v = self.view();
            let _ = tx.try_send(MetricSample {
                instance: self.ctx.id.clone(),
                at: warden_core::now(),
                state: v.state,
                response_time_ms: snap.p50_ms,
                p95_ms: snap.p95_ms,
                p99_ms: snap.p99_ms,
                error_rate: snap.error_rate,
                availability: snap.availability,
                throughput: snap.throughput,
            });
        }
    }
}
