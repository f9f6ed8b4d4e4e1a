//! `--only predict`: the failure predictor (`warden-predict`) on synthetic traces, as in the
//! research notes §7.3: 1 Hz calls, log latency around 50 ms with AR(1) noise (φ 0.5,
//! stationary σ 0.3), a 2 s call timeout. Latency ramps (linear in log space) of 60, 300 and
//! 900 s to the timeout, error-ratio ramps to the breaker threshold, and fault-free traces (pure
//! noise; noise with stalls) for false alarms. Pure computation on synthetic time: no processes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_predict::{Assessment, InstancePredictor, Limits, PredictorConfig, Signal};

const BASE: f64 = 0.05;
const TIMEOUT: f64 = 2.0;
const SIGMA: f64 = 0.3;
const PHI: f64 = 0.5;
const MIB: u64 = 1 << 20;
const DAY: u64 = 86_400;
const RAMPS: [u64; 3] = [60, 300, 900];
/// G12 targets: median and p10 lead per ramp length.
const TARGET_MEDIAN: [f64; 3] = [25.0, 100.0, 180.0];
const TARGET_P10: [f64; 3] = [0.0, 90.0, 150.0];

fn limits() -> Limits {
    Limits {
        memory_limit_bytes: Some(512 * MIB),
        ..Limits::new(std::time::Duration::from_secs_f64(TIMEOUT))
    }
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// AR(1) log-latency noise with stationary σ.
struct Ar1 {
    e: f64,
    innovation: f64,
}

impl Ar1 {
    fn new(rng: &mut StdRng) -> Self {
        Self { e: SIGMA * normal(rng), innovation: SIGMA * (1.0 - PHI * PHI).sqrt() }
    }

    fn next(&mut self, rng: &mut StdRng) -> f64 {
        self.e = PHI * self.e + self.innovation * normal(rng);
        self.e
    }
}

/// Poisson stalls with exponential lengths; a call sent during one waits for its end.
struct Stalls {
    per_hour: f64,
    mean: f64,
    next_start: f64,
    end: f64,
}

impl Stalls {
    fn new(rng: &mut StdRng, per_hour: f64, mean: f64) -> Self {
        let mut s = Self { per_hour, mean, next_start: f64::INFINITY, end: f64::NEG_INFINITY };
        s.next_start = s.gap(rng);
        s
    }

    fn gap(&self, rng: &mut StdRng) -> f64 {
        if self.per_hour <= 0.0 {
            return f64::INFINITY;
        }
        -rng.gen_range(f64::EPSILON..1.0f64).ln() * 3600.0 / self.per_hour
    }

    /// Seconds a call sent at `t` waits for a stall to end.
    fn wait(&mut self, rng: &mut StdRng, t: f64) -> f64 {
        while t >= self.next_start {
            let len = -rng.gen_range(f64::EPSILON..1.0f64).ln() * self.mean;
            self.end = self.end.max(self.next_start + len);
            self.next_start += self.gap(rng);
        }
        (self.end - t).max(0.0)
    }
}

/// When the alarms were first active at or after some time.
#[derive(Default)]
struct FirstActive {
    drift: Option<(f64, Signal)>,
    predicted: Option<(f64, Signal)>,
}

impl FirstActive {
    fn note(&mut self, a: &Assessment) {
        if let (None, Some(d)) = (self.drift, &a.drift) {
            self.drift = Some((a.at, d.signal));
        }
        if let (None, Some(p)) = (self.predicted, &a.predicted) {
            self.predicted = Some((a.at, p.signal));
        }
    }

    fn either(&self) -> Option<f64> {
        [self.drift, self.predicted].into_iter().flatten().map(|x| x.0).reduce(f64::min)
    }
}

/// One ramp's outcome: lead times (the failure time minus the alarm time; `None`: no alarm
/// before the run ended, 120 s after the failure), and whether either alarm came before the
/// fault's first visible failure.
struct RampResult {
    drift_lead: Option<f64>,
    predicted_lead: Option<f64>,
    announced: bool,
    early: bool,
    wrong_signal: bool,
}

/// A latency ramp from 50 ms at `onset` to the timeout at `onset + r`.
fn latency_ramp(cfg: &PredictorConfig, seed: u64, r: u64) -> RampResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut noise = Ar1::new(&mut rng);
    let mut p = InstancePredictor::new(limits(), cfg.clone());
    let onset = 2400 + rng.gen_range(0..600u64);
    let failure = (onset + r) as f64;
    let span = (TIMEOUT / BASE).ln();
    let (mut first, mut first_failed, mut early) = (FirstActive::default(), None, false);
    for s in 0..onset + r + 120 {
        let t = s as f64 + rng.gen_range(0.0..1.0);
        let frac = ((t - onset as f64) / r as f64).clamp(0.0, 1.0);
        let l = (BASE.ln() + span * frac + noise.next(&mut rng)).exp();
        p.observe_latency(t, l.min(TIMEOUT));
        p.observe_outcome(t, l < TIMEOUT);
        if l >= TIMEOUT && s >= onset {
            first_failed.get_or_insert(t);
        }
        let a = p.evaluate(t);
        if s < onset {
            early |= !a.is_quiet();
        } else {
            first.note(&a);
        }
    }
    let announced = match (first.either(), first_failed) {
        (Some(a), Some(f)) => a < f,
        (Some(_), None) => true,
        _ => false,
    };
    RampResult {
        drift_lead: first.drift.map(|d| failure - d.0),
        predicted_lead: first.predicted.map(|d| failure - d.0),
        announced,
        early,
        wrong_signal: false,
    }
}

/// A lasting step of the latency by `factor` at `onset`, far from the timeout: drift is
/// right, a predicted failure is not. Returns (drift raised, failure predicted).
fn latency_step(cfg: &PredictorConfig, seed: u64, factor: f64) -> (bool, bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut noise = Ar1::new(&mut rng);
    let mut p = InstancePredictor::new(limits(), cfg.clone());
    let onset = 2400 + rng.gen_range(0..600u64);
    let mut first = FirstActive::default();
    for s in 0..onset + 1800 {
        let t = s as f64 + rng.gen_range(0.0..1.0);
        let shift = if s >= onset { factor.ln() } else { 0.0 };
        let l = (BASE.ln() + shift + noise.next(&mut rng)).exp();
        p.observe_latency(t, l.min(TIMEOUT));
        p.observe_outcome(t, l < TIMEOUT);
        let a = p.evaluate(t);
        if s >= onset {
            first.note(&a);
        }
    }
    (first.drift.is_some(), first.predicted.is_some())
}

/// Two calls a second failing with 1 %, then a linear ramp over `r` seconds to all failing.
/// The failure is the breaker's trip: the first aligned 10 s window with ≥ 50 % of ≥ 10 calls.
fn error_ramp(cfg: &PredictorConfig, seed: u64, r: u64) -> RampResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut noise = Ar1::new(&mut rng);
    let mut p = InstancePredictor::new(limits(), cfg.clone());
    let onset = 2400 + rng.gen_range(0..600u64);
    let (mut first, mut trip, mut early, mut wrong) = (FirstActive::default(), None, false, false);
    let mut window = (0u32, 0u32);
    let mut s = 0;
    while trip.is_none_or(|t: f64| (s as f64) < t + 120.0) && s < onset + r + 600 {
        let frac = ((s as f64 - onset as f64) / r as f64).clamp(0.0, 1.0);
        let q = 0.01 + 0.99 * frac;
        for _ in 0..2 {
            let t = s as f64 + rng.gen_range(0.0..1.0);
            let ok = rng.gen::<f64>() >= q;
            p.observe_latency(t, (BASE.ln() + noise.next(&mut rng)).exp());
            p.observe_outcome(t, ok);
            window.0 += u32::from(!ok);
            window.1 += 1;
        }
        if s % 10 == 9 {
            if s >= onset && window.1 >= 10 && 2 * window.0 >= window.1 {
                trip.get_or_insert(s as f64 + 1.0);
            }
            window = (0, 0);
        }
        let a = p.evaluate(s as f64 + 1.0);
        if s < onset {
            early |= !a.is_quiet();
        } else {
            first.note(&a);
        }
        s += 1;
    }
    let trip = trip.unwrap_or(f64::INFINITY);
    if let Some((_, sig)) = first.predicted {
        wrong |= sig != Signal::ErrorRatio;
    }
    RampResult {
        drift_lead: first.drift.map(|d| trip - d.0),
        predicted_lead: first.predicted.map(|d| trip - d.0),
        announced: first.either().is_some_and(|a| a < trip),
        early,
        wrong_signal: wrong,
    }
}

/// Alarms raised on fault-free traces.
#[derive(Default)]
struct FalseAlarms {
    armed_seconds: f64,
    drift_latency: u32,
    drift_errors: u32,
    predicted_latency: u32,
    predicted_errors: u32,
    rss: u32,
}

impl FalseAlarms {
    fn days(&self) -> f64 {
        self.armed_seconds / DAY as f64
    }
}

/// `days` one-day instances (one call a second, 1 % of calls failing for reasons of their
/// own, RSS a 150–250 MiB sawtooth under a 512 MiB limit) with `stalls` per hour of the given
/// mean length.
fn fault_free(cfg: &PredictorConfig, seed0: u64, days: u64, stalls: (f64, f64)) -> FalseAlarms {
    let mut fa = FalseAlarms::default();
    for d in 0..days {
        let mut rng = StdRng::seed_from_u64(seed0 + d);
        let mut noise = Ar1::new(&mut rng);
        let mut stall = Stalls::new(&mut rng, stalls.0, stalls.1);
        let mut p = InstancePredictor::new(limits(), cfg.clone());
        let mut last = Assessment::default();
        for s in 0..DAY {
            let t = s as f64 + rng.gen_range(0.0..1.0);
            let l = stall.wait(&mut rng, t) + (BASE.ln() + noise.next(&mut rng)).exp();
            p.observe_latency(t, l.min(TIMEOUT));
            p.observe_outcome(t, l < TIMEOUT && rng.gen::<f64>() >= 0.01);
            if s % 5 == 0 {
                let rss = 150 * MIB + (s % 60) * 100 * MIB / 60 + rng.gen_range(0..MIB);
                p.observe_rss(t, rss);
            }
            let a = p.evaluate(t);
            if a.armed {
                fa.armed_seconds += 1.0;
            }
            match (&last.drift, &a.drift) {
                (None, Some(d)) if d.signal == Signal::Latency => fa.drift_latency += 1,
                (None, Some(_)) => fa.drift_errors += 1,
                _ => {}
            }
            match (&last.predicted, &a.predicted) {
                (None, Some(p)) if p.signal == Signal::Latency => fa.predicted_latency += 1,
                (None, Some(_)) => fa.predicted_errors += 1,
                _ => {}
            }
            fa.rss += u32::from(last.rss_exhaustion.is_none() && a.rss_exhaustion.is_some());
            last = a;
        }
    }
    fa
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Leads with misses counted as −∞ (a miss is worse than any late alarm).
fn leads(rs: &[RampResult], pick: impl Fn(&RampResult) -> Option<f64>) -> Vec<f64> {
    rs.iter().map(|r| pick(r).unwrap_or(f64::NEG_INFINITY)).collect()
}

fn fmt_lead(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.0}")
    } else {
        "missed".into()
    }
}

fn share(rs: &[RampResult], f: impl Fn(&RampResult) -> bool) -> f64 {
    rs.iter().filter(|r| f(r)).count() as f64 / rs.len().max(1) as f64 * 100.0
}

/// Lead and false alarm figures with the default configuration.
pub(crate) fn report(seeds: u64, days: u64) -> String {
    report_with(&PredictorConfig::default(), seeds, days)
}

pub(crate) fn report_with(cfg: &PredictorConfig, seeds: u64, days: u64) -> String {
    let started = std::time::Instant::now();
    let mut out = format!(
        "## Failure prediction (`warden-predict`) on synthetic traces\n\n\
         Re-run: `target/release/warden-bench --only predict --predict-seeds {seeds} \
         --predict-days {days}` (pure computation on synthetic time, seeded: the same numbers \
         on any machine). Traces as in research §7.3: one call a second, log latency around \
         50 ms with AR(1) noise (φ 0.5, stationary σ 0.3), a 2 s call timeout; the default \
         `PredictorConfig`.\n\n\
         ### Latency ramps (linear in log space, 50 ms → 2 s), seeds 0..{seeds} per length\n\n\
         Onset after 40–50 min of noise (baseline learnt). Lead = the time the mean reaches the \
         timeout − the first alarm at or after the onset; \"announced\" = either alarm before \
         the first failed call (the first sample above the timeout, usually well before the \
         mean gets there).\n\n\
         | ramp | alarm | median lead s | p10 s | min s | missed | target median (p10) | met |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    let mut announced_row = String::new();
    for (i, &r) in RAMPS.iter().enumerate() {
        let rs: Vec<RampResult> = (0..seeds).map(|s| latency_ramp(cfg, s, r)).collect();
        for (name, pick) in [
            ("Warning (CUSUM drift)", (|x: &RampResult| x.drift_lead) as fn(&RampResult) -> _),
            ("PredictedFailure (Holt)", |x: &RampResult| x.predicted_lead),
            ("first of the two", |x: &RampResult| match (x.drift_lead, x.predicted_lead) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }),
        ] {
            let l = leads(&rs, pick);
            let (med, p10) = (quantile(&l, 0.5), quantile(&l, 0.1));
            let missed = l.iter().filter(|x| !x.is_finite()).count();
            let met = med >= TARGET_MEDIAN[i] && p10 >= TARGET_P10[i];
            out += &format!(
                "| {r} s | {name} | {} | {} | {} | {missed} | ≥ {} (≥ {}) | {} |\n",
                fmt_lead(med),
                fmt_lead(p10),
                fmt_lead(quantile(&l, 0.0)),
                TARGET_MEDIAN[i],
                TARGET_P10[i],
                if met { "yes" } else { "**no**" },
            );
        }
        let early = rs.iter().filter(|x| x.early).count();
        announced_row += &format!("| {r} s | {:.1} % | {early} |\n", share(&rs, |x| x.announced));
    }
    out += &format!(
        "\n| ramp | announced before the first failed call (target ≥ 95 %) | runs with an alarm before the onset |\n\
         |---|---|---|\n{announced_row}\n"
    );

    out += &format!(
        "### Lasting latency steps (not towards failure), seeds 0..{seeds} per factor\n\n\
         The latency mean steps up at the onset and stays there, far below the timeout, for 30 \
         minutes. Drift is the right answer; a predicted failure is a false alarm (Holt's trend \
         overshoots while the level catches up with a step).\n\n\
         | step | Warning raised | PredictedFailure raised |\n|---|---|---|\n"
    );
    for factor in [2.0, 3.0, 5.0, 10.0] {
        let rs: Vec<(bool, bool)> =
            (0..seeds).map(|s| latency_step(cfg, 50_000 + s, factor)).collect();
        let pct = |f: fn(&(bool, bool)) -> bool| {
            rs.iter().filter(|x| f(x)).count() as f64 / rs.len().max(1) as f64 * 100.0
        };
        out += &format!(
            "| ×{factor} ({:.0} ms) | {:.1} % | {:.1} % |\n",
            BASE * factor * 1000.0,
            pct(|x| x.0),
            pct(|x| x.1)
        );
    }
    out += "\n";

    out += &format!(
        "### Error-ratio ramps (2 calls/s, 1 % → 100 % failing), seeds 0..{seeds} per length\n\n\
         The failure is the breaker's trip (the first 10 s window with ≥ 50 % of ≥ 10 calls \
         failed); lead = trip − first alarm.\n\n\
         | ramp | Warning median (p10) s | PredictedFailure median (p10) s | announced before the trip | predicted on another signal |\n\
         |---|---|---|---|---|\n"
    );
    for &r in &RAMPS {
        let rs: Vec<RampResult> = (0..seeds).map(|s| error_ramp(cfg, 10_000 + s, r)).collect();
        let d = leads(&rs, |x| x.drift_lead);
        let p = leads(&rs, |x| x.predicted_lead);
        out += &format!(
            "| {r} s | {} ({}) | {} ({}) | {:.1} % | {} |\n",
            fmt_lead(quantile(&d, 0.5)),
            fmt_lead(quantile(&d, 0.1)),
            fmt_lead(quantile(&p, 0.5)),
            fmt_lead(quantile(&p, 0.1)),
            share(&rs, |x| x.announced),
            rs.iter().filter(|x| x.wrong_signal).count(),
        );
    }

    out += &format!(
        "\n### False alarms on fault-free traces, {days} instance-days each\n\n\
         One simulated day per seed; 1 % of calls fail on their own; RSS a 150–250 MiB sawtooth \
         under a 512 MiB limit. Rates per armed instance-day (the first 10 minutes of each day \
         are warm-up). Stalls: Poisson arrivals, exponential lengths; a call sent during a stall \
         waits for its end (and fails if that is more than 2 s).\n\n\
         | trace | instance-days | Warning: latency, error ratio | per day (target ≤ 0.5) | PredictedFailure: latency, error ratio | per day (target ≤ 0.05) | RSS exhaustion |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for (name, seed0, stalls) in [
        ("noise only", 20_000, (0.0, 0.0)),
        ("stalls 2/h, mean 0.5 s", 30_000, (2.0, 0.5)),
        ("stalls 6/h, mean 1.5 s", 40_000, (6.0, 1.5)),
    ] {
        let fa = fault_free(cfg, seed0, days, stalls);
        let warn = f64::from(fa.drift_latency + fa.drift_errors) / fa.days();
        let pred = f64::from(fa.predicted_latency + fa.predicted_errors) / fa.days();
        out += &format!(
            "| {name} | {:.1} | {}, {} | {warn:.3} {} | {}, {} | {pred:.3} {} | {} |\n",
            fa.days(),
            fa.drift_latency,
            fa.drift_errors,
            if warn <= 0.5 { "(met)" } else { "(**not met**)" },
            fa.predicted_latency,
            fa.predicted_errors,
            if pred <= 0.05 { "(met)" } else { "(**not met**)" },
            fa.rss,
        );
    }
    out += &format!("\n(Computed in {:.0} s.)\n\n", started.elapsed().as_secs_f64());
    out
}
