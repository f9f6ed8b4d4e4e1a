//! The alert rules on two simulated days of a noisy but healthy server.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use warden_alerts::{InstanceFacts, Now, RuleSet, ServerFacts, Transition};
use warden_config::AlertSettings;
use warden_core::InstanceState;
use warden_predict::{InstancePredictor, Limits, PredictorConfig};

/// A noisy but healthy server (log-normal latency around 50 ms with AR(1) noise, σ 0.3,
/// φ 0.5, as research §7.3; 1 % failed calls; a probe every 5 s and 2 calls a second) for
/// two simulated days, through the real predictor and the real rules: no PredictedFailure,
/// and drift at most once a day.
#[test]
fn a_noisy_healthy_server_raises_no_predicted_failure_over_two_days() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut predictor =
        InstancePredictor::new(Limits::new(Duration::from_secs(2)), PredictorConfig::default());
    let mut rules = RuleSet::new(&AlertSettings::default(), Instant::now());
    let start = Now::current();
    let (mut noise, mut requests, mut errors) = (0.0f64, 0u64, 0u64);
    let mut fired: Vec<String> = Vec::new();
    let days = 2;
    for second in 0..days * 86_400u64 {
        let t = second as f64;
        noise = 0.5 * noise + rng.gen_range(-1.0..1.0) * 0.3 * 3f64.sqrt() * (0.75f64).sqrt();
        for _ in 0..2 {
            let latency = 0.05 * noise.exp();
            let ok = rng.gen::<f64>() >= 0.01;
            predictor.observe_latency(t, latency);
            predictor.observe_outcome(t, ok);
            requests += 1;
            errors += u64::from(!ok);
        }
        if second % 5 != 0 {
            continue;
        }
        let a = predictor.evaluate(t);
        let facts = ServerFacts {
            name: "s".into(),
            routable: true,
            paused: false,
            objective: None,
            instances: vec![InstanceFacts {
                id: "s#0".into(),
                state: InstanceState::Healthy,
                reason: None,
                restarts: 0,
                requests_total: requests,
                errors_total: errors,
                prediction: super::evaluate::prediction_of(&a),
                drift: super::evaluate::drift_of(&a),
            }],
        };
        for tr in rules.evaluate(start.after(Duration::from_secs(second)), &[facts], &[]) {
            if let Transition::Firing(alert) = tr {
                fired.push(alert.name);
            }
        }
    }
    let predicted = fired.iter().filter(|n| *n == "PredictedFailure").count();
    let drift = fired.iter().filter(|n| *n == "Drift").count();
    assert_eq!(predicted, 0, "{fired:?}");
    assert!(drift <= days as usize, "{drift} drift alerts in {days} days: {fired:?}");
    assert!(fired.iter().all(|n| n == "Drift"), "{fired:?}");
}

/// A notification behind another for the same receiver and group (queued before it, or being
/// sent) is not what the delivery loop waits for, however overdue: it would wake at once and
/// find nothing to send, over and over.
#[test]
fn the_next_due_is_the_earliest_not_behind_another() {
    let now = Instant::now();
    let o = |seq: u64, receiver: &str, group: &str, due: Instant| super::Outgoing {
        id: None,
        seq,
        receiver: receiver.to_owned(),
        group: group.to_owned(),
        status: "firing",
        body: serde_json::Value::Null,
        attempts: 0,
        due,
        created: chrono::Utc::now(),
        last_error: None,
    };
    let mut s = super::Shared::default();
    assert_eq!(s.next_due(), None);
    // "hang"'s first is being sent; its second is overdue, but behind it.
    s.sending.push(o(1, "hang", "g", now));
    s.outbox.push_back(o(2, "hang", "g", now - Duration::from_secs(5)));
    assert_eq!(s.next_due(), None);
    // Another group of the same receiver is not behind it.
    s.outbox.push_back(o(3, "hang", "h", now + Duration::from_secs(7)));
    assert_eq!(s.next_due(), Some(now + Duration::from_secs(7)));
    // A retry due later holds up the overdue one behind it in its group.
    s.outbox.push_back(o(4, "hook", "g", now + Duration::from_secs(3)));
    s.outbox.push_back(o(5, "hook", "g", now - Duration::from_secs(1)));
    assert_eq!(s.next_due(), Some(now + Duration::from_secs(3)));
    s.sending.clear();
    assert_eq!(s.next_due(), Some(now - Duration::from_secs(5)));
    // Taken at `now`: the overdue one no longer behind another, alone; the rest stay in order.
    let taken: Vec<u64> = s.take_due(now).iter().map(|o| o.seq).collect();
    assert_eq!(taken, [2]);
    let left: Vec<u64> = s.outbox.iter().map(|o| o.seq).collect();
    assert_eq!(left, [3, 4, 5]);
}
