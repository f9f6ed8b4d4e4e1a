//! What the reports (`warden report …`, `/api/reports/…`) read: failures with their recoveries,
//! alerts, per-instance sample statistics, availability, and the `tool_usage` rollup (written
//! here too). Large tables are aggregated by SQL; failures are few enough to be summarized in
//! Rust, where quantiles are easy. Every answer is complete for an empty range: zero counts and
//! `None` for what cannot be computed.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use warden_core::{Timestamp, ToolUsage};

use crate::queries::{failure_row, FailureRow, FAILURE_COLUMNS};
use crate::writer::ts;
use crate::Store;

/// The period a report covers, `[since, until)`, and optionally one server.
#[derive(Clone, Debug)]
pub struct ReportRange {
    pub since: Timestamp,
    pub until: Timestamp,
    pub server: Option<String>,
}

/// Mean and quantiles of a set of durations, in seconds (`None` when the set is empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Durations {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub max: Option<f64>,
}

impl Durations {
    pub fn of(mut xs: Vec<f64>) -> Self {
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        Self {
            count: n as u64,
            mean: (n > 0).then(|| xs.iter().sum::<f64>() / n as f64),
            p50: quantile(&xs, 0.5),
            p90: quantile(&xs, 0.9),
            max: xs.last().copied(),
        }
    }
}

/// The `q` quantile of sorted values (nearest rank), `None` when empty.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// Failures of one class.
#[derive(Clone, Debug, Serialize)]
pub struct ClassStats {
    pub class: String,
    pub count: u64,
    pub open: u64,
    /// Resolution times of the resolved ones.
    pub time_to_recover: Durations,
}

/// Failures of one instance (or of a server, for failures without an instance).
#[derive(Clone, Debug, Serialize)]
pub struct OffenderStats {
    pub server: String,
    pub instance: Option<String>,
    pub count: u64,
    pub open: u64,
    /// Summed resolution times of its resolved failures.
    pub downtime_seconds: f64,
    pub by_class: BTreeMap<String, u64>,
}

/// Recoveries by one action (`restart`, `kill_and_restart`, `reconnect`, `self_recovered`,
/// `operator`, `abandoned`).
#[derive(Clone, Debug, Serialize)]
pub struct ActionStats {
    pub action: String,
    pub count: u64,
    pub time_to_recover: Durations,
}

/// Failures that occurred in a range.
#[derive(Clone, Debug, Serialize)]
pub struct FailureStats {
    pub total: u64,
    pub resolved: u64,
    pub open: u64,
    /// Mean time to recover (and quantiles) over every resolved failure with a resolution time.
    pub time_to_recover: Durations,
    pub by_class: Vec<ClassStats>,
    /// Most failures first.
    pub by_instance: Vec<OffenderStats>,
    pub recoveries: Vec<ActionStats>,
    /// Every failure still open now, wherever it started; newest first (at most 100).
    pub open_incidents: Vec<FailureRow>,
}

/// Alerts of one rule that fired in a range.
#[derive(Clone, Debug, Serialize)]
pub struct AlertStats {
    pub name: String,
    pub severity: String,
    pub fired: u64,
    pub firing_now: u64,
    /// Time spent firing inside the range, summed.
    pub firing_seconds: f64,
}

/// One instance's samples in a range (`integration_health_metrics`).
#[derive(Clone, Debug, Serialize)]
pub struct InstanceSamples {
    pub server: String,
    pub instance: String,
    pub samples: u64,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
    /// Samples taken while the instance was routable (`healthy` or `warning`).
    pub up_samples: u64,
    pub by_status: BTreeMap<String, u64>,
    /// Mean and worst of the samples' rolling-window p50 and p95 latency, in milliseconds.
    pub p50_ms_avg: Option<f64>,
    pub p50_ms_max: Option<f64>,
    pub p95_ms_avg: Option<f64>,
    pub p95_ms_max: Option<f64>,
    pub error_rate_avg: Option<f64>,
    pub error_rate_max: Option<f64>,
    /// Requests (probes and calls) per second.
    pub throughput_avg: Option<f64>,
    pub throughput_max: Option<f64>,
}

/// How long Warden watched a server: the range cut into slots of the sampling interval, and
/// how many of them hold a sample of any of its instances.
#[derive(Clone, Debug, Serialize)]
pub struct ServerSlots {
    pub server: String,
    pub slots: u64,
}

/// The time an instance was down for one incident, clipped to a range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentSpan {
    pub server: String,
    pub instance: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// One tool's calls in a range (`tool_usage`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolStats {
    pub server: String,
    pub tool: String,
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub mean_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub repeats: u64,
}

/// A server's tool calls by hour of day (UTC; index 0 is 00:00–00:59).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HourOfDay {
    pub server: String,
    pub calls: [u64; 24],
    pub errors: [u64; 24],
}

/// The `tool_usage` rows of a range, summed.
#[derive(Clone, Debug, Serialize)]
pub struct UsageStats {
    /// Most calls first.
    pub tools: Vec<ToolStats>,
    pub by_hour_of_day: Vec<HourOfDay>,
}

/// The range's filter, bound as ?1 since, ?2 until, ?3 server.
fn bind_range<'q>(
    sql: &'q str,
    r: &ReportRange,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql).bind(ts(&r.since)).bind(ts(&r.until)).bind(r.server.clone())
}

impl Store {
    /// Adds counts to the `tool_usage` rollup, in one transaction.
    pub async fn record_tool_usage(&self, rows: &[ToolUsage]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        // Columns of the existing row are qualified: PostgreSQL finds a bare one ambiguous.
        let sql = format!(
            "INSERT INTO tool_usage (server, tool, hour, calls, errors, total_ms, max_ms, repeats)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (server, tool, hour) DO UPDATE SET
                calls = tool_usage.calls + excluded.calls,
                errors = tool_usage.errors + excluded.errors,
                total_ms = tool_usage.total_ms + excluded.total_ms,
                max_ms = {greatest}(tool_usage.max_ms, excluded.max_ms),
                repeats = tool_usage.repeats + excluded.repeats",
            greatest = self.backend.greatest()
        );
        let mut tx = self.pool.begin().await?;
        for u in rows {
            sqlx::query(&sql)
                .bind(&u.server)
                .bind(&u.tool)
                .bind(ts(&u.hour))
                .bind(u.calls as i64)
                .bind(u.errors as i64)
                .bind(u.total_ms)
                .bind(u.max_ms)
                .bind(u.repeats as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Tool calls in the hours that overlap the range: per tool, and per server by hour of day.
    pub async fn tool_usage(&self, r: &ReportRange) -> Result<UsageStats, sqlx::Error> {
        // An hour row counts when the hour overlaps the range.
        let from = r.since - chrono::Duration::hours(1);
        const FILTER: &str =
            "FROM tool_usage WHERE hour > $1 AND hour < $2 AND ($3 IS NULL OR server = $3)";
        let range = ReportRange { since: from, ..r.clone() };
        let sql = format!(
            "SELECT server, tool, CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT),
                    SUM(total_ms), MAX(max_ms), CAST(SUM(repeats) AS BIGINT)
             {FILTER} GROUP BY server, tool ORDER BY SUM(calls) DESC, server, tool"
        );
        let tools = bind_range(&sql, &range)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| {
                let calls = row.get::<i64, _>(2).max(0) as u64;
                let errors = row.get::<i64, _>(3).max(0) as u64;
                ToolStats {
                    server: row.get(0),
                    tool: row.get(1),
                    calls,
                    errors,
                    error_rate: if calls == 0 { 0.0 } else { errors as f64 / calls as f64 },
                    mean_ms: (calls > 0).then(|| row.get::<f64, _>(4) / calls as f64),
                    max_ms: (calls > 0).then(|| row.get::<f64, _>(5)),
                    repeats: row.get::<i64, _>(6).max(0) as u64,
                }
            })
            .collect();
        let sql = format!(
            "SELECT server, {hour}, CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT)
             {FILTER} GROUP BY 1, 2 ORDER BY 1, 2",
            hour = self.backend.hour_of_day("hour")
        );
        let mut by_server: BTreeMap<String, HourOfDay> = BTreeMap::new();
        for row in bind_range(&sql, &range).fetch_all(&self.pool).await? {
            let server: String = row.get(0);
            let h = (row.get::<i64, _>(1).clamp(0, 23)) as usize;
            let e = by_server.entry(server.clone()).or_insert_with(|| HourOfDay {
                server,
                calls: [0; 24],
                errors: [0; 24],
            });
            e.calls[h] += row.get::<i64, _>(2).max(0) as u64;
            e.errors[h] += row.get::<i64, _>(3).max(0) as u64;
        }
        Ok(UsageStats { tools, by_hour_of_day: by_server.into_values().collect() })
    }

    /// Failures that occurred in the range, summarized; and every failure still open.
    pub async fn failure_stats(&self, r: &ReportRange) -> Result<FailureStats, sqlx::Error> {
        let sql = format!(
            "SELECT {FAILURE_COLUMNS} FROM integration_failures
             WHERE occurred_at >= $1 AND occurred_at < $2 AND ($3 IS NULL OR server_type = $3)"
        );
        let rows: Vec<FailureRow> =
            bind_range(&sql, r).fetch_all(&self.pool).await?.into_iter().map(failure_row).collect();
        let sql = format!(
            "SELECT {FAILURE_COLUMNS} FROM integration_failures
             WHERE resolved = 0 AND ($1 IS NULL OR server_type = $1)
             ORDER BY occurred_at DESC, id DESC LIMIT 100"
        );
        let open_incidents = sqlx::query(&sql)
            .bind(r.server.clone())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(failure_row)
            .collect();
        Ok(FailureStats { open_incidents, ..summarize_failures(&rows) })
    }

    /// Alerts that fired in the range, per rule and severity.
    pub async fn alert_stats(&self, r: &ReportRange) -> Result<Vec<AlertStats>, sqlx::Error> {
        let b = self.backend;
        let sql = format!(
            "SELECT name, severity, COUNT(*), COUNT(*) FILTER (WHERE ends_at IS NULL),
                    SUM({greatest}(0.0, {end} - {start}))
             FROM alerts WHERE fired_at >= $1 AND fired_at < $2 AND ($3 IS NULL OR server = $3)
             GROUP BY name, severity ORDER BY COUNT(*) DESC, name",
            greatest = b.greatest(),
            end = b.epoch_fraction(&format!("{}(COALESCE(ends_at, $2), $2)", b.least())),
            start = b.epoch_fraction("fired_at"),
        );
        let rows = bind_range(&sql, r).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|row| AlertStats {
                name: row.get(0),
                severity: row.get(1),
                fired: row.get::<i64, _>(2).max(0) as u64,
                firing_now: row.get::<i64, _>(3).max(0) as u64,
                firing_seconds: row.get::<Option<f64>, _>(4).unwrap_or(0.0),
            })
            .collect())
    }

    /// Each instance's samples in the range, aggregated by SQL.
    pub async fn instance_samples(
        &self,
        r: &ReportRange,
    ) -> Result<Vec<InstanceSamples>, sqlx::Error> {
        let p95 = self.backend.json_number("details", &["p95"]);
        let sql = format!(
            "SELECT server_type, server_instance,
                    COUNT(*) FILTER (WHERE metric_type = 'throughput'), MIN(measured_at), MAX(measured_at),
                    COUNT(*) FILTER (WHERE metric_type = 'throughput' AND status IN ('healthy', 'warning')),
                    COUNT(*) FILTER (WHERE metric_type = 'throughput' AND status = 'healthy'),
                    COUNT(*) FILTER (WHERE metric_type = 'throughput' AND status = 'warning'),
                    COUNT(*) FILTER (WHERE metric_type = 'throughput' AND status = 'critical'),
                    COUNT(*) FILTER (WHERE metric_type = 'throughput' AND status = 'offline'),
                    AVG(CASE WHEN metric_type = 'response_time' THEN metric_value END),
                    MAX(CASE WHEN metric_type = 'response_time' THEN metric_value END),
                    AVG(CASE WHEN metric_type = 'response_time' THEN {p95} END),
                    MAX(CASE WHEN metric_type = 'response_time' THEN {p95} END),
                    AVG(CASE WHEN metric_type = 'error_rate' THEN metric_value END),
                    MAX(CASE WHEN metric_type = 'error_rate' THEN metric_value END),
                    AVG(CASE WHEN metric_type = 'throughput' THEN metric_value END),
                    MAX(CASE WHEN metric_type = 'throughput' THEN metric_value END)
             FROM integration_health_metrics
             WHERE measured_at >= $1 AND measured_at < $2 AND ($3 IS NULL OR server_type = $3)
             GROUP BY server_type, server_instance ORDER BY server_type, server_instance"
        );
        let rows = bind_range(&sql, r).fetch_all(&self.pool).await?;
        let count = |row: &sqlx::any::AnyRow, i: usize| {
            row.get::<Option<i64>, _>(i).unwrap_or(0).max(0) as u64
        };
        Ok(rows
            .into_iter()
            .map(|row| {
                let by_status = ["healthy", "warning", "critical", "offline"]
                    .iter()
                    .enumerate()
                    .map(|(k, s)| ((*s).to_owned(), count(&row, 6 + k)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                InstanceSamples {
                    server: row.get(0),
                    instance: row.get(1),
                    samples: count(&row, 2),
                    first_at: row.get(3),
                    last_at: row.get(4),
                    up_samples: count(&row, 5),
                    by_status,
                    p50_ms_avg: row.get(10),
                    p50_ms_max: row.get(11),
                    p95_ms_avg: row.get(12),
                    p95_ms_max: row.get(13),
                    error_rate_avg: row.get(14),
                    error_rate_max: row.get(15),
                    throughput_avg: row.get(16),
                    throughput_max: row.get(17),
                }
            })
            .collect())
    }

    /// Each server's sampled slots of `slot` seconds in the range.
    pub async fn server_slots(
        &self,
        r: &ReportRange,
        slot: std::time::Duration,
    ) -> Result<Vec<ServerSlots>, sqlx::Error> {
        let sql = format!(
            "SELECT server_type, COUNT(*) FROM (
                SELECT DISTINCT server_type, {epoch} / $4 AS slot
                FROM integration_health_metrics
                WHERE metric_type = 'throughput' AND measured_at >= $1 AND measured_at < $2
                  AND ($3 IS NULL OR server_type = $3)) AS slots
             GROUP BY server_type ORDER BY server_type",
            epoch = self.backend.epoch_seconds("measured_at")
        );
        let rows =
            bind_range(&sql, r).bind(slot.as_secs().max(1) as i64).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|row| ServerSlots {
                server: row.get(0),
                slots: row.get::<i64, _>(1).max(0) as u64,
            })
            .collect())
    }

    /// Each incident's downtime inside the range: from `occurred_at` for its
    /// `resolution_time_seconds`, or to the range's end while it is open. Rows Warden abandoned
    /// (it stopped while the instance was down) have no known end and are left out.
    pub async fn incident_spans(&self, r: &ReportRange) -> Result<Vec<IncidentSpan>, sqlx::Error> {
        let rows = bind_range(
            "SELECT server_type, server_instance, occurred_at, resolved, resolution_time_seconds
             FROM integration_failures
             WHERE occurred_at < $2 AND server_instance IS NOT NULL AND ($3 IS NULL OR server_type = $3)
               AND (resolved = 0 OR (resolution_time_seconds IS NOT NULL
                                  AND (resolved_at IS NULL OR resolved_at >= $1)))
             ORDER BY occurred_at",
            r,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let occurred: Timestamp = row.get::<String, _>(2).parse().ok()?;
                let end = if row.get::<i64, _>(3) == 0 {
                    r.until
                } else {
                    let took = row.get::<Option<f64>, _>(4)?;
                    // A row's duration is input: one past any date ends with the period.
                    chrono::Duration::try_milliseconds((took * 1000.0) as i64)
                        .and_then(|d| occurred.checked_add_signed(d))
                        .unwrap_or(r.until)
                };
                let (start, end) = (occurred.max(r.since), end.min(r.until));
                (end > start).then(|| IncidentSpan {
                    server: row.get(0),
                    instance: row.get(1),
                    start,
                    end,
                })
            })
            .collect())
    }
}

/// Counts by class, instance and recovery action, and times to recover (open incidents are
/// filled in by the caller).
fn summarize_failures(rows: &[FailureRow]) -> FailureStats {
    let mut classes: BTreeMap<&str, (u64, u64, Vec<f64>)> = BTreeMap::new();
    let mut instances: BTreeMap<(&str, Option<&str>), OffenderStats> = BTreeMap::new();
    let mut actions: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut all = Vec::new();
    for r in rows {
        let c = classes.entry(&r.failure_type).or_default();
        c.0 += 1;
        let o =
            instances.entry((&r.server_type, r.server_instance.as_deref())).or_insert_with(|| {
                OffenderStats {
                    server: r.server_type.clone(),
                    instance: r.server_instance.clone(),
                    count: 0,
                    open: 0,
                    downtime_seconds: 0.0,
                    by_class: BTreeMap::new(),
                }
            });
        o.count += 1;
        *o.by_class.entry(r.failure_type.clone()).or_default() += 1;
        if !r.resolved {
            c.1 += 1;
            o.open += 1;
        }
        let took = r.resolution_time_seconds.filter(|t| r.resolved && t.is_finite());
        if let Some(t) = took {
            c.2.push(t);
            o.downtime_seconds += t;
            all.push(t);
        }
        if let Some(a) = r.recovery_action.as_deref().filter(|_| r.resolved) {
            let times = actions.entry(a).or_default();
            times.extend(took);
        }
    }
    let mut by_instance: Vec<OffenderStats> = instances.into_values().collect();
    by_instance.sort_by(|a, b| b.count.cmp(&a.count).then(b.open.cmp(&a.open)));
    let resolved = rows.iter().filter(|r| r.resolved).count() as u64;
    let recoveries = actions
        .into_iter()
        .map(|(a, times)| {
            // Rows resolved without a time (abandoned) still count.
            let count = rows
                .iter()
                .filter(|r| r.resolved && r.recovery_action.as_deref() == Some(a))
                .count() as u64;
            ActionStats { action: a.to_owned(), count, time_to_recover: Durations::of(times) }
        })
        .collect();
    FailureStats {
        total: rows.len() as u64,
        resolved,
        open: rows.len() as u64 - resolved,
        time_to_recover: Durations::of(all),
        by_class: classes
            .into_iter()
            .map(|(class, (count, open, times))| ClassStats {
                class: class.to_owned(),
                count,
                open,
                time_to_recover: Durations::of(times),
            })
            .collect(),
        by_instance,
        recoveries,
        open_incidents: Vec::new(),
    }
}

#[cfg(test)]
#[path = "reports_tests.rs"]
mod tests;
