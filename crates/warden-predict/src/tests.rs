//! The predictor on synthetic traces (research §7.3): 1 Hz log latency around 50 ms, AR(1)
//! noise with φ = 0.5 and a stationary σ of 0.3, a 2 s call timeout. Seeded, so every run sees
//! the same numbers.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Assessment, InstancePredictor, Limits, PredictorConfig, Seed, Signal};

const BASE: f64 = 0.05;
const TIMEOUT: f64 = 2.0;
const MIB: u64 = 1 << 20;

fn predictor() -> InstancePredictor {
    InstancePredictor::new(
        Limits::new(Duration::from_secs_f64(TIMEOUT)),
        PredictorConfig::default(),
    )
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// AR(1) noise with stationary standard deviation `sigma`.
struct Ar1 {
    rng: StdRng,
    phi: f64,
    innovation: f64,
    e: f64,
}

impl Ar1 {
    fn new(seed: u64, sigma: f64, phi: f64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let e = sigma * normal(&mut rng);
        Self { rng, phi, innovation: sigma * (1.0 - phi * phi).sqrt(), e }
    }

    fn next(&mut self) -> f64 {
        self.e = self.phi * self.e + self.innovation * normal(&mut self.rng);
        self.e
    }
}

/// When each alarm was first raised, and how many times each was raised.
#[derive(Debug, Default)]
struct Record {
    first_drift: Option<(f64, Signal)>,
    first_predicted: Option<(f64, Signal)>,
    first_rss: Option<f64>,
    drifts: u32,
    predictions: u32,
    exhaustions: u32,
    armed_at: Option<f64>,
    last: Assessment,
}

impl Record {
    fn note(&mut self, a: Assessment) {
        if let Some(d) = &a.drift {
            if self.last.drift.is_none() {
                self.drifts += 1;
                self.first_drift.get_or_insert((a.at, d.signal));
            }
        }
        if let Some(p) = &a.predicted {
            if self.last.predicted.is_none() {
                self.predictions += 1;
                self.first_predicted.get_or_insert((a.at, p.signal));
            }
        }
        if a.rss_exhaustion.is_some() && self.last.rss_exhaustion.is_none() {
            self.exhaustions += 1;
            self.first_rss.get_or_insert(a.at);
        }
        if a.armed {
            self.armed_at.get_or_insert(a.at);
        }
        self.last = a;
    }

    fn first_alarm(&self) -> Option<f64> {
        match (self.first_drift, self.first_predicted) {
            (Some(a), Some(b)) => Some(a.0.min(b.0)),
            (a, b) => a.or(b).map(|x| x.0),
        }
    }
}

/// Feeds one call a second from `from` to `to` (latency from `latency(t)`, capped at the
/// timeout, which fails the call) and evaluates after each.
fn run(
    p: &mut InstancePredictor,
    rec: &mut Record,
    from: u64,
    to: u64,
    mut latency: impl FnMut(u64) -> f64,
) {
    for s in from..to {
        let t = s as f64 + 0.5;
        let l = latency(s);
        p.observe_latency(t, l.min(TIMEOUT));
        p.observe_outcome(t, l < TIMEOUT);
        rec.note(p.evaluate(t));
    }
}

/// A log-linear ramp from 50 ms at `onset` to the timeout at `onset + r`, then held.
fn ramp_mean(s: u64, onset: u64, r: u64) -> f64 {
    let frac = (s.saturating_sub(onset) as f64 / r as f64).min(1.0);
    BASE.ln() + (TIMEOUT / BASE).ln() * frac
}

#[test]
fn not_armed_during_warm_up_even_on_a_ramp() {
    let mut p = predictor();
    let mut rec = Record::default();
    let mut noise = Ar1::new(1, 0.3, 0.5);
    // A ramp to the timeout in the first eight minutes: too early to judge.
    run(&mut p, &mut rec, 0, 599, |s| (ramp_mean(s, 120, 360) + noise.next()).exp());
    assert!(!rec.last.armed);
    assert_eq!((rec.drifts, rec.predictions), (0, 0), "{rec:?}");
    let mut rec = Record::default();
    let mut noise = Ar1::new(2, 0.3, 0.5);
    run(&mut p, &mut rec, 599, 900, |_| (BASE.ln() + noise.next()).exp());
    let armed = rec.armed_at.expect("armed after the warm-up");
    assert!((600.0..=700.0).contains(&armed), "armed at {armed}");
}

#[test]
fn ramps_raise_predicted_failure_before_the_crossing() {
    for r in [60u64, 300, 900] {
        for seed in 0..4 {
            let mut p = predictor();
            let mut rec = Record::default();
            let mut noise = Ar1::new(100 + seed, 0.3, 0.5);
            let onset = 2400 + seed * 7;
            let mut first_failed = None;
            run(&mut p, &mut rec, 0, onset + r + 60, |s| {
                let l = (ramp_mean(s, onset, r) + noise.next()).exp();
                if l >= TIMEOUT {
                    first_failed.get_or_insert(s as f64 + 0.5);
                }
                l
            });
            let crossing = (onset + r) as f64;
            let (at, signal) = rec.first_predicted.unwrap_or_else(|| panic!("R={r}: {rec:?}"));
            assert!(at >= onset as f64, "R={r} seed {seed}: raised before the onset");
            assert!(at < crossing, "R={r} seed {seed}: predicted at {at}, crossing {crossing}");
            assert_eq!(signal, Signal::Latency);
            let (drift_at, _) = rec.first_drift.expect("the drift is seen too");
            assert!(drift_at < crossing, "R={r} seed {seed}: drift at {drift_at}");
            let first_failed = first_failed.expect("the ramp ends in failed calls");
            assert!(
                rec.first_alarm().unwrap() < first_failed,
                "R={r} seed {seed}: announced after the first failed call at {first_failed}"
            );
        }
    }
}

#[test]
fn a_sparse_instance_probed_every_five_seconds_is_predicted_too() {
    let mut p = predictor();
    let mut rec = Record::default();
    let mut noise = Ar1::new(7, 0.3, 0.5);
    let (onset, r) = (2400u64, 300u64);
    for s in (0..onset + r).step_by(5) {
        let t = s as f64 + 0.25;
        let l = (ramp_mean(s, onset, r) + noise.next()).exp();
        p.observe_latency(t, l.min(TIMEOUT));
        p.observe_outcome(t, l < TIMEOUT);
        rec.note(p.evaluate(t));
    }
    let (at, _) = rec.first_predicted.expect("predicted");
    assert!(at > onset as f64 && at < (onset + r) as f64, "{at}");
}

#[test]
fn a_single_spike_or_a_three_second_stall_raises_nothing() {
    let mut p = predictor();
    let mut rec = Record::default();
    let mut noise = Ar1::new(3, 0.3, 0.5);
    run(&mut p, &mut rec, 0, 2400, |_| (BASE.ln() + noise.next()).exp());
    assert!(rec.last.armed);
    // One sample 10× the baseline.
    run(&mut p, &mut rec, 2400, 2401, |_| 10.0 * BASE);
    run(&mut p, &mut rec, 2401, 2700, |_| (BASE.ln() + noise.next()).exp());
    // A 3 s stall: the calls sent during it wait for its end (3 s, timed out; 2 s; 1 s).
    run(&mut p, &mut rec, 2700, 2703, |s| (2703 - s) as f64 + BASE);
    run(&mut p, &mut rec, 2703, 3600, |_| (BASE.ln() + noise.next()).exp());
    assert_eq!((rec.drifts, rec.predictions), (0, 0), "{rec:?}");
}

#[test]
fn a_steady_server_does_not_call_a_small_change_drift() {
    // σ would be 0 on a constant trace: the floor keeps a 5 % change from being drift.
    let mut p = predictor();
    let mut rec = Record::default();
    run(&mut p, &mut rec, 0, 2400, |_| BASE);
    run(&mut p, &mut rec, 2400, 4800, |_| BASE * 1.05);
    assert_eq!((rec.drifts, rec.predictions), (0, 0));
    // Doubling is.
    run(&mut p, &mut rec, 4800, 5400, |_| BASE * 2.0);
    assert_eq!(rec.drifts, 1);
    assert_eq!(rec.predictions, 0, "far from the timeout");
}

#[test]
fn a_permanent_harmless_slowdown_becomes_the_new_normal() {
    let mut p = predictor();
    let mut rec = Record::default();
    let mut noise = Ar1::new(8, 0.3, 0.5);
    run(&mut p, &mut rec, 0, 2400, |_| (BASE.ln() + noise.next()).exp());
    // Twice as slow for good, far from the timeout: drift, then accepted.
    run(&mut p, &mut rec, 2400, 7200, |_| (BASE.ln() + 2f64.ln() + noise.next()).exp());
    let (raised, _) = rec.first_drift.expect("the step is drift");
    assert!(raised < 2500.0, "{raised}");
    assert!(rec.last.drift.is_none(), "accepted after 30 minutes: {:?}", rec.last.drift);
    assert_eq!((rec.drifts, rec.predictions), (1, 0), "{rec:?}");
    // And the new normal is what later drift is measured against.
    run(&mut p, &mut rec, 7200, 7800, |_| (BASE.ln() + 4f64.ln() + noise.next()).exp());
    assert_eq!(rec.drifts, 2);
    let d = rec.last.drift.unwrap();
    assert!((d.baseline / (2.0 * BASE) - 1.0).abs() < 0.2, "{d:?}");
    assert!((d.recent / (4.0 * BASE)).ln().abs() < 0.5, "{d:?}");
}

/// The documented bound for this test (seeded, so it is exact): at most one drift warning a
/// simulated day. The benchmark measures the rate over 100 instance-days.
#[test]
fn a_noisy_but_healthy_server_raises_no_predicted_failure_over_two_days() {
    let mut p = InstancePredictor::new(
        Limits {
            memory_limit_bytes: Some(512 * MIB),
            ..Limits::new(Duration::from_secs_f64(TIMEOUT))
        },
        PredictorConfig::default(),
    );
    let mut rec = Record::default();
    let mut noise = Ar1::new(42, 0.3, 0.5);
    let mut rng = StdRng::seed_from_u64(43);
    let days = 2;
    for s in 0..days * 86_400u64 {
        let t = s as f64 + 0.5;
        let l = (BASE.ln() + noise.next()).exp();
        p.observe_latency(t, l.min(TIMEOUT));
        // 1 % of calls fail for reasons of their own.
        p.observe_outcome(t, l < TIMEOUT && rng.gen::<f64>() >= 0.01);
        if s % 5 == 0 {
            // A garbage-collected heap: a 60 s sawtooth between 150 and 250 MiB.
            let rss = 150 * MIB + (s % 60) * 100 * MIB / 60 + rng.gen_range(0..MIB);
            p.observe_rss(t, rss);
        }
        rec.note(p.evaluate(t));
    }
    assert_eq!(rec.predictions, 0, "{rec:?}");
    assert_eq!(rec.exhaustions, 0, "{rec:?}");
    assert!(rec.drifts <= days as u32, "{} drift warnings in {days} days", rec.drifts);
}

#[test]
fn an_error_ratio_ramp_is_predicted_before_the_breaker_opens() {
    let mut p = predictor();
    let mut rec = Record::default();
    let mut rng = StdRng::seed_from_u64(5);
    let (onset, r) = (2400u64, 300u64);
    let mut tripped = None;
    let mut batch = (0u32, 0u32);
    for s in 0..onset + r {
        // Two calls a second, 1 % failing, then a linear ramp to all failing.
        let frac = (s.saturating_sub(onset) as f64 / r as f64).min(1.0);
        let q = 0.01 + 0.99 * frac;
        for half in [0.25, 0.75] {
            let t = s as f64 + half;
            let ok = rng.gen::<f64>() >= q;
            p.observe_latency(t, BASE);
            p.observe_outcome(t, ok);
            batch.0 += u32::from(!ok);
            batch.1 += 1;
        }
        if s % 10 == 9 {
            // The breaker's own rule: ≥ 50 % of ≥ 10 calls in 10 s.
            if batch.1 >= 10 && f64::from(batch.0) >= 0.5 * f64::from(batch.1) {
                tripped.get_or_insert(s as f64 + 1.0);
            }
            batch = (0, 0);
        }
        rec.note(p.evaluate(s as f64 + 0.9));
    }
    let tripped = tripped.expect("the ramp trips the breaker");
    let (at, signal) = rec.first_predicted.expect("predicted");
    assert_eq!(signal, Signal::ErrorRatio);
    assert!(at < tripped, "predicted at {at}, breaker at {tripped}");
    let (drift_at, drift_signal) = rec.first_drift.expect("drift");
    assert_eq!(drift_signal, Signal::ErrorRatio);
    assert!(drift_at < at);
}

#[test]
fn a_quiet_instance_with_failing_probes_carries_its_batches() {
    // One probe every 5 s (2 per batch window): a batch closes only with 10 outcomes, so a
    // lone failed probe is never a 50 % ratio.
    let mut p = predictor();
    let mut rec = Record::default();
    let mut rng = StdRng::seed_from_u64(9);
    for s in (0..6 * 3600u64).step_by(5) {
        let t = f64::from(s as u32);
        p.observe_latency(t, BASE);
        p.observe_outcome(t, rng.gen::<f64>() >= 0.02);
        rec.note(p.evaluate(t));
    }
    assert_eq!((rec.drifts, rec.predictions), (0, 0), "{rec:?}");
}

#[test]
fn an_rss_leak_is_announced_ahead_of_the_limit() {
    let limits = Limits {
        memory_limit_bytes: Some(512 * MIB),
        ..Limits::new(Duration::from_secs_f64(TIMEOUT))
    };
    let mut p = InstancePredictor::new(limits, PredictorConfig::default());
    let mut rec = Record::default();
    let mut rng = StdRng::seed_from_u64(11);
    // 100 MiB growing 0.5 MiB/s with ±4 MiB noise: the limit is reached at 824 s.
    let reach = (512.0 - 100.0) / 0.5;
    let mut s = 0.0;
    while s < reach {
        let rss = 100.0 * MIB as f64 + 0.5 * MIB as f64 * s + rng.gen_range(-4.0..4.0) * MIB as f64;
        p.observe_rss(s, rss as u64);
        rec.note(p.evaluate(s));
        s += 5.0;
    }
    let at = rec.first_rss.expect("exhaustion forecast");
    // The window needs 2 minutes and the forecast 10 minutes' notice, held 30 s.
    assert!(at <= reach - 540.0, "raised at {at}, {} s ahead", reach - at);
    let e = rec.last.rss_exhaustion.unwrap();
    assert_eq!(e.limit_bytes, 512 * MIB);
    assert!((e.slope_bytes_per_second / (0.5 * MIB as f64) - 1.0).abs() < 0.1, "{e:?}");
    assert!(e.eta_seconds.unwrap() < 20.0, "{e:?}");
    assert!(!rec.last.armed, "RSS needs no latency baseline");
    let p = e.as_prediction();
    assert_eq!((p.signal.as_str(), p.limit), ("rss", (512 * MIB) as f64));
}

#[test]
fn no_memory_limit_no_rss_forecast_and_one_spike_is_not_a_leak() {
    let mut p = predictor();
    for i in 0..400 {
        let s = f64::from(i) * 5.0;
        p.observe_rss(s, 100 * MIB + (s as u64) * MIB);
        assert!(p.evaluate(s).rss_exhaustion.is_none());
    }
    let limits = Limits {
        memory_limit_bytes: Some(512 * MIB),
        ..Limits::new(Duration::from_secs_f64(TIMEOUT))
    };
    let mut p = InstancePredictor::new(limits, PredictorConfig::default());
    for i in 0..400 {
        let s = f64::from(i) * 5.0;
        // Flat at 200 MiB, one sample at 500 MiB.
        p.observe_rss(s, if i == 300 { 500 * MIB } else { 200 * MIB });
        assert!(p.evaluate(s).rss_exhaustion.is_none(), "at {s}");
    }
}

#[test]
fn restart_clears_alarms_and_keeps_the_baseline() {
    let mut p = predictor();
    let mut rec = Record::default();
    let mut noise = Ar1::new(21, 0.3, 0.5);
    run(&mut p, &mut rec, 0, 2400, |_| (BASE.ln() + noise.next()).exp());
    run(&mut p, &mut rec, 2400, 2700, |s| (ramp_mean(s, 2400, 300) + noise.next()).exp());
    assert!(rec.last.predicted.is_some() && rec.last.drift.is_some(), "{:?}", rec.last);
    p.restart();
    let a = p.evaluate(2700.0);
    assert!(a.is_quiet() && a.armed, "{a:?}");
    let mut rec = Record::default();
    run(&mut p, &mut rec, 2700, 3600, |_| (BASE.ln() + noise.next()).exp());
    assert!(rec.armed_at == Some(2700.5), "still armed");
    assert_eq!((rec.drifts, rec.predictions), (0, 0), "{rec:?}");
}

#[test]
fn the_assessment_round_trips_through_json() {
    let mut p = predictor();
    let mut rec = Record::default();
    let mut noise = Ar1::new(4, 0.3, 0.5);
    run(&mut p, &mut rec, 0, 2400, |_| (BASE.ln() + noise.next()).exp());
    run(&mut p, &mut rec, 2400, 2650, |s| (ramp_mean(s, 2400, 300) + noise.next()).exp());
    let a = rec.last.clone();
    assert!(a.predicted.is_some());
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["predicted"]["signal"], "latency");
    assert_eq!(json["predicted"]["limit"], 2.0);
    let back: Assessment = serde_json::from_value(json).unwrap();
    assert_eq!(back, a);
}

/// A steady server (jitter well under the σ floor) whose latency then climbs 50 ms a second,
/// linearly in milliseconds, from 25 ms to the 2 s timeout in 40 s, with calls back to back:
/// the forecast must not be held back by the robust Holt's clip (a run of same-sign clipped
/// errors is a level shift, not an outlier). Warm-up shortened as `warden.prediction.warmup`
/// allows.
#[test]
fn a_steady_servers_fast_ramp_is_predicted_well_before_the_timeout() {
    let cfg = PredictorConfig { warmup: 20.0, warmup_batches: 2, ..PredictorConfig::default() };
    let mut p = InstancePredictor::new(Limits::new(std::time::Duration::from_secs(2)), cfg);
    let (mut t, mut k, mut predicted_at) = (0.0f64, 0u64, None);
    let mut timeout_at = None;
    while t < 75.0 {
        let ramp = if t > 30.0 { (t - 30.0) * 0.05 } else { 0.0 };
        let lat = 0.02 + 0.01 * ((k * 7919 % 100) as f64 / 100.0) + ramp;
        t += lat;
        p.observe_latency(t, lat);
        p.observe_outcome(t, true);
        if lat >= 2.0 && timeout_at.is_none() {
            timeout_at = Some(t);
        }
        t += 0.2;
        k += 1;
        if predicted_at.is_none() && p.evaluate(t).predicted.is_some() {
            predicted_at = Some(t);
        }
    }
    let (predicted, timeout) = (predicted_at.expect("predicted"), timeout_at.expect("timed out"));
    assert!(
        timeout - predicted >= 15.0,
        "predicted at {predicted:.1} s, timeout at {timeout:.1} s"
    );
}

/// A learnt baseline passed to a new instance of the same server (a replica, a standby, the
/// same server after Warden restarted) arms it at once: a ramp from its very start is predicted
/// before the crossing, where an unseeded predictor is still warming up. The seed holds until
/// the instance's own data has warmed up, so the ramp never becomes its normal.
#[test]
fn a_seeded_instance_is_armed_at_once_and_predicts_a_ramp_from_its_start() {
    let mut old = predictor();
    let mut rec = Record::default();
    let mut noise = Ar1::new(31, 0.3, 0.5);
    assert!(old.seed().is_none(), "nothing learnt yet");
    run(&mut old, &mut rec, 0, 2400, |_| (BASE.ln() + noise.next()).exp());
    let seed = old.seed().expect("an armed predictor passes its baselines on");
    // The store keeps it as JSON.
    let seed: Seed = serde_json::from_value(serde_json::to_value(seed).unwrap()).unwrap();

    let (onset, r) = (30u64, 300u64);
    let mut cold = predictor();
    let mut cold_rec = Record::default();
    let mut noise = Ar1::new(32, 0.3, 0.5);
    run(&mut cold, &mut cold_rec, 0, onset + r, |s| (ramp_mean(s, onset, r) + noise.next()).exp());
    assert_eq!(cold_rec.first_predicted, None, "unseeded: still warming up");

    let mut fresh = predictor();
    assert!(fresh.apply_seed(&seed));
    assert!(fresh.is_seeded());
    assert!(fresh.evaluate(0.0).armed, "armed before its first sample");
    assert!(fresh.seed().is_none(), "a seed is passed on only once learnt from its own data");
    let mut rec = Record::default();
    let mut noise = Ar1::new(32, 0.3, 0.5);
    run(&mut fresh, &mut rec, 0, onset + r, |s| (ramp_mean(s, onset, r) + noise.next()).exp());
    let (at, signal) = rec.first_predicted.expect("the seeded instance predicts the ramp");
    assert_eq!(signal, Signal::Latency);
    assert!(at > onset as f64 && at < (onset + r) as f64, "predicted at {at}");
}

/// A seeded instance that runs steady raises nothing, goes on to learn its own baseline after
/// the warm-up and then passes that on; a seed that is not a baseline (NaN, σ ≤ 0, a ratio
/// outside 0..1) is refused and leaves the predictor as it was.
#[test]
fn a_seeded_steady_instance_stays_quiet_then_learns_its_own_baseline() {
    let mut old = predictor();
    let mut noise = Ar1::new(41, 0.3, 0.5);
    run(&mut old, &mut Record::default(), 0, 2400, |_| (BASE.ln() + noise.next()).exp());
    let seed = old.seed().unwrap();

    let mut p = predictor();
    assert!(p.apply_seed(&seed));
    let mut rec = Record::default();
    run(&mut p, &mut rec, 0, 700, |_| (BASE.ln() + noise.next()).exp());
    assert_eq!((rec.drifts, rec.predictions), (0, 0), "{rec:?}");
    assert!(!p.is_seeded(), "its own warm-up is over");
    assert!(p.seed().is_some());

    let mut bad = seed;
    if let Some(l) = bad.latency.as_mut() {
        l.batch_sigma = f64::NAN;
    }
    let mut q = predictor();
    assert!(!q.apply_seed(&bad));
    assert!(!q.evaluate(0.0).armed && !q.is_seeded());
    let mut bad = seed;
    if let Some(e) = bad.errors.as_mut() {
        e.ratio = 1.5;
    }
    assert!(!q.apply_seed(&bad));
    assert!(!q.evaluate(0.0).armed);
}
