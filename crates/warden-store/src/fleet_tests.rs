//! The fleet's store on PostgreSQL (issue 16): a server stopped under the writer, a store
//! opened while it is down, TLS, the fleet's tables (replicas, views, commands, sessions),
//! rows owned by their replica, and the leader lock. Fixtures are the store suite's.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warden_core::{EventKind, FailureClass, Reason, RecoveryAction};

use crate::tests::{
    event, eventually, fixture, fixture_at, fixture_with, new_location, on_both_engines,
};
use crate::*;

/// A store on `location` as replica `id` opens it.
async fn replica(location: &Location, id: &str) -> Store {
    let store = Store::open(location).await.unwrap();
    store.set_replica(id);
    store
}

/// A replica as it describes itself at a heartbeat.
fn info(id: &str) -> ReplicaInfo {
    ReplicaInfo {
        id: id.into(),
        host: "h".into(),
        pid: 42,
        version: "0.1.0".into(),
        listen: Some("127.0.0.1:7421".into()),
        started_at: warden_core::now(),
    }
}

on_both_engines!(
    replicas_beat_publish_their_views_stop_and_are_forgotten,
    failure_rows_belong_to_the_replica_that_opened_them,
    one_replica_at_a_time_claims_a_notification,
);

/// Two replicas that both try to send one outbox row: the first claims it, the second is told
/// it is held (and to wait) while the claim runs, may take it over once the claim ran out
/// (its replica died before recording the send), and is told it is settled once delivered.
async fn one_replica_at_a_time_claims_a_notification(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let location = new_location(b, dir.path()).await;
    let (r1, r2) = (replica(&location, "r1").await, replica(&location, "r2").await);
    let t0 = warden_core::now();
    let body = serde_json::json!({ "status": "firing" });
    let id = r1.enqueue_notification("hook", "{}:{}", "firing", &body, t0).await.unwrap();
    let lease = Duration::from_secs(60);
    assert_eq!(r1.claim_notification(id, t0, lease).await.unwrap(), Claim::Mine);
    assert_eq!(r2.claim_notification(id, t0, lease).await.unwrap(), Claim::Held);
    // Its own claim again (a retry after a failed attempt): still its own.
    assert_eq!(r1.claim_notification(id, t0, lease).await.unwrap(), Claim::Mine);
    let later = t0 + chrono::Duration::seconds(61);
    assert_eq!(r2.claim_notification(id, later, lease).await.unwrap(), Claim::Mine);
    assert_eq!(r1.claim_notification(id, later, lease).await.unwrap(), Claim::Held);
    r2.notification_attempted(id, Ok(()), None, later).await.unwrap();
    assert_eq!(r1.claim_notification(id, later, lease).await.unwrap(), Claim::Settled);
    // The replica whose claim ran out records its failed attempt late: the delivery stands.
    r1.notification_attempted(id, Err("timed out"), Some(later), later).await.unwrap();
    assert_eq!(r1.claim_notification(id, later, lease).await.unwrap(), Claim::Settled);
    r1.close().await;
    r2.close().await;
}

/// Two replicas count the same server's same minute: each keeps its own counts (before, the
/// second write replaced the first, and a restarted replica restored another's burn rates).
/// (On SQLite one Warden owns the file: its minutes are the file's whatever its replica id.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_keeps_its_own_slo_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let location = new_location(Backend::Postgres, dir.path()).await;
    let (r1, r2) = (replica(&location, "r1").await, replica(&location, "r2").await);
    let minute = chrono::Utc::now() - chrono::Duration::minutes(3);
    let m =
        |requests: u64, errors: u64| SloMinute { server: "alpha".into(), minute, requests, errors };
    r1.put_slo_minutes(&[m(100, 1)]).await.unwrap();
    r2.put_slo_minutes(&[m(40, 30)]).await.unwrap();
    r1.put_slo_minutes(&[m(120, 2)]).await.unwrap();
    let counts = |rows: Vec<SloMinute>| -> Vec<(u64, u64)> {
        rows.iter().map(|r| (r.requests, r.errors)).collect()
    };
    let since = minute - chrono::Duration::minutes(1);
    assert_eq!(counts(r1.slo_minutes(since).await.unwrap()), [(120, 2)]);
    assert_eq!(counts(r2.slo_minutes(since).await.unwrap()), [(40, 30)]);
    r1.close().await;
    r2.close().await;
}

/// PostgreSQL stopped under a running writer: health degrades, rows wait in the backlog,
/// and once the server is back every row is written (in order) and health recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_degrades_health_loses_nothing_and_recovers() {
    use warden_testkit::postgres::Postgres;
    let pg = Postgres::started().await;
    let pg = Arc::new(std::sync::Mutex::new(pg));
    let url = pg.lock().unwrap().url("postgres");
    let f = fixture_at(Location::Postgres(url)).await;
    f.events.send(event(EventKind::OperatorAction { action: "before".into() })).await.unwrap();
    eventually(async || f.store.count("events").await.unwrap() == 1).await;

    warden_testkit::postgres::stop(&pg).await;
    for k in 0..50 {
        let action = format!("while down {k}");
        f.events.send(event(EventKind::OperatorAction { action })).await.unwrap();
    }
    eventually(async || !f.store.health().ok).await;
    let h = f.store.health();
    assert!(h.pending >= 50, "rows are kept while the database is unreachable: {h:?}");
    assert!(f.store.ping().await.is_err(), "the server is down");

    warden_testkit::postgres::start(&pg).await;
    eventually(async || f.store.health().ok).await;
    eventually(async || f.store.count("events").await.unwrap_or(0) == 51).await;
    let rows = f.store.events(Some("operator_action"), 100).await.unwrap();
    let last = rows[0].payload["action"].as_str().map(str::to_owned);
    assert_eq!(last.as_deref(), Some("while down 49"), "{:?}", rows[0].payload);
    let h = f.store.health();
    assert_eq!((h.pending, h.dropped), (0, 0), "{h:?}");
    let store = f.store.clone();
    f.degraded_once_then_recovered().await;
    store.close().await;
}

/// A replica may start while PostgreSQL is down: the store opens degraded (supervision never
/// waits for the database), keeps what is recorded, and migrates and writes it all once the
/// server is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_while_postgres_is_down_migrates_and_writes_once_it_is_up() {
    use warden_testkit::postgres::{Postgres, PASSWORD};
    let pg = tokio::task::spawn_blocking(|| {
        let mut pg = Postgres::init(PASSWORD);
        pg.wait_ready();
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let url = pg.url("postgres");
    let opened =
        tokio::time::timeout(Duration::from_secs(15), Store::open(&Location::Postgres(url)))
            .await
            .expect("opening does not wait for the server")
            .expect("opens degraded");
    let h = opened.health();
    assert!(!h.ok && h.last_error.is_some(), "{h:?}");
    let f = fixture_with(tempfile::tempdir().unwrap(), opened);
    for k in 0..5 {
        let action = format!("before the server {k}");
        f.events.send(event(EventKind::OperatorAction { action })).await.unwrap();
    }
    let pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.start();
        pg.wait_ready();
        pg
    })
    .await
    .unwrap();
    eventually(async || f.store.count("events").await.unwrap_or(0) == 5).await;
    eventually(async || f.store.health().ok).await;
    f.shutdown.cancel();
    f.writer.await.unwrap();
    f.store.close().await;
    drop(pg);
}

/// A managed PostgreSQL that requires TLS (`sslmode=require`) is reached over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_when_the_url_requires_it() {
    use warden_testkit::postgres::{Postgres, PASSWORD};
    let pg = tokio::task::spawn_blocking(|| {
        let pg = Postgres::init_tls(PASSWORD);
        pg.wait_ready();
        pg
    })
    .await
    .unwrap();
    let url = format!("{}?sslmode=require", pg.url("postgres"));
    let store = Store::open(&Location::Postgres(url)).await.unwrap();
    assert!(store.is_ready(), "{:?}", store.health());
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert!(tls, "the connection is encrypted");
    store.close().await;
}

async fn replicas_beat_publish_their_views_stop_and_are_forgotten(b: Backend) {
    let f = fixture(b).await;
    let me = info;
    f.store.replica_heartbeat(&me("r1"), false).await.unwrap();
    f.store.replica_heartbeat(&me("r2"), true).await.unwrap();
    f.store.replica_heartbeat(&me("r1"), false).await.unwrap();
    let view = |status: &str| serde_json::json!({ "name": "alpha", "status": status }).to_string();
    f.store.put_server_views("r1", &[("alpha".into(), view("healthy"))], &[]).await.unwrap();
    f.store.put_server_views("r2", &[("alpha".into(), view("degraded"))], &[]).await.unwrap();
    f.store.put_server_views("r2", &[("beta".into(), view("healthy"))], &[]).await.unwrap();
    f.store.put_server_views("r2", &[("alpha".into(), view("healthy"))], &[]).await.unwrap();
    let (replicas, views) = f.store.fleet().await.unwrap();
    assert_eq!(replicas.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
    for r in &replicas {
        assert!((0.0..5.0).contains(&r.age_seconds), "a fresh heartbeat: {r:?}");
        assert!(r.stopped_at.is_none());
    }
    let got: Vec<(String, String, String)> = views
        .iter()
        .map(|v| (v.server.clone(), v.replica.clone(), v.view["status"].to_string()))
        .collect();
    let want = [("alpha", "r1", "healthy"), ("alpha", "r2", "healthy"), ("beta", "r2", "healthy")];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(s, r, v)| (s.to_string(), r.to_string(), format!("{v:?}"))).collect();
    assert_eq!(got, want, "one row per replica and server, rewritten in place");

    // A server removed from r2; r1 stops cleanly: marked, its views gone.
    f.store.put_server_views("r2", &[], &["beta".into()]).await.unwrap();
    f.store.replica_stopped("r1").await.unwrap();
    let (replicas, views) = f.store.fleet().await.unwrap();
    assert!(replicas[0].stopped_at.is_some() && replicas[1].stopped_at.is_none());
    assert_eq!(views.len(), 1);
    assert_eq!((views[0].replica.as_str(), views[0].server.as_str()), ("r2", "alpha"));
    // A new heartbeat under a stopped id clears the mark.
    f.store.replica_heartbeat(&me("r1"), false).await.unwrap();
    assert!(f.store.fleet().await.unwrap().0[0].stopped_at.is_none());

    // Operator actions recorded by one replica, read back in order by the others.
    assert_eq!(f.store.last_fleet_command().await.unwrap(), 0);
    f.store.set_replica("r1");
    let a = f.store.record_fleet_command("alpha", None, "server", "stop").await.unwrap();
    let b = f.store.record_fleet_command("alpha", Some(1), "failover", "trigger").await.unwrap();
    assert_eq!(f.store.last_fleet_command().await.unwrap(), b);
    let after = f.store.fleet_commands_after(0).await.unwrap();
    assert_eq!(after.iter().map(|c| c.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!((after[1].origin.as_str(), after[1].instance), ("r1", Some(1)));
    assert_eq!((after[1].kind.as_str(), after[1].action.as_str()), ("failover", "trigger"));
    assert_eq!(f.store.fleet_commands_after(b).await.unwrap(), []);
    // A starting replica reads the newest operator commands, newest first (tuning is not one).
    f.store.record_fleet_command("alpha", None, "tuning", "timeout").await.unwrap();
    let recent = f.store.recent_operator_commands(10).await.unwrap();
    assert_eq!(recent.iter().map(|c| c.id).collect::<Vec<_>>(), [b, a]);
    assert_eq!(f.store.recent_operator_commands(1).await.unwrap().len(), 1);

    // Client sessions any replica can continue.
    assert_eq!(f.store.mcp_session("s1").await.unwrap(), None);
    f.store.put_mcp_session("s1", r#"{"initialize_params":{}}"#).await.unwrap();
    f.store.put_mcp_session("s1", r#"{"initialize_params":{"v":2}}"#).await.unwrap();
    let state = f.store.mcp_session("s1").await.unwrap();
    assert_eq!(state.as_deref(), Some(r#"{"initialize_params":{"v":2}}"#));
    // What the session set later rides with it, and survives rmcp rewriting the state.
    assert_eq!(f.store.mcp_session_extras("s1").await.unwrap(), None);
    f.store.put_mcp_session_extras("s1", r#"{"level":"info"}"#).await.unwrap();
    f.store.put_mcp_session("s1", r#"{"initialize_params":{"v":3}}"#).await.unwrap();
    let extras = f.store.mcp_session_extras("s1").await.unwrap();
    assert_eq!(extras.as_deref(), Some(r#"{"level":"info"}"#));
    f.store.put_mcp_session_extras("unknown", "{}").await.unwrap();
    assert_eq!(f.store.mcp_session("unknown").await.unwrap(), None);
    f.store.delete_mcp_session("s1").await.unwrap();
    assert_eq!(f.store.mcp_session("s1").await.unwrap(), None);

    // Replicas whose heartbeat is older than the cutoff are deleted with their views.
    let later = warden_core::now() + chrono::Duration::minutes(1);
    assert_eq!(f.store.forget_replicas(later).await.unwrap(), 2);
    let (replicas, views) = f.store.fleet().await.unwrap();
    assert!(replicas.is_empty() && views.is_empty());
}

/// Two replicas on one database, each with an instance `files#0`: a recovery resolves, and a
/// start abandons, only the replica's own failure rows.
async fn failure_rows_belong_to_the_replica_that_opened_them(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let location = new_location(b, dir.path()).await;
    let on = |id: &'static str| {
        let location = location.clone();
        async move {
            let store = Store::open(&location).await.unwrap();
            store.set_replica(id);
            fixture_with(tempfile::tempdir().unwrap(), store)
        }
    };
    let (r1, r2) = (on("r1").await, on("r2").await);
    let crash = || {
        event(EventKind::Failure {
            reason: Reason::new(FailureClass::Crash, "exited"),
            context: "x".into(),
        })
    };
    let recovered = || {
        event(EventKind::Recovered {
            class: FailureClass::Crash,
            action: RecoveryAction::Restart,
            downtime_seconds: 2.0,
        })
    };
    r1.events.send(crash()).await.unwrap();
    eventually(async || r1.store.count("integration_failures").await.unwrap() == 1).await;
    assert_eq!(r2.store.abandon_open_failures().await.unwrap(), 0, "r1's incident is r1's");
    r2.events.send(recovered()).await.unwrap();
    eventually(async || r2.store.count("events").await.unwrap() == 2).await;
    assert!(!r1.store.failures(None, 1).await.unwrap()[0].resolved, "r2's recovery is not r1's");
    // The leader closes the rows of a replica gone for longer than the bound, not before.
    let me = info;
    r1.store.replica_heartbeat(&me("r1"), false).await.unwrap();
    assert_eq!(r2.store.abandon_gone_replicas(60.0).await.unwrap(), 0, "r1 is live");
    assert!(!r1.store.failures(None, 1).await.unwrap()[0].resolved);
    r1.events.send(recovered()).await.unwrap();
    eventually(async || r1.store.failures(None, 1).await.unwrap()[0].resolved).await;
    let row = &r1.store.failures(None, 1).await.unwrap()[0];
    assert_eq!(row.recovery_action.as_deref(), Some("restart"));
    // r1 crashes again and is then silent past the bound (a bound below its heartbeat's age):
    // the leader closes its open row as abandoned.
    r1.events.send(crash()).await.unwrap();
    eventually(async || r1.store.count("integration_failures").await.unwrap() == 2).await;
    assert_eq!(r2.store.abandon_gone_replicas(-1.0).await.unwrap(), 1);
    let row = &r1.store.failures(None, 1).await.unwrap()[0];
    assert_eq!((row.resolved, row.recovery_action.as_deref()), (true, Some("abandoned")));
    for f in [r1, r2] {
        f.shutdown.cancel();
        f.writer.await.unwrap();
    }
}

/// Two replicas on one PostgreSQL database: one leads; when it stops (its session ends), the
/// other leads within a few seconds. Alerts one replica has firing are the other's
/// `fleet_firing` while the first is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_another_takes_over_when_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let location = new_location(Backend::Postgres, dir.path()).await;
    let (a, b) = (replica(&location, "a").await, replica(&location, "b").await);
    let stop_a = CancellationToken::new();
    let mut lead_a = a.spawn_leader_election(stop_a.clone());
    tokio::time::timeout(Duration::from_secs(10), lead_a.wait_for(|l| *l)).await.unwrap().unwrap();
    let mut lead_b = b.spawn_leader_election(CancellationToken::new());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!*lead_b.borrow(), "one leader at a time");

    // What a fires is b's fleet_firing (a's heartbeat is fresh), not a's own.
    let me = info;
    a.replica_heartbeat(&me("a"), true).await.unwrap();
    let t0 = chrono::Utc::now();
    let labels = serde_json::json!({"alertname": "CrashLoop", "server_instance": "s#0"});
    let alert = NewAlert {
        fingerprint: "00000000000000cc",
        name: "CrashLoop",
        severity: "warning",
        labels,
        annotations: serde_json::json!({}),
        value: 6.0,
        starts_at: t0,
        fired_at: t0,
    };
    a.alert_fired(&alert).await.unwrap();
    assert_eq!(b.fleet_firing(10.0).await.unwrap().len(), 1);
    assert!(a.fleet_firing(10.0).await.unwrap().is_empty(), "not its own");
    a.alert_resolved("00000000000000cc", t0).await.unwrap();
    assert!(b.fleet_firing(10.0).await.unwrap().is_empty());

    let stopped = std::time::Instant::now();
    stop_a.cancel();
    tokio::time::timeout(Duration::from_secs(10), lead_b.wait_for(|l| *l)).await.unwrap().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(5), "{:?}", stopped.elapsed());
    tokio::time::timeout(Duration::from_secs(5), lead_a.wait_for(|l| !*l)).await.unwrap().unwrap();
}
