use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warden_core::{
    Event, EventBus, EventKind, FailureClass, InstanceId, InstanceState, MetricSample, Reason,
    RecoveryAction, TraceId,
};

use crate::*;

pub(crate) struct Fixture {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) path: std::path::PathBuf,
    pub(crate) store: Store,
    pub(crate) events: mpsc::Sender<Arc<Event>>,
    pub(crate) samples: mpsc::Sender<MetricSample>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) writer: tokio::task::JoinHandle<()>,
    pub(crate) bus_rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
}

/// Runs each listed `async fn name(b: Backend)` on both engines, as the tests `name::sqlite`
/// and `name::postgres` (a database of its own on the test binary's PostgreSQL server).
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            use crate::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )* };
}
pub(crate) use on_both_engines;

/// A new, empty store on `b`: a file in `dir`, or a new database on the shared server.
pub(crate) async fn open_store(b: Backend, dir: &std::path::Path) -> Store {
    Store::open(&new_location(b, dir).await).await.unwrap()
}

/// Where a new, empty store on `b` lives.
pub(crate) async fn new_location(b: Backend, dir: &std::path::Path) -> Location {
    match b {
        Backend::Sqlite => Location::Sqlite(dir.join("nested").join("warden.db")),
        Backend::Postgres => Location::Postgres(
            tokio::task::spawn_blocking(|| warden_testkit::postgres::shared_database("store"))
                .await
                .unwrap(),
        ),
    }
}

on_both_engines!(
    failures_are_resolved_with_their_recovery_action_and_samples_become_rows,
    shutdown_flushes_what_is_queued,
    prune_deletes_rows_older_than_retention,
    failover_configurations_follow_the_config,
    rows_left_open_by_a_previous_run_are_closed_as_abandoned,
    metric_ranges_filter_by_time_instance_and_metric_and_bucket_in_sql,
    tuning_changes_are_recorded_reverted_and_probe_timeouts_counted,
    slo_minutes_are_rewritten_in_place_and_read_back_in_order,
    predictor_seeds_are_rewritten_per_server_and_old_ones_dropped,
);

pub(crate) async fn fixture(b: Backend) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(b, dir.path()).await;
    fixture_with(dir, store)
}

pub(crate) async fn fixture_at(location: Location) -> Fixture {
    fixture_with(tempfile::tempdir().unwrap(), Store::open(&location).await.unwrap())
}

pub(crate) fn fixture_with(dir: tempfile::TempDir, store: Store) -> Fixture {
    let path = dir.path().join("nested").join("warden.db");
    let (events, ev_rx) = mpsc::channel(10_000);
    let (samples, s_rx) = mpsc::channel(10_000);
    let bus = EventBus::new(None);
    let bus_rx = bus.subscribe();
    let shutdown = CancellationToken::new();
    let writer = store.spawn_writer(
        ev_rx,
        s_rx,
        WriterOptions {
            retention: tokio::sync::watch::channel(Duration::from_secs(86_400)).1,
            prune_every: Duration::from_secs(3600),
            bus: Some(bus),
            leading: None,
        },
        shutdown.clone(),
    );
    Fixture { _dir: dir, path, store, events, samples, shutdown, writer, bus_rx }
}

impl Fixture {
    /// The bus saw the store degrade once and recover; the writer is then stopped.
    pub(crate) async fn degraded_once_then_recovered(mut self) {
        let mut kinds = vec![];
        while let Ok(e) = self.bus_rx.try_recv() {
            kinds.push(e.kind.name());
        }
        assert_eq!(kinds, ["store_degraded", "store_recovered"]);
        self.shutdown.cancel();
        self.writer.await.unwrap();
    }
}

fn id() -> InstanceId {
    InstanceId::new("files", 0)
}

pub(crate) fn event(kind: EventKind) -> Arc<Event> {
    Arc::new(Event::new(Some(id()), TraceId::random(), kind))
}

fn sample() -> MetricSample {
    MetricSample {
        instance: id(),
        at: warden_core::now(),
        state: InstanceState::Healthy,
        response_time_ms: Some(1.5),
        p95_ms: Some(3.0),
        p99_ms: Some(4.0),
        error_rate: 0.01,
        availability: 0.999,
        throughput: 0.2,
    }
}

pub(crate) async fn eventually(mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..800 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not met within 20 s");
}

#[tokio::test]
async fn opens_in_wal_mode_with_the_original_tables() {
    let f = fixture(Backend::Sqlite).await;
    assert!(f.path.exists(), "creates the directory and the file");
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", f.path.display())).await.unwrap();
    let mode: String =
        sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    for (table, columns) in [
        ("integration_health_metrics", "server_type,server_instance,metric_type,metric_value,status,details,measured_at"),
        ("integration_failures", "server_type,failure_type,task_context,error_details,recovery_action,resolution_time_seconds,resolved,occurred_at"),
        ("failover_configurations", "primary_server_type,fallback_strategy,fallback_server_type,auto_recovery_enabled,max_retry_attempts,retry_delay_seconds,health_check_interval_seconds,created_at"),
    ] {
        let have: Vec<String> = sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')")).fetch_all(&mut conn).await.unwrap();
        for c in columns.split(',') {
            assert!(have.iter().any(|h| h == c), "{table}.{c} missing; have {have:?}");
        }
    }
    // Reopening applies no migration twice.
    drop(Store::open(&Location::Sqlite(f.path.clone())).await.unwrap());
}

async fn failures_are_resolved_with_their_recovery_action_and_samples_become_rows(b: Backend) {
    let f = fixture(b).await;
    f.events
        .send(event(EventKind::Failure {
            reason: Reason::new(FailureClass::Crash, "exited with signal 9"),
            context: "state healthy".into(),
        }))
        .await
        .unwrap();
    f.samples.send(sample()).await.unwrap();
    eventually(async || f.store.count("integration_failures").await.unwrap() == 1).await;
    let open = f.store.failures(Some("files"), 10).await.unwrap();
    assert!(!open[0].resolved);
    assert_eq!(open[0].failure_type, "crash");
    assert_eq!(open[0].server_instance.as_deref(), Some("files#0"));
    f.events
        .send(event(EventKind::Recovered {
            class: FailureClass::Crash,
            action: RecoveryAction::Restart,
            downtime_seconds: 1.25,
        }))
        .await
        .unwrap();
    eventually(async || f.store.failures(None, 10).await.unwrap()[0].resolved).await;
    let row = &f.store.failures(None, 10).await.unwrap()[0];
    assert_eq!(row.recovery_action.as_deref(), Some("restart"));
    assert_eq!(row.resolution_time_seconds, Some(1.25));
    assert!(row.resolved_at.is_some());
    let metrics = f.store.metrics("files#0", 10).await.unwrap();
    let kinds: Vec<&str> = metrics.iter().map(|m| m.metric_type.as_str()).collect();
    for k in ["response_time", "error_rate", "availability", "throughput"] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    assert!(metrics.iter().all(|m| m.status == "healthy"));
    assert_eq!(f.store.count("events").await.unwrap(), 2);
    f.shutdown.cancel();
    f.writer.await.unwrap();
}

#[tokio::test]
async fn a_full_database_degrades_health_loses_nothing_and_recovers() {
    let f = fixture(Backend::Sqlite).await;
    f.events.send(event(EventKind::OperatorAction { action: "warm-up".into() })).await.unwrap();
    eventually(async || f.store.count("events").await.unwrap() == 1).await;
    let pages: i64 =
        sqlx::query_scalar("PRAGMA page_count").fetch_one(&f.store.pool).await.unwrap();
    f.store.set_max_pages(Some(pages as u64));
    let big = "x".repeat(8000);
    for _ in 0..50 {
        f.events.send(event(EventKind::OperatorAction { action: big.clone() })).await.unwrap();
    }
    eventually(async || !f.store.health().ok).await;
    let h = f.store.health();
    assert!(h.last_error.as_deref().unwrap_or("").contains("full"), "{h:?}");
    assert!(h.pending >= 50, "rows are kept while failing: {h:?}");
    f.store.set_max_pages(None);
    eventually(async || f.store.health().ok).await;
    eventually(async || f.store.count("events").await.unwrap() >= 51).await;
    f.degraded_once_then_recovered().await;
}

#[tokio::test]
async fn a_locked_database_degrades_health_then_recovers() {
    let f = fixture(Backend::Sqlite).await;
    let mut locker =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", f.path.display())).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();
    f.events
        .send(event(EventKind::OperatorAction { action: "while locked".into() }))
        .await
        .unwrap();
    eventually(async || !f.store.health().ok).await;
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    eventually(async || f.store.health().ok).await;
    eventually(async || f.store.count("events").await.unwrap() == 1).await;
    f.shutdown.cancel();
    f.writer.await.unwrap();
}

async fn shutdown_flushes_what_is_queued(b: Backend) {
    let f = fixture(b).await;
    for _ in 0..10 {
        f.events.send(event(EventKind::OperatorAction { action: "x".into() })).await.unwrap();
    }
    f.shutdown.cancel();
    f.writer.await.unwrap();
    assert_eq!(f.store.count("events").await.unwrap(), 10);
}

async fn prune_deletes_rows_older_than_retention(b: Backend) {
    let f = fixture(b).await;
    let mut old = sample();
    old.at = warden_core::now() - chrono::Duration::days(40);
    f.samples.send(old).await.unwrap();
    f.samples.send(sample()).await.unwrap();
    eventually(async || f.store.count("integration_health_metrics").await.unwrap() == 8).await;
    f.store.prune(Duration::from_secs(30 * 86_400)).await;
    assert_eq!(f.store.count("integration_health_metrics").await.unwrap(), 4);
    f.shutdown.cancel();
    f.writer.await.unwrap();
}

async fn failover_configurations_follow_the_config(b: Backend) {
    let f = fixture(b).await;
    let row = FailoverConfig {
        primary_server_type: "search".into(),
        fallback_strategy: "priority".into(),
        fallback_server_type: Some("search-backup".into()),
        auto_recovery_enabled: true,
        max_retry_attempts: 5,
        retry_delay_seconds: 0.5,
        health_check_interval_seconds: 5.0,
    };
    f.store.sync_failover_configs(std::slice::from_ref(&row)).await.unwrap();
    f.store.sync_failover_configs(&[row]).await.unwrap();
    assert_eq!(f.store.count("failover_configurations").await.unwrap(), 1);
}

#[test]
fn locations_parse() {
    assert_eq!(
        Location::parse("sqlite:///tmp/x.db").unwrap(),
        Location::Sqlite("/tmp/x.db".into())
    );
    assert_eq!(Location::parse("./w.db").unwrap(), Location::Sqlite("./w.db".into()));
    assert_eq!(Location::parse("sqlite::memory:").unwrap(), Location::Memory);
    let url = "postgres://user:secret@db.example:5432/warden?sslmode=require";
    let pg = Location::parse(url).unwrap();
    assert_eq!(pg, Location::Postgres(url.into()));
    assert!(pg.is_shared());
    for shown in [pg.to_string(), format!("{pg:?}")] {
        assert!(shown.contains("db.example:5432/warden"), "{shown}");
        assert!(!shown.contains("secret"), "no password when shown: {shown}");
    }
    assert!(Location::parse("postgresql://u@h/d").is_ok());
    let err = Location::parse("postgres://user:secret@/db").unwrap_err().to_string();
    assert!(err.contains("host") && !err.contains("secret"), "{err}");
    let err = Location::parse("mysql://user:secret@host/db").unwrap_err().to_string();
    assert!(err.contains("mysql://") && err.contains("postgres://"), "{err}");
    assert!(!err.contains("secret"), "no credentials in errors: {err}");
}

/// A path with a space, `%`, `?` and `#` is the file it names (the store reaches SQLite through
/// a URL).
#[tokio::test]
async fn a_path_with_url_characters_is_opened_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a b%20c?d#e").join("w.db");
    let store = Store::open(&Location::Sqlite(path.clone())).await.unwrap();
    store.sync_failover_configs(&[]).await.unwrap();
    store.close().await;
    assert!(path.exists(), "{path:?}");
}

async fn rows_left_open_by_a_previous_run_are_closed_as_abandoned(b: Backend) {
    let f = fixture(b).await;
    f.events
        .send(event(EventKind::Failure {
            reason: Reason::new(FailureClass::Hang, "silent"),
            context: "x".into(),
        }))
        .await
        .unwrap();
    eventually(async || f.store.count("integration_failures").await.unwrap() == 1).await;
    assert_eq!(f.store.abandon_open_failures().await.unwrap(), 1);
    let row = &f.store.failures(None, 1).await.unwrap()[0];
    assert!(row.resolved);
    assert_eq!(row.recovery_action.as_deref(), Some("abandoned"));
    assert_eq!(f.store.abandon_open_failures().await.unwrap(), 0);
}

async fn metric_ranges_filter_by_time_instance_and_metric_and_bucket_in_sql(b: Backend) {
    let f = fixture(b).await;
    // Eight samples of files#0, 15 s apart from a whole minute, response times 0..7 ms; one of
    // files#1 in the same minutes; one of files#0 before the range.
    let half_an_hour_ago = warden_core::now().timestamp() - 1800;
    let base = chrono::DateTime::from_timestamp(half_an_hour_ago / 60 * 60, 0).unwrap();
    let at = |s: i64| base + chrono::Duration::seconds(s);
    for k in 0..8 {
        let mut s = sample();
        s.at = at(15 * k);
        s.response_time_ms = Some(k as f64);
        f.samples.send(s).await.unwrap();
    }
    let mut other = sample();
    other.instance = InstanceId::new("files", 1);
    other.at = at(30);
    f.samples.send(other).await.unwrap();
    let mut early = sample();
    early.at = at(-3600);
    f.samples.send(early).await.unwrap();
    eventually(async || f.store.count("integration_health_metrics").await.unwrap() == 40).await;

    let query = MetricQuery {
        since: at(0),
        until: at(120),
        server: None,
        instance: Some("files#0".into()),
        metric: Some("response_time".into()),
        step: None,
        limit: 10_000,
    };
    let raw = f.store.metric_range(&query).await.unwrap();
    assert!(!raw.truncated);
    assert_eq!(raw.series.len(), 1);
    let s = &raw.series[0];
    assert_eq!(
        (s.server.as_str(), s.instance.as_str(), s.metric.as_str()),
        ("files", "files#0", "response_time")
    );
    let values: Vec<f64> = s.points.iter().map(|p| p.avg).collect();
    assert_eq!(
        values,
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        "oldest first, nothing out of range"
    );
    assert!(s.points.iter().all(|p| p.count == 1 && p.min == p.avg && p.max == p.avg));

    // One-minute buckets: avg, min, max and count of each, computed by SQL.
    let step = Duration::from_secs(60);
    let buckets =
        f.store.metric_range(&MetricQuery { step: Some(step), ..query.clone() }).await.unwrap();
    let points = &buckets.series[0].points;
    let t = |s: i64| at(s).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(
        points,
        &[
            MetricPoint { at: t(0), avg: 1.5, min: 0.0, max: 3.0, count: 4 },
            MetricPoint { at: t(60), avg: 5.5, min: 4.0, max: 7.0, count: 4 },
        ]
    );

    // `until` is exclusive; the limit keeps the newest points and says so.
    let part = f.store.metric_range(&MetricQuery { until: at(30), ..query.clone() }).await.unwrap();
    assert_eq!(part.series[0].points.len(), 2);
    let newest = f.store.metric_range(&MetricQuery { limit: 3, ..query.clone() }).await.unwrap();
    assert!(newest.truncated);
    let values: Vec<f64> = newest.series[0].points.iter().map(|p| p.avg).collect();
    assert_eq!(values, [5.0, 6.0, 7.0]);

    // Without filters: every instance and metric in the range, one series each.
    let all = f
        .store
        .metric_range(&MetricQuery { instance: None, metric: None, ..query.clone() })
        .await
        .unwrap();
    let names: Vec<String> =
        all.series.iter().map(|s| format!("{} {}", s.instance, s.metric)).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.contains(&"files#1 throughput".to_owned()), "{names:?}");
    let by_server = f
        .store
        .metric_range(&MetricQuery { server: Some("other".into()), instance: None, ..query })
        .await
        .unwrap();
    assert!(by_server.series.is_empty());
    f.shutdown.cancel();
    f.writer.await.unwrap();
}

async fn tuning_changes_are_recorded_reverted_and_probe_timeouts_counted(b: Backend) {
    let f = fixture(b).await;
    for class in [FailureClass::Timeout, FailureClass::Timeout, FailureClass::ConnectionError] {
        f.events
            .send(event(EventKind::ProbeFailed { method: "ping", reason: Reason::new(class, "x") }))
            .await
            .unwrap();
    }
    // A server-wide event (no instance) is filed under its server.
    f.events
        .send(Arc::new(Event::new(
            None,
            TraceId::random(),
            EventKind::TuningChanged {
                change_id: 1,
                server: "files".into(),
                parameter: "timeout".into(),
                from: 1000.0,
                to: 2000.0,
                reverted: false,
                reason: "r".into(),
            },
        )))
        .await
        .unwrap();
    eventually(async || f.store.count("events").await.unwrap() == 4).await;
    let range = ReportRange {
        since: warden_core::now() - chrono::Duration::hours(1),
        until: warden_core::now() + chrono::Duration::hours(1),
        server: None,
    };
    let t = f.store.probe_timeouts(&range).await.unwrap();
    assert_eq!(
        t,
        vec![ProbeTimeouts { server: "files".into(), instance: "files#0".into(), count: 2 }]
    );
    let tuned = f.store.events_of(Some("files"), Some("tuning_changed"), 10).await.unwrap();
    assert_eq!(tuned.len(), 1, "the server column holds the event's server");

    let evidence = serde_json::json!({ "slowest_call_ms": 900.0 });
    let change = |old: f64, new: f64| NewTuning {
        at: chrono::Utc::now(),
        server: "files",
        instance: None,
        parameter: "timeout",
        base_value: 1000.0,
        old_value: old,
        new_value: new,
        rule: "slow_calls",
        reason: "calls came close",
        evidence: &evidence,
        source: "api",
    };
    let a = f.store.record_tuning(&change(1000.0, 2000.0)).await.unwrap();
    let b = f.store.record_tuning(&change(2000.0, 4000.0)).await.unwrap();
    let active = f.store.tuning_changes(Some("files"), true, 0).await.unwrap();
    assert_eq!(active.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b, a], "newest first");
    assert_eq!(active[0].evidence, evidence);
    f.store.revert_tuning(&[b], "reverted by api", chrono::Utc::now()).await.unwrap();
    let active = f.store.tuning_changes(None, true, 0).await.unwrap();
    assert_eq!(active.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a]);
    let row = f.store.tuning_change(b).await.unwrap().unwrap();
    assert_eq!(row.reverted_reason.as_deref(), Some("reverted by api"));
    assert!(row.reverted_at.is_some());
    assert_eq!(f.store.tuning_changes(None, false, 1).await.unwrap().len(), 1, "limit");
}

async fn slo_minutes_are_rewritten_in_place_and_read_back_in_order(b: Backend) {
    let f = fixture(b).await;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let m = |server: &str, k: i64, requests: u64, errors: u64| SloMinute {
        server: server.into(),
        minute: t0 + chrono::Duration::minutes(k),
        requests,
        errors,
    };
    f.store.put_slo_minutes(&[m("a", 1, 10, 1), m("b", 0, 5, 0)]).await.unwrap();
    // The same minute again (the current one rewritten at shutdown): replaced, not added.
    f.store.put_slo_minutes(&[m("a", 1, 12, 2)]).await.unwrap();
    let rows = f.store.slo_minutes(t0).await.unwrap();
    let got: Vec<(String, u64, u64)> =
        rows.iter().map(|r| (r.server.clone(), r.requests, r.errors)).collect();
    assert_eq!(got, vec![("b".into(), 5, 0), ("a".into(), 12, 2)]);
    assert!(f.store.slo_minutes(t0 + chrono::Duration::minutes(2)).await.unwrap().is_empty());
}

async fn predictor_seeds_are_rewritten_per_server_and_old_ones_dropped(b: Backend) {
    let f = fixture(b).await;
    let now = warden_core::now();
    let old = now - chrono::Duration::days(3);
    let rows = [
        ("a".to_owned(), now, serde_json::json!({"probes": {"n": 1}})),
        ("b".to_owned(), old, serde_json::json!({"calls": {"n": 2}})),
    ];
    f.store.put_predictor_seeds(&rows).await.unwrap();
    f.store
        .put_predictor_seeds(&[("a".to_owned(), now, serde_json::json!({"probes": {"n": 3}}))])
        .await
        .unwrap();
    let back = f.store.predictor_seeds(now - chrono::Duration::days(1)).await.unwrap();
    assert_eq!(back, vec![("a".to_owned(), serde_json::json!({"probes": {"n": 3}}))]);
    assert_eq!(f.store.predictor_seeds(old).await.unwrap().len(), 1, "b was deleted");
}
