//! Supervisor behaviour against a scripted fake connector (`fake.rs`), on paused tokio time;
//! live reload's registry operations are in `reload.rs`.

mod fake;
mod reload;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{self, Instant};
use warden_core::{EventKind, FailureClass, InstanceState, RecoveryAction};
use warden_upstream::SessionEvent;

use crate::{CallOutcome, Command, PredictorStatus, SeedBook};
use fake::*;

#[tokio::test(start_paused = true)]
async fn starts_warns_then_becomes_healthy_with_its_tools() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Warning, Duration::from_secs(1)).await;
    let took = h.until(InstanceState::Healthy, Duration::from_secs(7)).await;
    assert!(took >= Duration::from_secs(4), "two probes are needed, took {took:?}");
    let view = &h.registry.servers()[0].views()[0];
    assert_eq!(view.tools, 1);
    assert_eq!(view.pid, Some(4242));
    assert!(view.latency_ms.is_some());
    assert_eq!(h.registry.overview().status, warden_core::ServerStatus::Healthy);
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_is_offline_at_once_and_restarted_after_backoff() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    h.session(0).events.send(SessionEvent::Exited(exit_by_signal(9))).await.unwrap();
    let detect = h.until(InstanceState::Offline, Duration::from_millis(50)).await;
    assert!(detect <= Duration::from_millis(10), "crash noticed in {detect:?}");
    let view = h.registry.servers()[0].views()[0].clone();
    assert_eq!(view.reason.as_ref().unwrap().class, FailureClass::Crash);
    assert_eq!(view.last_exit.as_ref().unwrap().signal, Some(9));
    assert!(view.next_retry_at.is_some());
    let back = h.until(InstanceState::Warning, Duration::from_secs(1)).await;
    assert!(
        back >= Duration::from_millis(500) && back < Duration::from_millis(600),
        "restart after the 0.5 s backoff, took {back:?}"
    );
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 2);
    assert_eq!(h.registry.servers()[0].views()[0].restarts, 1);
    assert_eq!(h.count(|k| matches!(k, EventKind::Failure { .. })), 1);
    // One incident, one trace id: the exit, the failure, the restart and the recovery.
    let trace_of = |name: &str| h.log.iter().find(|e| e.kind.name() == name).map(|e| e.trace_id);
    let incident = trace_of("failure").unwrap();
    for name in ["process_exited", "restart_scheduled", "recovered"] {
        assert_eq!(trace_of(name), Some(incident), "{name} carries the incident's trace id");
    }
    assert_eq!(
        h.count(|k| matches!(
            k,
            EventKind::Recovered {
                action: RecoveryAction::Restart,
                class: FailureClass::Crash,
                ..
            }
        )),
        1
    );
    assert_eq!(
        h.count(|k| matches!(k, EventKind::CatalogListed { changed: false, .. })),
        2,
        "tools re-listed after the restart"
    );
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_is_failed_within_the_intensity_limit() {
    let mut h = Harness::new(spec("s"), FakeConnector { fail_always: true, ..Default::default() });
    let took = h.until(InstanceState::Failed, Duration::from_secs(35)).await;
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 6, "no more than 6 starts");
    assert!(took <= Duration::from_secs(35), "{took:?}");
    assert_eq!(h.count(|k| matches!(k, EventKind::RestartIntensityExceeded { .. })), 1);
    // Sticky: nothing restarts it for minutes…
    time::sleep(Duration::from_secs(120)).await;
    assert_eq!(h.state(), InstanceState::Failed);
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 6);
    // …until an operator resets it.
    h.connector.script.lock().unwrap().push_back(Start::Ok);
    h.registry.servers()[0].command(Command::Reset, None).await;
    h.until(InstanceState::Warning, Duration::from_secs(1)).await;
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_instance_gets_a_slow_probation_restart() {
    let mut h = Harness::new(spec("s"), FakeConnector { fail_always: true, ..Default::default() });
    h.until(InstanceState::Failed, Duration::from_secs(35)).await;
    h.connector.script.lock().unwrap().push_back(Start::Ok);
    let took = h.until(InstanceState::Warning, Duration::from_secs(301)).await;
    assert!(took >= Duration::from_secs(299), "probation after 5 minutes, took {took:?}");
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_server_is_critical_within_13_seconds_then_killed_and_replaced() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    *h.session(0).probe.lock().unwrap() = Probe::Silent;
    let detect = h.until(InstanceState::Critical, Duration::from_secs(14)).await;
    assert!(detect <= Duration::from_millis(13_600), "hang detected in {detect:?}");
    // Killed only after 30 s of silence, then a new process.
    time::sleep(Duration::from_secs(15)).await;
    h.drain();
    assert_eq!(h.session(0).killed.load(Ordering::SeqCst), 0, "not killed before the hang timeout");
    h.until(InstanceState::Offline, Duration::from_secs(20)).await;
    assert!(h.session(0).killed.load(Ordering::SeqCst) >= 1);
    assert_eq!(h.count(|k| matches!(k, EventKind::HangKilled { .. })), 1);
    assert_eq!(
        h.registry.servers()[0].views()[0].reason.as_ref().unwrap().class,
        FailureClass::Hang
    );
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    assert_eq!(
        h.count(|k| matches!(
            k,
            EventKind::Recovered { action: RecoveryAction::KillAndRestart, .. }
        )),
        1
    );
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_server_is_never_called_hung() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    *h.session(0).probe.lock().unwrap() = Probe::Busy;
    for _ in 0..120 {
        time::sleep(Duration::from_secs(1)).await;
        h.drain();
        assert_eq!(h.state(), InstanceState::Healthy);
    }
    assert_eq!(h.session(0).killed.load(Ordering::SeqCst), 0);
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_transient_stall_recovers_by_itself() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    *h.session(0).probe.lock().unwrap() = Probe::Silent;
    h.until(InstanceState::Critical, Duration::from_secs(14)).await;
    *h.session(0).probe.lock().unwrap() = Probe::Answer;
    h.until(InstanceState::Healthy, Duration::from_secs(25)).await;
    assert_eq!(
        h.connector.starts.load(Ordering::SeqCst),
        1,
        "no restart for a stall shorter than the hang timeout"
    );
    assert_eq!(
        h.count(|k| matches!(
            k,
            EventKind::Recovered {
                action: RecoveryAction::SelfRecovered,
                class: FailureClass::Timeout,
                ..
            }
        )),
        1
    );
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn operator_stop_start_and_shutdown_stop_gracefully() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Warning, Duration::from_secs(1)).await;
    h.registry.servers()[0].command(Command::Stop, None).await;
    h.until(InstanceState::Stopped, Duration::from_secs(1)).await;
    assert_eq!(h.session(0).graceful_stops.load(Ordering::SeqCst), 1);
    time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 1, "a stopped instance stays stopped");
    h.registry.servers()[0].command(Command::Start, None).await;
    h.until(InstanceState::Warning, Duration::from_secs(1)).await;
    let last = h.session(1);
    h.registry.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        last.graceful_stops.load(Ordering::SeqCst),
        1,
        "shutdown stops the live session gracefully"
    );
}

#[tokio::test(start_paused = true)]
async fn disabled_servers_are_stopped_and_do_not_count() {
    let mut s = spec("s");
    s.disabled = true;
    let h = Harness::new(s, FakeConnector::default());
    time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.state(), InstanceState::Stopped);
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 0);
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_then_resets_after_sustained_health() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    for n in 0..3 {
        h.session(n).events.send(SessionEvent::Exited(exit_by_signal(9))).await.unwrap();
        h.until(InstanceState::Offline, Duration::from_secs(1)).await;
        h.until(InstanceState::Warning, Duration::from_secs(5)).await;
    }
    assert_eq!(h.registry.servers()[0].views()[0].attempt, 3);
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    time::sleep(Duration::from_secs(61)).await;
    assert_eq!(h.registry.servers()[0].views()[0].attempt, 0, "60 s healthy resets the backoff");
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn passive_call_failures_eject_and_tool_errors_do_not() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    let link = h.registry.servers()[0].link(0).unwrap();
    for _ in 0..50 {
        link.report(Duration::from_millis(5), CallOutcome::Ignorable);
    }
    time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.state(), InstanceState::Healthy, "isError results are the tool's answer");
    for _ in 0..5 {
        link.report(
            Duration::from_millis(5),
            CallOutcome::Failed(warden_core::Reason::new(FailureClass::ServerError, "-32603")),
        );
    }
    h.until(InstanceState::Critical, Duration::from_millis(100)).await;
    assert!(h.registry.servers()[0].views()[0].stats.requests_total >= 55);
    // Probes still succeed and the failures fade: the instance climbs back.
    h.until(InstanceState::Healthy, Duration::from_secs(60)).await;
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn answered_calls_are_read_in_batches_and_all_counted() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    let link = h.registry.servers()[0].link(0).unwrap();
    time::sleep(Duration::from_secs(11)).await; // a stats sample
    let before = h.registry.servers()[0].views()[0].stats.requests_total;
    // 300 answered calls, one every millisecond: 300 ms of a busy instance.
    for _ in 0..300 {
        link.report(Duration::from_millis(2), CallOutcome::Ok);
        time::sleep(Duration::from_millis(1)).await;
    }
    time::sleep(Duration::from_millis(150)).await;
    let batches = link.batches.load(Ordering::SeqCst);
    assert!((2..=4).contains(&batches), "one wake per 100 ms window, not per call: {batches}");
    // A failure is read at once, after the calls that settled before it.
    link.report(Duration::from_millis(2), CallOutcome::Ok);
    link.report(
        Duration::from_millis(2),
        CallOutcome::Failed(warden_core::Reason::new(FailureClass::ServerError, "-32603")),
    );
    time::sleep(Duration::from_millis(1)).await;
    assert_eq!(link.batches.load(Ordering::SeqCst), batches + 1);
    time::sleep(Duration::from_secs(11)).await;
    // Every call counted (the probes of those 11 s come on top).
    let counted = h.registry.servers()[0].views()[0].stats.requests_total - before;
    assert!((302..320).contains(&counted), "{counted}");
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn failures_and_answers_are_read_in_the_order_they_ended() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    let link = h.registry.servers()[0].link(0).unwrap();
    let failed =
        || CallOutcome::Failed(warden_core::Reason::new(FailureClass::ServerError, "-32603"));
    // Failing every other call, faster than the instance task reads them: never five failures
    // in a row (what ejects an instance), unless the answers are read out of turn.
    link.report(Duration::from_millis(2), failed());
    for _ in 0..4 {
        link.report(Duration::from_millis(2), CallOutcome::Ok);
        link.report(Duration::from_millis(2), failed());
    }
    time::sleep(Duration::from_millis(200)).await;
    assert_ne!(h.state(), InstanceState::Critical);
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_server_silent_on_probes_but_streaming_progress_for_a_call_is_busy_not_hung() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    let link = h.registry.servers()[0].link(0).unwrap();
    let session = h.session(0);
    *session.probe.lock().unwrap() = Probe::Silent;
    let call = link.begin_call();
    for _ in 0..60 {
        // A progress notification every 3 s for a long tool call.
        session.activity.touch(50);
        time::sleep(Duration::from_secs(3)).await;
        h.drain();
        assert_ne!(h.state(), InstanceState::Critical);
    }
    assert_eq!(session.killed.load(Ordering::SeqCst), 0);
    // The call ends and the progress stops: now silence is a hang.
    drop(call);
    h.until(InstanceState::Critical, Duration::from_secs(20)).await;
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_returns_still_fails_and_the_hang_is_killed() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    *h.session(0).probe.lock().unwrap() = Probe::Stuck;
    let detect = h.until(InstanceState::Critical, Duration::from_secs(16)).await;
    assert!(detect <= Duration::from_secs(15), "{detect:?}");
    h.until(InstanceState::Offline, Duration::from_secs(25)).await;
    assert!(h.session(0).killed.load(Ordering::SeqCst) >= 1);
    assert_eq!(h.count(|k| matches!(k, EventKind::HangKilled { .. })), 1);
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_successful_probation_restart_returns_to_normal_supervision() {
    let mut h = Harness::new(spec("s"), FakeConnector { fail_always: true, ..Default::default() });
    h.until(InstanceState::Failed, Duration::from_secs(35)).await;
    h.connector.script.lock().unwrap().extend([Start::Ok, Start::Ok]);
    h.until(InstanceState::Healthy, Duration::from_secs(320)).await;
    let n = h.connector.sessions.lock().unwrap().len();
    h.session(n - 1).events.send(SessionEvent::Exited(exit_by_signal(9))).await.unwrap();
    h.until(InstanceState::Offline, Duration::from_secs(1)).await;
    // The backoff goes on from its last step (16 s) until 60 s of health would have reset it.
    h.until(InstanceState::Warning, Duration::from_secs(20)).await;
    assert_eq!(
        h.count(|k| matches!(k, EventKind::RestartIntensityExceeded { .. })),
        1,
        "restarted, not failed again"
    );
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn stop_then_start_revives_a_failed_instance() {
    let mut h = Harness::new(spec("s"), FakeConnector { fail_always: true, ..Default::default() });
    h.until(InstanceState::Failed, Duration::from_secs(35)).await;
    h.registry.servers()[0].command(Command::Stop, None).await;
    h.until(InstanceState::Stopped, Duration::from_secs(1)).await;
    // The open incident is closed as abandoned when the instance is stopped.
    assert_eq!(
        h.count(|k| matches!(k, EventKind::Recovered { action: RecoveryAction::Abandoned, .. })),
        1
    );
    h.connector.script.lock().unwrap().push_back(Start::Ok);
    h.registry.servers()[0].command(Command::Start, None).await;
    h.until(InstanceState::Warning, Duration::from_secs(1)).await;
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn commands_are_obeyed_during_a_slow_start() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.connector.script.lock().unwrap().push_back(Start::Slow);
    h.registry.servers()[0].command(Command::Restart, None).await;
    time::sleep(Duration::from_millis(100)).await;
    h.drain();
    // The slow start was abandoned and a fresh one succeeded quickly.
    h.until(InstanceState::Warning, Duration::from_secs(1)).await;
    h.registry.servers()[0].command(Command::Stop, None).await;
    h.until(InstanceState::Stopped, Duration::from_secs(1)).await;
    h.registry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn tuning_changes_the_probe_policy_of_a_running_instance() {
    let mut h = Harness::new(spec("t"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(30)).await;
    let session = h.session(0);
    let probes_in = |secs: u64| {
        let session = Arc::clone(&session);
        async move {
            let before = session.probes.load(Ordering::SeqCst);
            time::sleep(Duration::from_secs(secs)).await;
            session.probes.load(Ordering::SeqCst) - before
        }
    };
    // The configured policy: every 5 s (+ up to 10 % jitter), 2 s timeout.
    let n = probes_in(60).await;
    assert!((10..=12).contains(&n), "{n} probes in 60 s at 5 s");
    assert_eq!(*session.last_probe_timeout.lock().unwrap(), Duration::from_secs(2));

    let server = &h.registry.servers()[0];
    server.set_tuned(crate::Tuned {
        probe_interval: Some(Duration::from_secs(1)),
        probe_timeout: Some(Duration::from_secs(4)),
        ..Default::default()
    });
    let n = probes_in(60).await;
    assert!((50..=61).contains(&n), "{n} probes in 60 s at 1 s");
    assert_eq!(*session.last_probe_timeout.lock().unwrap(), Duration::from_secs(4));

    // Back to the config: the override is gone, the cadence follows.
    server.set_tuned(crate::Tuned::default());
    time::sleep(Duration::from_secs(6)).await;
    let n = probes_in(60).await;
    assert!((10..=12).contains(&n), "{n} probes in 60 s after the revert");
    assert_eq!(h.state(), InstanceState::Healthy);
}

/// A server that crashes every 20 s (a leak, a periodic job) is back within 2 s each time: the
/// backoff decays while the instance serves, instead of waiting for 60 s of health to reset.
#[tokio::test(start_paused = true)]
async fn a_periodic_crasher_recovers_within_two_seconds_every_time() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    for n in 0..8 {
        h.until(InstanceState::Warning, Duration::from_secs(40)).await;
        let started = Instant::now();
        time::sleep_until(started + Duration::from_secs(20)).await;
        h.session(n).events.send(SessionEvent::Exited(exit_by_signal(9))).await.unwrap();
        h.until(InstanceState::Offline, Duration::from_secs(1)).await;
        let back = h.until(InstanceState::Warning, Duration::from_secs(40)).await;
        assert!(back <= Duration::from_secs(2), "crash {n}: back after {back:?}");
    }
    assert_eq!(super::instance::inconsistent_views(), 0, "a view was published half-updated");
    h.registry.shutdown(Duration::from_secs(5)).await;
}

/// Every view an instance publishes is whole: a reader never sees `failed` without its
/// probation time, `starting` with a stale retry time, or `offline` with a live pid.
#[tokio::test(start_paused = true)]
async fn every_published_view_is_consistent_through_a_crash_loop() {
    let mut h = Harness::new(spec("s"), FakeConnector { fail_always: true, ..Default::default() });
    h.until(InstanceState::Failed, Duration::from_secs(35)).await;
    let view = h.registry.servers()[0].views()[0].clone();
    assert!(view.next_retry_at.is_some(), "failed with a probation restart scheduled: {view:?}");
    time::sleep(Duration::from_secs(301)).await;
    h.until(InstanceState::Failed, Duration::from_secs(10)).await;
    assert_eq!(super::instance::inconsistent_views(), 0, "a view was published half-updated");
    h.registry.shutdown(Duration::from_secs(5)).await;
}

/// Prediction on the default one-minute warm-up: a first instance is armed once it has warmed up
/// and publishes what it learnt; the next instance of that server (here: after a restart of
/// the whole supervisor, as when Warden restarts with the same database) is armed from its
/// first probe, while a server with no history still warms up.
#[tokio::test(start_paused = true)]
async fn a_new_instance_takes_its_servers_learnt_baselines_and_is_watched_at_once() {
    let status = |h: &Harness| h.registry.servers()[0].views()[0].predictor;
    let book = SeedBook::default();
    let mut h = Harness::with_seeds(spec("s"), FakeConnector::default(), book.clone());
    h.until(InstanceState::Healthy, Duration::from_secs(10)).await;
    assert_eq!(status(&h), Some(PredictorStatus { armed: false, seeded: false }));
    assert!(book.get("s").is_none());
    let start = Instant::now();
    while status(&h) != Some(PredictorStatus { armed: true, seeded: false }) {
        assert!(start.elapsed() < Duration::from_secs(120), "not armed: {:?}", status(&h));
        time::sleep(Duration::from_millis(500)).await;
    }
    time::sleep(Duration::from_secs(3)).await;
    let seed = book.get("s").expect("the armed instance published its baselines");
    assert!(seed.probes.is_some() && seed.calls.is_none(), "{seed:?}");
    h.registry.shutdown(Duration::from_secs(5)).await;

    let mut again = Harness::with_seeds(spec("s"), FakeConnector::default(), book.clone());
    again.until(InstanceState::Warning, Duration::from_secs(1)).await;
    time::sleep(PREDICT_EVERY_FOR_TESTS).await;
    assert_eq!(status(&again), Some(PredictorStatus { armed: true, seeded: true }));

    let mut cold = Harness::with_seeds(spec("t"), FakeConnector::default(), book);
    cold.until(InstanceState::Warning, Duration::from_secs(1)).await;
    time::sleep(PREDICT_EVERY_FOR_TESTS).await;
    assert_eq!(status(&cold), Some(PredictorStatus { armed: false, seeded: false }));
    again.registry.shutdown(Duration::from_secs(5)).await;
    cold.registry.shutdown(Duration::from_secs(5)).await;
}

/// Longer than the instance's predictor read-out period.
const PREDICT_EVERY_FOR_TESTS: Duration = Duration::from_secs(3);
