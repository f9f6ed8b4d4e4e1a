//! Typed events: one value per occurrence. [`EventBus::emit`] is the only place an event is
//! logged and published, so the log, the store and the live stream never disagree.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::{ExitInfo, FailureClass, InstanceId, InstanceState, Reason, Timestamp};

/// A W3C trace id (32 lowercase hex digits). An incident (crash → restart → recovery) keeps one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

impl TraceId {
    pub fn random() -> Self {
        // The all-zero id is invalid in W3C trace context.
        Self(rand::random::<u128>() | 1)
    }

    /// A W3C `traceparent` header value for this trace, with `span` as the parent id (an
    /// event's sequence number: never zero, which W3C forbids) and the sampled flag.
    pub fn traceparent(self, span: u64) -> String {
        format!("00-{self}-{:016x}-01", span.max(1))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What brought an instance back, recorded on the failure row it resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryAction {
    /// The process was started again.
    Restart,
    /// A hung process was killed, then started again.
    KillAndRestart,
    /// A remote server was connected again.
    Reconnect,
    /// Nothing was done: the instance recovered on its own.
    SelfRecovered,
    /// An operator reset or restarted it.
    Operator,
    /// It never recovered under this Warden: stopped by an operator, or Warden shut down.
    Abandoned,
}

impl RecoveryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::KillAndRestart => "kill_and_restart",
            Self::Reconnect => "reconnect",
            Self::SelfRecovered => "self_recovered",
            Self::Operator => "operator",
            Self::Abandoned => "abandoned",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    StateChanged {
        from: InstanceState,
        to: InstanceState,
        reason: Option<Reason>,
    },
    ProcessStarted {
        pid: u32,
    },
    ProcessExited {
        exit: ExitInfo,
    },
    Connected {
        protocol_version: String,
        server_name: String,
    },
    ProbeFailed {
        method: &'static str,
        reason: Reason,
    },
    /// A failure that opens an incident (a row in `integration_failures`).
    Failure {
        reason: Reason,
        context: String,
    },
    Recovered {
        class: FailureClass,
        action: RecoveryAction,
        downtime_seconds: f64,
    },
    RestartScheduled {
        attempt: u32,
        delay_ms: u64,
        next_retry_at: Timestamp,
    },
    RestartIntensityExceeded {
        restarts: u32,
        window_seconds: u64,
    },
    HangKilled {
        silent_ms: u64,
        pid: Option<u32>,
    },
    CatalogListed {
        tools: usize,
        resources: usize,
        prompts: usize,
        changed: bool,
        added: Vec<String>,
        removed: Vec<String>,
    },
    OperatorAction {
        action: String,
    },
    StoreDegraded {
        message: String,
    },
    StoreRecovered,
    /// An alert rule started firing (after its `for`).
    AlertFiring {
        #[serde(flatten)]
        alert: AlertInfo,
    },
    /// A firing alert resolved (after its `keep_firing_for`).
    AlertResolved {
        #[serde(flatten)]
        alert: AlertInfo,
        firing_seconds: f64,
    },
    /// Tuning changed a server's policy at run time (or undid a change).
    TuningChanged {
        change_id: i64,
        server: String,
        parameter: String,
        from: f64,
        to: f64,
        /// `true` when this undoes change `change_id`.
        reverted: bool,
        reason: String,
    },
    /// A new config was applied: what changed, server by server (`trigger`: `file`, `signal`,
    /// `api`).
    ConfigReloaded {
        trigger: String,
        summary: String,
        added: Vec<String>,
        removed: Vec<String>,
        restarted: Vec<String>,
        resized: Vec<String>,
        changed_in_place: Vec<String>,
        applied_live: Vec<String>,
        needs_restart: Vec<String>,
    },
    /// A new config was refused: nothing changed, the old one keeps running.
    ConfigRejected {
        trigger: String,
        errors: Vec<String>,
    },
    /// A client session's tool exposure changed (`analyze_prompt`, `expose_tools`).
    ExposureChanged {
        session: u64,
        /// `all`, `meta` or `chosen`.
        mode: String,
        categories: Vec<String>,
        /// Tools of the servers shown to the session now.
        tools: usize,
        /// What chose it: `static`, `llm` or `client`.
        method: String,
    },
}

/// What an alert event says about its alert.
#[derive(Clone, Debug, Serialize)]
pub struct AlertInfo {
    /// The rule's name.
    pub alert: String,
    pub severity: String,
    pub server: Option<String>,
    pub summary: String,
    pub fingerprint: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::StateChanged { .. } => "state_changed",
            Self::ProcessStarted { .. } => "process_started",
            Self::ProcessExited { .. } => "process_exited",
            Self::Connected { .. } => "connected",
            Self::ProbeFailed { .. } => "probe_failed",
            Self::Failure { .. } => "failure",
            Self::Recovered { .. } => "recovered",
            Self::RestartScheduled { .. } => "restart_scheduled",
            Self::RestartIntensityExceeded { .. } => "restart_intensity_exceeded",
            Self::HangKilled { .. } => "hang_killed",
            Self::CatalogListed { .. } => "catalog_listed",
            Self::OperatorAction { .. } => "operator_action",
            Self::StoreDegraded { .. } => "store_degraded",
            Self::StoreRecovered => "store_recovered",
            Self::AlertFiring { .. } => "alert_firing",
            Self::AlertResolved { .. } => "alert_resolved",
            Self::TuningChanged { .. } => "tuning_changed",
            Self::ConfigReloaded { .. } => "config_reloaded",
            Self::ConfigRejected { .. } => "config_rejected",
            Self::ExposureChanged { .. } => "exposure_changed",
        }
    }
}

/// One occurrence, stamped.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Position in this run's stream, from 1, set by [`EventBus::emit`] (0 until emitted).
    pub seq: u64,
    pub at: Timestamp,
    pub trace_id: TraceId,
    pub instance: Option<InstanceId>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn new(instance: Option<InstanceId>, trace_id: TraceId, kind: EventKind) -> Self {
        Self { seq: 0, at: crate::now(), trace_id, instance, kind }
    }

    fn log(&self) {
        let inst = self.instance.as_ref().map(ToString::to_string).unwrap_or_default();
        let trace = self.trace_id;
        match &self.kind {
            EventKind::StateChanged { from, to, reason } => {
                let reason = state_change_reason(*from, *to, reason.as_ref());
                match to {
                    InstanceState::Critical | InstanceState::Offline | InstanceState::Failed => {
                        tracing::warn!(instance = %inst, %from, %to, %reason, %trace, "state changed")
                    }
                    _ => {
                        tracing::info!(instance = %inst, %from, %to, %reason, %trace, "state changed")
                    }
                }
            }
            EventKind::ProcessStarted { pid } => {
                tracing::info!(instance = %inst, pid, %trace, "process started")
            }
            EventKind::ProcessExited { exit } if exit.is_success() => {
                tracing::info!(instance = %inst, pid = ?exit.pid, %trace, "process {}", exit.describe())
            }
            EventKind::ProcessExited { exit } => {
                tracing::warn!(instance = %inst, pid = ?exit.pid, code = ?exit.code, signal = ?exit.signal, %trace, "process {}", exit.describe())
            }
            EventKind::Connected { protocol_version, server_name } => {
                tracing::info!(instance = %inst, %protocol_version, %server_name, %trace, "connected")
            }
            EventKind::ProbeFailed { method, reason } => {
                tracing::info!(instance = %inst, method, %reason, %trace, "probe failed")
            }
            EventKind::Failure { reason, context } => {
                tracing::warn!(instance = %inst, %reason, %context, %trace, "failure")
            }
            EventKind::Recovered { class, action, downtime_seconds } => {
                tracing::info!(instance = %inst, %class, action = action.as_str(), downtime_seconds, %trace, "recovered")
            }
            EventKind::RestartScheduled { attempt, delay_ms, .. } => {
                tracing::info!(instance = %inst, attempt, delay_ms, %trace, "restart scheduled")
            }
            EventKind::RestartIntensityExceeded { restarts, window_seconds } => {
                tracing::error!(instance = %inst, restarts, window_seconds, %trace, "restart intensity exceeded; instance failed")
            }
            EventKind::HangKilled { silent_ms, pid } => {
                tracing::error!(instance = %inst, silent_ms, pid = ?pid, %trace, "hung instance killed")
            }
            EventKind::CatalogListed { tools, resources, prompts, changed, added, removed } => {
                tracing::info!(instance = %inst, tools, resources, prompts, changed, ?added, ?removed, %trace, "catalog listed")
            }
            EventKind::OperatorAction { action } => {
                tracing::info!(instance = %inst, %action, %trace, "operator action")
            }
            EventKind::StoreDegraded { message } => {
                tracing::error!(%message, "database degraded; supervision continues")
            }
            EventKind::StoreRecovered => tracing::info!("database writable again"),
            EventKind::AlertFiring { alert: a } => {
                tracing::warn!(instance = %inst, alert = %a.alert, severity = %a.severity, %trace, "alert firing: {}", a.summary)
            }
            EventKind::AlertResolved { alert: a, firing_seconds } => {
                tracing::info!(instance = %inst, alert = %a.alert, firing_seconds, %trace, "alert resolved: {}", a.summary)
            }
            EventKind::TuningChanged {
                change_id,
                server,
                parameter,
                from,
                to,
                reverted,
                reason,
            } => {
                tracing::info!(instance = %inst, server = %server, change_id, parameter = %parameter, from, to, reverted, %trace, "tuning: {reason}")
            }
            EventKind::ConfigReloaded { trigger, summary, .. } => {
                tracing::info!(%trigger, %trace, "config reloaded: {summary}")
            }
            EventKind::ExposureChanged { session, mode, categories, tools, method } => {
                tracing::info!(session, %mode, ?categories, tools, %method, "tool exposure changed")
            }
            EventKind::ConfigRejected { trigger, errors } => {
                tracing::error!(%trigger, %trace, "config rejected, the running config stays: {}", errors.join("; "))
            }
        }
    }
}

/// Fans every event out to the log, the live subscribers and the recorder (the store).
///
/// Emitting never blocks: a lagging live subscriber loses events (and is told so by the
/// broadcast channel); a full recorder queue drops the event and counts it.
#[derive(Debug)]
pub struct EventBus {
    live: broadcast::Sender<Arc<Event>>,
    recorder: Option<mpsc::Sender<Arc<Event>>>,
    dropped: AtomicU64,
    /// The last sequence number given out. Held while an event is handed on (two `try_send`s,
    /// never a wait), so the store and every subscriber see events in `seq` order.
    seq: Mutex<u64>,
}

impl EventBus {
    pub fn new(recorder: Option<mpsc::Sender<Arc<Event>>>) -> Arc<Self> {
        let (live, _) = broadcast::channel(1024);
        Arc::new(Self { live, recorder, dropped: AtomicU64::new(0), seq: Mutex::new(0) })
    }

    pub fn emit(&self, mut event: Event) {
        event.log();
        let mut seq = self.seq.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *seq += 1;
        event.seq = *seq;
        let event = Arc::new(event);
        if let Some(rec) = &self.recorder {
            if rec.try_send(Arc::clone(&event)).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        // No live subscriber is not an error.
        let _ = self.live.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Events the recorder could not take because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Why a state changed, for the log line: the recorded reason, or, for a change that has none
/// (a start, a climb after good probes), what it means. Never empty.
pub(crate) fn state_change_reason(
    from: InstanceState,
    to: InstanceState,
    reason: Option<&Reason>,
) -> String {
    if let Some(r) = reason {
        return r.to_string();
    }
    use InstanceState::*;
    match (from, to) {
        (_, Starting) => "starting: spawning or connecting, then the MCP handshake".to_owned(),
        (Starting, Warning) => {
            "handshake done: serving, healthy after consecutive good probes".to_owned()
        }
        (Starting, Healthy) => "handshake done".to_owned(),
        (_, Healthy) => "probes and calls succeed again".to_owned(),
        (_, Warning) => "recovering: probes succeed again".to_owned(),
        (_, Stopped) => "stopped by the operator or disabled".to_owned(),
        (_, Failed) => "restart intensity exceeded".to_owned(),
        (_, Offline) => "no live session".to_owned(),
        (_, Critical) => "probes or calls keep failing".to_owned(),
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    #[test]
    fn every_state_change_logs_a_reason() {
        use InstanceState::*;
        let all = [Starting, Healthy, Warning, Critical, Offline, Failed, Stopped];
        for from in all {
            for to in all {
                assert!(!state_change_reason(from, to, None).is_empty(), "{from} -> {to}");
            }
        }
        let r = Reason::new(FailureClass::Crash, "exited with signal 9");
        assert!(state_change_reason(Healthy, Offline, Some(&r)).contains("signal 9"));
    }
}
