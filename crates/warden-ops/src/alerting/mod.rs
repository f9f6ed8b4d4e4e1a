//! The alerting task (ARCHITECTURE.md, "Alerting"); its routes are warden-admin's. Every
//! `evaluation_interval` it reads the supervisor's view and Warden's own metrics, evaluates
//! every rule ([`warden_alerts::RuleSet`]), emits `alert_firing` / `alert_resolved` events,
//! records alerts in the store, and lets the [`Dispatcher`] decide which notifications go out.
//! Notifications go through an outbox: a row in the store first (when the store answers), then
//! the delivery task sends it, retrying with backoff until it is delivered or too old; pending
//! rows are picked up again after a restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use warden_alerts::{Alert, Silence};
use warden_config::{AlertSettings, Receiver, ReceiverKind, WebhookFormat};
use warden_core::EventBus;
use warden_store::Store;

use warden_supervisor::Views;

mod deliver;
mod email;
mod evaluate;
mod fleet;
mod metrics;
mod silences;
#[cfg(test)]
mod tests;

use deliver::deliver_loop;
use evaluate::evaluate_loop;
pub use metrics::AlertMetrics;
pub use silences::parse_silence;
use silences::{silence_of, silence_row};

/// Alertmanager API receivers get every firing alert again this often (it resolves alerts that
/// are not re-sent before their `endsAt`).
const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);
/// Delivery backoff: 1 s doubling to 5 min, ±20 %.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// The store gets this long per write before the evaluation moves on.
const STORE_WRITE: Duration = Duration::from_secs(2);

/// What the alerting task reads.
pub struct Sources {
    pub overview: Views,
    pub metrics: warden_metrics::Metrics,
    pub store: Store,
    pub bus: Arc<EventBus>,
    /// `warden.alerts`, as the last reload left them (rules, receivers, timings).
    pub settings: tokio::sync::watch::Receiver<AlertSettings>,
    /// Where people reach this Warden (`http://127.0.0.1:7420`), for links in payloads.
    pub external_url: String,
    /// Whether this replica leads the fleet (always, alone): only the leader notifies.
    pub leading: warden_store::Leading,
}

/// One notification on its way to one receiver.
#[derive(Clone, Debug)]
struct Outgoing {
    /// The outbox row, when the store took it.
    id: Option<i64>,
    /// Order of creation: one receiver gets one group's notifications in this order.
    seq: u64,
    receiver: String,
    group: String,
    status: &'static str,
    body: Value,
    attempts: u32,
    due: Instant,
    created: DateTime<Utc>,
    last_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    /// Firing alerts, each with why it is muted (silenced / inhibited), if it is.
    firing: Vec<(Alert, Option<String>)>,
    pending: Vec<Alert>,
    silences: Vec<Silence>,
    /// Sorted by `seq`.
    outbox: VecDeque<Outgoing>,
    /// Taken from the outbox for the attempts under way: still undelivered, and shown so.
    sending: Vec<Outgoing>,
    next_seq: u64,
    delivered: u64,
    failed_attempts: u64,
    expired: u64,
    evaluations: u64,
}

impl Shared {
    /// For each queued notification, whether it may be sent once due: it is not behind another
    /// for the same receiver and group (queued before it, or being sent), so a receiver never
    /// hears "resolved" before the "firing" it resolves.
    fn sendable(&self) -> Vec<bool> {
        fn key(o: &Outgoing) -> (&str, &str) {
            (&o.receiver, &o.group)
        }
        let mut blocked: std::collections::HashSet<_> = self.sending.iter().map(key).collect();
        self.outbox.iter().map(|o| blocked.insert(key(o))).collect()
    }

    /// When the next notification may be sent: the earliest due of the sendable ones. One
    /// behind another waits for that one to settle, which wakes the loop itself.
    fn next_due(&self) -> Option<Instant> {
        self.outbox.iter().zip(self.sendable()).filter(|(_, s)| *s).map(|(o, _)| o.due).min()
    }

    /// Takes the sendable notifications that are due at `now` out of the outbox, in order.
    fn take_due(&mut self, now: Instant) -> Vec<Outgoing> {
        let sendable = self.sendable();
        let (due, rest): (Vec<_>, Vec<_>) =
            self.outbox.drain(..).zip(sendable).partition(|(o, s)| *s && o.due <= now);
        self.outbox = rest.into_iter().map(|(o, _)| o).collect();
        due.into_iter().map(|(o, _)| o).collect()
    }

    /// Puts `o` back in the outbox, due at `due`, in its place by `seq`.
    fn requeue(&mut self, mut o: Outgoing, due: Instant) {
        o.due = due;
        self.outbox.push_back(o);
        self.outbox.make_contiguous().sort_by_key(|o| o.seq);
    }

    /// Queues a notification the store holds as pending (unless it is queued or being sent
    /// already).
    fn push_stored(&mut self, r: warden_store::NotificationRow, now: DateTime<Utc>) {
        if self.outbox.iter().chain(&self.sending).any(|o| o.id == Some(r.id)) {
            return;
        }
        self.next_seq += 1;
        self.outbox.push_back(Outgoing {
            id: Some(r.id),
            seq: self.next_seq,
            group: r.group_key,
            status: if r.status == "resolved" { "resolved" } else { "firing" },
            receiver: r.receiver,
            body: r.payload,
            attempts: r.attempts.max(0) as u32,
            due: Instant::now(),
            created: DateTime::parse_from_rfc3339(&r.created_at)
                .map_or(now, |t| t.with_timezone(&Utc)),
            last_error: r.last_error,
        });
    }
}

/// The handle the routes, the MCP tools and the metrics read.
#[derive(Clone)]
pub struct Alerts {
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    store: Store,
    /// Receivers, and how old an undelivered notification may grow before it is given up on
    /// (kept, marked expired): as the last reload left them.
    settings: tokio::sync::watch::Receiver<AlertSettings>,
    /// The evaluation and delivery tasks, awaited by [`Alerts::finished`].
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Alerts {
    /// Loads silences and the undelivered outbox from the store, then starts the evaluation
    /// and delivery tasks until `stop`.
    pub async fn start(src: Sources, stop: CancellationToken) -> Self {
        let now = Utc::now();
        let mut shared = Shared::default();
        // A database not reached yet (PostgreSQL down at start) would make each read wait out
        // the pool's timeout while supervision waits to start: start without them.
        if src.store.is_ready() {
            match src.store.silences(now).await {
                Ok(rows) => shared.silences = rows.iter().filter_map(silence_of).collect(),
                Err(e) => tracing::warn!(error = %e, "could not load silences from the database"),
            }
            match src.store.pending_notifications().await {
                Ok(rows) => {
                    for r in rows {
                        shared.push_stored(r, now);
                    }
                    if !shared.outbox.is_empty() {
                        tracing::info!(
                            pending = shared.outbox.len(),
                            "resuming delivery of notifications a previous run left undelivered"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not load undelivered notifications"),
            }
            match src.store.close_open_alerts(now).await {
                Ok(0) | Err(_) => {}
                Ok(n) => tracing::info!(rows = n, "closed alerts a previous run left firing"),
            }
        } else {
            tracing::warn!(
                "the database is not reachable: silences and undelivered notifications are not loaded"
            );
        }
        let alerts = Self {
            shared: Arc::new(Mutex::new(shared)),
            wake: Arc::new(Notify::new()),
            store: src.store.clone(),
            settings: src.settings.clone(),
            tasks: Arc::default(),
        };
        let leading = src.leading.clone();
        let evaluate = tokio::spawn(evaluate_loop(alerts.clone(), src, stop.clone()));
        let deliver = tokio::spawn(deliver_loop(alerts.clone(), leading, stop));
        *alerts.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            vec![evaluate, deliver];
        alerts
    }

    /// Waits until both tasks returned after `stop`: the evaluation writes the SLO minutes it
    /// counted as it stops, so the store must outlive it.
    pub async fn finished(&self) {
        let tasks = std::mem::take(
            &mut *self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in tasks {
            let _ = t.await;
        }
    }

    /// This replica became the fleet's leader: what the store holds undelivered (queued by the
    /// previous leader) is delivered from here on.
    async fn take_over(&self) {
        match self.store.pending_notifications().await {
            Ok(rows) => {
                let n = rows.len();
                let now = Utc::now();
                let mut s = self.lock();
                for r in rows {
                    s.push_stored(r, now);
                }
                if n > 0 {
                    tracing::info!(
                        pending = n,
                        "leading: delivering what the previous leader left undelivered"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "leading, but the undelivered notifications could not be read")
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Firing alerts (with `muted`), pending ones, silences, receivers and delivery counts.
    pub fn view(&self) -> Value {
        let s = self.lock();
        let firing: Vec<Value> = s
            .firing
            .iter()
            .map(|(a, muted)| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["muted"] = json!(muted);
                v
            })
            .collect();
        let receivers: Vec<Value> =
            self.settings.borrow().receivers.iter().map(receiver_view).collect();
        let outbox: Vec<Value> = s
            .sending
            .iter()
            .chain(&s.outbox)
            .map(|o| {
                json!({
                    "id": o.id, "receiver": o.receiver, "status": o.status, "attempts": o.attempts,
                    "created_at": o.created, "last_error": o.last_error,
                    "next_attempt_in_ms": o.due.saturating_duration_since(Instant::now()).as_millis() as u64,
                })
            })
            .collect();
        json!({
            "firing": firing,
            "pending": s.pending,
            "silences": s.silences,
            "receivers": receivers,
            "notifications": {
                "undelivered": outbox,
                "delivered": s.delivered,
                "failed_attempts": s.failed_attempts,
                "expired": s.expired,
            },
            "evaluations": s.evaluations,
        })
    }

    /// What `/metrics` shows of alerting.
    fn counts(&self) -> metrics::Counts {
        let s = self.lock();
        let mut firing: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for (a, _) in &s.firing {
            *firing.entry((a.name.clone(), a.severity.as_str().to_owned())).or_default() += 1;
        }
        metrics::Counts {
            firing,
            undelivered: (s.outbox.len() + s.sending.len()) as i64,
            delivered: s.delivered,
            failed: s.failed_attempts,
            expired: s.expired,
        }
    }

    /// The silences (active and recently ended, until the next evaluation drops them).
    pub fn silences(&self) -> Vec<Silence> {
        self.lock().silences.clone()
    }

    /// The store alerts are recorded in (for their history and the outbox's).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Adds a silence, in force from the next evaluation. It holds even if the database cannot
    /// store it (until a restart).
    pub async fn add_silence(&self, s: Silence) -> Silence {
        if let Err(e) = self.store.put_silence(&silence_row(&s, s.ends_at)).await {
            tracing::warn!(error = %e, "could not store the silence; it holds until restart");
        }
        self.lock().silences.push(s.clone());
        s
    }

    /// Ends a silence now. `false` when there is no such active silence.
    pub async fn expire_silence(&self, id: &str) -> bool {
        let now = Utc::now();
        let found = {
            let mut s = self.lock();
            let found = s.silences.iter_mut().find(|x| x.id == id && x.ends_at > now);
            found.map(|x| {
                x.ends_at = now;
                x.clone()
            })
        };
        let Some(s) = found else { return false };
        if let Err(e) = self.store.put_silence(&silence_row(&s, now)).await {
            tracing::warn!(error = %e, "could not store the silence's expiry");
        }
        true
    }
}

fn receiver_view(r: &Receiver) -> Value {
    let (kind, target) = match &r.kind {
        ReceiverKind::Webhook { display_url, format, .. } => (
            match format {
                WebhookFormat::AlertmanagerWebhook => "webhook",
                WebhookFormat::Alertmanager => "alertmanager",
                WebhookFormat::Slack => "slack",
                WebhookFormat::PagerDuty { .. } => "pagerduty",
            },
            display_url.clone(),
        ),
        ReceiverKind::Email { host, port, tls, to, .. } => {
            ("email", format!("smtp://{host}:{port} ({}) → {}", tls.as_str(), to.join(", ")))
        }
        ReceiverKind::Command { command, .. } => ("command", command.clone()),
    };
    json!({ "name": r.name, "kind": kind, "target": target,
            "min_severity": r.min_severity, "send_resolved": r.send_resolved })
}
