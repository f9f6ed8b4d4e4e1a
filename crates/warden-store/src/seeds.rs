//! The predictor's learnt baselines per server (`predictor_seeds`), kept as JSON the
//! supervisor reads back: the store does not interpret them. Written at once, a handful of rows
//! a minute at most.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::alerts::{json_of, json_text};
use crate::writer::ts;
use crate::Store;

impl Store {
    /// Writes (or rewrites) servers' seeds: `(server, learnt_at, seed)`.
    pub async fn put_predictor_seeds(
        &self,
        rows: &[(String, DateTime<Utc>, Value)],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for (server, at, seed) in rows {
            sqlx::query(
                "INSERT INTO predictor_seeds (server, learnt_at, seed) VALUES ($1, $2, $3)
                 ON CONFLICT (server) DO UPDATE SET learnt_at = excluded.learnt_at, seed = excluded.seed",
            )
            .bind(server)
            .bind(ts(at))
            .bind(json_text(seed))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Seeds learnt at or after `since`: `(server, seed)`. Older rows are not returned (and
    /// are deleted: a seed that old is never used).
    pub async fn predictor_seeds(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Value)>, sqlx::Error> {
        sqlx::query("DELETE FROM predictor_seeds WHERE learnt_at < $1")
            .bind(ts(&since))
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT server, seed FROM predictor_seeds ORDER BY server")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), json_of(r.get(1)))).collect())
    }

    /// Forgets a server's seeds (its process changed: what it learnt is of another program).
    pub async fn delete_predictor_seed(&self, server: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM predictor_seeds WHERE server = $1")
            .bind(server)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
