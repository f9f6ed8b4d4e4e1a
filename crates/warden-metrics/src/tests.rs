use std::time::Duration;

use warden_core::{Event, EventBus, EventKind, FailureClass, InstanceId, Reason, TraceId};

use super::scrape::{self, Collector, DescriptorEncoder, Unit};
use super::*;

/// The value of the sample named `name` whose labels are exactly `labels` (in any order).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let mut got: Vec<&str> =
            rest.trim_end_matches('}').split(',').filter(|s| !s.is_empty()).collect();
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        got.sort_unstable();
        want.sort_unstable();
        (got == want).then(|| value.parse().expect("a number"))
    })
}

fn id() -> InstanceId {
    InstanceId::new("search", 1)
}

const INST: [(&str, &str); 2] = [("server", "search"), ("server_instance", "search#1")];

fn with(extra: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
    let mut l = INST.to_vec();
    l.push(extra);
    l
}

#[test]
fn every_class_is_where_its_index_says() {
    for (i, c) in FailureClass::ALL.iter().enumerate() {
        assert_eq!(class_index(*c), i);
    }
}

#[test]
fn source_metrics_have_units_labels_and_zeros_for_every_class() {
    let m = Metrics::new();
    let inst = m.instance(&id());
    let server = m.server("search", &["backup".to_owned()]);
    let text = m.encode();
    // Names with units and types.
    for line in [
        "# TYPE warden_probe_duration_seconds histogram",
        "# UNIT warden_probe_duration_seconds seconds",
        "# TYPE warden_call_duration_seconds histogram",
        "# UNIT warden_call_duration_seconds seconds",
        "# TYPE warden_call_errors counter",
        "# TYPE warden_instance_failures counter",
        "# TYPE warden_probe_failures counter",
        "# TYPE warden_incidents counter",
        "# TYPE warden_retries counter",
        "# TYPE warden_failovers counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    // Zeros from the start, for every class.
    for class in FailureClass::ALL {
        for name in [
            "warden_call_errors_total",
            "warden_instance_failures_total",
            "warden_probe_failures_total",
            "warden_incidents_total",
        ] {
            assert_eq!(
                sample(&text, name, &with(("class", class.as_str()))),
                Some(0.0),
                "{name} {class}"
            );
        }
    }
    assert_eq!(sample(&text, "warden_call_duration_seconds_count", &INST), Some(0.0));
    assert_eq!(
        sample(&text, "warden_failovers_total", &[("server", "search"), ("fallback", "backup")]),
        Some(0.0)
    );

    inst.probe_ok(Duration::from_millis(3));
    inst.call(Duration::from_millis(20), None);
    inst.call(Duration::from_millis(400), Some(FailureClass::Timeout));
    inst.failure(FailureClass::Crash);
    server.retry();
    server.retry_denied();
    server.unavailable();
    server.failover("backup");
    server.failover("not-a-fallback");
    let text = m.encode();
    assert_eq!(sample(&text, "warden_probe_duration_seconds_count", &INST), Some(1.0));
    assert_eq!(
        sample(&text, "warden_probe_duration_seconds_bucket", &with(("le", "0.005"))),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "warden_probe_duration_seconds_bucket", &with(("le", "0.0025"))),
        Some(0.0)
    );
    assert_eq!(sample(&text, "warden_call_duration_seconds_count", &INST), Some(2.0));
    assert_eq!(
        sample(&text, "warden_call_duration_seconds_bucket", &with(("le", "+Inf"))),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "warden_call_duration_seconds_bucket", &with(("le", "0.25"))),
        Some(1.0)
    );
    let sum = sample(&text, "warden_call_duration_seconds_sum", &INST).unwrap();
    assert!((sum - 0.42).abs() < 1e-9, "{sum}");
    assert_eq!(sample(&text, "warden_call_errors_total", &with(("class", "timeout"))), Some(1.0));
    assert_eq!(sample(&text, "warden_call_errors_total", &with(("class", "crash"))), Some(0.0));
    assert_eq!(
        sample(&text, "warden_instance_failures_total", &with(("class", "crash"))),
        Some(1.0)
    );
    let s = [("server", "search")];
    assert_eq!(sample(&text, "warden_retries_total", &s), Some(1.0));
    assert_eq!(sample(&text, "warden_retries_denied_total", &s), Some(1.0));
    assert_eq!(sample(&text, "warden_calls_unavailable_total", &s), Some(1.0));
    assert_eq!(
        sample(&text, "warden_failovers_total", &[("server", "search"), ("fallback", "backup")]),
        Some(1.0)
    );
    assert!(!text.contains("not-a-fallback"), "only configured fallbacks are series");
}

#[test]
fn events_count_probe_failures_incidents_and_crash_loops() {
    let m = Metrics::new();
    m.instance(&id());
    let ev = |kind| Event::new(Some(id()), TraceId::random(), kind);
    m.record_event(&ev(EventKind::ProbeFailed {
        method: "ping",
        reason: Reason::new(FailureClass::Timeout, "no answer"),
    }));
    m.record_event(&ev(EventKind::Failure {
        reason: Reason::new(FailureClass::Crash, "exited with signal 9"),
        context: "state healthy".into(),
    }));
    m.record_event(&ev(EventKind::RestartIntensityExceeded { restarts: 5, window_seconds: 60 }));
    // Events without an instance (the store's) are not instance metrics.
    m.record_event(&Event::new(None, TraceId::random(), EventKind::StoreRecovered));
    let text = m.encode();
    assert_eq!(
        sample(&text, "warden_probe_failures_total", &with(("class", "timeout"))),
        Some(1.0)
    );
    assert_eq!(sample(&text, "warden_incidents_total", &with(("class", "crash"))), Some(1.0));
    assert_eq!(sample(&text, "warden_instance_crash_loops_total", &INST), Some(1.0));
}

#[tokio::test]
async fn the_event_counter_follows_the_bus_until_it_is_gone() {
    let m = Metrics::new();
    let bus = EventBus::new(None);
    let task = m.spawn_event_counter(bus.subscribe());
    bus.emit(Event::new(
        Some(id()),
        TraceId::random(),
        EventKind::Failure {
            reason: Reason::new(FailureClass::Hang, "silent"),
            context: String::new(),
        },
    ));
    drop(bus);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends with the bus").unwrap();
    assert_eq!(sample(&m.encode(), "warden_incidents_total", &with(("class", "hang"))), Some(1.0));
    assert_eq!(m.events_lagged().get(), 0);
}

#[derive(Debug)]
struct Fixed;

impl Collector for Fixed {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        scrape::single(&mut e, "up", "Warden is running", None, 1_i64)?;
        scrape::single(&mut e, "start_time", "When Warden started", Some(&Unit::Seconds), 12.5)?;
        scrape::gauge(
            &mut e,
            "instance_state",
            "One-hot state",
            None,
            [("healthy", 1_i64), ("offline", 0)].map(|(s, v)| {
                let mut l = instance_labels(&id());
                l.push(("state", s.to_owned()));
                (l, v)
            }),
        )?;
        scrape::counter(&mut e, "instance_restarts", "Restarts", [(instance_labels(&id()), 3)])?;
        scrape::counter(&mut e, "events_dropped", "Dropped", [(Labels::new(), 7)])
    }
}

#[test]
fn scrape_time_collectors_get_the_prefix_units_and_labels() {
    let m = Metrics::new();
    m.register_collector(Box::new(Fixed));
    let text = m.encode();
    assert!(text.lines().any(|l| l == "warden_up 1"), "{text}");
    assert!(text.lines().any(|l| l == "# UNIT warden_start_time_seconds seconds"), "{text}");
    assert_eq!(sample(&text, "warden_start_time_seconds", &[]), Some(12.5));
    assert_eq!(sample(&text, "warden_instance_state", &with(("state", "healthy"))), Some(1.0));
    assert_eq!(sample(&text, "warden_instance_state", &with(("state", "offline"))), Some(0.0));
    assert_eq!(sample(&text, "warden_instance_restarts_total", &INST), Some(3.0));
    assert_eq!(sample(&text, "warden_events_dropped_total", &[]), Some(7.0));
    assert!(!text.contains("{}"), "no empty label sets:\n{text}");
}
