//! The per-instance health state machine (docs/contract.md).
//!
//! It governs the states of a live session: `starting → warning ⇄ healthy`, `→ critical` and back.
//! `offline`, `failed` and `stopped` belong to the supervisor, which owns the process.

use std::time::Duration;

use tokio::time::Instant;
use warden_core::{InstanceState, Reason};

/// Consecutive probe outcomes needed to change state.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Consecutive failed probes ⇒ `critical` (default 3).
    pub unhealthy: u32,
    /// Consecutive good probes to climb one level (default 2).
    pub healthy: u32,
}

/// A state change the machine decided on.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub from: InstanceState,
    pub to: InstanceState,
    pub reason: Option<Reason>,
}

/// The outcome of a real call, as a passive health signal.
#[derive(Clone, Debug)]
pub enum CallOutcome {
    Ok,
    /// The tool answered with `isError: true`, or the caller sent bad params: the server is fine.
    Ignorable,
    Failed(Reason),
}

/// Consecutive passive failures that eject an instance (Envoy and Finagle use 5).
const PASSIVE_CONSECUTIVE: u32 = 5;
/// Failure-rate trip: ≥ 50 % of ≥ 10 calls in 10 s.
const RATE_MIN_CALLS: u32 = 10;
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Passive failure EWMA (≈ the last 20 calls) that turns healthy into warning…
const EWMA_WARN: f64 = 0.05;
/// …and the level it must fall to before warning may climb back to healthy.
const EWMA_CLEAR: f64 = 0.02;
const EWMA_ALPHA: f64 = 0.1;
/// Without calls, old failures fade: the EWMA decays with this time constant (Finagle's 10 s).
const EWMA_DECAY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct HealthMachine {
    th: Thresholds,
    state: InstanceState,
    ok_streak: u32,
    fail_streak: u32,
    passive_fail_streak: u32,
    passive_ewma: f64,
    passive_at: Option<Instant>,
    /// (bucket start, calls, failures) over the last 10 s, 1 s buckets.
    buckets: Vec<(Instant, u32, u32)>,
    last_reason: Option<Reason>,
    /// A degradation the predictor sees (a drift, a forecast failure): holds the instance in
    /// `warning` while it lasts.
    degraded: Option<Reason>,
}

impl HealthMachine {
    pub fn new(th: Thresholds) -> Self {
        Self {
            th,
            state: InstanceState::Starting,
            ok_streak: 0,
            fail_streak: 0,
            passive_fail_streak: 0,
            passive_ewma: 0.0,
            passive_at: None,
            buckets: Vec::new(),
            last_reason: None,
            degraded: None,
        }
    }

    pub fn state(&self) -> InstanceState {
        self.state
    }

    /// New thresholds (a live reload changed the health policy); the streaks so far count.
    pub fn set_thresholds(&mut self, th: Thresholds) {
        self.th = th;
    }

    /// Consecutive failed probes so far.
    pub fn probe_failures(&self) -> u32 {
        self.fail_streak
    }

    /// The last failure seen while the instance is not healthy.
    pub fn reason(&self) -> Option<&Reason> {
        self.last_reason.as_ref()
    }

    /// Back to `starting` for a new session (after a restart or reconnect).
    pub fn reset(&mut self) {
        *self = Self::new(self.th);
    }

    /// The handshake succeeded: `starting → warning`. Never straight to healthy.
    pub fn on_connected(&mut self) -> Option<Transition> {
        self.ok_streak = 0;
        self.fail_streak = 0;
        self.go(InstanceState::Warning, None)
    }

    /// The passive failure EWMA at `now`, decayed for the time without calls.
    fn passive_ewma(&self, now: Instant) -> f64 {
        match self.passive_at {
            Some(at) => {
                let idle = now.saturating_duration_since(at).as_secs_f64();
                self.passive_ewma * (-idle / EWMA_DECAY.as_secs_f64()).exp()
            }
            None => 0.0,
        }
    }

    pub fn on_probe_ok(&mut self, now: Instant) -> Option<Transition> {
        self.fail_streak = 0;
        self.ok_streak += 1;
        match self.state {
            InstanceState::Critical if self.ok_streak >= self.th.healthy => {
                self.ok_streak = 0;
                let reason = self.last_reason.clone();
                self.go(InstanceState::Warning, reason)
            }
            InstanceState::Warning
                if self.ok_streak >= self.th.healthy
                    && self.passive_ewma(now) <= EWMA_CLEAR
                    && self.degraded.is_none() =>
            {
                self.last_reason = None;
                self.go(InstanceState::Healthy, None)
            }
            _ => None,
        }
    }

    pub fn on_probe_failed(&mut self, reason: Reason) -> Option<Transition> {
        self.ok_streak = 0;
        self.fail_streak += 1;
        self.last_reason = Some(reason.clone());
        match self.state {
            InstanceState::Healthy | InstanceState::Warning
                if self.fail_streak >= self.th.unhealthy =>
            {
                self.go(InstanceState::Critical, Some(reason))
            }
            InstanceState::Healthy => self.go(InstanceState::Warning, Some(reason)),
            _ => None,
        }
    }

    /// The connection itself broke (refused, reset): straight to `critical`.
    pub fn on_connection_lost(&mut self, reason: Reason) -> Option<Transition> {
        self.ok_streak = 0;
        self.last_reason = Some(reason.clone());
        match self.state {
            InstanceState::Healthy | InstanceState::Warning | InstanceState::Starting => {
                self.go(InstanceState::Critical, Some(reason))
            }
            _ => None,
        }
    }

    /// The predictor's verdict (every few seconds): `Some` while it sees a degradation — a
    /// healthy instance turns `warning` with that reason, and stays there until the
    /// degradation is gone and probes succeed again; `None` lifts the hold.
    pub fn on_degraded(&mut self, reason: Option<Reason>) -> Option<Transition> {
        self.degraded = reason.clone();
        match (self.state, reason) {
            (InstanceState::Healthy, Some(r)) => {
                self.last_reason = Some(r.clone());
                self.go(InstanceState::Warning, Some(r))
            }
            _ => None,
        }
    }

    /// A real call finished: a passive signal.
    pub fn on_call(&mut self, outcome: CallOutcome, now: Instant) -> Option<Transition> {
        let failed = match outcome {
            CallOutcome::Ignorable => return None,
            CallOutcome::Ok => None,
            CallOutcome::Failed(r) => Some(r),
        };
        self.passive_ewma = self.passive_ewma(now) * (1.0 - EWMA_ALPHA)
            + if failed.is_some() { EWMA_ALPHA } else { 0.0 };
        self.passive_at = Some(now);
        self.count_call(now, failed.is_some());
        let Some(reason) = failed else {
            self.passive_fail_streak = 0;
            return None;
        };
        self.passive_fail_streak += 1;
        self.last_reason = Some(reason.clone());
        let (calls, failures) = self.window_totals(now);
        let tripped = self.passive_fail_streak >= PASSIVE_CONSECUTIVE
            || (calls >= RATE_MIN_CALLS && failures * 2 >= calls);
        match self.state {
            InstanceState::Healthy | InstanceState::Warning if tripped => {
                let reason = Reason::new(
                    reason.class,
                    format!("{} ({failures} of {calls} calls failed in 10s)", reason.message),
                );
                self.go(InstanceState::Critical, Some(reason))
            }
            InstanceState::Healthy if self.passive_ewma(now) >= EWMA_WARN => {
                self.go(InstanceState::Warning, Some(reason))
            }
            _ => None,
        }
    }

    fn count_call(&mut self, now: Instant, failed: bool) {
        self.buckets.retain(|(start, _, _)| now.duration_since(*start) < RATE_WINDOW);
        match self.buckets.last_mut() {
            Some((start, calls, fails)) if now.duration_since(*start) < Duration::from_secs(1) => {
                *calls += 1;
                *fails += u32::from(failed);
            }
            _ => self.buckets.push((now, 1, u32::from(failed))),
        }
    }

    fn window_totals(&self, now: Instant) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|(start, _, _)| now.duration_since(*start) < RATE_WINDOW)
            .fold((0, 0), |(c, f), (_, calls, fails)| (c + calls, f + fails))
    }

    fn go(&mut self, to: InstanceState, reason: Option<Reason>) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let from = std::mem::replace(&mut self.state, to);
        Some(Transition { from, to, reason })
    }
}

impl Default for HealthMachine {
    fn default() -> Self {
        Self::new(Thresholds { unhealthy: 3, healthy: 2 })
    }
}
