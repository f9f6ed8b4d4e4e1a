//! The seed's `HealthCheckResponse` fields (seed 002): the connection pool, and `pass`/`warn`/
//! `fail` checks for the database, memory and disk, with the status rules that go with them
//! (`warden.health_thresholds`). Warden's own fields stay beside them under their own keys.

use std::path::PathBuf;

use serde_json::{json, Value};
use warden_config::HealthThresholds;
use warden_store::Store;

/// How a check went, and how much it weighs on Warden's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    Pass,
    /// Degrades Warden's status.
    Warn,
    /// Makes Warden unhealthy.
    Fail,
}

impl Level {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

    fn of(value: f64, degraded: f64, unhealthy: f64) -> Self {
        if value > unhealthy {
            Self::Fail
        } else if value > degraded {
            Self::Warn
        } else {
            Self::Pass
        }
    }
}

/// The database pool: `total_connections` (its maximum), `active_connections`,
/// `idle_connections`, `waiting_requests` (always 0: SQLite's pool does not count them) and
/// `pool_utilization` (active / total, 0 to 1).
pub(super) fn pool(store: &Store, th: &HealthThresholds) -> (Value, f64, Level) {
    let p = store.pool_stats();
    let active = p.size.saturating_sub(p.idle as u32);
    let utilization = if p.max > 0 { f64::from(active) / f64::from(p.max) } else { 0.0 };
    let level = Level::of(utilization, th.pool_degraded, th.pool_unhealthy);
    let value = json!({
        "total_connections": p.max,
        "active_connections": active,
        "idle_connections": p.idle,
        "waiting_requests": 0,
        "pool_utilization": (utilization * 1000.0).round() / 1000.0,
        "status": level.as_str(),
    });
    (value, utilization, level)
}

/// `database_status` as the seed spells it, from Warden's finer view.
pub(super) fn database_status(warden: &str) -> &'static str {
    match warden {
        "connected" => "connected",
        // Writes failing, or recording in memory because the database could not be opened.
        "degraded" | "memory" => "degraded",
        _ => "disconnected",
    }
}

/// `checks.database.status` and its message: disconnected fails, degraded or slow warns.
pub(super) fn database_level(
    status: &str,
    latency_ms: Option<f64>,
    th: &HealthThresholds,
) -> (Level, String) {
    let limit = th.database_latency_degraded.as_secs_f64() * 1000.0;
    match (status, latency_ms) {
        ("disconnected", _) => (Level::Fail, "database not reachable".to_owned()),
        ("degraded", _) => {
            (Level::Warn, "database degraded: writes are failing or in memory".into())
        }
        (_, Some(ms)) if ms > limit => {
            (Level::Warn, format!("database slow: {ms:.1} ms (over {limit:.0} ms)"))
        }
        _ => (Level::Pass, "database responding normally".to_owned()),
    }
}

fn proc_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Warden's memory: `usage_mb` (its RSS), `limit_mb` (its cgroup's limit, else the machine's
/// memory), `percentage`; Warden's finer fields beside them.
pub(super) fn memory(th: &HealthThresholds) -> (Value, Level) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let rss = proc_field(&status, "VmRSS:");
    let total = proc_field(&meminfo, "MemTotal:");
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let limit = match (cgroup, total) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    };
    let share = match (rss, limit) {
        (Some(r), Some(l)) if l > 0 => r as f64 / l as f64,
        _ => 0.0,
    };
    let level = Level::of(share, th.memory_degraded, th.memory_unhealthy);
    let mb = |b: Option<u64>| b.map(|b| (b as f64 / 1_048_576.0 * 10.0).round() / 10.0);
    let value = json!({
        "status": level.as_str(),
        "usage_mb": mb(rss),
        "limit_mb": mb(limit),
        "percentage": (share * 1000.0).round() / 10.0,
        "rss_bytes": rss,
        "peak_rss_bytes": proc_field(&status, "VmHWM:"),
        "system_available_bytes": proc_field(&meminfo, "MemAvailable:"),
        "system_total_bytes": total,
    });
    (value, level)
}

/// Free space where the database lives: below `min_free` bytes or `min_share` of the disk
/// warns.
pub(super) fn disk(dir: Option<&PathBuf>, min_free: u64, min_share: f64) -> (Value, Level) {
    let Some(dir) = dir else {
        let v = json!({ "status": "pass", "path": null, "note": "in-memory database" });
        return (v, Level::Pass);
    };
    match nix::sys::statvfs::statvfs(dir.as_path()) {
        Ok(s) => {
            let block = s.fragment_size();
            let free = s.blocks_available() * block;
            let total = s.blocks() * block;
            let share = if total > 0 { free as f64 / total as f64 } else { 1.0 };
            let level =
                if free >= min_free && share >= min_share { Level::Pass } else { Level::Warn };
            let used = if total > 0 { (1.0 - share) * 100.0 } else { 0.0 };
            (
                json!({
                    "status": level.as_str(),
                    "free_gb": (free as f64 / 1_073_741_824.0 * 10.0).round() / 10.0,
                    "percentage_used": (used * 10.0).round() / 10.0,
                    "path": dir.display().to_string(),
                    "free_bytes": free,
                    "total_bytes": total,
                    "free_ratio": (share * 1000.0).round() / 1000.0,
                }),
                level,
            )
        }
        Err(e) => (
            json!({ "status": "warn", "path": dir.display().to_string(), "error": e.to_string() }),
            Level::Warn,
        ),
    }
}
