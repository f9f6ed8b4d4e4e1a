use std::time::Duration;

use tokio::time::{self, Instant};
use warden_config::{BackoffPolicy, HealthPolicy};
use warden_core::{FailureClass, InstanceState, Reason};

use crate::*;

fn timeout() -> Reason {
    Reason::new(FailureClass::Timeout, "no answer within 2000ms")
}

#[test]
fn backoff_doubles_to_the_cap_with_bounded_jitter() {
    let b = Backoff::new(BackoffPolicy::default());
    let nominal: Vec<u128> = (0..9).map(|a| b.delay(a, 0.0).as_millis()).collect();
    assert_eq!(nominal, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert_eq!(b.delay(0, 1.0), Duration::from_millis(600));
    assert_eq!(b.delay(0, -1.0), Duration::from_millis(400));
    for _ in 0..1000 {
        let d = b.delay_random(3).as_secs_f64();
        assert!((3.2..=4.8).contains(&d), "{d}");
    }
}

#[tokio::test(start_paused = true)]
async fn intensity_limit_trips_on_the_sixth_restart_in_a_minute() {
    let mut limit = RestartIntensity::new(5, Duration::from_secs(60));
    let b = Backoff::new(BackoffPolicy::default());
    let start = Instant::now();
    let mut tripped_at = None;
    for attempt in 0..10 {
        time::advance(b.delay(attempt, 0.0)).await;
        if limit.record(Instant::now()) {
            tripped_at = Some((attempt + 1, Instant::now().duration_since(start)));
            break;
        }
    }
    let (starts, after) = tripped_at.expect("the limit must trip");
    assert_eq!(starts, 6, "more than 5 restarts in 60 s");
    assert!(after <= Duration::from_secs(35), "crash loop → failed within 35 s, took {after:?}");
}

#[tokio::test(start_paused = true)]
async fn intensity_window_slides() {
    let mut limit = RestartIntensity::new(2, Duration::from_secs(10));
    assert!(!limit.record(Instant::now()));
    assert!(!limit.record(Instant::now()));
    time::advance(Duration::from_secs(11)).await;
    assert!(!limit.record(Instant::now()), "old restarts left the window");
    assert_eq!(limit.count(Instant::now()), 1);
}

#[test]
fn never_straight_from_start_to_healthy() {
    let mut m = HealthMachine::default();
    assert_eq!(m.state(), InstanceState::Starting);
    let t = m.on_connected().unwrap();
    assert_eq!((t.from, t.to), (InstanceState::Starting, InstanceState::Warning));
    assert_eq!(m.on_probe_ok(Instant::now()), None);
    let t = m.on_probe_ok(Instant::now()).unwrap();
    assert_eq!(t.to, InstanceState::Healthy);
}

#[test]
fn three_failures_make_critical_and_two_successes_climb_each_level() {
    let mut m = HealthMachine::default();
    m.on_connected();
    m.on_probe_ok(Instant::now());
    m.on_probe_ok(Instant::now());
    let t = m.on_probe_failed(timeout()).unwrap();
    assert_eq!(t.to, InstanceState::Warning, "one failure ⇒ warning");
    assert_eq!(m.on_probe_failed(timeout()), None);
    let t = m.on_probe_failed(timeout()).unwrap();
    assert_eq!(t.to, InstanceState::Critical);
    assert_eq!(t.reason.unwrap().class, FailureClass::Timeout);
    // Hysteresis: one success is not enough, and a failure in between starts over.
    assert_eq!(m.on_probe_ok(Instant::now()), None);
    assert_eq!(m.on_probe_failed(timeout()), None);
    assert_eq!(m.on_probe_ok(Instant::now()), None);
    assert_eq!(m.on_probe_ok(Instant::now()).unwrap().to, InstanceState::Warning);
    assert_eq!(m.on_probe_ok(Instant::now()), None);
    assert_eq!(m.on_probe_ok(Instant::now()).unwrap().to, InstanceState::Healthy);
    assert!(m.reason().is_none(), "healthy clears the reason");
}

#[test]
fn flapping_probes_never_reach_critical() {
    let mut m = HealthMachine::default();
    m.on_connected();
    for _ in 0..100 {
        m.on_probe_failed(timeout());
        m.on_probe_failed(timeout());
        m.on_probe_ok(Instant::now());
        assert_ne!(m.state(), InstanceState::Critical);
    }
}

#[test]
fn connection_loss_is_critical_at_once() {
    let mut m = HealthMachine::default();
    m.on_connected();
    let t = m.on_connection_lost(Reason::new(FailureClass::ConnectionError, "refused")).unwrap();
    assert_eq!(t.to, InstanceState::Critical);
}

#[tokio::test(start_paused = true)]
async fn passive_signals_trip_on_five_consecutive_or_half_of_ten() {
    let err = || CallOutcome::Failed(Reason::new(FailureClass::ServerError, "-32603"));
    let mut m = HealthMachine::default();
    m.on_connected();
    m.on_probe_ok(Instant::now());
    m.on_probe_ok(Instant::now());
    for i in 0..4 {
        let t = m.on_call(err(), Instant::now());
        assert_ne!(m.state(), InstanceState::Critical, "call {i}: {t:?}");
    }
    assert_eq!(m.on_call(err(), Instant::now()).unwrap().to, InstanceState::Critical);

    // Alternating failures: 50 % of ≥ 10 calls within 10 s.
    let mut m = HealthMachine::default();
    m.on_connected();
    for _ in 0..4 {
        m.on_call(CallOutcome::Ok, Instant::now());
        m.on_call(err(), Instant::now());
        time::advance(Duration::from_millis(300)).await;
    }
    assert_ne!(m.state(), InstanceState::Critical, "8 calls are below the minimum");
    m.on_call(CallOutcome::Ok, Instant::now());
    m.on_call(err(), Instant::now());
    assert_eq!(m.state(), InstanceState::Critical);
}

#[tokio::test(start_paused = true)]
async fn tool_errors_never_count_against_the_server() {
    let mut m = HealthMachine::default();
    m.on_connected();
    m.on_probe_ok(Instant::now());
    m.on_probe_ok(Instant::now());
    for _ in 0..100 {
        assert_eq!(m.on_call(CallOutcome::Ignorable, Instant::now()), None);
    }
    assert_eq!(m.state(), InstanceState::Healthy);
}

#[test]
fn busy_is_not_hung() {
    let p = HealthPolicy::default();
    let s = Duration::from_secs;
    assert_eq!(
        probe_timeout_verdict(&p, true, s(0), false),
        ProbeVerdict::Busy,
        "bytes during the probe"
    );
    assert_eq!(
        probe_timeout_verdict(&p, false, s(5), true),
        ProbeVerdict::Busy,
        "working on a call, recent bytes"
    );
    assert_eq!(
        probe_timeout_verdict(&p, false, s(11), true),
        ProbeVerdict::Failed,
        "silent past the busy window"
    );
    assert_eq!(
        probe_timeout_verdict(&p, false, s(3), false),
        ProbeVerdict::Failed,
        "idle and silent"
    );
    assert!(!should_kill_hung(&p, s(29), 6));
    assert!(should_kill_hung(&p, s(30), 6));
    assert!(!should_kill_hung(&p, s(100), 0), "silence alone (an idle server) is not a hang");
}

#[test]
fn edge_reprobe_then_regular_interval_with_jitter() {
    let p = HealthPolicy::default();
    assert_eq!(next_probe_delay(&p, 0, 0.0), Duration::from_secs(5));
    assert_eq!(next_probe_delay(&p, 0, 1.0), Duration::from_millis(5500));
    assert_eq!(next_probe_delay(&p, 1, 0.5), Duration::from_secs(1));
    assert_eq!(next_probe_delay(&p, 2, 0.5), Duration::from_secs(1));
    assert_eq!(
        next_probe_delay(&p, 3, 0.0),
        Duration::from_secs(5),
        "critical: back to the interval"
    );
}

/// Hang detection under the default policy, on simulated time: a server that stops answering at
/// a random point in its probe cycle is critical within 13.5 s (the research target p95 ≤ 13 s).
#[test]
fn hang_detection_worst_case_under_default_policy() {
    let p = HealthPolicy::default();
    let mut worst: f64 = 0.0;
    for phase_ms in (0..5500).step_by(250) {
        // The hang starts `phase` before the next probe is sent.
        let mut t = phase_ms as f64 / 1000.0;
        let mut m = HealthMachine::default();
        m.on_connected();
        m.on_probe_ok(Instant::now());
        m.on_probe_ok(Instant::now());
        loop {
            t += p.timeout.as_secs_f64();
            if m.on_probe_failed(timeout()).is_some_and(|tr| tr.to == InstanceState::Critical) {
                break;
            }
            t += next_probe_delay(&p, m.probe_failures(), 1.0).as_secs_f64();
        }
        worst = worst.max(t);
    }
    assert!(worst <= 13.5, "worst-case detection {worst} s");
}

#[tokio::test(start_paused = true)]
async fn stats_percentiles_error_rate_availability() {
    let mut s = InstanceStats::new(Instant::now());
    s.observe_state(Instant::now(), true);
    for ms in 1..=100u64 {
        s.record_ok(Instant::now(), Duration::from_millis(ms));
    }
    for _ in 0..25 {
        s.record_error(Instant::now());
    }
    time::advance(Duration::from_secs(30)).await;
    s.observe_state(Instant::now(), false);
    time::advance(Duration::from_secs(10)).await;
    let snap = s.snapshot(Instant::now());
    assert!((snap.p50_ms.unwrap() - 50.0).abs() < 1.0, "{snap:?}");
    assert!((snap.p99_ms.unwrap() - 99.0).abs() < 1.0, "{snap:?}");
    assert!((snap.error_rate - 0.2).abs() < 1e-9);
    assert!((snap.availability - 0.75).abs() < 1e-9, "{snap:?}");
    assert!((snap.throughput - 125.0 / 40.0).abs() < 1e-9, "{snap:?}");
    // Old samples leave the window after two minutes.
    time::advance(Duration::from_secs(130)).await;
    let snap = s.snapshot(Instant::now());
    assert_eq!(snap.p50_ms, None);
    assert_eq!(snap.requests_total, 125);
}

#[tokio::test(start_paused = true)]
async fn old_call_failures_fade_so_an_idle_instance_can_become_healthy_again() {
    let err = || CallOutcome::Failed(Reason::new(FailureClass::ServerError, "-32603"));
    let mut m = HealthMachine::default();
    m.on_connected();
    for _ in 0..3 {
        m.on_call(err(), Instant::now());
    }
    m.on_probe_ok(Instant::now());
    assert_eq!(m.on_probe_ok(Instant::now()), None, "recent failures hold it in warning");
    time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        m.on_probe_ok(Instant::now()).map(|t| t.to),
        Some(InstanceState::Healthy),
        "they fade within 30 s"
    );
}

#[test]
fn a_degradation_holds_warning_until_it_is_gone_and_probes_succeed() {
    let mut m = HealthMachine::default();
    m.on_connected();
    m.on_probe_ok(Instant::now());
    m.on_probe_ok(Instant::now());
    assert_eq!(m.state(), InstanceState::Healthy);
    let drift = Reason::new(FailureClass::Timeout, "latency drifting up: 2.0 ms → 9.0 ms");
    let t = m.on_degraded(Some(drift.clone())).unwrap();
    assert_eq!((t.to, t.reason), (InstanceState::Warning, Some(drift.clone())));
    assert_eq!(m.on_degraded(Some(drift.clone())), None, "said once");
    // Probes keep succeeding: still warning while the drift lasts.
    for _ in 0..5 {
        assert_eq!(m.on_probe_ok(Instant::now()), None);
    }
    // Failures still escalate as usual.
    for _ in 0..3 {
        m.on_probe_failed(timeout());
    }
    assert_eq!(m.state(), InstanceState::Critical);
    assert_eq!(m.on_degraded(None), None, "lifting the hold changes nothing by itself");
    m.on_probe_ok(Instant::now());
    m.on_probe_ok(Instant::now());
    assert_eq!(m.state(), InstanceState::Warning);
    m.on_probe_ok(Instant::now());
    let t = m.on_probe_ok(Instant::now()).unwrap();
    assert_eq!(t.to, InstanceState::Healthy, "gone and probes good: healthy again");
    // A degradation seen while starting or critical moves nothing.
    let mut m = HealthMachine::default();
    assert_eq!(m.on_degraded(Some(drift)), None);
    assert_eq!(m.state(), InstanceState::Starting);
}

#[test]
fn backoff_at_a_fractional_level_lies_between_its_neighbours() {
    let b = Backoff::new(warden_config::BackoffPolicy { jitter: 0.0, ..Default::default() });
    assert_eq!(b.delay_at(1.0, 0.0), b.delay(1, 0.0));
    let mid = b.delay_at(1.5, 0.0);
    assert!(mid > b.delay(1, 0.0) && mid < b.delay(2, 0.0), "{mid:?}");
    // Levels that are not numbers, negative or huge stay within [initial, max].
    assert_eq!(b.delay_at(f64::NAN, 0.0), Duration::from_millis(500));
    assert_eq!(b.delay_at(-3.0, 0.0), Duration::from_millis(500));
    assert_eq!(b.delay_at(1e9, 0.0), Duration::from_secs(30));
}
