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
use warden_config::Readiness;
use warden_core::{InstanceState, ServerStatus};
use warden_store::Store;
use warden_supervisor::Overview;

/// How often the snapshot is refreshed.
const REFRESH: Duration = Duration::from_secs(1);
/// `/livez` fails when the refresh task has not run for this long (the runtime is stuck).
const STALLED: Duration = Duration::from_secs(10);
/// Event-loop lag beyond this degrades Warden's health.
const LAG_DEGRADED_MS: f64 = 250.0;
/// Free disk below this share (or below `DISK_MIN_FREE`) degrades Warden's health.
const DISK_MIN_FREE_SHARE: f64 = 0.05;
const DISK_MIN_FREE: u64 = 100 * 1024 * 1024;
/// A database round trip slower than this degrades Warden's health.
const DB_SLOW_MS: f64 = 500.0;

/// What the refresh task needs to look at.
pub struct Sources {
    pub overview: warden_supervisor::Views,
    pub store: Store,
    pub store_fallback: Option<String>,
    pub gateway: warden_gateway::Gateway,
    pub readiness: Readiness,
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

/// Resident and peak memory of this process, and the machine's available memory, in bytes.
fn memory() -> Value {
    let field = |text: &str, key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    json!({
        "status": "ok",
        "rss_bytes": field(&status, "VmRSS:"),
        "peak_rss_bytes": field(&status, "VmHWM:"),
        "system_available_bytes": field(&meminfo, "MemAvailable:"),
        "system_total_bytes": field(&meminfo, "MemTotal:"),
    })
}

/// Free space where the database lives.
fn disk(dir: Option<&PathBuf>) -> (Value, bool) {
    let Some(dir) = dir else {
        return (json!({ "status": "ok", "path": null, "note": "in-memory database" }), true);
    };
    match nix::sys::statvfs::statvfs(dir.as_path()) {
        Ok(s) => {
            let block = s.fragment_size();
            let free = s.blocks_available() * block;
            let total = s.blocks() * block;
            let share = if total > 0 { free as f64 / total as f64 } else { 1.0 };
            let ok = free >= DISK_MIN_FREE && share >= DISK_MIN_FREE_SHARE;
            (
                json!({
                    "status": if ok { "ok" } else { "low" },
                    "path": dir.display().to_string(),
                    "free_bytes": free,
                    "total_bytes": total,
                    "free_ratio": (share * 1000.0).round() / 1000.0,
                }),
                ok,
            )
        }
        Err(e) => (
            json!({ "status": "unknown", "path": dir.display().to_string(), "error": e.to_string() }),
            false,
        ),
    }
}

/// Whether `/readyz` says ready, and why not.
fn readiness(policy: Readiness, critical: &[String], overview: &Overview) -> (bool, String) {
    let routable = |name: &str| {
        overview.servers.iter().find(|s| s.name == name).is_some_and(|s| {
            s.served_by.is_some() || s.instances.iter().any(|i| i.state.is_routable())
        })
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
    let database_status = match (&src.store_fallback, db_ok, writes_ok) {
        (Some(_), _, _) => "memory",
        (None, true, true) => "connected",
        (None, true, false) => "degraded",
        (None, false, _) => "unavailable",
    };
    let db_slow = db_latency.is_some_and(|ms| ms > DB_SLOW_MS);
    let (disk_check, disk_ok) = disk(src.data_dir.as_ref());
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
    let routable_servers = overview
        .servers
        .iter()
        .filter(|s| s.served_by.is_some() || s.instances.iter().any(|i| i.state.is_routable()))
        .count();
    let critical_down = critical.iter().any(|c| {
        overview.servers.iter().find(|s| &s.name == c).is_some_and(|s| {
            s.served_by.is_none() && !s.instances.iter().any(|i| i.state.is_routable())
        })
    });
    let status = if (servers > 0 && routable_servers == 0) || critical_down {
        "unhealthy"
    } else if database_status != "connected"
        || db_slow
        || !disk_ok
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
    let pool = src.store.pool_stats();
    let body = json!({
        "status": status,
        "timestamp": warden_core::now(),
        "database_status": database_status,
        "uptime_seconds": src.started.elapsed().as_secs(),
        "connection_pool": {
            "database": { "size": pool.size, "idle": pool.idle, "max": pool.max },
            "mcp_sessions": src.gateway.http_sessions().await,
            "mcp_clients": src.gateway.client_sessions(),
        },
        "checks": {
            "database": {
                "status": database_status,
                "latency_ms": db_latency.map(|ms| (ms * 1000.0).round() / 1000.0),
                "error": db_error.or(store.last_error.clone()).or(src.store_fallback.clone()),
                "location": store.location,
                "pending_rows": store.pending,
                "dropped_rows": store.dropped,
                "last_write_at": store.last_write_at,
            },
            "memory": memory(),
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
        "metadata": {
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "listen": src.listen,
            "coalesced_calls": coalesced,
            "cache_hits": cache_hits,
        },
    });
    let problems: Vec<String> = [
        (database_status != "connected").then(|| format!("database {database_status}")),
        db_slow.then(|| "database slow".to_owned()),
        (!disk_ok).then(|| "disk space low".to_owned()),
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
    }
}
