//! Restart pacing: exponential backoff with jitter, and the restart-intensity limit.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use warden_config::BackoffPolicy;

/// Exponential backoff: `initial × multiplier^attempt`, capped at `max`, ± `jitter`.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self { policy }
    }

    /// The delay before restart number `attempt` (0-based). `unit` is a random number in
    /// `[-1, 1]` that scales the jitter; pass `0.0` for the nominal delay.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.delay_at(f64::from(attempt), unit)
    }

    /// The delay at a fractional exponent `level` (a backoff that decays while an instance
    /// serves: `initial × multiplier^level`, capped, ± jitter).
    pub fn delay_at(&self, level: f64, unit: f64) -> Duration {
        let p = &self.policy;
        let level = if level.is_finite() { level.clamp(0.0, 64.0) } else { 0.0 };
        let nominal = p.initial.as_secs_f64() * p.multiplier.powf(level);
        let capped = nominal.min(p.max.as_secs_f64());
        let jittered = capped * (1.0 + p.jitter * unit.clamp(-1.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0))
    }

    /// [`Self::delay`] with fresh randomness.
    pub fn delay_random(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>() * 2.0 - 1.0)
    }

    /// [`Self::delay_at`] with fresh randomness.
    pub fn delay_random_at(&self, level: f64) -> Duration {
        self.delay_at(level, rand::random::<f64>() * 2.0 - 1.0)
    }
}

/// Counts restarts in a sliding window; more than `max` inside `window` means the instance is
/// crash-looping and must stop being restarted (Erlang's restart intensity).
#[derive(Clone, Debug)]
pub struct RestartIntensity {
    max: u32,
    window: Duration,
    starts: VecDeque<Instant>,
}

impl RestartIntensity {
    pub fn new(max: u32, window: Duration) -> Self {
        Self { max, window, starts: VecDeque::new() }
    }

    /// Records a restart at `now`; returns `true` when the limit is now exceeded.
    pub fn record(&mut self, now: Instant) -> bool {
        self.starts.push_back(now);
        self.trim(now);
        self.starts.len() as u32 > self.max
    }

    /// Whether one more restart at `now` would exceed the limit.
    pub fn would_exceed(&mut self, now: Instant) -> bool {
        self.trim(now);
        self.starts.len() as u32 + 1 > self.max
    }

    /// Restarts inside the window ending at `now`.
    pub fn count(&mut self, now: Instant) -> u32 {
        self.trim(now);
        self.starts.len() as u32
    }

    pub fn clear(&mut self) {
        self.starts.clear();
    }

    fn trim(&mut self, now: Instant) {
        while let Some(&first) = self.starts.front() {
            if now.duration_since(first) > self.window {
                self.starts.pop_front();
            } else {
                break;
            }
        }
    }
}
