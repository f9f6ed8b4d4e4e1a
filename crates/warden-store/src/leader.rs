//! One leader among the replicas sharing a PostgreSQL database, for what must happen once
//! (alert notifications, pruning): the replica holding a session-level advisory lock on a
//! connection of its own. PostgreSQL drops the lock with the session, so a leader that dies,
//! or loses the server, is replaced: followers try the lock every 2 s, the leader checks its
//! connection every 2 s and steps down on any error (closing the connection, which frees the
//! lock for the others). With SQLite, Warden is alone and always leads.

use std::time::Duration;

use sqlx::Connection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Backend, Leading, Store};

/// The advisory lock's key: "WARDEN" in ASCII.
const LEADER_KEY: i64 = 0x5741_5244_454E;
const EVERY: Duration = Duration::from_secs(2);
/// A check that takes longer than this counts as a lost connection.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Store {
    /// Starts the election; the receiver says whether this replica leads. Ends (stepping
    /// down, the lock released) when `stop` fires.
    pub fn spawn_leader_election(&self, stop: CancellationToken) -> Leading {
        if self.backend != Backend::Postgres {
            return watch::channel(true).1;
        }
        let (tx, rx) = watch::channel(false);
        let url = std::sync::Arc::clone(&self.url);
        let location = self.location.clone();
        tokio::spawn(async move {
            let mut conn: Option<sqlx::AnyConnection> = None;
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let leading = *tx.borrow();
                let outcome = tokio::time::timeout(CHECK_TIMEOUT, async {
                    if conn.is_none() {
                        conn = Some(sqlx::AnyConnection::connect(&url).await?);
                    }
                    let c = conn.as_mut().expect("connected above");
                    if leading {
                        sqlx::query("SELECT 1").execute(&mut *c).await.map(|_| true)
                    } else {
                        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                            .bind(LEADER_KEY)
                            .fetch_one(&mut *c)
                            .await
                    }
                })
                .await;
                match outcome {
                    Ok(Ok(now_leading)) => {
                        if now_leading != leading {
                            tracing::info!(database = %location, "this replica leads now");
                            tx.send_replace(true);
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        // Closing the session frees the lock for another replica at once.
                        if let Some(c) = conn.take() {
                            let _ = tokio::time::timeout(CHECK_TIMEOUT, c.close()).await;
                        }
                        if leading {
                            tracing::warn!(database = %location, "lost the database: no longer leading");
                            tx.send_replace(false);
                        }
                    }
                }
            }
            if let Some(mut c) = conn.take() {
                if *tx.borrow() {
                    let _ = tokio::time::timeout(
                        CHECK_TIMEOUT,
                        sqlx::query("SELECT pg_advisory_unlock($1)")
                            .bind(LEADER_KEY)
                            .execute(&mut c),
                    )
                    .await;
                }
                let _ = tokio::time::timeout(CHECK_TIMEOUT, c.close()).await;
            }
            tx.send_replace(false);
        });
        rx
    }
}
