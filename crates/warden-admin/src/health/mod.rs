//! Warden's own health: `/health/status` (the `HealthCheckResponse` model), `/livez`,
//! `/readyz`. A task refreshes one snapshot every second — database round trip, memory, disk,
//! event-loop lag, upstreams, readiness — and the handlers serve it pre-serialized, so a poll
//! costs a lock and a copy, never a query.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use warden_config::{HealthThresholds, Readiness};
use warden_core::{InstanceState, ServerStatus};
use warden_store::Store;
use warden_supervisor::{Overview, ServerView};

/// How often the snapshot is refreshed.
const REFRESH: Duration = Duration::from_secs(1);
/// `/livez` fails when the refresh task has not run for this long (the runtime is stuck).
const STALLED: Duration = Duration::from_secs(10);
/// Event-loop lag beyond this degrades Warden's health.
const LAG_DEGRADED_MS: f64 = 250.0;
/// Free disk below this share (or below `DISK_MIN_FREE`) degrades Warden's health.
const DISK_MIN_FREE_SHARE: f64 = 0.05;
const DISK_MIN_FREE: u64 = 100 * 1024 * 1024;

/// What the refresh task needs to look at.
pub struct Sources {
    pub overview: warden_supervisor::Views,
    pub store: Store,
    pub store_fallback: Option<String>,
    pub gateway: warden_gateway::Gateway,
    pub readiness: Readiness,
    /// When Warden's own status is degraded or unhealthy (the seed's rules).
    pub thresholds: HealthThresholds,
    /// Operator labels for `metadata` (`environment`, `region`, …).
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Where the database lives (for the disk check); `None` for in-memory.
    pub data_dir: Option<PathBuf>,
    pub started: Instant,
    pub listen: Option<String>,
    pub event_log: warden_ops::eventlog::LogStatus,
    /// Warden's own log files, once the binary reports them.
    pub log_files: warden_ops::logfiles::Slot,
    /// Live reload's record (a refused config shows until a good one arrives).
    pub config: warden_ops::reloads::ConfigStatus,
    pub stream: crate::stream::Stream,
}

mod seed;

/// The latest snapshot.
pub struct Snapshot {
    pub body: Bytes,
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    pub ready: bool,
    pub ready_reason: String,
    /// One line for a service manager (systemd's `STATUS=`).
    pub summary: String,
    pub at: Instant,
    /// The seed's gauges: status (1 healthy, 0.5 degraded, 0 unhealthy), the database pool's
    /// utilization (0 to 1), the database round trip in ms.
    pub gauges: Gauges,
}

/// What `mcp_health_status`, `mcp_pool_utilization` and `mcp_database_latency_ms` show.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    pub status: f64,
    pub pool_utilization: f64,
    pub database_latency_ms: Option<f64>,
}

/// Shared between the refresh task and the handlers.
#[derive(Clone)]
pub struct Health {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
}

impl Health {
    pub fn get(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().expect("not poisoned"))
    }

    /// Whether the refresh task is alive (the runtime is not stuck).
    pub fn live(&self) -> bool {
        self.get().at.elapsed() < STALLED
    }

    /// A handle on liveness for a service manager's watchdog.
    pub fn liveness(&self) -> Liveness {
        Liveness(self.clone())
    }

    /// Builds the first snapshot and starts refreshing it until `stop`.
    pub async fn start(sources: Sources, stop: CancellationToken) -> Self {
        let first = build(&sources, 0.0).await;
        let health = Self { snapshot: Arc::new(RwLock::new(Arc::new(first))) };
        let h = health.clone();
        tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH) => {}
                }
                // How late the timer fired: the event loop's lag.
                let lag_ms = (asked.elapsed().saturating_sub(REFRESH)).as_secs_f64() * 1000.0;
                let next = build(&sources, lag_ms).await;
                *h.snapshot.write().expect("not poisoned") = Arc::new(next);
            }
        });
        health
    }
}

/// Whether Warden is alive (what `/livez` answers), and a one-line summary of its health: for a
/// service manager's watchdog (`warden run` under systemd).
#[derive(Clone)]
pub struct Liveness(Health);

impl Liveness {
    /// The health snapshot was refreshed within the last 10 s: the runtime is not stuck.
    pub fn live(&self) -> bool {
        self.0.live()
    }

    /// E.g. `healthy: 3/3 servers healthy` or `degraded: 2/3 servers healthy; log files failing`.
    pub fn summary(&self) -> String {
        self.0.get().summary.clone()
    }
}

/// Whether `/readyz` says ready, and why not.
fn readiness(policy: Readiness, critical: &[String], overview: &Overview) -> (bool, String) {
    let routable = |name: &str| {
        overview.servers.iter().find(|s| s.name == name).is_some_and(ServerView::is_served)
    };
    let starting: Vec<&str> = overview
        .servers
        .iter()
        .filter(|s| s.instances.iter().any(|i| i.state == InstanceState::Starting))
        .map(|s| s.name.as_str())
        .collect();
    match policy {
        Readiness::None => (true, "the readiness policy is \"none\"".into()),
        Readiness::Any => {
            let any = overview.servers.iter().any(|s| routable(&s.name));
            (
                any || overview.servers.is_empty(),
                if any { "a server is routable".into() } else { "no server is routable".into() },
            )
        }
        Readiness::All => {
            let down: Vec<&str> =
                overview.servers.iter().map(|s| s.name.as_str()).filter(|n| !routable(n)).collect();
            if down.is_empty() {
                (true, "every server is routable".into())
            } else {
                (false, format!("not routable: {}", down.join(", ")))
            }
        }
        Readiness::Critical if critical.is_empty() => {
            if starting.is_empty() {
                (true, "every server has started (none is marked critical)".into())
            } else {
                (false, format!("still starting: {}", starting.join(", ")))
            }
        }
        Readiness::Critical => {
            let down: Vec<&str> =
                critical.iter().map(String::as_str).filter(|n| !routable(n)).collect();
            if down.is_empty() {
                (true, "every critical server is routable".into())
            } else {
                (false, format!("critical servers not routable: {}", down.join(", ")))
            }
        }
    }
}

async fn build(src: &Sources, lag_ms: f64) -> Snapshot {
    let overview = src.overview.get();
    let ping = tokio::time::timeout(Duration::from_secs(1), src.store.ping()).await;
    let store = src.store.health();
    let (db_ok, db_latency, db_error) = match ping {
        Ok(Ok(d)) => (true, Some(d.as_secs_f64() * 1000.0), None),
        Ok(Err(e)) => (false, None, Some(e.to_string())),
        Err(_) => (false, None, Some("no answer within 1 s".to_owned())),
    };
    let writes_ok = store.ok && src.store_fallback.is_none();
    // Warden's finer view, then the seed's three words.
    let database_state = match (&src.store_fallback, db_ok, writes_ok) {
        (Some(_), _, _) => "memory",
        (None, true, true) => "connected",
        (None, true, false) => "degraded",
        (None, false, _) => "unavailable",
    };
    let database_status = seed::database_status(database_state);
    let th = &src.thresholds;
    let (db_level, db_message) = seed::database_level(database_status, db_latency, th);
    let (pool, pool_utilization, pool_level) = seed::pool(&src.store, th);
    let (memory, memory_level) = seed::memory(th);
    let (disk_check, disk_level) =
        seed::disk(src.data_dir.as_ref(), DISK_MIN_FREE, DISK_MIN_FREE_SHARE);
    let seed_level = db_level.max(pool_level).max(memory_level).max(disk_level);
    let lag_ok = lag_ms <= LAG_DEGRADED_MS;
    let (event_log, event_log_ok) = src.event_log.check();
    let (logs, logs_ok) = src.log_files.check();
    let (config, config_ok) = src.config.check();
    // Critical servers as the last reload left them.
    let critical: Vec<String> = src
        .overview
        .specs()
        .iter()
        .filter(|s| s.critical && !s.disabled)
        .map(|s| s.name.clone())
        .collect();
    let (ready, ready_reason) = readiness(src.readiness, &critical, &overview);

    let servers = overview.servers.len();
    let count = |st: ServerStatus| overview.servers.iter().filter(|s| s.status == st).count();
    let routable_servers = overview.servers.iter().filter(|s| s.is_served()).count();
    let critical_down = critical
        .iter()
        .any(|c| overview.servers.iter().find(|s| &s.name == c).is_some_and(|s| !s.is_served()));
    let status = if (servers > 0 && routable_servers == 0)
        || critical_down
        || seed_level == seed::Level::Fail
    {
        "unhealthy"
    } else if seed_level == seed::Level::Warn
        || !lag_ok
        || !event_log_ok
        || !logs_ok
        || !config_ok
        || overview.status != ServerStatus::Healthy
    {
        "degraded"
    } else {
        "healthy"
    };
    let upstreams: Vec<Value> = overview
        .servers
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "status": s.status,
                "served_by": s.served_by,
                "instances": s.instances.len(),
                "routable": s.instances.iter().filter(|i| i.state.is_routable()).count(),
            })
        })
        .collect();
    let (coalesced, cache_hits) = src.gateway.optimized_calls();
    let raw_pool = src.store.pool_stats();
    let mut connection_pool = pool;
    connection_pool["database"] =
        json!({ "size": raw_pool.size, "idle": raw_pool.idle, "max": raw_pool.max });
    connection_pool["mcp_sessions"] = json!(src.gateway.http_sessions().await);
    connection_pool["mcp_clients"] = json!(src.gateway.client_sessions());
    let mut metadata = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "environment": src.metadata.get("environment"),
        "region": src.metadata.get("region"),
    });
    for (k, v) in &src.metadata {
        metadata[k] = json!(v);
    }
    metadata["pid"] = json!(std::process::id());
    metadata["listen"] = json!(src.listen);
    metadata["coalesced_calls"] = json!(coalesced);
    metadata["cache_hits"] = json!(cache_hits);
    let body = json!({
        "status": status,
        "timestamp": warden_core::now(),
        "database_status": database_status,
        "uptime_seconds": src.started.elapsed().as_secs(),
        "connection_pool": connection_pool,
        "checks": {
            "database": {
                "status": db_level.as_str(),
                "message": db_message,
                "state": database_state,
                "latency_ms": db_latency.map(|ms| (ms * 1000.0).round() / 1000.0),
                "error": db_error.or(store.last_error.clone()).or(src.store_fallback.clone()),
                "location": store.location,
                "pending_rows": store.pending,
                "dropped_rows": store.dropped,
                "last_write_at": store.last_write_at,
            },
            "memory": memory,
            "disk": disk_check,
            "event_loop": {
                "status": if lag_ok { "ok" } else { "lagging" },
                "lag_ms": (lag_ms * 1000.0).round() / 1000.0,
            },
            "event_log": event_log,
            "logs": logs,
            "config": config,
            "event_stream": src.stream.check(),
            "upstreams": {
                "status": overview.status,
                "servers": servers,
                "healthy": count(ServerStatus::Healthy),
                "degraded": count(ServerStatus::Degraded),
                "unhealthy": count(ServerStatus::Unhealthy),
                "routable": routable_servers,
                "detail": upstreams,
            },
        },
        "ready": { "ready": ready, "reason": ready_reason },
        "metadata": metadata,
    });
    let problems: Vec<String> = [
        (db_level != seed::Level::Pass).then(|| db_message.clone()),
        (pool_level != seed::Level::Pass)
            .then(|| format!("database pool {:.0} % used", pool_utilization * 100.0)),
        (memory_level != seed::Level::Pass).then(|| "memory high".to_owned()),
        (disk_level != seed::Level::Pass).then(|| "disk space low".to_owned()),
        (!lag_ok).then(|| "event loop lagging".to_owned()),
        (!event_log_ok).then(|| "event log failing".to_owned()),
        (!config_ok).then(|| "config reload rejected".to_owned()),
        (!logs_ok).then(|| "log files failing".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut summary =
        format!("{status}: {}/{servers} servers healthy", count(ServerStatus::Healthy));
    if !problems.is_empty() {
        summary = format!("{summary}; {}", problems.join(", "));
    }
    Snapshot {
        body: Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")),
        status,
        ready,
        ready_reason,
        summary,
        at: Instant::now(),
        gauges: Gauges {
            status: match status {
                "healthy" => 1.0,
                "degraded" => 0.5,
                _ => 0.0,
            },
            pool_utilization,
            database_latency_ms: db_latency,
        },
    }
}
