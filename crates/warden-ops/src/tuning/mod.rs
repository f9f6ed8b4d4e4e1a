//! Tuning: changes to a server's policy at run time — the call timeout, the probe interval and
//! timeout, each instance's balancing weight — learned from what the store recorded, or set
//! by an operator, always inside safe bounds, every one recorded (`tuning_changes`) and
//! reversible. `GET /api/tuning`, `POST /api/tuning/{apply,set,reset}`,
//! `POST /api/tuning/{id}/revert` (their routes are warden-admin's), `warden tune …`, and the MCP tool
//! `warden__performance_optimizer` (`apply_tuning`, `revert_tuning`).
//!
//! What is learned (over `warden.tuning.lookback`, default 7 days; see [`learn`]):
//!
//! | parameter | rule | change |
//! |---|---|---|
//! | `timeout` | a tool's slowest call ≥ 80 % of the call timeout (≥ 5 calls), or an instance's sampled p95 ≥ 50 % of it | raise to 2 × the slowest seen, whole seconds |
//! | `health.timeout` | ≥ 3 probe timeouts | double |
//! | `health.interval` | ≥ 3 incidents | halve (failures found sooner) |
//! | `weight` | replicas: p50 ≥ 1.5 × the fastest sibling's (≥ 30 samples each), or ≥ 2 incidents while a sibling had none | fastest/p50, or 0.5 (the lower), steps of 0.05; back to 1 when the evidence is gone |
//!
//! Learned changes only ever raise timeouts and shorten the probe interval (what lowers the
//! risk of a false failure or a slow detection); an operator can move any parameter anywhere
//! inside its bounds ([`bounds`]). A change is made only if it can be recorded first. At start,
//! changes still in force are re-applied while the config still holds the value they started
//! from; otherwise they are marked reverted ("the config changed").

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use warden_config::TuningSettings;
use warden_core::{Event, EventBus, EventKind, InstanceId, TraceId};
use warden_store::{NewTuning, ReportRange, TuningRow};
use warden_supervisor::ServerHandle;

use crate::reports::Reports;
use crate::Refusal;

mod rules;

pub use rules::*;

/// Applies, sets and reverts changes; shared by the API, the MCP tool and the auto loop.
#[derive(Clone)]
pub struct Tuner {
    reports: Reports,
    bus: Arc<EventBus>,
    /// `warden.tuning`, as the last reload left it.
    settings: tokio::sync::watch::Receiver<TuningSettings>,
    /// One change at a time: reading the value in force and recording the change are one step.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Whether this replica leads the fleet: only the leader tunes automatically.
    leading: warden_store::Leading,
}

fn database(e: impl std::fmt::Display) -> Refusal {
    (StatusCode::SERVICE_UNAVAILABLE, format!("the database did not answer, nothing changed: {e}"))
}

pub fn row_json(r: &TuningRow) -> Value {
    let p = Param::parse(&r.parameter);
    let show = |v: f64| p.map(|p| p.show(v));
    json!({
        "id": r.id, "at": r.at, "server": r.server, "instance": r.instance,
        "parameter": r.parameter, "unit": p.map(Param::unit),
        "configured": r.base_value, "from": r.old_value, "to": r.new_value,
        "from_text": show(r.old_value), "to_text": show(r.new_value),
        "rule": r.rule, "reason": r.reason, "evidence": r.evidence, "source": r.source,
        "in_force": r.reverted_at.is_none(),
        "reverted_at": r.reverted_at, "reverted_reason": r.reverted_reason,
    })
}

impl Tuner {
    pub fn new(
        reports: Reports,
        bus: Arc<EventBus>,
        settings: tokio::sync::watch::Receiver<TuningSettings>,
    ) -> Self {
        Self {
            reports,
            bus,
            settings,
            lock: Arc::default(),
            leading: tokio::sync::watch::channel(true).1,
        }
    }

    /// In a fleet: the automatic loop runs only while this replica leads.
    pub fn with_leading(mut self, leading: warden_store::Leading) -> Self {
        self.leading = leading;
        self
    }

    /// Tells the other replicas sharing the database that the changes in force changed (they
    /// [`Tuner::follow`]); nothing with SQLite.
    async fn share(&self) {
        let store = &self.reports.store;
        if !store.is_shared() {
            return;
        }
        if let Err(e) = store.record_fleet_command("", None, "tuning", "sync").await {
            tracing::warn!(error = %e, "the other replicas could not be told of a tuning change");
        }
    }

    /// Another replica changed what is in force: every server's tuned values become the
    /// configured ones plus the changes in force in the database (nothing is written here).
    pub async fn follow(&self) -> Result<usize, String> {
        let _one = self.lock.lock().await;
        let active =
            self.reports.store.tuning_changes(None, true, 0).await.map_err(|e| e.to_string())?;
        let mut newest: BTreeMap<(String, Option<u32>, String), &TuningRow> = BTreeMap::new();
        for row in &active {
            newest.entry((row.server.clone(), row.instance, row.parameter.clone())).or_insert(row);
        }
        let mut applied = 0;
        for h in self.reports.servers.handles().iter() {
            let mut tuned = warden_supervisor::Tuned::default();
            for ((_, instance, parameter), row) in
                newest.iter().filter(|((server, _, _), _)| *server == h.spec.name)
            {
                let Some(param) = Param::parse(parameter) else { continue };
                let (lo, hi) = bounds(param, &h.spec);
                let fits = instance.is_none_or(|i| i < h.spec.instance_count());
                if fits
                    && (param.base(&h.spec) - row.base_value).abs() <= 1e-9
                    && (lo..=hi).contains(&row.new_value)
                {
                    param.set(&h.spec, &mut tuned, *instance, row.new_value);
                    applied += 1;
                }
            }
            if h.tuned() != tuned {
                h.set_tuned(tuned);
            }
        }
        Ok(applied)
    }

    fn handle(&self, server: &str) -> Option<ServerHandle> {
        self.reports.servers.handle(server)
    }

    fn emit(&self, row: &TuningRow, from: f64, to: f64, reverted: bool, reason: &str) {
        let instance = row.instance.map(|i| InstanceId::new(row.server.as_str(), i));
        self.bus.emit(Event::new(
            instance,
            TraceId::random(),
            EventKind::TuningChanged {
                change_id: row.id,
                server: row.server.clone(),
                parameter: row.parameter.clone(),
                from,
                to,
                reverted,
                reason: reason.to_owned(),
            },
        ));
    }

    fn range(&self, since: Option<&str>, server: Option<&str>) -> Result<ReportRange, Refusal> {
        let lookback = format!("{}s", self.settings.borrow().lookback.as_secs());
        self.reports.range(Some(since.unwrap_or(&lookback)), None, server, warden_core::now())
    }

    /// What the rules would change now.
    pub async fn proposals(&self, r: &ReportRange) -> Result<Vec<Proposal>, Refusal> {
        self.reports.usage.flush().await;
        let store = &self.reports.store;
        let usage = store.tool_usage(r).await.map_err(database)?;
        let samples = store.instance_samples(r).await.map_err(database)?;
        let failures = store.failure_stats(r).await.map_err(database)?;
        let probe_timeouts = store.probe_timeouts(r).await.map_err(database)?;
        let handles = self.reports.servers.handles();
        let servers = handles
            .iter()
            .filter(|h| r.server.as_ref().is_none_or(|s| *s == h.spec.name) && !h.spec.disabled)
            .map(|h| (&*h.spec, h.tuned()))
            .collect();
        Ok(learn(&Evidence {
            servers,
            samples: &samples,
            usage: &usage,
            failures: &failures,
            probe_timeouts: &probe_timeouts,
        }))
    }

    /// Records and applies one change (the caller holds the lock).
    async fn change(&self, p: &Proposal, source: &str) -> Result<TuningRow, Refusal> {
        let h = self
            .handle(&p.server)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no server named {:?}", p.server)))?;
        let at = chrono::Utc::now();
        let change = NewTuning {
            at,
            server: &p.server,
            instance: p.instance,
            parameter: p.param.name(),
            base_value: p.param.base(&h.spec),
            old_value: p.from,
            new_value: p.to,
            rule: p.rule,
            reason: &p.reason,
            evidence: &p.evidence,
            source,
        };
        let id = self.reports.store.record_tuning(&change).await.map_err(database)?;
        let mut tuned = h.tuned();
        p.param.set(&h.spec, &mut tuned, p.instance, p.to);
        h.set_tuned(tuned);
        let row = self
            .reports
            .store
            .tuning_change(id)
            .await
            .map_err(database)?
            .ok_or_else(|| database("the change just recorded is missing"))?;
        self.emit(&row, p.from, p.to, false, &p.reason);
        Ok(row)
    }

    /// Applies the learned proposals (all, or one server's); `dry_run` only lists them.
    pub async fn apply(
        &self,
        since: Option<&str>,
        server: Option<&str>,
        dry_run: bool,
        source: &str,
    ) -> Result<Value, Refusal> {
        let r = self.range(since, server)?;
        let _one = self.lock.lock().await;
        let proposals = self.proposals(&r).await?;
        if dry_run {
            let list: Vec<Value> = proposals.iter().map(Proposal::to_json).collect();
            return Ok(
                json!({ "dry_run": true, "since": r.since, "proposals": list, "applied": [] }),
            );
        }
        let mut applied = Vec::new();
        for p in &proposals {
            applied.push(row_json(&self.change(p, source).await?));
        }
        if !applied.is_empty() {
            self.share().await;
        }
        Ok(json!({ "dry_run": false, "since": r.since, "applied": applied,
                   "note": if applied.is_empty() { "nothing to change: no rule matched the period's records" } else { "" } }))
    }

    /// An operator's value for one parameter, inside its bounds.
    pub async fn set(
        &self,
        server: &str,
        instance: Option<u32>,
        parameter: &str,
        value: &Value,
        source: &str,
    ) -> Result<TuningRow, Refusal> {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        let h = self
            .handle(server)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no server named {server:?}")))?;
        let param = Param::parse(parameter).ok_or_else(|| {
            let known: Vec<&str> = Param::ALL.iter().map(|p| p.name()).collect();
            bad(format!("parameter: {parameter:?} is not tunable ({})", known.join(", ")))
        })?;
        if !param.applies_to(&h.spec) {
            return Err(bad(format!(
                "parameter: {server} is an integration ({}), not an MCP server: it has no {}",
                h.spec.kind(),
                if param == Param::Weight { "balancing" } else { "calls" }
            )));
        }
        let instance = match (param, instance) {
            (Param::Weight, Some(i)) if i < h.spec.instance_count() => Some(i),
            (Param::Weight, Some(i)) => {
                return Err(bad(format!("instance: {server} has no instance {i}")))
            }
            (Param::Weight, None) => return Err(bad("instance: a weight is per instance".into())),
            (_, Some(_)) => return Err(bad(format!("instance: {} is server-wide", param.name()))),
            (_, None) => None,
        };
        let v = match value {
            Value::Number(n) if !param.is_duration() => n.as_f64(),
            Value::String(s) if param.is_duration() => {
                warden_config::parse_duration(s).ok().map(|d| d.as_secs_f64() * 1000.0)
            }
            Value::Number(n) if param.is_duration() => n.as_f64(),
            _ => None,
        }
        .ok_or_else(|| {
            bad(format!(
                "value: {value} is not a {}",
                if param.is_duration() { "duration (\"30s\") or milliseconds" } else { "number" }
            ))
        })?;
        let (lo, hi) = bounds(param, &h.spec);
        if !(lo..=hi).contains(&v) {
            return Err(bad(format!(
                "value: {} is outside the safe range {} – {} for {server}",
                param.show(v),
                param.show(lo),
                param.show(hi)
            )));
        }
        let _one = self.lock.lock().await;
        let from = param.current(&h.spec, &h.tuned(), instance);
        let p = Proposal {
            server: server.to_owned(),
            instance,
            param,
            from,
            to: v,
            rule: "operator",
            reason: format!("set by hand to {}", param.show(v)),
            evidence: json!({}),
        };
        let row = self.change(&p, source).await?;
        self.share().await;
        Ok(row)
    }

    /// Undoes change `id`: its parameter goes back to the value before it.
    pub async fn revert(&self, id: i64, source: &str) -> Result<TuningRow, Refusal> {
        let _one = self.lock.lock().await;
        let store = &self.reports.store;
        let row = store
            .tuning_change(id)
            .await
            .map_err(database)?
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no tuning change {id}")))?;
        if row.reverted_at.is_some() {
            return Err((StatusCode::CONFLICT, format!("change {id} is already reverted")));
        }
        let active = store.tuning_changes(Some(&row.server), true, 0).await.map_err(database)?;
        if let Some(newer) = active
            .iter()
            .find(|r| r.id > id && r.parameter == row.parameter && r.instance == row.instance)
        {
            return Err((
                StatusCode::CONFLICT,
                format!(
                    "change {} to the same parameter came after it: revert that first",
                    newer.id
                ),
            ));
        }
        self.undo(&row, &format!("reverted by {source}")).await?;
        self.share().await;
        store.tuning_change(id).await.map_err(database)?.ok_or_else(|| database("row vanished"))
    }

    /// Marks `row` reverted and puts its old value back (the caller holds the lock).
    async fn undo(&self, row: &TuningRow, why: &str) -> Result<(), Refusal> {
        self.reports
            .store
            .revert_tuning(&[row.id], why, chrono::Utc::now())
            .await
            .map_err(database)?;
        if let (Some(h), Some(param)) = (self.handle(&row.server), Param::parse(&row.parameter)) {
            let mut tuned = h.tuned();
            let now = param.current(&h.spec, &tuned, row.instance);
            param.set(&h.spec, &mut tuned, row.instance, row.old_value);
            h.set_tuned(tuned);
            self.emit(row, now, row.old_value, true, why);
        }
        Ok(())
    }

    /// Reverts every change in force (of one server), newest first.
    pub async fn reset(&self, server: Option<&str>, source: &str) -> Result<Vec<i64>, Refusal> {
        if let Some(s) = server {
            self.handle(s)
                .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no server named {s:?}")))?;
        }
        let _one = self.lock.lock().await;
        let active = self.reports.store.tuning_changes(server, true, 0).await.map_err(database)?;
        let mut done = Vec::new();
        for row in &active {
            self.undo(row, &format!("reset by {source}")).await?;
            done.push(row.id);
        }
        if !done.is_empty() {
            self.share().await;
        }
        Ok(done)
    }

    /// At start: puts back the changes in force whose configured value is unchanged; marks
    /// the others reverted. Returns how many parameters were restored.
    pub async fn restore(&self) -> Result<usize, String> {
        let _one = self.lock.lock().await;
        let store = &self.reports.store;
        let active = store.tuning_changes(None, true, 0).await.map_err(|e| e.to_string())?;
        // Newest first: the first row of each parameter holds the value in force.
        let mut newest: BTreeMap<(String, Option<u32>, String), &TuningRow> = BTreeMap::new();
        for row in &active {
            newest.entry((row.server.clone(), row.instance, row.parameter.clone())).or_insert(row);
        }
        let mut restored = 0;
        for ((server, instance, parameter), row) in newest {
            let chain: Vec<i64> = active
                .iter()
                .filter(|r| {
                    r.server == server && r.instance == instance && r.parameter == parameter
                })
                .map(|r| r.id)
                .collect();
            let why = match (self.handle(&server), Param::parse(&parameter)) {
                (Some(h), Some(param)) => {
                    let base = param.base(&h.spec);
                    let (lo, hi) = bounds(param, &h.spec);
                    if instance.is_some_and(|i| i >= h.spec.instance_count()) {
                        Some("the instance is no longer configured".to_owned())
                    } else if (base - row.base_value).abs() > 1e-9 {
                        Some(format!(
                            "the config changed ({} → {})",
                            param.show(row.base_value),
                            param.show(base)
                        ))
                    } else if !(lo..=hi).contains(&row.new_value) {
                        Some("outside the safe range".to_owned())
                    } else {
                        let mut tuned = h.tuned();
                        param.set(&h.spec, &mut tuned, instance, row.new_value);
                        h.set_tuned(tuned);
                        restored += 1;
                        None
                    }
                }
                _ => Some("the server is no longer configured".to_owned()),
            };
            if let Some(why) = why {
                tracing::info!(server, parameter, "a tuning change no longer applies: {why}");
                store
                    .revert_tuning(&chain, &why, chrono::Utc::now())
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(restored)
    }

    /// The values in force, the proposals and the history.
    pub async fn overview(
        &self,
        since: Option<&str>,
        server: Option<&str>,
    ) -> Result<Value, Refusal> {
        let r = self.range(since, server)?;
        let mut servers = Vec::new();
        let handles = self.reports.servers.handles();
        for h in handles.iter().filter(|h| server.is_none_or(|s| s == h.spec.name)) {
            let tuned = h.tuned();
            let mut params = Vec::new();
            for param in Param::ALL.into_iter().filter(|p| p.applies_to(&h.spec)) {
                let instances: Vec<Option<u32>> = if param == Param::Weight {
                    (0..h.spec.instance_count()).map(Some).collect()
                } else {
                    vec![None]
                };
                for instance in instances {
                    let (lo, hi) = bounds(param, &h.spec);
                    let value = param.current(&h.spec, &tuned, instance);
                    params.push(json!({
                        "parameter": param.name(), "instance": instance, "unit": param.unit(),
                        "configured": param.base(&h.spec), "value": value,
                        "configured_text": param.show(param.base(&h.spec)),
                        "value_text": param.show(value), "tuned": (value - param.base(&h.spec)).abs() > 1e-9,
                        "min": lo, "max": hi,
                    }));
                }
            }
            servers.push(json!({ "server": h.spec.name, "parameters": params }));
        }
        let _one = self.lock.lock().await;
        let proposals = self.proposals(&r).await?;
        let history = self
            .reports
            .store
            .tuning_changes(server, false, HISTORY_LIMIT)
            .await
            .map_err(database)?;
        Ok(json!({
            "auto": self.settings.borrow().auto,
            "since": r.since,
            "servers": servers,
            "proposals": proposals.iter().map(Proposal::to_json).collect::<Vec<_>>(),
            "history": history.iter().map(row_json).collect::<Vec<_>>(),
        }))
    }

    /// While `warden.tuning.auto` is on: applies what was learned every `interval` (both as
    /// the last reload left them).
    pub fn spawn_auto(&self, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let every = |t: &Self| t.settings.borrow().interval;
            let mut interval = every(&this);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if every(&this) != interval {
                    interval = every(&this);
                    tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                }
                // In a fleet, only the leader tunes; the others follow its changes.
                if !this.settings.borrow().auto || !*this.leading.borrow() {
                    continue;
                }
                if let Err((_, e)) = this.apply(None, None, false, "auto").await {
                    tracing::warn!("automatic tuning did not run: {e}");
                }
            }
        });
    }
}
