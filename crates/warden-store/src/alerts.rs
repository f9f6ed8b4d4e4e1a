//! The alerting tables: alert history, the notification outbox, silences. Arguments are plain
//! strings and JSON so the store does not depend on the alerting crate.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::writer::ts;
use crate::Store;

/// One alert that fired (and, once `ends_at` is set, resolved).
#[derive(Clone, Debug, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub fingerprint: String,
    pub name: String,
    pub severity: String,
    pub server: Option<String>,
    pub instance: Option<String>,
    pub labels: Value,
    pub annotations: Value,
    pub value: Option<f64>,
    pub starts_at: String,
    pub fired_at: String,
    pub ends_at: Option<String>,
}

/// What [`Store::alert_fired`] records.
#[derive(Clone, Debug)]
pub struct NewAlert<'a> {
    pub fingerprint: &'a str,
    pub name: &'a str,
    pub severity: &'a str,
    pub labels: Value,
    pub annotations: Value,
    pub value: f64,
    pub starts_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
}

/// One notification for one receiver, delivered or not.
#[derive(Clone, Debug, Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub receiver: String,
    pub group_key: String,
    pub status: String,
    pub payload: Value,
    /// `pending`, `delivered` or `expired`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

/// One silence as stored (times in the store's form: RFC 3339, UTC, microseconds).
#[derive(Clone, Debug, Serialize)]
pub struct SilenceRow {
    pub id: String,
    pub matchers: Value,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

pub(crate) fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub(crate) fn json_of(s: String) -> Value {
    serde_json::from_str(&s).unwrap_or(Value::Null)
}

const NOTIFICATION_COLUMNS: &str = "id, receiver, group_key, status, payload, state, attempts,
    next_attempt_at, last_error, created_at, delivered_at";

/// What a replica may do with an outbox row it wants to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Claimed: send it.
    Mine,
    /// Another replica's claim runs: try again once it could have run out.
    Held,
    /// Delivered, expired or gone: nothing to send.
    Settled,
}

/// A pending outbox row for `[receiver, group_key, status]`, returning its id.
fn insert_notification<'q>(
    [receiver, group_key, status]: [&'q str; 3],
    payload: &Value,
    now: DateTime<Utc>,
    alert_set: Option<&'q str>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(
        "INSERT INTO alert_notifications (receiver, group_key, status, payload, state,
                                          next_attempt_at, created_at, alert_set)
         VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6) RETURNING id",
    )
    .bind(receiver)
    .bind(group_key)
    .bind(status)
    .bind(json_text(payload))
    .bind(ts(&now))
    .bind(alert_set)
}

fn alert_row(r: sqlx::any::AnyRow) -> AlertRow {
    AlertRow {
        id: r.get(0),
        fingerprint: r.get(1),
        name: r.get(2),
        severity: r.get(3),
        server: r.get(4),
        instance: r.get(5),
        labels: json_of(r.get(6)),
        annotations: json_of(r.get(7)),
        value: r.get(8),
        starts_at: r.get(9),
        fired_at: r.get(10),
        ends_at: r.get(11),
    }
}

fn notification(r: sqlx::any::AnyRow) -> NotificationRow {
    NotificationRow {
        id: r.get(0),
        receiver: r.get(1),
        group_key: r.get(2),
        status: r.get(3),
        payload: json_of(r.get(4)),
        state: r.get(5),
        attempts: r.get(6),
        next_attempt_at: r.get(7),
        last_error: r.get(8),
        created_at: r.get(9),
        delivered_at: r.get(10),
    }
}

impl Store {
    /// Records an alert that started firing; returns its row id.
    pub async fn alert_fired(&self, a: &NewAlert<'_>) -> Result<i64, sqlx::Error> {
        let label = |k: &str| a.labels.get(k).and_then(Value::as_str).map(str::to_owned);
        let r = sqlx::query(
            "INSERT INTO alerts (fingerprint, name, severity, server, instance, labels, annotations,
                                 value, starts_at, fired_at, replica)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(a.fingerprint)
        .bind(a.name)
        .bind(a.severity)
        .bind(label("server"))
        .bind(label("server_instance"))
        .bind(json_text(&a.labels))
        .bind(json_text(&a.annotations))
        .bind(a.value.is_finite().then_some(a.value))
        .bind(ts(&a.starts_at))
        .bind(ts(&a.fired_at))
        .bind(self.replica())
        .fetch_one(&self.pool)
        .await?;
        r.try_get(0)
    }

    /// Closes the open alert with this fingerprint.
    pub async fn alert_resolved(
        &self,
        fingerprint: &str,
        ends_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        // Only this replica's row: another replica may still see the same alert firing.
        sqlx::query(
            "UPDATE alerts SET ends_at = $1 WHERE fingerprint = $2 AND ends_at IS NULL
               AND ($3 IS NULL OR replica = $3 OR replica IS NULL)",
        )
        .bind(ts(&ends_at))
        .bind(fingerprint)
        .bind(self.replica())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes every alert a previous run left open (its evaluation state is gone); returns how
    /// many.
    pub async fn close_open_alerts(&self, at: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let r = sqlx::query(
            "UPDATE alerts SET ends_at = $1 WHERE ends_at IS NULL
               AND ($2 IS NULL OR replica = $2 OR replica IS NULL)",
        )
        .bind(ts(&at))
        .bind(self.replica())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Alerts, newest first; only those that fired at or after `since`, or of `server`.
    pub async fn alerts(
        &self,
        since: Option<DateTime<Utc>>,
        server: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AlertRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, fingerprint, name, severity, server, instance, labels, annotations, value,
                    starts_at, fired_at, ends_at
             FROM alerts WHERE ($1 IS NULL OR fired_at >= $1) AND ($2 IS NULL OR server = $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(since.as_ref().map(ts))
        .bind(server)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(alert_row).collect())
    }

    /// Puts a notification in the outbox, due now; returns its id.
    /// Alerts firing on the other live replicas (heartbeat within `live_for` seconds, not
    /// stopped), oldest first: what the leader notifies for besides its own.
    pub async fn fleet_firing(&self, live_for: f64) -> Result<Vec<AlertRow>, sqlx::Error> {
        let Some(me) = self.replica() else { return Ok(Vec::new()) };
        let sql = format!(
            "SELECT a.id, a.fingerprint, a.name, a.severity, a.server, a.instance, a.labels,
                    a.annotations, a.value, a.starts_at, a.fired_at, a.ends_at
             FROM alerts a JOIN replicas r ON r.id = a.replica
             WHERE a.ends_at IS NULL AND a.replica <> $1 AND r.stopped_at IS NULL
               AND {age} <= $2
             ORDER BY a.starts_at, a.id",
            age = self.backend.seconds_since("r.heartbeat_at"),
        );
        let rows = sqlx::query(&sql).bind(me).bind(live_for).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(alert_row).collect())
    }

    pub async fn enqueue_notification(
        &self,
        receiver: &str,
        group_key: &str,
        status: &str,
        payload: &Value,
        now: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        insert_notification([receiver, group_key, status], payload, now, None)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }

    /// Every pending notification, oldest first (the delivery task loads them at start).
    /// Queues a notification unless the last one for this receiver and group, queued less
    /// than `within` ago (by any replica), had the same status and the same alerts: a new
    /// leader then does not send again what the previous one sent. `None`: skipped.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_notification_once(
        &self,
        receiver: &str,
        group_key: &str,
        status: &str,
        payload: &Value,
        alert_set: &str,
        within: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let last = sqlx::query(
            "SELECT status, alert_set, created_at FROM alert_notifications
             WHERE receiver = $1 AND group_key = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(receiver)
        .bind(group_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = last {
            let (s, set, at): (String, Option<String>, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if s == status && set.as_deref() == Some(alert_set) && at >= ts(&(now - within)) {
                return Ok(None);
            }
        }
        let id = insert_notification([receiver, group_key, status], payload, now, Some(alert_set))
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(Some(id))
    }

    pub async fn pending_notifications(&self) -> Result<Vec<NotificationRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM alert_notifications WHERE state = 'pending' ORDER BY id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(notification).collect())
    }

    /// Notifications, newest first; only those in `state` when given.
    pub async fn notifications(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM alert_notifications WHERE ($1 IS NULL OR state = $1)
             ORDER BY id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(state).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(notification).collect())
    }

    /// Claims pending notification `id` for this replica until `now + lease`, unless another
    /// replica's claim still runs. What the caller may do with it.
    pub async fn claim_notification(
        &self,
        id: i64,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Claim, sqlx::Error> {
        let me = self.replica().unwrap_or_default();
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let claimed = sqlx::query(
            "UPDATE alert_notifications SET claimed_by = $1, claimed_until = $2
             WHERE id = $3 AND state = 'pending'
               AND (claimed_by IS NULL OR claimed_by = $1 OR claimed_until < $4)",
        )
        .bind(me)
        .bind(ts(&until))
        .bind(id)
        .bind(ts(&now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if claimed == 1 {
            return Ok(Claim::Mine);
        }
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM alert_notifications WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match state.as_deref() {
            Some("pending") => Claim::Held,
            _ => Claim::Settled,
        })
    }

    /// Records one delivery attempt: `Ok` delivered; `Err(error)` failed, next try at `next`
    /// (or expired when `next` is `None`).
    pub async fn notification_attempted(
        &self,
        id: i64,
        outcome: Result<(), &str>,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        // Only a row still pending and not claimed by another replica (whose claim replaced
        // this one's after it ran out): an attempt recorded late must not undo a delivery.
        let me = self.replica().unwrap_or_default();
        let q = match outcome {
            Ok(()) => sqlx::query(
                "UPDATE alert_notifications SET state = 'delivered', attempts = attempts + 1,
                        delivered_at = $1, last_error = NULL
                 WHERE id = $2 AND state = 'pending' AND (claimed_by IS NULL OR claimed_by = $3)",
            )
            .bind(ts(&now))
            .bind(id)
            .bind(me),
            Err(error) => sqlx::query(
                "UPDATE alert_notifications SET state = $1, attempts = attempts + 1,
                        last_error = $2, next_attempt_at = $3
                 WHERE id = $4 AND state = 'pending' AND (claimed_by IS NULL OR claimed_by = $5)",
            )
            .bind(if next.is_some() { "pending" } else { "expired" })
            .bind(error)
            .bind(ts(&next.unwrap_or(now)))
            .bind(id)
            .bind(me),
        };
        if q.execute(&self.pool).await?.rows_affected() == 0 {
            tracing::info!(
                id,
                "a delivery attempt was not recorded: another replica owns the notification now"
            );
        }
        Ok(())
    }

    /// Adds or replaces a silence.
    pub async fn put_silence(&self, s: &SilenceRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers,
                starts_at = excluded.starts_at, ends_at = excluded.ends_at,
                created_by = excluded.created_by, comment = excluded.comment,
                created_at = excluded.created_at",
        )
        .bind(&s.id)
        .bind(json_text(&s.matchers))
        .bind(&s.starts_at)
        .bind(&s.ends_at)
        .bind(&s.created_by)
        .bind(&s.comment)
        .bind(ts(&Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Silences that have not ended by `now`.
    pub async fn silences(&self, now: DateTime<Utc>) -> Result<Vec<SilenceRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, matchers, starts_at, ends_at, created_by, comment FROM silences
             WHERE ends_at > $1 ORDER BY starts_at",
        )
        .bind(ts(&now))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SilenceRow {
                id: r.get(0),
                matchers: json_of(r.get(1)),
                starts_at: r.get(2),
                ends_at: r.get(3),
                created_by: r.get(4),
                comment: r.get(5),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Backend, NewAlert, SilenceRow};

    crate::tests::on_both_engines!(
        alerts_open_and_close_and_the_outbox_keeps_what_was_not_delivered
    );

    async fn alerts_open_and_close_and_the_outbox_keeps_what_was_not_delivered(b: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::tests::open_store(b, dir.path()).await;
        let t0 = chrono::Utc::now();
        let labels = json!({"alertname": "X", "server": "s", "server_instance": "s#0"});
        let new = NewAlert {
            fingerprint: "00000000000000aa",
            name: "X",
            severity: "critical",
            labels: labels.clone(),
            annotations: json!({"summary": "down"}),
            value: f64::NAN,
            starts_at: t0,
            fired_at: t0,
        };
        store.alert_fired(&new).await.unwrap();
        store
            .alert_fired(&NewAlert { fingerprint: "00000000000000bb", ..new.clone() })
            .await
            .unwrap();
        store.alert_resolved("00000000000000aa", t0).await.unwrap();
        let rows = store.alerts(None, Some("s"), 10).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].instance.as_deref(), Some("s#0"));
        assert_eq!(rows[1].labels, labels);
        assert_eq!(rows[1].value, None, "a NaN value is stored as NULL");
        assert!(rows[1].ends_at.is_some() && rows[0].ends_at.is_none());
        // A restart closes what the previous run left firing.
        assert_eq!(store.close_open_alerts(t0).await.unwrap(), 1);
        assert!(store
            .alerts(Some(t0 + chrono::Duration::hours(1)), None, 10)
            .await
            .unwrap()
            .is_empty());

        let body = json!({"version": "4", "status": "firing"});
        let a = store.enqueue_notification("hook", "{}:{}", "firing", &body, t0).await.unwrap();
        let b = store.enqueue_notification("dead", "{}:{}", "firing", &body, t0).await.unwrap();
        let c = store.enqueue_notification("gone", "{}:{}", "resolved", &body, t0).await.unwrap();
        store.notification_attempted(a, Ok(()), None, t0).await.unwrap();
        let later = t0 + chrono::Duration::seconds(2);
        store.notification_attempted(b, Err("cannot connect"), Some(later), t0).await.unwrap();
        store.notification_attempted(c, Err("no receiver"), None, t0).await.unwrap();
        let pending = store.pending_notifications().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].id, pending[0].attempts), (b, 1));
        assert_eq!(pending[0].last_error.as_deref(), Some("cannot connect"));
        assert_eq!(pending[0].payload, body);
        let expired = store.notifications(Some("expired"), 10).await.unwrap();
        assert_eq!(expired.iter().map(|n| n.id).collect::<Vec<_>>(), vec![c]);
        let delivered = store.notifications(Some("delivered"), 10).await.unwrap();
        assert!(delivered[0].delivered_at.is_some());

        let s = SilenceRow {
            id: "s1".into(),
            matchers: json!([{"name": "server", "value": "s", "equal": true}]),
            starts_at: crate::writer::ts(&t0),
            ends_at: crate::writer::ts(&(t0 + chrono::Duration::hours(1))),
            created_by: "op".into(),
            comment: "maintenance".into(),
        };
        // Once per fleet: the same receiver, group, status and alerts within the window is
        // skipped; another status, another set or an older last one is queued.
        let hour = chrono::Duration::hours(1);
        let once = |status: &'static str, set: &'static str, at| {
            let store = store.clone();
            let body = body.clone();
            async move { store.enqueue_notification_once("r", "g", status, &body, set, hour, at).await }
        };
        assert!(once("firing", "a:firing", t0).await.unwrap().is_some());
        assert_eq!(once("firing", "a:firing", t0).await.unwrap(), None, "sent already");
        assert!(once("firing", "a:firing,b:firing", t0).await.unwrap().is_some(), "grew");
        assert!(once("resolved", "a:resolved,b:resolved", t0).await.unwrap().is_some());
        assert!(once("firing", "a:firing", t0).await.unwrap().is_some(), "fired again");
        let later = t0 + chrono::Duration::hours(2);
        assert!(once("firing", "a:firing", later).await.unwrap().is_some(), "past the window");

        store.put_silence(&s).await.unwrap();
        assert_eq!(store.silences(t0).await.unwrap().len(), 1);
        store.put_silence(&SilenceRow { ends_at: crate::writer::ts(&t0), ..s }).await.unwrap();
        assert!(store.silences(t0).await.unwrap().is_empty(), "expired by replacing its end");
    }
}
