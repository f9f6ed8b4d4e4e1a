//! The writer task: batches events and samples into one transaction every 250 ms, resolves
//! failure rows on recovery, prunes old rows, and survives a failing database.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Any, Transaction};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_core::{Event, EventBus, EventKind, MetricSample, TraceId};

use crate::Store;

/// Most rows kept while the database is failing; older ones are dropped (and counted) past it.
const MAX_BACKLOG: usize = 20_000;
const FLUSH_EVERY: Duration = Duration::from_millis(250);
const FLUSH_AT: usize = 500;

/// The longest one batch may take to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts at the final flush when the writer stops (250 ms apart).
const SHUTDOWN_TRIES: u32 = 8;

pub struct WriterOptions {
    /// How long raw rows are kept; a live reload may change it.
    pub retention: tokio::sync::watch::Receiver<Duration>,
    /// How often old rows are pruned.
    pub prune_every: Duration,
    /// Where the writer reports `store_degraded` / `store_recovered`.
    pub bus: Option<Arc<EventBus>>,
    /// Prune only while this says so (the fleet's leader prunes for every replica); `None`:
    /// always.
    pub leading: Option<crate::Leading>,
}

enum Op {
    Event(Arc<Event>),
    Sample(MetricSample),
}

pub(crate) fn ts(t: &warden_core::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Store {
    /// Starts the writer. It drains both queues and flushes when `shutdown` fires, then ends.
    pub fn spawn_writer(
        &self,
        mut events: mpsc::Receiver<Arc<Event>>,
        mut samples: mpsc::Receiver<MetricSample>,
        options: WriterOptions,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut backlog: VecDeque<Op> = VecDeque::new();
            let mut next_flush = Instant::now() + FLUSH_EVERY;
            let mut next_prune = Instant::now() + Duration::from_secs(5);
            let mut events_open = true;
            let mut samples_open = true;
            let mut failing = false;
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    e = events.recv(), if events_open => match e {
                        Some(e) => backlog.push_back(Op::Event(e)),
                        None => events_open = false,
                    },
                    s = samples.recv(), if samples_open => match s {
                        Some(s) => backlog.push_back(Op::Sample(s)),
                        None => samples_open = false,
                    },
                    _ = tokio::time::sleep_until(next_flush) => {}
                    _ = tokio::time::sleep_until(next_prune) => {
                        next_prune = Instant::now() + options.prune_every;
                        let retention = *options.retention.borrow();
                        if options.leading.as_ref().is_none_or(|l| *l.borrow()) {
                            store.prune(retention).await;
                        }
                        continue;
                    }
                }
                if !events_open && !samples_open && backlog.is_empty() {
                    break;
                }
                // A large backlog flushes early, but never faster than the backoff while failing.
                let due = Instant::now() >= next_flush || (!failing && backlog.len() >= FLUSH_AT);
                if due && !backlog.is_empty() {
                    let ok = store.flush(&mut backlog).await;
                    // Back off while failing, so a broken disk is not hammered.
                    next_flush =
                        Instant::now() + if ok { FLUSH_EVERY } else { Duration::from_secs(1) };
                    if ok == failing {
                        failing = !ok;
                        if let Some(bus) = &options.bus {
                            let kind = if failing {
                                EventKind::StoreDegraded {
                                    message: store.health().last_error.unwrap_or_default(),
                                }
                            } else {
                                EventKind::StoreRecovered
                            };
                            bus.emit(Event::new(None, TraceId::random(), kind));
                        }
                    }
                } else if due {
                    next_flush = Instant::now() + FLUSH_EVERY;
                }
            }
            // Shutdown: take what is queued and write it once more.
            while let Ok(e) = events.try_recv() {
                backlog.push_back(Op::Event(e));
            }
            while let Ok(s) = samples.try_recv() {
                backlog.push_back(Op::Sample(s));
            }
            // Another task may hold the write lock for a moment (past the busy timeout
            // on a loaded machine): try a few times before giving the last rows up.
            for attempt in 1..=SHUTDOWN_TRIES {
                if backlog.is_empty() || store.flush(&mut backlog).await {
                    break;
                }
                if attempt == SHUTDOWN_TRIES {
                    tracing::error!(
                        rows = backlog.len(),
                        "could not write the last rows at shutdown"
                    );
                } else {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        })
    }

    /// Writes the whole backlog in one transaction. On failure the backlog is kept (bounded).
    async fn flush(&self, backlog: &mut VecDeque<Op>) -> bool {
        let started = Instant::now();
        // Bounded: a PostgreSQL host that vanished without resetting the connection would
        // otherwise hold the write (and the health that depends on it) until TCP gives up.
        let result = tokio::time::timeout(WRITE_TIMEOUT, async {
            self.ready().await?;
            let mut tx = self.pool.begin().await?;
            match self.max_pages.load(std::sync::atomic::Ordering::SeqCst) {
                _ if self.backend != crate::Backend::Sqlite => {}
                0 => {}
                u64::MAX => {
                    sqlx::query("PRAGMA max_page_count = 4294967294").execute(&mut *tx).await?;
                }
                n => {
                    sqlx::query(&format!("PRAGMA max_page_count = {n}")).execute(&mut *tx).await?;
                }
            }
            for op in backlog.iter() {
                write_op(&mut tx, op, self.replica()).await?;
            }
            tx.commit().await
        })
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the database did not complete a write within {} s",
                    WRITE_TIMEOUT.as_secs()
                ),
            )))
        });
        match result {
            Ok(()) => {
                let n = backlog.len() as u64;
                backlog.clear();
                self.set_health(|h| {
                    h.ok = true;
                    h.last_error = None;
                    h.last_write_at = Some(warden_core::now());
                    h.last_write_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                    h.pending = 0;
                    h.rows_written += n;
                });
                true
            }
            Err(e) => {
                let mut dropped = 0;
                while backlog.len() > MAX_BACKLOG {
                    backlog.pop_front();
                    dropped += 1;
                }
                let pending = backlog.len();
                let was_ok = self.health().ok;
                self.set_health(|h| {
                    h.ok = false;
                    h.last_error = Some(e.to_string());
                    h.pending = pending;
                    h.dropped += dropped;
                });
                if was_ok {
                    tracing::error!(error = %e, pending, "database write failed; keeping rows and retrying");
                }
                false
            }
        }
    }

    /// Deletes raw samples and events older than `retention`, and old resolved failures.
    pub async fn prune(&self, retention: Duration) {
        let cutoff =
            ts(&(warden_core::now() - chrono::Duration::from_std(retention).unwrap_or_default()));
        for sql in [
            "DELETE FROM integration_health_metrics WHERE measured_at < $1",
            "DELETE FROM events WHERE at < $1",
            "DELETE FROM integration_failures WHERE resolved = 1 AND occurred_at < $1",
            "DELETE FROM alerts WHERE ends_at IS NOT NULL AND ends_at < $1",
            "DELETE FROM alert_notifications WHERE state != 'pending' AND created_at < $1",
            "DELETE FROM silences WHERE ends_at < $1",
            "DELETE FROM tool_usage WHERE hour < $1",
            "DELETE FROM fleet_commands WHERE at < $1",
            "DELETE FROM mcp_sessions WHERE created_at < $1",
        ] {
            if let Err(e) = sqlx::query(sql).bind(&cutoff).execute(&self.pool).await {
                tracing::warn!(error = %e, "pruning old rows failed");
                return;
            }
        }
        // The longest burn-rate window is 3 days: SLO minutes are kept 4 at most.
        let slo = retention.min(Duration::from_secs(4 * 86_400));
        let cutoff =
            ts(&(warden_core::now() - chrono::Duration::from_std(slo).unwrap_or_default()));
        if let Err(e) = sqlx::query("DELETE FROM slo_minutes WHERE minute < $1")
            .bind(&cutoff)
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "pruning old SLO minutes failed");
        }
    }
}

async fn write_op(
    tx: &mut Transaction<'_, Any>,
    op: &Op,
    replica: Option<&str>,
) -> Result<(), sqlx::Error> {
    match op {
        Op::Event(e) => write_event(tx, e, replica).await,
        Op::Sample(s) => write_sample(tx, s).await,
    }
}

async fn write_event(
    tx: &mut Transaction<'_, Any>,
    e: &Event,
    replica: Option<&str>,
) -> Result<(), sqlx::Error> {
    let at = ts(&e.at);
    let server = e.instance.as_ref().map(|i| i.server().to_owned()).or_else(|| match &e.kind {
        EventKind::TuningChanged { server, .. } => Some(server.clone()),
        EventKind::AlertFiring { alert } | EventKind::AlertResolved { alert, .. } => {
            alert.server.clone()
        }
        _ => None,
    });
    let instance = e.instance.as_ref().map(ToString::to_string);
    let trace = e.trace_id.to_string();
    let payload = serde_json::to_string(e).unwrap_or_default();
    sqlx::query("INSERT INTO events (at, kind, server, instance, trace_id, payload) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&at)
        .bind(e.kind.name())
        .bind(&server)
        .bind(&instance)
        .bind(&trace)
        .bind(&payload)
        .execute(&mut **tx)
        .await?;
    match &e.kind {
        EventKind::Failure { reason, context } => {
            sqlx::query(
                "INSERT INTO integration_failures (server_type, server_instance, failure_type, task_context, error_details, resolved, occurred_at, trace_id, replica)
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8)",
            )
            .bind(server.as_deref().unwrap_or("warden"))
            .bind(&instance)
            .bind(reason.class.as_str())
            .bind(context)
            .bind(&reason.message)
            .bind(&at)
            .bind(&trace)
            .bind(replica)
            .execute(&mut **tx)
            .await?;
        }
        EventKind::Recovered { action, downtime_seconds, .. } => {
            sqlx::query(
                "UPDATE integration_failures SET resolved = 1, recovery_action = $1, resolution_time_seconds = $2, resolved_at = $3
                 WHERE server_instance = $4 AND resolved = 0 AND ($5 IS NULL OR replica = $5)",
            )
            .bind(action.as_str())
            .bind(downtime_seconds)
            .bind(&at)
            .bind(&instance)
            .bind(replica)
            .execute(&mut **tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn write_sample(tx: &mut Transaction<'_, Any>, s: &MetricSample) -> Result<(), sqlx::Error> {
    let at = ts(&s.at);
    let status = s.state.metric_status();
    let mut rows: Vec<(&str, f64, Option<String>)> = vec![
        ("error_rate", s.error_rate, None),
        ("availability", s.availability, None),
        ("throughput", s.throughput, None),
    ];
    if let Some(p50) = s.response_time_ms {
        let details =
            serde_json::json!({ "unit": "ms", "p50": p50, "p95": s.p95_ms, "p99": s.p99_ms })
                .to_string();
        rows.insert(0, ("response_time", p50, Some(details)));
    }
    for (metric, value, details) in rows {
        sqlx::query(
            "INSERT INTO integration_health_metrics (server_type, server_instance, metric_type, metric_value, status, details, measured_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.instance.server())
        .bind(s.instance.to_string())
        .bind(metric)
        .bind(value)
        .bind(status)
        .bind(details.unwrap_or_else(|| serde_json::json!({ "state": s.state }).to_string()))
        .bind(&at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
