//! Migrations: run once per process, on the first call that reaches the database.
//!
//! PostgreSQL: on a connection of their own, closed whatever the outcome. sqlx's migrator
//! holds a session-level advisory lock while it works (so replicas starting together migrate
//! one at a time) and releases it only on success; on a pooled connection a failed run would
//! leave the lock held by a connection the pool hands out again, and every later attempt,
//! here or on another replica, would wait on it for ever. A bound on the whole run does the
//! rest. Migrations a newer Warden applied are tolerated (a rolled-back replica still runs).

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::Connection;

use crate::{Backend, Store};

/// The longest a migration run may take (waiting for another replica's run included).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

// Migrations a newer Warden applied are not an error (`ignore_missing`).
static SQLITE: Migrator =
    Migrator { ignore_missing: true, ..sqlx::migrate!("./migrations/sqlite") };
static POSTGRES: Migrator =
    Migrator { ignore_missing: true, ..sqlx::migrate!("./migrations/postgres") };

impl Store {
    /// Runs the migrations once (PostgreSQL: on the first call that reaches the server).
    pub(crate) async fn ready(&self) -> Result<(), sqlx::Error> {
        self.migrated
            .get_or_try_init(|| async {
                let run = async {
                    match self.backend {
                        Backend::Sqlite => SQLITE.run(&self.pool).await,
                        Backend::Postgres => {
                            let mut conn = sqlx::AnyConnection::connect(&self.url).await?;
                            let result = POSTGRES.run_direct(&mut conn).await;
                            let _ = conn.close().await;
                            result
                        }
                    }
                };
                match tokio::time::timeout(MIGRATION_TIMEOUT, run).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(sqlx::Error::Migrate(Box::new(e))),
                    Err(_) => Err(sqlx::Error::PoolTimedOut),
                }
            })
            .await?;
        // Every flush passes here: waiters are woken once, when it turns true.
        self.ready.send_if_modified(|ready| !std::mem::replace(ready, true));
        Ok(())
    }
}
