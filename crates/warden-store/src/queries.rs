//! Reading back: failures, events, metrics, and the failover configuration table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use warden_core::Timestamp;

use crate::writer::ts;
use crate::Store;

#[derive(Clone, Debug, Serialize)]
pub struct FailureRow {
    pub id: i64,
    pub server_type: String,
    pub server_instance: Option<String>,
    pub failure_type: String,
    pub task_context: Option<String>,
    pub error_details: Option<String>,
    pub recovery_action: Option<String>,
    pub resolution_time_seconds: Option<f64>,
    pub resolved: bool,
    pub occurred_at: String,
    pub resolved_at: Option<String>,
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub server: Option<String>,
    pub instance: Option<String>,
    pub trace_id: String,
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricRow {
    pub server_type: String,
    pub server_instance: String,
    pub metric_type: String,
    pub metric_value: f64,
    pub status: String,
    pub details: Option<String>,
    pub measured_at: String,
}

/// Which metric samples to read back: `[since, until)`, optionally one server, instance or
/// metric, optionally aggregated into buckets of `step`.
#[derive(Clone, Debug)]
pub struct MetricQuery {
    pub since: Timestamp,
    pub until: Timestamp,
    pub server: Option<String>,
    /// `name#0`.
    pub instance: Option<String>,
    /// `response_time`, `error_rate`, `availability` or `throughput`.
    pub metric: Option<String>,
    /// Buckets this long (whole seconds, at least one), aligned to multiples of it since the
    /// Unix epoch, so the first and the last may be partial. `None`: every sample.
    pub step: Option<Duration>,
    /// Most points in the answer (samples, or buckets); the newest are kept.
    pub limit: i64,
}

/// The samples of one metric of one instance, oldest first.
#[derive(Clone, Debug, Serialize)]
pub struct MetricSeries {
    pub server: String,
    pub instance: String,
    pub metric: String,
    pub points: Vec<MetricPoint>,
}

/// One sample (`min = max = avg`, `count = 1`), or one bucket of samples starting at `at`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricPoint {
    pub at: String,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub count: i64,
}

/// What a [`MetricQuery`] found.
#[derive(Clone, Debug, Serialize)]
pub struct MetricRange {
    /// By server, instance and metric.
    pub series: Vec<MetricSeries>,
    /// More points matched than the query's `limit`; the oldest were left out.
    pub truncated: bool,
}

/// One row of `failover_configurations`, derived from a server's config.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverConfig {
    pub primary_server_type: String,
    pub fallback_strategy: String,
    pub fallback_server_type: Option<String>,
    pub auto_recovery_enabled: bool,
    pub max_retry_attempts: i64,
    pub retry_delay_seconds: f64,
    pub health_check_interval_seconds: f64,
}

/// The columns of a [`FailureRow`], in the order [`failure_row`] reads them.
pub(crate) const FAILURE_COLUMNS: &str = "id, server_type, server_instance, failure_type,
    task_context, error_details, recovery_action, resolution_time_seconds, resolved, occurred_at,
    resolved_at, trace_id";

pub(crate) fn failure_row(r: sqlx::any::AnyRow) -> FailureRow {
    FailureRow {
        id: r.get(0),
        server_type: r.get(1),
        server_instance: r.get(2),
        failure_type: r.get(3),
        task_context: r.get(4),
        error_details: r.get(5),
        recovery_action: r.get(6),
        resolution_time_seconds: r.get(7),
        resolved: r.get::<i64, _>(8) != 0,
        occurred_at: r.get(9),
        resolved_at: r.get(10),
        trace_id: r.get(11),
    }
}

impl Store {
    /// Failures, newest first; only those of `server` when given.
    pub async fn failures(
        &self,
        server: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FailureRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {FAILURE_COLUMNS} FROM integration_failures
             WHERE ($1 IS NULL OR server_type = $1) ORDER BY id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(server).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(failure_row).collect())
    }

    /// Events, newest first; only those of `kind` when given.
    pub async fn events(
        &self,
        kind: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRow>, sqlx::Error> {
        self.events_of(None, kind, limit).await
    }

    /// Events, newest first; only those of `server` and of `kind` when given (each may be a
    /// comma-separated list, without spaces).
    pub async fn events_of(
        &self,
        server: Option<&str>,
        kind: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRow>, sqlx::Error> {
        let sql = format!(
            "SELECT id, at, kind, server, instance, trace_id, payload FROM events
             WHERE ($1 IS NULL OR {position}(',' || $1 || ',', ',' || kind || ',') > 0)
               AND ($2 IS NULL OR {position}(',' || $2 || ',', ',' || server || ',') > 0)
             ORDER BY id DESC LIMIT $3",
            position = self.backend.position()
        );
        let rows =
            sqlx::query(&sql).bind(kind).bind(server).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|r| EventRow {
                id: r.get(0),
                at: r.get(1),
                kind: r.get(2),
                server: r.get(3),
                instance: r.get(4),
                trace_id: r.get(5),
                payload: serde_json::from_str(&r.get::<String, _>(6)).unwrap_or_default(),
            })
            .collect())
    }

    /// Metric rows of one instance (`name#0`), newest first.
    pub async fn metrics(&self, instance: &str, limit: i64) -> Result<Vec<MetricRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT server_type, server_instance, metric_type, metric_value, status, details, measured_at
             FROM integration_health_metrics WHERE server_instance = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(instance)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| MetricRow {
                server_type: r.get(0),
                server_instance: r.get(1),
                metric_type: r.get(2),
                metric_value: r.get(3),
                status: r.get(4),
                details: r.get(5),
                measured_at: r.get(6),
            })
            .collect())
    }

    /// Metric samples in a time range, as series, each sample or aggregated by SQL into
    /// buckets (avg, min, max, count). Timestamps are fixed-width RFC 3339 text, so the range
    /// is a text comparison on the `measured_at` index.
    pub async fn metric_range(&self, q: &MetricQuery) -> Result<MetricRange, sqlx::Error> {
        const FILTER: &str = "FROM integration_health_metrics
             WHERE measured_at >= $1 AND measured_at < $2
               AND ($3 IS NULL OR server_type = $3)
               AND ($4 IS NULL OR server_instance = $4)
               AND ($5 IS NULL OR metric_type = $5)";
        let step = q.step.map(|s| s.as_secs().max(1) as i64);
        let sql = match step {
            None => format!(
                "SELECT server_type, server_instance, metric_type, measured_at,
                        metric_value, metric_value, metric_value, 1
                 {FILTER} ORDER BY measured_at DESC, id DESC LIMIT $6"
            ),
            Some(_) => format!(
                "SELECT server_type, server_instance, metric_type,
                        {epoch} / $7 * $7 AS bucket,
                        AVG(metric_value), MIN(metric_value), MAX(metric_value), COUNT(*)
                 {FILTER} GROUP BY server_type, server_instance, metric_type, bucket
                 ORDER BY bucket DESC LIMIT $6",
                epoch = self.backend.epoch_seconds("measured_at")
            ),
        };
        let limit = q.limit.max(1);
        let mut query = sqlx::query(&sql)
            .bind(ts(&q.since))
            .bind(ts(&q.until))
            .bind(q.server.as_deref())
            .bind(q.instance.as_deref())
            .bind(q.metric.as_deref())
            .bind(limit + 1);
        if let Some(step) = step {
            query = query.bind(step);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let truncated = rows.len() as i64 > limit;
        let mut series: BTreeMap<(String, String, String), Vec<MetricPoint>> = BTreeMap::new();
        for r in rows.into_iter().take(limit as usize) {
            let at = match step {
                None => r.get(3),
                Some(_) => chrono::DateTime::from_timestamp(r.get(3), 0)
                    .map_or_else(String::new, |t| ts(&t)),
            };
            let point =
                MetricPoint { at, avg: r.get(4), min: r.get(5), max: r.get(6), count: r.get(7) };
            series.entry((r.get(0), r.get(1), r.get(2))).or_default().push(point);
        }
        let series = series
            .into_iter()
            .map(|((server, instance, metric), mut points)| {
                points.reverse();
                MetricSeries { server, instance, metric, points }
            })
            .collect();
        Ok(MetricRange { series, truncated })
    }

    /// Closes failure rows a previous Warden left open (it stopped or died before they were
    /// resolved): `recovery_action = 'abandoned'`. With a replica id set, only that replica's
    /// (and rows older than replica ids); other live replicas' incidents stay open. Returns
    /// how many.
    pub async fn abandon_open_failures(&self) -> Result<u64, sqlx::Error> {
        let now = ts(&warden_core::now());
        let r = sqlx::query(
            "UPDATE integration_failures SET resolved = 1, recovery_action = 'abandoned', resolved_at = $1
             WHERE resolved = 0 AND ($2 IS NULL OR replica = $2 OR replica IS NULL)",
        )
        .bind(&now)
        .bind(self.replica())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Replaces the `failover_configurations` rows with those derived from the config.
    pub async fn sync_failover_configs(
        &self,
        configs: &[FailoverConfig],
    ) -> Result<(), sqlx::Error> {
        // Upserts, then deletes what the config no longer has: replicas syncing at once each
        // write the same rows (a delete-all-then-insert would collide on the unique name).
        let mut tx = self.pool.begin().await?;
        let now = ts(&warden_core::now());
        for c in configs {
            sqlx::query(
                "INSERT INTO failover_configurations (primary_server_type, fallback_strategy, fallback_server_type,
                    auto_recovery_enabled, max_retry_attempts, retry_delay_seconds, health_check_interval_seconds, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (primary_server_type) DO UPDATE SET
                    fallback_strategy = excluded.fallback_strategy,
                    fallback_server_type = excluded.fallback_server_type,
                    auto_recovery_enabled = excluded.auto_recovery_enabled,
                    max_retry_attempts = excluded.max_retry_attempts,
                    retry_delay_seconds = excluded.retry_delay_seconds,
                    health_check_interval_seconds = excluded.health_check_interval_seconds",
            )
            .bind(&c.primary_server_type)
            .bind(&c.fallback_strategy)
            .bind(&c.fallback_server_type)
            .bind(i64::from(c.auto_recovery_enabled))
            .bind(c.max_retry_attempts)
            .bind(c.retry_delay_seconds)
            .bind(c.health_check_interval_seconds)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        let present: Vec<String> =
            sqlx::query_scalar("SELECT primary_server_type FROM failover_configurations")
                .fetch_all(&mut *tx)
                .await?;
        for name in present {
            if !configs.iter().any(|c| c.primary_server_type == name) {
                sqlx::query("DELETE FROM failover_configurations WHERE primary_server_type = $1")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// Rows in `table` (one of Warden's own tables).
    pub async fn count(&self, table: &str) -> Result<i64, sqlx::Error> {
        let allowed = [
            "integration_health_metrics",
            "integration_failures",
            "failover_configurations",
            "events",
        ];
        if !allowed.contains(&table) {
            return Err(sqlx::Error::Protocol(format!("unknown table {table}")));
        }
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.pool).await
    }
}
