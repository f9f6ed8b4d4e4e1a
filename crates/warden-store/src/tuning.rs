//! The tuning history (`tuning_changes`): every run-time change to a server's policy, in
//! force until `reverted_at` is set. Written at once (not through the batching writer): a
//! change that cannot be recorded is not made. Also the SLO minutes (`slo_minutes`) the alert
//! task keeps across restarts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::alerts::{json_of, json_text};
use crate::reports::ReportRange;
use crate::writer::ts;
use crate::Store;

/// One recorded change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TuningRow {
    pub id: i64,
    pub at: String,
    pub server: String,
    /// The instance index, for a weight.
    pub instance: Option<u32>,
    pub parameter: String,
    /// The configured value the change started from (ms for durations).
    pub base_value: f64,
    pub old_value: f64,
    pub new_value: f64,
    pub rule: String,
    pub reason: String,
    pub evidence: Value,
    pub source: String,
    pub reverted_at: Option<String>,
    pub reverted_reason: Option<String>,
}

/// What [`Store::record_tuning`] writes.
#[derive(Clone, Debug)]
pub struct NewTuning<'a> {
    pub at: DateTime<Utc>,
    pub server: &'a str,
    pub instance: Option<u32>,
    pub parameter: &'a str,
    pub base_value: f64,
    pub old_value: f64,
    pub new_value: f64,
    pub rule: &'a str,
    pub reason: &'a str,
    pub evidence: &'a Value,
    pub source: &'a str,
}

/// Probe timeouts of one instance in a range (`probe_failed` events of class `timeout`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeTimeouts {
    pub server: String,
    pub instance: String,
    pub count: u64,
}

const COLUMNS: &str = "id, at, server, instance, parameter, base_value, old_value, new_value,
    rule, reason, evidence, source, reverted_at, reverted_reason";

fn row(r: &sqlx::any::AnyRow) -> TuningRow {
    TuningRow {
        id: r.get(0),
        at: r.get(1),
        server: r.get(2),
        instance: r.get::<Option<i64>, _>(3).map(|i| i.clamp(0, i64::from(u32::MAX)) as u32),
        parameter: r.get(4),
        base_value: r.get(5),
        old_value: r.get(6),
        new_value: r.get(7),
        rule: r.get(8),
        reason: r.get(9),
        evidence: json_of(r.get(10)),
        source: r.get(11),
        reverted_at: r.get(12),
        reverted_reason: r.get(13),
    }
}

/// One server's SLO counts of one minute (`slo_minutes`).
#[derive(Clone, Debug, PartialEq)]
pub struct SloMinute {
    pub server: String,
    pub minute: DateTime<Utc>,
    pub requests: u64,
    pub errors: u64,
}

impl Store {
    /// Whose SLO minutes these are: this replica's on a shared database; on SQLite (one Warden
    /// at a time) the file's own, whatever the address Warden listens on today.
    fn slo_replica(&self) -> &str {
        if self.is_shared() {
            self.replica().unwrap_or_default()
        } else {
            ""
        }
    }

    /// Writes (or rewrites) SLO minutes, in one transaction.
    pub async fn put_slo_minutes(&self, rows: &[SloMinute]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO slo_minutes (replica, server, minute, requests, errors)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (replica, server, minute) DO UPDATE SET requests = excluded.requests,
                    errors = excluded.errors",
            )
            .bind(self.slo_replica())
            .bind(&r.server)
            .bind(ts(&r.minute))
            .bind(i64::try_from(r.requests).unwrap_or(i64::MAX))
            .bind(i64::try_from(r.errors).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// This replica's SLO minutes at or after `since`, oldest first.
    pub async fn slo_minutes(&self, since: DateTime<Utc>) -> Result<Vec<SloMinute>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT server, minute, requests, errors FROM slo_minutes
             WHERE replica = $1 AND minute >= $2 ORDER BY minute",
        )
        .bind(self.slo_replica())
        .bind(ts(&since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let minute = DateTime::parse_from_rfc3339(&r.get::<String, _>(1)).ok()?;
                Some(SloMinute {
                    server: r.get(0),
                    minute: minute.with_timezone(&Utc),
                    requests: r.get::<i64, _>(2).max(0) as u64,
                    errors: r.get::<i64, _>(3).max(0) as u64,
                })
            })
            .collect())
    }

    /// Records a change; returns its id.
    pub async fn record_tuning(&self, c: &NewTuning<'_>) -> Result<i64, sqlx::Error> {
        let id = sqlx::query(
            "INSERT INTO tuning_changes (at, server, instance, parameter, base_value, old_value,
                 new_value, rule, reason, evidence, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(ts(&c.at))
        .bind(c.server)
        .bind(c.instance.map(i64::from))
        .bind(c.parameter)
        .bind(c.base_value)
        .bind(c.old_value)
        .bind(c.new_value)
        .bind(c.rule)
        .bind(c.reason)
        .bind(json_text(c.evidence))
        .bind(c.source)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    /// Marks changes as no longer in force.
    pub async fn revert_tuning(
        &self,
        ids: &[i64],
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE tuning_changes SET reverted_at = $1, reverted_reason = $2
                 WHERE id = $3 AND reverted_at IS NULL",
            )
            .bind(ts(&at))
            .bind(reason)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The newest changes first (every one when `active_only`, else at most `limit`).
    pub async fn tuning_changes(
        &self,
        server: Option<&str>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<TuningRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tuning_changes
             WHERE ($1 IS NULL OR server = $1) AND ($2 = 0 OR reverted_at IS NULL)
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(server)
            .bind(i64::from(active_only))
            .bind(if active_only { i64::MAX } else { i64::from(limit) })
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    /// One change by id.
    pub async fn tuning_change(&self, id: i64) -> Result<Option<TuningRow>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM tuning_changes WHERE id = $1");
        Ok(sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.as_ref().map(row))
    }

    /// Probe timeouts per instance in the range.
    pub async fn probe_timeouts(&self, r: &ReportRange) -> Result<Vec<ProbeTimeouts>, sqlx::Error> {
        let sql = format!(
            "SELECT server, instance, COUNT(*) FROM events
             WHERE kind = 'probe_failed' AND at >= $1 AND at < $2 AND ($3 IS NULL OR server = $3)
               AND {} = 'timeout'
             GROUP BY server, instance ORDER BY server, instance",
            self.backend.json_string("payload", &["reason", "class"])
        );
        let rows = sqlx::query(&sql)
            .bind(ts(&r.since))
            .bind(ts(&r.until))
            .bind(r.server.clone())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| ProbeTimeouts {
                server: r.get::<Option<String>, _>(0).unwrap_or_default(),
                instance: r.get::<Option<String>, _>(1).unwrap_or_default(),
                count: r.get::<i64, _>(2).max(0) as u64,
            })
            .collect())
    }
}
