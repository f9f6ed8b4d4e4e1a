//! SLO burn rates (Google SRE Workbook ch. 5, research §6.3 and §10.7): per server, request and
//! error counts in one-minute buckets over the longest window; an alert holds when the burn
//! rate — error ratio ÷ (1 − objective) — reaches the factor over both the long and the short
//! window, with at least [`MIN_EVENTS`] requests in the long one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::Severity;

/// One multi-window burn-rate alert.
#[derive(Clone, Copy, Debug)]
pub struct BurnWindow {
    pub rule: &'static str,
    pub long: Duration,
    pub short: Duration,
    pub factor: f64,
    pub severity: Severity,
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;

/// The SRE Workbook's table 5-8 for a 30-day budget.
pub const SLO_WINDOWS: [BurnWindow; 3] = [
    BurnWindow {
        rule: "SloFastBurn",
        long: Duration::from_secs(HOUR),
        short: Duration::from_secs(5 * MIN),
        factor: 14.4,
        severity: Severity::Critical,
    },
    BurnWindow {
        rule: "SloSlowBurn",
        long: Duration::from_secs(6 * HOUR),
        short: Duration::from_secs(30 * MIN),
        factor: 6.0,
        severity: Severity::Critical,
    },
    BurnWindow {
        rule: "SloDrift",
        long: Duration::from_secs(72 * HOUR),
        short: Duration::from_secs(6 * HOUR),
        factor: 1.0,
        severity: Severity::Warning,
    },
];

/// Fewer requests than this in the long window prove nothing (one failure in ten requests is a
/// 100× burn for 99.9 %).
pub const MIN_EVENTS: u64 = 20;

/// Request and error counts of one server, per minute, for the last 3 days.
#[derive(Debug)]
pub struct SloWindows {
    origin: Instant,
    /// (minute since origin, requests, errors), oldest first. Minutes before the origin (negative)
    /// come from an earlier run ([`SloWindows::seed`]).
    buckets: VecDeque<(i64, u64, u64)>,
}

impl SloWindows {
    pub fn new(origin: Instant) -> Self {
        Self { origin, buckets: VecDeque::new() }
    }

    /// The minute `at` falls in, counted from the origin.
    pub fn minute(&self, at: Instant) -> i64 {
        (at.saturating_duration_since(self.origin).as_secs() / MIN) as i64
    }

    /// Adds counts recorded by an earlier run, minute `minute` (before the origin: negative);
    /// any order, merged with what is there.
    pub fn seed(&mut self, minute: i64, requests: u64, errors: u64) {
        let at = self.buckets.partition_point(|b| b.0 < minute);
        match self.buckets.get_mut(at) {
            Some(b) if b.0 == minute => {
                b.1 += requests;
                b.2 += errors;
            }
            _ => self.buckets.insert(at, (minute, requests, errors.min(requests))),
        }
    }

    /// Every minute's counts, oldest first: `(minute, requests, errors)`.
    pub fn buckets(&self) -> impl Iterator<Item = (i64, u64, u64)> + '_ {
        self.buckets.iter().copied()
    }

    /// Adds `requests` requests of which `errors` failed, at `at`.
    pub fn record(&mut self, at: Instant, requests: u64, errors: u64) {
        let m = self.minute(at);
        match self.buckets.back_mut() {
            Some(b) if b.0 == m => {
                b.1 += requests;
                b.2 += errors;
            }
            _ => self.buckets.push_back((m, requests, errors)),
        }
        let keep =
            (SLO_WINDOWS.iter().map(|w| w.long.as_secs() / MIN).max().unwrap_or(0) + 1) as i64;
        while self.buckets.front().is_some_and(|b| b.0 + keep <= m) {
            self.buckets.pop_front();
        }
    }

    /// (requests, errors) over the last `window` (whole minutes, the current one included).
    pub fn counts(&self, now: Instant, window: Duration) -> (u64, u64) {
        let m = self.minute(now);
        let span = (window.as_secs() / MIN).max(1) as i64;
        self.buckets
            .iter()
            .rev()
            .take_while(|b| b.0 + span > m)
            .fold((0, 0), |(r, e), b| (r + b.1, e + b.2))
    }

    /// The burn rate over `window` against `objective` (0.999), or `None` with no requests.
    pub fn burn(&self, now: Instant, window: Duration, objective: f64) -> Option<f64> {
        let (requests, errors) = self.counts(now, window);
        (requests > 0).then(|| (errors as f64 / requests as f64) / (1.0 - objective).max(1e-9))
    }

    /// Whether `w` holds now; the long and short burn rates when it does.
    pub fn check(&self, now: Instant, w: &BurnWindow, objective: f64) -> Option<(f64, f64)> {
        let (requests, _) = self.counts(now, w.long);
        if requests < MIN_EVENTS {
            return None;
        }
        let long = self.burn(now, w.long, objective)?;
        let short = self.burn(now, w.short, objective)?;
        (long >= w.factor && short >= w.factor).then_some((long, short))
    }
}
