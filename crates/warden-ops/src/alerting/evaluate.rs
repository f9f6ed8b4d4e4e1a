//! The evaluation loop: every `evaluation_interval`, the supervisor's view and Warden's own
//! metrics become facts and series, the rules turn them into transitions (recorded as events
//! and store rows), and the dispatcher's notifications are queued in the outbox.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use warden_alerts::{
    parse_exposition, payload, Alert, AlertStatus, DispatchConfig, Dispatcher, Drift,
    InstanceFacts, Notification, Now, Prediction, RuleSet, Series, ServerFacts, Silence,
    Transition,
};
use warden_config::{Receiver, ReceiverKind, ServerSpec, WebhookFormat};
use warden_core::{Event, EventKind, InstanceState, ServerStatus, TraceId};
use warden_store::{NewAlert, Store};

use super::{Alerts, Outgoing, Sources, ALERTMANAGER_RESEND, STORE_WRITE};

/// What the rules know about each server, from the supervisor's view.
fn facts(overview: &warden_supervisor::Overview, specs: &[Arc<ServerSpec>]) -> Vec<ServerFacts> {
    overview
        .servers
        .iter()
        .map(|s| {
            let spec = specs.iter().find(|x| x.name == s.name);
            ServerFacts {
                name: s.name.clone(),
                routable: s.status != ServerStatus::Unhealthy,
                paused: s.disabled || s.instances.iter().all(|i| i.state == InstanceState::Stopped),
                objective: spec.and_then(|x| x.objective),
                instances: s
                    .instances
                    .iter()
                    .map(|i| InstanceFacts {
                        id: i.id.to_string(),
                        state: i.state,
                        reason: i.reason.as_ref().map(ToString::to_string),
                        restarts: i.restarts,
                        requests_total: i.stats.requests_total,
                        errors_total: i.stats.errors_total,
                        prediction: i.prediction.as_ref().and_then(prediction_of),
                        drift: i.prediction.as_ref().and_then(drift_of),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The nearest forecast crossing (latency, error ratio or memory), for `PredictedFailure`.
pub(super) fn prediction_of(a: &warden_predict::Assessment) -> Option<Prediction> {
    let rss = a.rss_exhaustion.as_ref().map(warden_predict::Exhaustion::as_prediction);
    let p = [a.predicted, rss].into_iter().flatten().filter(|p| p.eta_seconds.is_some()).min_by(
        |x, y| x.eta_seconds.partial_cmp(&y.eta_seconds).unwrap_or(std::cmp::Ordering::Equal),
    )?;
    Some(Prediction {
        signal: p.signal.as_str().to_owned(),
        eta_seconds: p.eta_seconds?,
        limit: p.limit,
        level: p.level,
    })
}

pub(super) fn drift_of(a: &warden_predict::Assessment) -> Option<Drift> {
    a.drift.map(|d| Drift {
        signal: d.signal.as_str().to_owned(),
        score: d.cusum,
        baseline: d.baseline,
        current: d.recent,
    })
}

/// The per-instance signals user rules can name, besides every `/metrics` series; those
/// `wanted` names.
fn instance_series(
    overview: &warden_supervisor::Overview,
    wanted: impl Fn(&str) -> bool,
) -> Vec<Series> {
    let mut out = Vec::new();
    for s in &overview.servers {
        for i in &s.instances {
            let labels: warden_alerts::Labels = [
                ("server".to_owned(), s.name.clone()),
                ("server_instance".to_owned(), i.id.to_string()),
            ]
            .into();
            let st = &i.stats;
            let routable = matches!(i.state, InstanceState::Healthy | InstanceState::Warning);
            let signals = [
                ("latency_p50_ms", st.p50_ms),
                ("latency_p95_ms", st.p95_ms),
                ("latency_p99_ms", st.p99_ms),
                ("error_rate", Some(st.error_rate)),
                ("availability", Some(st.availability)),
                ("throughput", Some(st.throughput)),
                ("restarts", Some(f64::from(i.restarts))),
                ("up", Some(if routable { 1.0 } else { 0.0 })),
            ];
            for (name, v) in signals.into_iter().filter(|(name, _)| wanted(name)) {
                if let Some(value) = v {
                    out.push(Series { name: name.to_owned(), labels: labels.clone(), value });
                }
            }
        }
    }
    out
}

/// SLO minutes: where minute `k` of a rule set started on the wall clock.
struct SloClock {
    origin: DateTime<Utc>,
    /// Servers with an availability objective (the only ones whose minutes are kept).
    servers: Vec<String>,
    /// Minutes before this one are in the store.
    saved_before: i64,
}

impl SloClock {
    fn wall(&self, minute: i64) -> DateTime<Utc> {
        self.origin + chrono::Duration::minutes(minute)
    }

    /// Puts back what an earlier run counted in the last 3 days.
    async fn restore(&self, rules: &mut RuleSet, store: &Store) {
        if self.servers.is_empty() {
            return;
        }
        let since = self.origin - chrono::Duration::minutes(3 * 24 * 60 + 1);
        let rows = match store.slo_minutes(since).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "SLO counts of the last run could not be read; burn rates start empty");
                return;
            }
        };
        for server in &self.servers {
            let minutes: Vec<(i64, u64, u64)> = rows
                .iter()
                .filter(|r| &r.server == server && r.minute < self.origin)
                .map(|r| {
                    let m = (r.minute - self.origin).num_seconds().div_euclid(60);
                    (m, r.requests, r.errors)
                })
                .collect();
            rules.seed_slo(server, &minutes);
        }
    }

    /// Writes the minutes that ended before `now` (with `all`, the current one too).
    async fn save(&mut self, rules: &RuleSet, store: &Store, now: Instant, all: bool) {
        let current = rules.minute(now);
        if self.servers.is_empty() || (current <= self.saved_before && !all) {
            return;
        }
        let rows: Vec<warden_store::SloMinute> = rules
            .slo_minutes(self.saved_before)
            .into_iter()
            .filter(|(s, m, _, _)| (all || *m < current) && self.servers.contains(s))
            .map(|(server, m, requests, errors)| warden_store::SloMinute {
                server,
                minute: self.wall(m),
                requests,
                errors,
            })
            .collect();
        match store.put_slo_minutes(&rows).await {
            Ok(()) => self.saved_before = current,
            Err(e) => tracing::debug!(error = %e, "SLO minutes not saved; retried next minute"),
        }
    }
}

pub(super) async fn evaluate_loop(alerts: Alerts, mut src: Sources, stop: CancellationToken) {
    let start = Now::current();
    let mut settings = src.settings.borrow_and_update().clone();
    let mut rules = RuleSet::new(&settings, start.at);
    let objectives = |specs: &[Arc<ServerSpec>]| -> Vec<String> {
        specs.iter().filter(|s| s.objective.is_some()).map(|s| s.name.clone()).collect()
    };
    let mut slo = SloClock {
        origin: start.wall,
        servers: objectives(&src.overview.specs()),
        saved_before: 0,
    };
    slo.restore(&mut rules, &src.store).await;
    let mut dispatcher = Dispatcher::new(DispatchConfig::from(&settings));
    let mut fleet = super::fleet::FleetAlerts::default();
    let mut last_am_post: Option<Instant> = None;
    let mut tick = tokio::time::interval(settings.evaluation_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                slo.save(&rules, &src.store, Instant::now(), true).await;
                return;
            }
            _ = tick.tick() => {}
        }
        let now = Now::current();
        let overview = src.overview.get();
        // The servers as the last reload left them.
        let specs = src.overview.specs();
        slo.servers = objectives(&specs);
        let servers = facts(&overview, &specs);
        // A reload changed the rules or receivers: kept rules keep their alerts, the alerts of
        // rules gone resolve now.
        let mut transitions = Vec::new();
        if src.settings.has_changed().unwrap_or(false) {
            let new = src.settings.borrow_and_update().clone();
            transitions = rules.reconfigure(&new, now.wall);
            dispatcher.set_config(DispatchConfig::from(&new));
            if new.evaluation_interval != settings.evaluation_interval {
                tick = tokio::time::interval(new.evaluation_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            settings = new;
        }
        // The series the user's rules watch (after a reload, the new rules'): the exposition is
        // encoded and read only if some rule watches a series, and only their samples kept.
        let series = if rules.watches_series() {
            let watched = |name: &str| rules.watches(name);
            let mut series = parse_exposition(&src.metrics.encode(), watched);
            series.extend(instance_series(&overview, watched));
            series
        } else {
            Vec::new()
        };
        transitions.extend(rules.evaluate(now, &servers, &series));
        slo.save(&rules, &src.store, now.at, false).await;
        let mut resolved = Vec::new();
        for t in &transitions {
            record(&src, t).await;
            if let Transition::Resolved(a) = t {
                resolved.push(a.clone());
            }
        }
        let firing = rules.firing();
        // In a fleet, silences made on any replica are the database's: read each evaluation.
        if src.store.is_shared() {
            if let Ok(Ok(rows)) =
                tokio::time::timeout(STORE_WRITE, src.store.silences(now.wall)).await
            {
                alerts.lock().silences = rows.iter().filter_map(super::silence_of).collect();
            }
        }
        let silences: Vec<Silence> = {
            let mut s = alerts.lock();
            s.silences.retain(|x| x.ends_at > now.wall);
            s.silences.clone()
        };
        dispatcher.set_silences(silences);
        let muted: Vec<(Alert, Option<String>)> =
            firing.iter().map(|a| (a.clone(), dispatcher.muted(a, &firing, now.wall))).collect();
        // The fleet's alerts feed every replica's dispatcher alike; only the leader's
        // notifications go out (alerting/fleet.rs). Alone (SQLite), these are this replica's.
        let (firing, resolved) = fleet.merge(&src.store, &firing, &resolved, now.wall).await;
        let leading = *src.leading.borrow();
        let mut out = Vec::new();
        for n in dispatcher.tick(now, &firing, &resolved) {
            for r in settings.receivers.iter() {
                if is_alertmanager(r) {
                    continue;
                }
                if let Some(part) = payload::for_receiver(&n, r) {
                    let mut set: Vec<String> = part
                        .alerts
                        .iter()
                        .map(|a| format!("{}:{}", a.fingerprint, a.status.as_str()))
                        .collect();
                    set.sort();
                    out.push((
                        r.name.clone(),
                        part.status,
                        n.group_key.clone(),
                        body_for(r, &part, &src.external_url),
                        Some(set.join(",")),
                    ));
                }
            }
        }
        // Alertmanager groups, silences and repeats by itself: it gets every loud firing alert
        // at each change and every minute, and resolved ones once.
        let loud: Vec<Alert> = firing
            .iter()
            .filter(|a| dispatcher.muted(a, &firing, now.wall).is_none())
            .cloned()
            .collect();
        let am_due = !transitions.is_empty()
            || last_am_post.is_none_or(|t| now.at.duration_since(t) >= ALERTMANAGER_RESEND);
        if am_due && (!loud.is_empty() || !resolved.is_empty()) {
            last_am_post = Some(now.at);
            for r in settings.receivers.iter().filter(|r| is_alertmanager(r)) {
                let n = Notification {
                    group_key: String::new(),
                    group_labels: Default::default(),
                    status: AlertStatus::Firing,
                    alerts: loud.iter().chain(&resolved).cloned().collect(),
                };
                if let Some(part) = payload::for_receiver(&n, r) {
                    let body = payload::alertmanager(&part.alerts, &src.external_url, now.wall);
                    out.push((r.name.clone(), part.status, String::new(), body, None));
                }
            }
        }
        if !leading {
            out.clear();
        }
        let mut queued = Vec::new();
        let shared_store = src.store.is_shared();
        let repeat = chrono::Duration::from_std(settings.repeat_interval).unwrap_or_default();
        for (receiver, status, group, body, set) in out {
            let store = &src.store;
            let enqueue = async {
                match set.as_deref().filter(|_| shared_store) {
                    // In a fleet: not again what another leader already queued.
                    Some(set) => {
                        let s = status.as_str();
                        store
                            .enqueue_notification_once(
                                &receiver, &group, s, &body, set, repeat, now.wall,
                            )
                            .await
                    }
                    None => store
                        .enqueue_notification(&receiver, &group, status.as_str(), &body, now.wall)
                        .await
                        .map(Some),
                }
            };
            let id = match tokio::time::timeout(STORE_WRITE, enqueue).await {
                Ok(Ok(None)) => {
                    tracing::debug!(%receiver, %group, "already notified by the fleet's previous leader");
                    continue;
                }
                Ok(Ok(Some(id))) => Some(id),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, %receiver, "could not store a notification; delivering from memory");
                    None
                }
                Err(_) => None,
            };
            queued.push(Outgoing {
                id,
                seq: 0,
                group,
                receiver,
                status: status.as_str(),
                body,
                attempts: 0,
                due: Instant::now(),
                created: now.wall,
                last_error: None,
            });
        }
        {
            let mut s = alerts.lock();
            s.firing = muted;
            s.pending = rules.pending();
            s.evaluations += 1;
            if !queued.is_empty() {
                for mut o in queued {
                    s.next_seq += 1;
                    o.seq = s.next_seq;
                    s.outbox.push_back(o);
                }
                alerts.wake.notify_one();
            }
        }
    }
}

fn is_alertmanager(r: &Receiver) -> bool {
    matches!(r.kind, ReceiverKind::Webhook { format: WebhookFormat::Alertmanager, .. })
}

fn body_for(r: &Receiver, n: &Notification, external_url: &str) -> Value {
    match &r.kind {
        ReceiverKind::Webhook { format: WebhookFormat::Slack, .. } => payload::slack(n),
        ReceiverKind::Webhook { format: WebhookFormat::PagerDuty { .. }, .. } => {
            payload::pagerduty(n, external_url)
        }
        ReceiverKind::Email { .. } => payload::email(n, external_url),
        _ => payload::webhook(n, &r.name, external_url),
    }
}

/// The event and the store row of one transition.
async fn record(src: &Sources, t: &Transition) {
    let (a, resolved) = match t {
        Transition::Firing(a) => (a, false),
        Transition::Resolved(a) => (a, true),
    };
    let instance = a.labels.get("server_instance").and_then(|i| {
        let (s, n) = i.rsplit_once('#')?;
        Some(warden_core::InstanceId::new(s, n.parse().ok()?))
    });
    let info = warden_core::AlertInfo {
        alert: a.name.clone(),
        severity: a.severity.as_str().to_owned(),
        server: a.labels.get("server").cloned(),
        summary: a.annotations.get("summary").cloned().unwrap_or_default(),
        fingerprint: a.fingerprint.clone(),
        labels: a.labels.clone(),
    };
    let kind = if resolved {
        let ended = a.ends_at.unwrap_or_else(Utc::now);
        let firing_seconds = (ended - a.starts_at).num_milliseconds() as f64 / 1000.0;
        EventKind::AlertResolved { alert: info, firing_seconds }
    } else {
        EventKind::AlertFiring { alert: info }
    };
    src.bus.emit(Event::new(instance, TraceId::random(), kind));
    let write = async {
        if resolved {
            src.store.alert_resolved(&a.fingerprint, a.ends_at.unwrap_or_else(Utc::now)).await
        } else {
            src.store
                .alert_fired(&NewAlert {
                    fingerprint: &a.fingerprint,
                    name: &a.name,
                    severity: a.severity.as_str(),
                    labels: serde_json::to_value(&a.labels).unwrap_or_default(),
                    annotations: serde_json::to_value(&a.annotations).unwrap_or_default(),
                    value: a.value,
                    starts_at: a.starts_at,
                    fired_at: Utc::now(),
                })
                .await
                .map(|_| ())
        }
    };
    match tokio::time::timeout(STORE_WRITE, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, alert = %a.name, "could not record the alert"),
        Err(_) => tracing::warn!(alert = %a.name, "the database took too long to record the alert"),
    }
}
