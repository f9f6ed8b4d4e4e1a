//! The store: every state change, failure, recovery and measurement, in SQLite (WAL) or in a
//! PostgreSQL database that several Warden replicas share.
//!
//! Writes never happen on the probe path: the supervisor and the event bus hand rows to a
//! writer task through bounded queues (`try_send`, never blocking), and the writer batches them
//! into one transaction every 250 ms. A locked, full or unwritable database makes the writer
//! keep its batch, report itself degraded, and try again; supervision never waits for it.
//!
//! sqlx was chosen over rusqlite because the same async API and migration runner serve
//! PostgreSQL, and because its pool keeps blocking SQLite calls off the runtime's worker threads.
//! Both engines are reached through sqlx's `Any` driver, so every query is written once: `$N`
//! placeholders (SQLite binds `$N` by its number), text timestamps (RFC 3339, UTC, fixed width,
//! compared as text by both), integers and doubles only, `RETURNING id`, `ON CONFLICT … DO
//! UPDATE`. The few spots where the dialects differ (epoch seconds, hour of day, JSON fields,
//! scalar min/max, substring search) ask [`Backend`] for their SQL (`dialect.rs`).

mod alerts;
mod dialect;
mod fleet;
mod leader;
mod location;
mod migrate;
mod queries;
mod reports;
mod seeds;
mod tuning;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;
use warden_core::Timestamp;

pub use alerts::{AlertRow, Claim, NewAlert, NotificationRow, SilenceRow};
pub use fleet::{FleetCommand, Leading, ReplicaInfo, ReplicaRow, ServerViewRow};
pub use location::{default_path, Location};
pub use queries::{
    EventRow, FailoverConfig, FailureRow, MetricPoint, MetricQuery, MetricRange, MetricRow,
    MetricSeries,
};
pub use reports::{
    ActionStats, AlertStats, ClassStats, Durations, FailureStats, HourOfDay, IncidentSpan,
    InstanceSamples, OffenderStats, ReportRange, ServerSlots, ToolStats, UsageStats,
};
/// A database error, as every query returns it.
pub use sqlx::Error as DbError;
pub use tuning::{NewTuning, ProbeTimeouts, SloMinute, TuningRow};
pub use writer::WriterOptions;

/// Why the store could not be opened or queried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: Warden stores to SQLite (sqlite://PATH or a file path) or PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")]
    Unsupported(String),
    #[error("bad database URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
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

/// Which engine a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    location: String,
    health: Arc<Mutex<StoreHealth>>,
    max_pages: Arc<std::sync::atomic::AtomicU64>,
    /// Set once the migrations have run.
    migrated: Arc<tokio::sync::OnceCell<()>>,
    /// `true` once the migrations have run (for [`Store::wait_ready`]).
    ready: tokio::sync::watch::Sender<bool>,
    /// The URL connected to (PostgreSQL: its password too; never shown).
    url: Arc<str>,
    /// This replica's id, stamped on the failure rows it opens (see [`Store::set_replica`]).
    replica: Arc<std::sync::OnceLock<String>>,
}

impl Store {
    /// Opens (creating if needed) the database and applies migrations.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let display = location.to_string();
        let sqlx_error = |source| StoreError::Sqlx { location: display.clone(), source };
        let (url, backend) = match location {
            Location::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                (dialect::sqlite_url(path)?, Backend::Sqlite)
            }
            Location::Memory => ("sqlite::memory:".to_owned(), Backend::Sqlite),
            Location::Postgres(url) => (url.clone(), Backend::Postgres),
        };
        let options = match backend {
            // An in-memory database lives as long as its one connection.
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(if matches!(location, Location::Memory) { 1 } else { 4 })
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL, and a 2 s busy timeout: Warden's own connections take turns at
                        // the write lock (the writer, alerts, tuning, the seed saver); on a
                        // loaded machine a turn can pass 500 ms, and a write that gave up then
                        // marked a healthy database degraded (seen in CI). Nothing that
                        // supervises or routes waits on the database; a lock held longer
                        // (another process) still degrades it.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 2000",
                        )
                        .await
                        .map(|_| ())
                    })
                }),
            // A shared server: a few more connections (the writer, alerts, the API, and later
            // the fleet's heartbeat), and a short acquire timeout so that while PostgreSQL is
            // unreachable a write fails within seconds and the writer keeps its rows.
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(8)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(5)),
        };
        let health = StoreHealth { ok: true, location: display.clone(), ..Default::default() };
        if backend == Backend::Sqlite {
            let pool = options.connect(&url).await.map_err(sqlx_error)?;
            let store = Self::new(pool, backend, display.clone(), health, &url);
            store.ready().await.map_err(|e| match e {
                sqlx::Error::Migrate(source) => {
                    StoreError::Migrate { location: display.clone(), source: *source }
                }
                source => StoreError::Sqlx { location: display.clone(), source },
            })?;
            return Ok(store);
        }
        // PostgreSQL is another machine: Warden starts (supervises and routes) whether or not
        // it is reachable. The pool connects on first use; until the migrations have run,
        // health says why, the writer keeps its rows, and a task retries every 2 s.
        let pool = options.connect_lazy(&url).map_err(sqlx_error)?;
        let store = Self::new(pool, backend, display, health, &url);
        if let Err(e) = store.ready().await {
            tracing::warn!(error = %e, "PostgreSQL is not ready; recording waits and retries");
            store.set_health(|h| {
                h.ok = false;
                h.last_error = Some(e.to_string());
            });
            let retry = store.clone();
            tokio::spawn(async move {
                while !retry.pool.is_closed() {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if retry.ready().await.is_ok() {
                        tracing::info!("PostgreSQL is ready");
                        // The writer may have nothing to write: health says so now.
                        retry.set_health(|h| {
                            h.ok = true;
                            h.last_error = None;
                        });
                        break;
                    }
                }
            });
        }
        Ok(store)
    }

    fn new(
        pool: AnyPool,
        backend: Backend,
        location: String,
        health: StoreHealth,
        url: &str,
    ) -> Self {
        Self {
            pool,
            backend,
            location,
            health: Arc::new(Mutex::new(health)),
            max_pages: Arc::default(),
            migrated: Arc::default(),
            ready: tokio::sync::watch::channel(false).0,
            url: url.into(),
            replica: Arc::default(),
        }
    }

    /// The migrations have run: every table is there.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the migrations have run (at once with SQLite; with PostgreSQL when it
    /// was first reached).
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Names this replica: failure rows it opens carry the id, and only its own are resolved
    /// by its recoveries or abandoned at its start (several replicas share one database, and
    /// `alpha#0` is an instance on each). Set once, before the writer starts.
    pub fn set_replica(&self, id: &str) {
        let _ = self.replica.set(id.to_owned());
    }

    pub(crate) fn replica(&self) -> Option<&str> {
        self.replica.get().map(String::as_str)
    }

    /// Several replicas may share this database (PostgreSQL): the fleet's tables, leader and
    /// commands are in use.
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// The engine: SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.backend
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

    /// SQLite only (PostgreSQL ignores it): caps the database at `pages` pages (`None`: no
    /// cap). Past the cap, writes fail with
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

    /// Closes the pool (after the writer has flushed); 5 s at most, so a database that stopped
    /// answering cannot hold Warden's shutdown.
    pub async fn close(&self) {
        if tokio::time::timeout(Duration::from_secs(5), self.pool.close()).await.is_err() {
            tracing::warn!(database = %self.location, "the database connections did not close within 5 s");
        }
    }
}

#[cfg(test)]
mod tests;
