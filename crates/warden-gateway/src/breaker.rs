//! Per-instance circuit breaker and per-server retry budget (docs/contract.md).
//!
//! Breaker: opens on 5 consecutive failures, or on ≥ 50 % failures among ≥ 10 calls in the
//! last 10 s (counted per 100 ms slice); stays open 5 s, doubling to 60 s (±20 % jitter) each
//! time a trial fails; when the open time is up, exactly one trial call goes through (half-open) and its outcome closes or
//! re-opens the breaker. Retry budget: every call deposits 0.2 of a retry, and 3 retries a
//! second are always allowed, so retries add at most 20 % + 3/s to the load on a server.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

const CONSECUTIVE: u32 = 5;
const WINDOW: Duration = Duration::from_secs(10);
/// The window is kept as counts per slice of this length (at most 101 slices, whatever the
/// call rate); a slice leaves the window whole, when its start is 10 s old.
const SLICE: Duration = Duration::from_millis(100);
const MIN_CALLS: usize = 10;
const RATIO: f64 = 0.5;
const OPEN_FIRST: Duration = Duration::from_secs(5);
const OPEN_MAX: Duration = Duration::from_secs(60);

/// What a breaker lets through now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// No calls until the instant; then one trial.
    Open,
    /// One trial call is in flight.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: BreakerState,
    consecutive: u32,
    /// The calls of the last 10 s, counted per slice: (slice start, calls, failures).
    recent: VecDeque<(Instant, usize, usize)>,
    /// Their sums.
    calls: usize,
    failed: usize,
    open_until: Instant,
    /// The next open period (doubles on every failed trial).
    next_open: Duration,
    /// How often it has opened.
    pub(crate) opened: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            calls: 0,
            failed: 0,
            open_until: Instant::now(),
            next_open: OPEN_FIRST,
            opened: 0,
        }
    }
}

impl Breaker {
    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call could go through now (without taking the trial).
    pub(crate) fn routable(&self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => now >= self.open_until,
            BreakerState::HalfOpen => false,
        }
    }

    /// How long until a call could go through.
    pub(crate) fn retry_after(&self, now: Instant) -> Duration {
        match self.state {
            BreakerState::Open => self.open_until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Lets a call through, taking the one trial if the open period is over.
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open if now >= self.open_until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            _ => false,
        }
    }

    /// Records a call's outcome. `None` means "no signal" (a cancelled call, a caller error):
    /// a trial that ends that way frees the slot for another trial.
    pub(crate) fn record(&mut self, now: Instant, ok: Option<bool>) {
        let Some(ok) = ok else {
            if self.state == BreakerState::HalfOpen {
                self.state = BreakerState::Open;
                self.open_until = now;
            }
            return;
        };
        match self.state {
            BreakerState::HalfOpen => {
                if ok {
                    self.close();
                } else {
                    self.trip(now);
                }
            }
            BreakerState::Open => {}
            BreakerState::Closed => {
                self.count(now, ok);
                self.consecutive = if ok { 0 } else { self.consecutive + 1 };
                let ratio_trips =
                    self.calls >= MIN_CALLS && self.failed as f64 >= RATIO * self.calls as f64;
                if self.consecutive >= CONSECUTIVE || ratio_trips {
                    self.trip(now);
                }
            }
        }
    }

    /// Adds a call to the window, and lets slices older than the window go.
    fn count(&mut self, now: Instant, ok: bool) {
        while let Some(&(start, calls, failed)) = self.recent.front() {
            if now.saturating_duration_since(start) <= WINDOW {
                break;
            }
            self.recent.pop_front();
            self.calls -= calls;
            self.failed -= failed;
        }
        let failed = usize::from(!ok);
        match self.recent.back_mut() {
            Some((start, calls, f)) if now.saturating_duration_since(*start) < SLICE => {
                *calls += 1;
                *f += failed;
            }
            _ => self.recent.push_back((now, 1, failed)),
        }
        self.calls += 1;
        self.failed += failed;
    }

    fn clear_window(&mut self) {
        self.recent.clear();
        self.calls = 0;
        self.failed = 0;
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.calls, self.failed)
    }

    fn trip(&mut self, now: Instant) {
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        let open = self.next_open.mul_f64(jitter);
        self.state = BreakerState::Open;
        self.open_until = now + open;
        self.next_open = (self.next_open * 2).min(OPEN_MAX);
        self.opened += 1;
        self.consecutive = 0;
        self.clear_window();
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.next_open = OPEN_FIRST;
        self.consecutive = 0;
        self.clear_window();
    }

    /// A fresh session (the instance restarted): old failures say nothing about it.
    pub(crate) fn reset(&mut self) {
        self.close();
    }
}

/// Retries allowed on top of calls: 20 % of calls, plus 3 a second.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Calls made since retries were last paid for: every 5 earn one retry (capped).
    earned: u32,
    /// The per-second allowance, refilled continuously up to 3.
    floor: f64,
    at: Instant,
}

/// Calls per earned retry (20 %).
const CALLS_PER_RETRY: u32 = 5;
const RETRY_FLOOR_PER_SEC: f64 = 3.0;
const EARNED_CAP: u32 = 100 * CALLS_PER_RETRY;

impl Default for RetryBudget {
    fn default() -> Self {
        Self { earned: 0, floor: RETRY_FLOOR_PER_SEC, at: Instant::now() }
    }
}

impl RetryBudget {
    pub(crate) fn deposit(&mut self) {
        self.earned = (self.earned + 1).min(EARNED_CAP);
    }

    /// Takes one retry if the budget allows.
    pub(crate) fn withdraw(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.floor = (self.floor + elapsed * RETRY_FLOOR_PER_SEC).min(RETRY_FLOOR_PER_SEC);
        if self.floor >= 1.0 {
            self.floor -= 1.0;
            true
        } else if self.earned >= CALLS_PER_RETRY {
            self.earned -= CALLS_PER_RETRY;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_five_consecutive_failures_then_one_trial() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record(t0, Some(false));
        }
        assert_eq!(b.state(), BreakerState::Closed, "4 failures are not enough");
        b.record(t0, Some(false));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.admit(t0));
        let after = b.retry_after(t0);
        assert!(after >= Duration::from_secs(4) && after <= Duration::from_secs(6), "{after:?}");
        let t1 = t0 + Duration::from_secs(7);
        assert!(b.routable(t1));
        assert!(b.admit(t1), "the trial goes through");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.admit(t1), "exactly one trial");
        assert!(!b.routable(t1));
        // A failed trial doubles the open time.
        b.record(t1, Some(false));
        assert_eq!(b.state(), BreakerState::Open);
        let after = b.retry_after(t1);
        assert!(after >= Duration::from_secs(8) && after <= Duration::from_secs(12), "{after:?}");
        let t2 = t1 + Duration::from_secs(13);
        assert!(b.admit(t2));
        b.record(t2, Some(true));
        assert_eq!(b.state(), BreakerState::Closed, "a good trial closes it");
        assert_eq!(b.opened, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_half_failures_over_ten_calls_in_ten_seconds() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for i in 0..9 {
            b.record(t0 + Duration::from_millis(i * 100), Some(i % 2 == 0));
        }
        assert_eq!(b.state(), BreakerState::Closed, "fewer than 10 calls never trip on ratio");
        b.record(t0 + Duration::from_secs(1), Some(false));
        assert_eq!(b.state(), BreakerState::Open, "5 of 10 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window_and_successes_reset_the_run() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for i in 0..4 {
            b.record(t0 + Duration::from_millis(i), Some(false));
        }
        b.record(t0 + Duration::from_millis(5), Some(true));
        for i in 0..4 {
            b.record(t0 + Duration::from_millis(10 + i), Some(false));
        }
        assert_eq!(b.state(), BreakerState::Closed, "a success breaks the run of failures");
        // A steady 20 % failure rate, short runs only, never trips it.
        let mut b = Breaker::default();
        for i in 0..100u64 {
            b.record(t0 + Duration::from_millis(i * 500), Some(i % 5 != 0));
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    /// Before: every call of the last 10 s was kept and scanned on each call (40,000 at
    /// 4,000 calls/s: 1.8 % of Warden's CPU under load, growing with the rate).
    #[tokio::test(start_paused = true)]
    async fn the_window_is_bounded_however_many_calls_it_sees() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        // 100,000 calls in 10 s, one in ten failed: the ratio is seen, the memory is bounded.
        for i in 0..100_000u64 {
            b.record(t0 + Duration::from_micros(i * 100), Some(i % 10 != 0));
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.recent.len() <= 101, "{} entries kept", b.recent.len());
        let (calls, failed) = b.counts();
        assert!((99_000..=100_000).contains(&calls), "{calls}");
        assert!((9_900..=10_000).contains(&failed), "{failed}");
        // Then three calls in four fail: it trips once failures are half of what the window
        // holds (never on consecutive failures: every fourth call succeeds).
        let t1 = t0 + Duration::from_secs(10);
        let mut i = 0u64;
        while b.state() == BreakerState::Closed {
            i += 1;
            b.record(t1 + Duration::from_micros(i * 100), Some(i.is_multiple_of(4)));
            assert!(i < 400_000, "never tripped");
        }
        let (calls, failed) = b.counts();
        assert!(failed as f64 >= 0.5 * calls as f64 - 1.0, "{failed} of {calls}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_without_signal_frees_the_slot() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            b.record(t0, Some(false));
        }
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.admit(t1));
        b.record(t1, None);
        assert!(b.admit(t1), "another trial may go");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_budget_is_twenty_percent_plus_three_a_second() {
        let mut r = RetryBudget::default();
        let t0 = Instant::now();
        // The floor: 3 at once, then nothing until time passes.
        assert!(r.withdraw(t0) && r.withdraw(t0) && r.withdraw(t0));
        assert!(!r.withdraw(t0));
        // 100 calls earn 20 retries.
        for _ in 0..100 {
            r.deposit();
        }
        let granted = (0..50).filter(|_| r.withdraw(t0)).count();
        assert_eq!(granted, 20);
        // One second later, 3 more.
        let t1 = t0 + Duration::from_secs(1);
        let granted = (0..10).filter(|_| r.withdraw(t1)).count();
        assert_eq!(granted, 3);
    }
}
