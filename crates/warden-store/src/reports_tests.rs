//! The report queries on a hand-made day of failures, alerts, samples and tool usage.

use serde_json::json;

use super::*;
use crate::NewAlert;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn day() -> ReportRange {
    ReportRange {
        since: at("2026-01-01T00:00:00Z"),
        until: at("2026-01-02T00:00:00Z"),
        server: None,
    }
}

/// (instance, class, occurred, recovery action, resolution seconds; no action: open)
async fn failure(
    store: &Store,
    instance: &str,
    class: &str,
    occurred: &str,
    how: Option<(&str, Option<f64>)>,
) {
    sqlx::query(
        "INSERT INTO integration_failures (server_type, server_instance, failure_type, resolved,
             recovery_action, resolution_time_seconds, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(instance.split('#').next())
    .bind(instance)
    .bind(class)
    .bind(i64::from(how.is_some()))
    .bind(how.map(|h| h.0))
    .bind(how.and_then(|h| h.1))
    .bind(ts(&at(occurred)))
    .execute(&store.pool)
    .await
    .unwrap();
}

/// One sample: a throughput row and, with a latency, a response_time row.
async fn sample(
    store: &Store,
    instance: &str,
    when: &str,
    status: &str,
    throughput: f64,
    p50_p95: Option<(f64, f64)>,
) {
    let mut rows = vec![("throughput", throughput, json!({"state": status}))];
    if let Some((p50, p95)) = p50_p95 {
        rows.push(("response_time", p50, json!({"unit": "ms", "p50": p50, "p95": p95})));
    }
    for (metric, value, details) in rows {
        sqlx::query(
            "INSERT INTO integration_health_metrics (server_type, server_instance, metric_type,
                 metric_value, status, details, measured_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(instance.split('#').next())
        .bind(instance)
        .bind(metric)
        .bind(value)
        .bind(status)
        .bind(details.to_string())
        .bind(ts(&at(when)))
        .execute(&store.pool)
        .await
        .unwrap();
    }
}

/// (server, tool, hour), [calls, errors, repeats], (total ms, max ms).
fn usage(key: (&str, &str, &str), n: [u64; 3], ms: (f64, f64)) -> ToolUsage {
    ToolUsage {
        server: key.0.into(),
        tool: key.1.into(),
        hour: at(key.2),
        calls: n[0],
        errors: n[1],
        total_ms: ms.0,
        max_ms: ms.1,
        repeats: n[2],
    }
}

crate::tests::on_both_engines!(reports_aggregate_failures_recoveries_alerts_samples_and_tool_usage);

async fn reports_aggregate_failures_recoveries_alerts_samples_and_tool_usage(b: crate::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::tests::open_store(b, dir.path()).await;
    let empty = store.failure_stats(&day()).await.unwrap();
    assert_eq!((empty.total, empty.open), (0, 0));
    assert_eq!(empty.time_to_recover, Durations::default(), "no data: no numbers");
    assert!(store.tool_usage(&day()).await.unwrap().tools.is_empty());
    assert!(store.instance_samples(&day()).await.unwrap().is_empty());
    assert!(store.alert_stats(&day()).await.unwrap().is_empty());

    // Failures: three of a#0 (crash 2 s, crash 4 s, hang 30 s), one abandoned crash of
    // a#1, one timeout of b#0 still open; before the range a resolved one and an open one.
    failure(&store, "a#0", "crash", "2026-01-01T01:00:00Z", Some(("restart", Some(2.0)))).await;
    failure(&store, "a#0", "crash", "2026-01-01T02:00:00Z", Some(("restart", Some(4.0)))).await;
    failure(&store, "a#0", "hang", "2026-01-01T03:00:00Z", Some(("kill_and_restart", Some(30.0))))
        .await;
    failure(&store, "b#0", "timeout", "2026-01-01T04:00:00Z", None).await;
    failure(&store, "a#1", "crash", "2026-01-01T05:00:00Z", Some(("abandoned", None))).await;
    failure(&store, "a#0", "crash", "2025-12-31T23:00:00Z", Some(("restart", Some(100.0)))).await;
    failure(&store, "b#1", "hang", "2025-12-31T22:00:00Z", None).await;

    let f = store.failure_stats(&day()).await.unwrap();
    assert_eq!((f.total, f.resolved, f.open), (5, 4, 1));
    let mttr = &f.time_to_recover;
    assert_eq!(
        (mttr.count, mttr.mean, mttr.p50, mttr.p90, mttr.max),
        (3, Some(12.0), Some(4.0), Some(30.0), Some(30.0))
    );
    let class = |c: &str| f.by_class.iter().find(|x| x.class == c).unwrap().clone();
    assert_eq!((class("crash").count, class("crash").open), (3, 0));
    assert_eq!(class("crash").time_to_recover.mean, Some(3.0), "abandoned rows have no time");
    assert_eq!(class("hang").time_to_recover.p50, Some(30.0));
    assert_eq!((class("timeout").count, class("timeout").open), (1, 1));
    let top = &f.by_instance[0];
    assert_eq!((top.instance.as_deref(), top.count, top.downtime_seconds), (Some("a#0"), 3, 36.0));
    assert_eq!(top.by_class["crash"], 2);
    let action = |a: &str| f.recoveries.iter().find(|x| x.action == a).unwrap().clone();
    assert_eq!((action("restart").count, action("restart").time_to_recover.mean), (2, Some(3.0)));
    assert_eq!(action("kill_and_restart").count, 1);
    assert_eq!((action("abandoned").count, action("abandoned").time_to_recover.count), (1, 0));
    let open: Vec<_> =
        f.open_incidents.iter().map(|r| r.server_instance.clone().unwrap()).collect();
    assert_eq!(open, ["b#0", "b#1"], "every open incident, newest first");
    let only_b =
        store.failure_stats(&ReportRange { server: Some("b".into()), ..day() }).await.unwrap();
    assert_eq!((only_b.total, only_b.open_incidents.len()), (1, 2));

    // Tool usage: two flushes of the same hour add up; rows outside the range are left out.
    store
        .record_tool_usage(&[
            usage(("a", "echo", "2026-01-01T01:00:00Z"), [10, 1, 4], (100.0, 30.0)),
            usage(("a", "add", "2026-01-01T13:00:00Z"), [3, 0, 0], (3.0, 2.0)),
            usage(("b", "echo", "2026-01-01T13:00:00Z"), [2, 2, 0], (8.0, 5.0)),
            usage(("a", "echo", "2025-12-31T23:00:00Z"), [99, 0, 0], (99.0, 1.0)),
            usage(("a", "echo", "2026-01-02T00:00:00Z"), [99, 0, 0], (99.0, 1.0)),
        ])
        .await
        .unwrap();
    store
        .record_tool_usage(&[usage(("a", "echo", "2026-01-01T01:00:00Z"), [5, 0, 1], (50.0, 40.0))])
        .await
        .unwrap();
    let u = store.tool_usage(&day()).await.unwrap();
    let calls: Vec<_> =
        u.tools.iter().map(|t| (t.server.as_str(), t.tool.as_str(), t.calls)).collect();
    assert_eq!(calls, [("a", "echo", 15), ("a", "add", 3), ("b", "echo", 2)], "most calls first");
    let echo = &u.tools[0];
    assert_eq!(
        (echo.errors, echo.repeats, echo.mean_ms, echo.max_ms),
        (1, 5, Some(10.0), Some(40.0))
    );
    assert_eq!(u.tools[2].error_rate, 1.0);
    let a = u.by_hour_of_day.iter().find(|h| h.server == "a").unwrap();
    assert_eq!((a.calls[1], a.calls[13], a.errors[1], a.calls.iter().sum::<u64>()), (15, 3, 1, 18));
    // A range starting inside an hour includes that hour's row.
    let late = ReportRange { since: at("2026-01-01T13:30:00Z"), ..day() };
    assert_eq!(store.tool_usage(&late).await.unwrap().tools.len(), 2);

    // Samples: a#0 healthy, healthy, offline; a#1 healthy all along (so the server is up in
    // every 10 s slot); one sample of a#0 outside the range.
    for (k, status) in ["healthy", "healthy", "offline"].iter().enumerate() {
        let when = format!("2026-01-01T06:00:{}0Z", k);
        let latency = (k < 2).then_some((10.0 + 10.0 * k as f64, 15.0 + 25.0 * k as f64));
        sample(&store, "a#0", &when, status, 1.0 + k as f64, latency).await;
        sample(&store, "a#1", &when, "healthy", 0.5, None).await;
    }
    sample(&store, "a#0", "2026-01-02T06:00:00Z", "offline", 50.0, Some((900.0, 900.0))).await;
    let s = store.instance_samples(&day()).await.unwrap();
    assert_eq!(s.len(), 2);
    let a0 = &s[0];
    assert_eq!((a0.instance.as_str(), a0.samples, a0.up_samples), ("a#0", 3, 2));
    assert_eq!((a0.p50_ms_avg, a0.p95_ms_max), (Some(15.0), Some(40.0)));
    assert_eq!((a0.throughput_avg, a0.throughput_max), (Some(2.0), Some(3.0)));
    assert_eq!(a0.by_status.get("offline"), Some(&1));
    assert_eq!(s[1].p50_ms_avg, None, "no latency sampled");
    let slots = store.server_slots(&day(), std::time::Duration::from_secs(10)).await.unwrap();
    assert_eq!((slots[0].server.as_str(), slots[0].slots), ("a", 3), "one per 10 s slot");

    // Downtime spans: the resolved incidents for their resolution time, the open ones to the
    // range's end (from its start for the one opened before), the resolved one before the
    // range and the abandoned one not at all.
    let spans = store.incident_spans(&day()).await.unwrap();
    let got: Vec<_> =
        spans.iter().map(|s| (s.instance.as_str(), (s.end - s.start).num_seconds())).collect();
    assert_eq!(
        got,
        [("b#1", 86_400), ("a#0", 2), ("a#0", 4), ("a#0", 30), ("b#0", 20 * 3600)],
        "{spans:?}"
    );

    // Alerts: two firings of CrashLoop (one resolved after 60 s, one still firing), one
    // of another rule before the range.
    let fire = |name: &'static str, fp: &'static str, when: &str| NewAlert {
        fingerprint: fp,
        name,
        severity: "warning",
        labels: json!({"alertname": name, "server": "a"}),
        annotations: json!({}),
        value: 1.0,
        starts_at: at(when),
        fired_at: at(when),
    };
    store.alert_fired(&fire("CrashLoop", "f1", "2026-01-01T10:00:00Z")).await.unwrap();
    store.alert_resolved("f1", at("2026-01-01T10:01:00Z")).await.unwrap();
    store.alert_fired(&fire("CrashLoop", "f2", "2026-01-01T23:00:00Z")).await.unwrap();
    store.alert_fired(&fire("Old", "f3", "2025-12-30T00:00:00Z")).await.unwrap();
    let alerts = store.alert_stats(&day()).await.unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!((a.name.as_str(), a.fired, a.firing_now), ("CrashLoop", 2, 1));
    assert!(
        (a.firing_seconds - 3660.0).abs() < 0.01,
        "60 s, and the hour to the range's end: {}",
        a.firing_seconds
    );
}
