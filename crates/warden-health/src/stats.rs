//! Per-instance measurements: response time percentiles from a histogram, error rate,
//! availability and throughput, over a rolling window of one to two minutes.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// A copy of the numbers, for the store and the APIs.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StatsSnapshot {
    /// Latency percentiles in milliseconds over the recent window (`None` before any sample).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The most recent latency sample, in milliseconds.
    pub last_ms: Option<f64>,
    /// Failed / all requests (probes and calls) over the recent window, 0..1.
    pub error_rate: f64,
    /// Share of time routable (healthy or warning) since Warden started watching, 0..1.
    pub availability: f64,
    /// Requests per second over the recent window.
    pub throughput: f64,
    pub requests_total: u64,
    pub errors_total: u64,
}

#[derive(Debug)]
pub struct InstanceStats {
    current: Histogram<u32>,
    previous: Histogram<u32>,
    window_start: Instant,
    cur_requests: u64,
    cur_errors: u64,
    prev_requests: u64,
    prev_errors: u64,
    last_ms: Option<f64>,
    requests_total: u64,
    errors_total: u64,
    routable_time: Duration,
    observed_time: Duration,
    last_observed: Option<(Instant, bool)>,
}

fn histogram() -> Histogram<u32> {
    // 1 µs to 1 h with 2 significant digits (1 % precision): about 13 KiB each.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds are valid")
}

impl InstanceStats {
    pub fn new(now: Instant) -> Self {
        Self {
            current: histogram(),
            previous: histogram(),
            window_start: now,
            cur_requests: 0,
            cur_errors: 0,
            prev_requests: 0,
            prev_errors: 0,
            last_ms: None,
            requests_total: 0,
            errors_total: 0,
            routable_time: Duration::ZERO,
            observed_time: Duration::ZERO,
            last_observed: None,
        }
    }

    /// A request (probe or call) that succeeded after `latency`.
    pub fn record_ok(&mut self, now: Instant, latency: Duration) {
        self.rotate(now);
        let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        self.current.saturating_record(us);
        self.last_ms = Some(latency.as_secs_f64() * 1000.0);
        self.cur_requests += 1;
        self.requests_total += 1;
    }

    /// A request that failed.
    pub fn record_error(&mut self, now: Instant) {
        self.rotate(now);
        self.cur_requests += 1;
        self.cur_errors += 1;
        self.requests_total += 1;
        self.errors_total += 1;
    }

    /// Accounts the time since the last call to whether the instance was routable.
    pub fn observe_state(&mut self, now: Instant, routable: bool) {
        if let Some((at, was_routable)) = self.last_observed {
            let d = now.duration_since(at);
            self.observed_time += d;
            if was_routable {
                self.routable_time += d;
            }
        }
        self.last_observed = Some((now, routable));
    }

    pub fn snapshot(&mut self, now: Instant) -> StatsSnapshot {
        self.rotate(now);
        if let Some((_, routable)) = self.last_observed {
            self.observe_state(now, routable);
        }
        let mut merged = self.previous.clone();
        merged.add(&self.current).expect("same bounds");
        let pct =
            |q: f64| (!merged.is_empty()).then(|| merged.value_at_quantile(q) as f64 / 1000.0);
        let requests = self.cur_requests + self.prev_requests;
        let errors = self.cur_errors + self.prev_errors;
        let span = (now.duration_since(self.window_start)
            + if self.prev_requests > 0 { WINDOW } else { Duration::ZERO })
        .as_secs_f64()
        .max(1.0);
        StatsSnapshot {
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            last_ms: self.last_ms,
            error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            availability: if self.observed_time.is_zero() {
                1.0
            } else {
                self.routable_time.as_secs_f64() / self.observed_time.as_secs_f64()
            },
            throughput: requests as f64 / span,
            requests_total: self.requests_total,
            errors_total: self.errors_total,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.duration_since(self.window_start);
        if age < WINDOW {
            return;
        }
        if age >= WINDOW * 2 {
            self.previous.reset();
            self.prev_requests = 0;
            self.prev_errors = 0;
        } else {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.prev_requests = self.cur_requests;
            self.prev_errors = self.cur_errors;
        }
        self.current.reset();
        self.cur_requests = 0;
        self.cur_errors = 0;
        self.window_start = now;
    }
}
