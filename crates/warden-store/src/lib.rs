//! The store: every state change, failure, recovery and measurement, in SQLite (WAL).
//!
//! Writes never happen on the probe path: the supervisor and the event bus hand rows to a
//! writer task through bounded queues (`try_send`, never blocking), and the writer batches them
//! into one transaction every 250 ms. A locked, full or unwritable database makes the writer
//! keep its batch, report itself degraded, and try again; supervision never waits for it.
//!
//! sqlx was chosen over rusqlite because the same async API and migration runner serve
//! PostgreSQL, which several Warden replicas will share, and because its pool
//! keeps blocking SQLite calls off the runtime's worker threads.

mod alerts;
mod location;
mod queries;
mod reports;
mod seeds;
mod tuning;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use warden_core::Timestamp;

pub use alerts::{AlertRow, NewAlert, NotificationRow, SilenceRow};
pub use location::{default_path, Location};
pub use queries::{
    EventRow, FailoverConfig, FailureRow, MetricPoint, MetricQuery, MetricRange, MetricRow,
    MetricSeries,
};
pub use reports::{
    ActionStats, AlertStats, ClassStats, Durations, FailureStats, HourOfDay, IncidentSpan,
    InstanceSamples, OffenderStats, ReportRange, ServerSlots, ToolStats, UsageStats,
};
pub use tuning::{NewTuning, ProbeTimeouts, SloMinute, TuningRow};
pub use writer::WriterOptions;

/// Why the store could not be opened or queried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: this build stores to SQLite (sqlite://PATH or a file path); PostgreSQL support is planned")]
    Unsupported(String),
    #[error("cannot create {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("database {location}: {source}")]
    Sqlx { location: String, source: sqlx::Error },
    #[error("database {location}: migration failed: {source}")]
    Migrate { location: String, source: sqlx::migrate::MigrateError },
}

/// How the store is doing, for Warden's own health report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreHealth {
    pub ok: bool,
    pub location: String,
    pub last_error: Option<String>,
    pub last_write_at: Option<Timestamp>,
    pub last_write_ms: Option<f64>,
    /// Rows waiting to be written.
    pub pending: usize,
    /// Rows given up on (the backlog overflowed while the database was failing).
    pub dropped: u64,
    pub rows_written: u64,
}

/// The connection pool right now.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    location: String,
    health: Arc<Mutex<StoreHealth>>,
    max_pages: Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Opens (creating if needed) the database and applies migrations.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        let display = location.to_string();
        let options = match location {
            Location::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                SqliteConnectOptions::new().filename(path).create_if_missing(true)
            }
            Location::Memory => SqliteConnectOptions::new().in_memory(true),
        }
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // Warden's own connections take turns at the write lock (the writer, alerts, tuning,
        // the seed saver); on a loaded machine a turn can pass 500 ms, and a write that gave
        // up then marked a healthy database degraded (seen in CI). Nothing that supervises or
        // routes waits on the database; a lock held longer (another process) still degrades it.
        .busy_timeout(Duration::from_secs(2));
        // An in-memory database lives as long as its one connection.
        let max = if matches!(location, Location::Memory) { 1 } else { 4 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Sqlx { location: display.clone(), source })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { location: display.clone(), source })?;
        let health = StoreHealth { ok: true, location: display.clone(), ..Default::default() };
        Ok(Self {
            pool,
            location: display,
            health: Arc::new(Mutex::new(health)),
            max_pages: Arc::default(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn health(&self) -> StoreHealth {
        self.health.lock().expect("not poisoned").clone()
    }

    fn set_health(&self, f: impl FnOnce(&mut StoreHealth)) {
        f(&mut self.health.lock().expect("not poisoned"));
    }

    /// Caps the database at `pages` pages (`None`: no cap). Past the cap, writes fail with
    /// "database or disk is full" (SQLITE_FULL), exactly as on a full disk, and the store
    /// degrades until room is made. The writer applies it on its own connection at every flush.
    pub fn set_max_pages(&self, pages: Option<u64>) {
        // 0 means "never set"; u64::MAX means "lifted" (SQLite's own maximum is applied).
        self.max_pages.store(pages.unwrap_or(u64::MAX), std::sync::atomic::Ordering::SeqCst);
    }

    /// One round trip to the database (`SELECT 1`), timed.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let started = std::time::Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(started.elapsed())
    }

    /// Connections: open, idle, and the most allowed.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle(),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// Closes the pool (after the writer has flushed).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
