//! Live reload's registry operations on the fake: policy in place, resize by the difference,
//! rolling replacement, removal after the calls in flight.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time;
use warden_core::InstanceState;

use warden_config::Transport;

use super::fake::*;
use crate::Registry;

fn routable(r: &Registry, name: &str) -> usize {
    r.server(name).map_or(0, |h| h.views().iter().filter(|v| v.state.is_routable()).count())
}

async fn settle(h: &mut Harness, name: &str, n: usize) {
    for _ in 0..2000 {
        let views = h.registry.server(name).unwrap().views();
        if views.len() == n && views.iter().all(|v| v.state == InstanceState::Healthy || v.standby)
        {
            return;
        }
        time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{name} did not settle with {n} instances");
}

#[tokio::test(start_paused = true)]
async fn a_policy_change_applies_in_place_and_disabled_stops_and_starts() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(30)).await;
    let mut changed = spec("s");
    changed.timeout = Duration::from_secs(7);
    changed.health.interval = Duration::from_secs(1);
    h.registry.update(changed.clone()).await;
    assert_eq!(h.registry.server("s").unwrap().spec.timeout, Duration::from_secs(7));
    // Probes follow the new interval at once: about one a second now (5 s before).
    let probes = h.session(0).probes.load(Ordering::SeqCst);
    time::sleep(Duration::from_secs(10)).await;
    let more = h.session(0).probes.load(Ordering::SeqCst) - probes;
    assert!((8..=12).contains(&more), "{more} probes in 10 s at a 1 s interval");
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 1, "no new session");

    changed.disabled = true;
    h.registry.update(changed.clone()).await;
    h.until(InstanceState::Stopped, Duration::from_secs(10)).await;
    changed.disabled = false;
    h.registry.update(changed).await;
    h.until(InstanceState::Healthy, Duration::from_secs(30)).await;
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_resize_starts_or_stops_only_the_difference() {
    let mut two = spec("s");
    two.replicas = 2;
    let mut h = Harness::new(two.clone(), FakeConnector::default());
    settle(&mut h, "s", 2).await;
    let mut three = two.clone();
    three.replicas = 3;
    h.registry.reconcile(three, false, Duration::from_secs(30)).await;
    settle(&mut h, "s", 3).await;
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 3, "one new instance");
    assert!((0..2).all(|i| h.session(i).graceful_stops.load(Ordering::SeqCst) == 0));

    let mut one = two;
    one.replicas = 1;
    h.registry.reconcile(one, false, Duration::from_secs(30)).await;
    settle(&mut h, "s", 1).await;
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 3, "nothing started");
    assert_eq!(h.session(0).graceful_stops.load(Ordering::SeqCst), 0, "the first stays");
    assert!((1..3).all(|i| h.session(i).graceful_stops.load(Ordering::SeqCst) == 1));
}

#[tokio::test(start_paused = true)]
async fn a_standby_stays_the_last_slot_through_a_resize() {
    let mut s = spec("s");
    s.standby = true;
    let mut h = Harness::new(s.clone(), FakeConnector::default());
    settle(&mut h, "s", 2).await;
    let mut bigger = s;
    bigger.replicas = 2;
    h.registry.reconcile(bigger, false, Duration::from_secs(30)).await;
    settle(&mut h, "s", 3).await;
    let views = h.registry.server("s").unwrap().views();
    assert_eq!(views.iter().map(|v| v.standby).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(views[2].state, InstanceState::Stopped, "the standby waits stopped");
    assert_eq!(views[1].state, InstanceState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_rolling_replacement_never_leaves_the_server_without_a_routable_instance() {
    // One instance: the new process must serve before the old one stops.
    let mut one = spec("s");
    let mut h = Harness::new(one.clone(), FakeConnector::default());
    settle(&mut h, "s", 1).await;
    let registry = Arc::clone(&h.registry);
    let watcher = {
        let r = Arc::clone(&registry);
        tokio::spawn(async move {
            let mut least = usize::MAX;
            for _ in 0..4000 {
                least = least.min(routable(&r, "s"));
                time::sleep(Duration::from_millis(1)).await;
            }
            least
        })
    };
    if let Transport::Stdio { args, .. } = &mut one.transport {
        args.push("--new".into());
    }
    registry.reconcile(one, true, Duration::from_secs(30)).await;
    assert_eq!(h.connector.starts.load(Ordering::SeqCst), 2, "a new process");
    assert_eq!(h.session(0).graceful_stops.load(Ordering::SeqCst), 1, "the old one stopped");
    assert_eq!(h.session(1).graceful_stops.load(Ordering::SeqCst), 0);
    assert!(watcher.await.unwrap() >= 1, "an instance was routable at every moment");
    assert!(matches!(
        &registry.server("s").unwrap().spec.transport,
        Transport::Stdio { args, .. } if args == &["--new"]
    ));
}

#[tokio::test(start_paused = true)]
async fn a_removed_server_finishes_its_calls_within_the_grace_then_stops() {
    let mut h = Harness::new(spec("s"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(30)).await;
    let call = h.registry.server("s").unwrap().link(0).unwrap().begin_call();
    let registry = Arc::clone(&h.registry);
    let r = Arc::clone(&registry);
    let removal = tokio::spawn(async move { r.remove("s", Duration::from_secs(30)).await });
    time::sleep(Duration::from_secs(3)).await;
    assert!(registry.server("s").is_none(), "out of the list at once");
    assert_eq!(h.session(0).graceful_stops.load(Ordering::SeqCst), 0, "the call is waited for");
    drop(call);
    removal.await.unwrap();
    assert_eq!(h.session(0).graceful_stops.load(Ordering::SeqCst), 1, "then stopped the usual way");

    // A call that outlives the grace does not hold the stop back.
    let mut h = Harness::new(spec("t"), FakeConnector::default());
    h.until(InstanceState::Healthy, Duration::from_secs(30)).await;
    let _stuck = h.registry.server("t").unwrap().link(0).unwrap().begin_call();
    let started = time::Instant::now();
    h.registry.remove("t", Duration::from_secs(5)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(5) && started.elapsed() < Duration::from_secs(20)
    );
    assert_eq!(h.session(0).graceful_stops.load(Ordering::SeqCst), 1);
}
