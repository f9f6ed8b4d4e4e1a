//! The life of one instance: start → handshake → probe and watch → (crash | hang | stop) →
//! backoff → start again, until Warden shuts down.
//!
//! Probes and listings run concurrently with the watch for process exit and stdout EOF, so a
//! crash is noticed the moment the OS reports it, never behind a probe that is still waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use warden_config::{RestartMode, ServerSpec};
use warden_core::{
    Event, EventBus, EventKind, ExitInfo, FailureClass, InstanceId, InstanceState, MetricSample,
    Reason, RecoveryAction, TraceId,
};
use warden_health::{
    next_probe_delay, probe_timeout_verdict, should_kill_hung, Backoff, CallOutcome, HealthMachine,
    InstanceStats, ProbeVerdict, RestartIntensity, Thresholds, Transition,
};
use warden_metrics::InstanceMetrics;
use warden_upstream::{
    BoxFuture, Catalog, Connected, Connector, Session, SessionEvent, StopPolicy, UpstreamError,
};

use crate::InstanceView;

/// An operator's order to one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Stop gracefully and start again at once (resets the backoff).
    Restart,
    /// Stop gracefully and stay stopped.
    Stop,
    /// Start a stopped or failed instance.
    Start,
    /// Clear the restart history (backoff and intensity); a failed instance starts again.
    Reset,
}

/// How long a full listing of tools, resources and prompts may take.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);
/// Warden's own deadline on a probe or listing is the protocol timeout plus this: rmcp's
/// timeout can wait on sending a cancellation into a child's full stdin pipe.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// At most this many names of added or removed tools go into one event.
const DIFF_NAMES: usize = 50;

pub(crate) struct InstanceCtx {
    pub(crate) id: InstanceId,
    pub(crate) spec: Arc<ServerSpec>,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) samples: Option<mpsc::Sender<MetricSample>>,
    pub(crate) metrics_interval: Duration,
    pub(crate) view: watch::Sender<InstanceView>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) link: Arc<InstanceLink>,
    pub(crate) reports: mpsc::Receiver<CallReport>,
    pub(crate) shutdown: CancellationToken,
    /// Failure prediction, unless turned off.
    pub(crate) prediction: Option<warden_predict::PredictorConfig>,
    /// Run-time overrides of the probe policy (tuning).
    pub(crate) tuning: watch::Receiver<crate::Tuned>,
}

/// How often the predictor's verdict is read into the view.
const PREDICT_EVERY: Duration = Duration::from_secs(2);

/// The outcome of one real call routed to an instance: a passive health signal.
#[derive(Clone, Debug)]
pub struct CallReport {
    pub latency: Duration,
    pub outcome: CallOutcome,
}

/// What a router holds for each instance: the count of calls in flight (a busy server is not a
/// hung one) and a queue for call outcomes. Reporting never blocks.
pub struct InstanceLink {
    in_flight: AtomicUsize,
    reports: mpsc::Sender<CallReport>,
    session: RwLock<Option<Arc<dyn Session>>>,
    catalog: RwLock<Option<Arc<Catalog>>>,
    /// This instance's metric handles (the instance loop records into them too).
    pub(crate) metrics: InstanceMetrics,
}

impl std::fmt::Debug for InstanceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLink").field("in_flight", &self.in_flight()).finish_non_exhaustive()
    }
}

impl InstanceLink {
    pub(crate) fn new(reports: mpsc::Sender<CallReport>, metrics: InstanceMetrics) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            reports,
            session: RwLock::new(None),
            catalog: RwLock::new(None),
            metrics,
        }
    }

    /// The live MCP session, while the instance has one.
    pub fn session(&self) -> Option<Arc<dyn Session>> {
        self.session.read().expect("not poisoned").clone()
    }

    /// What the instance offered when last listed (kept while it is down).
    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.read().expect("not poisoned").clone()
    }

    pub(crate) fn set_session(&self, session: Option<Arc<dyn Session>>) {
        *self.session.write().expect("not poisoned") = session;
    }

    pub(crate) fn set_catalog(&self, catalog: Arc<Catalog>) {
        *self.catalog.write().expect("not poisoned") = Some(catalog);
    }

    /// Marks a call as started; the guard marks it finished when dropped.
    pub fn begin_call(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        CallGuard(Arc::clone(self))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Reports how a call ended. Dropped (never blocking) if the queue is full; counted in
    /// the metrics (latency, error class) either way.
    pub fn report(&self, latency: Duration, outcome: CallOutcome) {
        let failed = match &outcome {
            CallOutcome::Failed(reason) => Some(reason.class),
            CallOutcome::Ok | CallOutcome::Ignorable => None,
        };
        self.metrics.call(latency, failed);
        let _ = self.reports.try_send(CallReport { latency, outcome });
    }
}

/// A call in flight; dropping it ends the call.
#[derive(Debug)]
pub struct CallGuard(Arc<InstanceLink>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An open incident: from the first failure until the instance is healthy again.
struct Incident {
    trace: TraceId,
    class: FailureClass,
    opened: Instant,
    action: Option<RecoveryAction>,
}

/// How a session (or an attempt to start one) ended.
enum End {
    Shutdown,
    Stop,
    Restart,
    Failed { reason: Reason, exit: Option<ExitInfo>, action: RecoveryAction },
}

/// What woke an idle instance.
enum Woke {
    Shutdown,
    Command(Command),
    Elapsed,
}

pub(crate) async fn run(ctx: InstanceCtx) {
    let mut r = Runner::new(ctx);
    r.main().await;
    // Shutting down: an incident still open will not be resolved by this Warden.
    r.abandon_incident();
}

struct Runner {
    ctx: InstanceCtx,
    machine: HealthMachine,
    stats: InstanceStats,
    backoff: Backoff,
    intensity: RestartIntensity,
    /// The backoff's exponent: +1 per restart, −1 per [`DECAY_EVERY`] the instance served
    /// (healthy or warning), 0 after `reset_after` healthy or an operator's action. The views'
    /// `attempt` is its ceiling.
    level: f64,
    /// How long the current session has served so far (its routable time).
    served: Duration,
    /// The process group's memory, read off the runtime.
    rss: crate::rss::Sampler,
    restarts: u32,
    incident: Option<Incident>,
    session_trace: TraceId,
    catalog: Option<Catalog>,
    next_sample: Instant,
    /// The current start is a probation restart of a failed instance: failing it is failed
    /// again. Cleared once the instance is healthy.
    probation_try: bool,
    predictor: Option<crate::predict::Predictors>,
    /// The predictor's clock starts here.
    origin: Instant,
    next_predict: Instant,
}

impl Runner {
    fn new(ctx: InstanceCtx) -> Self {
        let h = &ctx.spec.health;
        let r = &ctx.spec.restart;
        Self {
            machine: HealthMachine::new(Thresholds {
                unhealthy: h.unhealthy_threshold,
                healthy: h.healthy_threshold,
            }),
            stats: InstanceStats::new(Instant::now()),
            backoff: Backoff::new(r.backoff.clone()),
            intensity: RestartIntensity::new(r.max_restarts, r.window),
            level: 0.0,
            served: Duration::ZERO,
            rss: Default::default(),
            restarts: 0,
            incident: None,
            session_trace: TraceId::random(),
            catalog: None,
            probation_try: false,
            next_sample: Instant::now() + ctx.metrics_interval,
            predictor: ctx.prediction.clone().map(|cfg| {
                let mut limits = warden_predict::Limits::new(ctx.spec.timeout);
                limits.memory_limit_bytes = ctx.spec.memory_limit;
                crate::predict::Predictors::new(limits, cfg)
            }),
            origin: Instant::now(),
            next_predict: Instant::now() + PREDICT_EVERY,
            ctx,
        }
    }

    async fn main(&mut self) {
        // A standby waits stopped until it is needed.
        let mut stopped = self.ctx.spec.disabled || self.ctx.spec.is_standby(self.ctx.id.index());
        let mut failed = false;
        let mut first = true;
        loop {
            if stopped {
                self.abandon_incident();
                self.set_state(InstanceState::Stopped, None);
                match self.idle(None).await {
                    Woke::Shutdown => return,
                    Woke::Command(Command::Stop) | Woke::Elapsed => continue,
                    Woke::Command(c) => {
                        self.operator(c);
                        stopped = false;
                    }
                }
            }
            if failed {
                let probation = self.ctx.spec.restart.probation.map(|p| Instant::now() + p);
                let reason = self.view().reason;
                let retry_at = probation.map(to_wall);
                self.set_state_with(InstanceState::Failed, reason, |v| v.next_retry_at = retry_at);
                match self.idle(probation).await {
                    Woke::Shutdown => return,
                    Woke::Command(Command::Stop) => {
                        stopped = true;
                        failed = false;
                        continue;
                    }
                    Woke::Command(c) => {
                        self.operator(c);
                        failed = false;
                    }
                    Woke::Elapsed => {
                        // A slow probation restart: one try; failing it is failed again.
                        failed = false;
                        self.probation_try = true;
                    }
                }
            }
            if !first {
                self.restarts += 1;
            }
            first = false;
            match self.run_once().await {
                End::Shutdown => return,
                End::Stop => stopped = true,
                End::Restart => {
                    self.level = 0.0;
                    if let Some(i) = self.incident.as_mut() {
                        i.action = Some(RecoveryAction::Operator);
                    }
                }
                End::Failed { reason, exit, action } => {
                    self.ctx.link.metrics.failure(reason.class);
                    let clean = exit.as_ref().is_some_and(ExitInfo::is_success);
                    self.open_incident(&reason, action);
                    // The backoff forgives the time this session served: a server that crashes
                    // every 20 s comes back in 0.5 s each time, an immediate crash loop still
                    // doubles its delay every start.
                    let served = std::mem::take(&mut self.served);
                    self.level = decayed(self.level, served);
                    let mode = self.ctx.spec.restart.mode;
                    let restart =
                        !(mode == RestartMode::Never || (mode == RestartMode::OnFailure && clean));
                    // Decide first, so the view changes once: offline, with its retry time.
                    let next = if !restart {
                        Next::Wait
                    } else if std::mem::take(&mut self.probation_try) {
                        Next::Failed { exceeded: false }
                    } else if self.ctx.spec.is_stdio() && self.intensity.record(Instant::now()) {
                        // Remote servers cannot be crash-looped by us; they keep being retried.
                        Next::Failed { exceeded: true }
                    } else {
                        let delay = self.backoff.delay_random_at(self.level);
                        self.level += 1.0;
                        Next::Retry(delay, Instant::now() + delay)
                    };
                    let attempt = self.attempt();
                    let retry_at = match next {
                        Next::Retry(_, at) => Some(to_wall(at)),
                        _ => None,
                    };
                    self.set_state_with(InstanceState::Offline, Some(reason.clone()), |v| {
                        v.pid = None;
                        if exit.is_some() {
                            v.last_exit = exit.clone();
                        }
                        v.attempt = attempt;
                        v.next_retry_at = retry_at;
                    });
                    match next {
                        Next::Wait => {
                            // Not to be restarted: wait for an operator.
                            match self.idle(None).await {
                                Woke::Shutdown => return,
                                Woke::Command(Command::Stop) | Woke::Elapsed => stopped = true,
                                Woke::Command(c) => self.operator(c),
                            }
                        }
                        Next::Failed { exceeded } => {
                            if exceeded {
                                let restarts =
                                    self.intensity.count(Instant::now()).saturating_sub(1);
                                let window_seconds = self.ctx.spec.restart.window.as_secs();
                                self.emit(EventKind::RestartIntensityExceeded {
                                    restarts,
                                    window_seconds,
                                });
                            }
                            failed = true;
                        }
                        Next::Retry(delay, at) => {
                            self.emit(EventKind::RestartScheduled {
                                attempt,
                                delay_ms: delay.as_millis() as u64,
                                next_retry_at: to_wall(at),
                            });
                            match self.idle(Some(at)).await {
                                Woke::Shutdown => return,
                                Woke::Command(Command::Stop) => stopped = true,
                                Woke::Command(c) => self.operator(c),
                                Woke::Elapsed => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// The restart attempt the views show: the backoff's exponent, rounded up.
    fn attempt(&self) -> u32 {
        self.level.ceil() as u32
    }

    fn operator(&mut self, c: Command) {
        self.emit(EventKind::OperatorAction { action: format!("{c:?}").to_lowercase() });
        if matches!(c, Command::Reset | Command::Restart | Command::Start) {
            self.intensity.clear();
            self.level = 0.0;
            // The retry time goes with the start that follows (one update with `starting`).
            self.update(|v| v.attempt = 0);
            if let Some(i) = self.incident.as_mut() {
                i.action = Some(RecoveryAction::Operator);
            }
        }
    }

    /// Waits for a command, shutdown, or `until`; keeps sampling metrics meanwhile.
    async fn idle(&mut self, until: Option<Instant>) -> Woke {
        loop {
            let deadline =
                until.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return Woke::Shutdown,
                c = self.ctx.commands.recv() => match c {
                    Some(c) => return Woke::Command(c),
                    None => return Woke::Shutdown,
                },
                // Calls that reach an instance without a session say nothing about its health.
                Some(_) = self.ctx.reports.recv() => {}
                _ = sleep_until(deadline), if until.is_some() => return Woke::Elapsed,
                _ = sleep_until(self.next_sample) => self.sample(),
            }
        }
    }

    async fn run_once(&mut self) -> End {
        self.machine.reset();
        self.session_trace = TraceId::random();
        self.set_state_with(InstanceState::Starting, None, |v| {
            v.next_retry_at = None;
            v.pid = None;
        });
        // Call outcomes from the previous session say nothing about this one.
        while self.ctx.reports.try_recv().is_ok() {}
        let deadline = self.ctx.spec.health.startup_timeout;
        let connector = Arc::clone(&self.ctx.connector);
        let mut connect = connector.connect(self.ctx.id.clone(), deadline);
        // Dropping `connect` (stop, restart, shutdown) kills a half-started child.
        let result = loop {
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return End::Shutdown,
                c = self.ctx.commands.recv() => match c {
                    Some(Command::Stop) => { self.operator(Command::Stop); return End::Stop }
                    Some(Command::Restart) => { self.operator(Command::Restart); return End::Restart }
                    Some(c) => self.operator(c),
                    None => {}
                },
                r = &mut connect => break r,
            }
        };
        match result {
            Ok(conn) => self.run_session(conn).await,
            Err(e) => {
                let reason = e.reason();
                End::Failed { reason, exit: None, action: self.restart_action() }
            }
        }
    }

    /// The session's transport ended (stdout EOF, a closed connection): wait briefly for a
    /// child's exit status to say why, then end the session.
    async fn closed(
        &mut self,
        events: &mut mpsc::Receiver<SessionEvent>,
        pid: Option<u32>,
        reason: Reason,
    ) -> End {
        let exit = if pid.is_some() {
            wait_exited(events, Duration::from_millis(500)).await
        } else {
            None
        };
        let reason = match &exit {
            Some(e) => {
                Reason::new(FailureClass::Crash, format!("{} ({})", e.describe(), reason.message))
            }
            None => reason,
        };
        // The incident opens first, so the exit is recorded under its trace id.
        let action = self.restart_action();
        self.open_incident(&reason, action);
        if let Some(exit) = &exit {
            self.emit(EventKind::ProcessExited { exit: exit.clone() });
        }
        End::Failed { reason, exit, action }
    }

    /// Closes an open incident that will not recover under this Warden (stopped, shutting down).
    fn abandon_incident(&mut self) {
        if let Some(i) = self.incident.take() {
            let downtime_seconds = i.opened.elapsed().as_secs_f64();
            self.emit_traced(
                i.trace,
                EventKind::Recovered {
                    class: i.class,
                    action: RecoveryAction::Abandoned,
                    downtime_seconds,
                },
            );
        }
    }

    fn restart_action(&self) -> RecoveryAction {
        if self.ctx.spec.is_stdio() {
            RecoveryAction::Restart
        } else {
            RecoveryAction::Reconnect
        }
    }

    fn stop_policy(&self) -> StopPolicy {
        StopPolicy {
            grace: self.ctx.spec.restart.stop_grace,
            term: self.ctx.spec.restart.term_timeout,
        }
    }

    async fn run_session(&mut self, conn: Connected) -> End {
        let Connected { session, mut events, info } = conn;
        self.predictor_restart();
        let session: Arc<dyn Session> = Arc::from(session);
        // Routers reach the live session through the link while it lasts.
        self.ctx.link.set_session(Some(Arc::clone(&session)));
        let session: &dyn Session = &*session;
        let pid = session.pid();
        let protocol = info.protocol_version.clone();
        self.update(|v| {
            v.pid = pid;
            // An integration (a check) speaks no MCP.
            v.protocol_version = (!protocol.is_empty()).then_some(protocol);
        });
        if let Some(pid) = pid {
            self.emit(EventKind::ProcessStarted { pid });
        }
        self.emit(EventKind::Connected {
            protocol_version: info.protocol_version.clone(),
            server_name: info.server_name.clone(),
        });
        if let Some(t) = self.machine.on_connected() {
            self.apply(t);
        }
        let activity = session.activity();
        let mut policy = self.ctx.tuning.borrow_and_update().health(&self.ctx.spec.health);
        let method = policy.method;
        let mut catalog: Option<BoxFuture<'_, Result<Catalog, UpstreamError>>> =
            Some(list(session));
        let mut relist = false;
        let mut next_hang_check = Instant::now() + Duration::from_secs(1);
        let mut probe: Option<BoxFuture<'_, Result<Duration, UpstreamError>>> = None;
        let mut probe_bytes_before = 0;
        let mut next_probe =
            Instant::now() + policy.interval.mul_f64(policy.jitter * rand::random::<f64>());
        let mut next_catalog = Instant::now() + policy.catalog_interval;
        let mut healthy_since: Option<Instant> = None;
        let mut serving_since: Option<Instant> = None;

        let end = loop {
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => break End::Shutdown,
                ev = events.recv() => match ev {
                    Some(SessionEvent::Exited(exit)) => {
                        let reason = Reason::new(FailureClass::Crash, exit.describe());
                        // The incident opens first, so the exit is recorded under its trace id.
                        self.open_incident(&reason, RecoveryAction::Restart);
                        self.emit(EventKind::ProcessExited { exit: exit.clone() });
                        break End::Failed { reason, exit: Some(exit), action: RecoveryAction::Restart };
                    }
                    Some(SessionEvent::Closed(reason)) => break self.closed(&mut events, pid, reason).await,
                    Some(SessionEvent::ListChanged) => {
                        // A change announced during a listing gets a listing of its own.
                        if catalog.is_none() {
                            catalog = Some(list(session));
                        } else {
                            relist = true;
                        }
                    }
                    None => break End::Failed { reason: Reason::new(FailureClass::Crash, "session ended"), exit: None, action: self.restart_action() },
                },
                c = self.ctx.commands.recv() => match c {
                    Some(Command::Stop) => { self.operator(Command::Stop); break End::Stop }
                    Some(Command::Restart) => { self.operator(Command::Restart); break End::Restart }
                    Some(c @ Command::Reset) => self.operator(c),
                    Some(Command::Start) | None => {}
                },
                Some(report) = self.ctx.reports.recv() => self.on_call(report),
                res = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    probe = None;
                    match self.on_probe_result(res, activity.bytes() > probe_bytes_before, activity.since_last_byte()) {
                        Some(lost) => break self.closed(&mut events, pid, lost).await,
                        None => {
                            if should_kill_hung(&policy, activity.since_last_byte(), self.machine.probe_failures()) {
                                break self.hang(session, &mut events, activity.since_last_byte()).await;
                            }
                            next_probe = Instant::now() + next_probe_delay(&policy, self.machine.probe_failures(), rand::random());
                        }
                    }
                },
                res = async { catalog.as_mut().expect("guarded").await }, if catalog.is_some() => {
                    catalog = None;
                    self.on_catalog(res);
                    if std::mem::take(&mut relist) {
                        catalog = Some(list(session));
                    }
                },
                _ = sleep_until(next_probe), if probe.is_none() => {
                    probe_bytes_before = activity.bytes();
                    // Warden's own deadline: a probe stuck behind a full stdin pipe still ends.
                    let timeout = policy.timeout;
                    // For OpenTelemetry export (`warden --features otlp`); free when off.
                    let span = tracing::debug_span!(
                        target: "warden::trace",
                        "mcp.probe",
                        instance = %self.ctx.id,
                        method = ?method,
                        trace_id = self.incident.as_ref().map(|i| tracing::field::display(i.trace)),
                    );
                    probe = Some(Box::pin(tracing::Instrument::instrument(async move {
                        tokio::time::timeout(timeout + DEADLINE_MARGIN, session.probe(method, timeout))
                            .await
                            .unwrap_or(Err(UpstreamError::Timeout(timeout)))
                    }, span)));
                },
                _ = sleep_until(next_catalog), if catalog.is_none() => {
                    next_catalog = Instant::now() + policy.catalog_interval;
                    catalog = Some(list(session));
                },
                // The hang check runs on its own clock, not only when a probe ends.
                _ = sleep_until(next_hang_check) => {
                    next_hang_check = Instant::now() + Duration::from_secs(1);
                    if should_kill_hung(&policy, activity.since_last_byte(), self.machine.probe_failures()) {
                        break self.hang(session, &mut events, activity.since_last_byte()).await;
                    }
                },
                _ = sleep_until(self.next_sample) => self.sample(),
                _ = sleep_until(self.next_predict) => self.predict(),
                // Tuning changed the probe policy: the next probe follows it.
                Ok(()) = self.ctx.tuning.changed() => {
                    let (tuned, call_timeout) = {
                        let t = self.ctx.tuning.borrow_and_update();
                        (t.health(&self.ctx.spec.health), t.call_timeout(&self.ctx.spec))
                    };
                    if let Some(p) = self.predictor.as_mut() {
                        p.set_call_timeout(call_timeout);
                    }
                    if probe.is_none() && tuned.interval < policy.interval {
                        next_probe = next_probe.min(Instant::now() + tuned.interval);
                    }
                    policy = tuned;
                },
                _ = sleep_until(healthy_since.unwrap_or_else(Instant::now) + self.ctx.spec.restart.reset_after),
                    if healthy_since.is_some() && self.level > 0.0 => {}
            }
            // Sustained health resets the backoff.
            if self.machine.state() == InstanceState::Healthy {
                let since = *healthy_since.get_or_insert_with(Instant::now);
                if self.level > 0.0 && since.elapsed() >= self.ctx.spec.restart.reset_after {
                    self.level = 0.0;
                    self.update(|v| v.attempt = 0);
                }
            } else {
                healthy_since = None;
            }
            // Time served (healthy or warning) decays the backoff.
            let now = Instant::now();
            match (self.machine.state(), serving_since) {
                (InstanceState::Healthy | InstanceState::Warning, None) => {
                    serving_since = Some(now)
                }
                (InstanceState::Healthy | InstanceState::Warning, Some(_)) => {}
                (_, Some(since)) => {
                    self.served += now - since;
                    serving_since = None;
                }
                (_, None) => {}
            }
        };
        if let Some(since) = serving_since {
            self.served += Instant::now() - since;
        }
        drop(probe);
        drop(catalog);
        self.ctx.link.set_session(None);
        match &end {
            End::Shutdown | End::Stop | End::Restart => {
                let exit = session.shutdown(self.stop_policy()).await;
                if let Some(exit) = exit {
                    self.emit(EventKind::ProcessExited { exit: exit.clone() });
                    self.update(|v| v.last_exit = Some(exit));
                }
                self.update(|v| v.pid = None);
            }
            End::Failed { .. } => {
                // Whatever is left of it goes; the exit watcher also sweeps its process group.
                session.kill();
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    session.shutdown(StopPolicy { grace: Duration::ZERO, term: Duration::ZERO }),
                )
                .await;
            }
        }
        end
    }

    /// Kills a hung child and waits (briefly) for its exit status.
    async fn hang(
        &mut self,
        session: &dyn Session,
        events: &mut mpsc::Receiver<SessionEvent>,
        silent: Duration,
    ) -> End {
        let pid = session.pid();
        self.emit(EventKind::HangKilled { silent_ms: silent.as_millis() as u64, pid });
        let reason = Reason::new(
            FailureClass::Hang,
            format!("no answer and no output for {}s", silent.as_secs()),
        );
        if pid.is_none() {
            return End::Failed { reason, exit: None, action: RecoveryAction::Reconnect };
        }
        session.kill();
        let exit = wait_exited(events, Duration::from_secs(2)).await;
        if let Some(exit) = &exit {
            self.emit(EventKind::ProcessExited { exit: exit.clone() });
        }
        End::Failed { reason, exit, action: RecoveryAction::KillAndRestart }
    }

    fn on_probe_result(
        &mut self,
        res: Result<Duration, UpstreamError>,
        bytes_during: bool,
        since_last_byte: Duration,
    ) -> Option<Reason> {
        let now = Instant::now();
        self.update(|v| v.last_check = Some(warden_core::now()));
        match res {
            Ok(rtt) => {
                self.ctx.link.metrics.probe_ok(rtt);
                self.stats.record_ok(now, rtt);
                self.observe(now, false, Some(rtt), true);
                self.update(|v| v.latency_ms = Some(rtt.as_secs_f64() * 1000.0));
                if let Some(t) = self.machine.on_probe_ok(now) {
                    self.apply(t);
                }
                None
            }
            Err(e @ UpstreamError::Timeout(_)) => {
                let verdict = probe_timeout_verdict(
                    &self.ctx.spec.health,
                    bytes_during,
                    since_last_byte,
                    self.ctx.link.in_flight() > 0,
                );
                if verdict == ProbeVerdict::Busy {
                    tracing::debug!(instance = %self.ctx.id, "probe timed out while the server was sending; busy, not hung");
                    return None;
                }
                let timeout =
                    self.ctx.tuning.borrow().probe_timeout.unwrap_or(self.ctx.spec.health.timeout);
                self.observe(now, false, Some(timeout), false);
                self.probe_failed("ping", e.reason());
                None
            }
            Err(e) if e.is_connection_loss() => {
                let reason = e.reason();
                self.stats.record_error(now);
                self.emit(EventKind::ProbeFailed { method: "ping", reason: reason.clone() });
                if let Some(t) = self.machine.on_connection_lost(reason.clone()) {
                    self.apply(t);
                }
                // The session is gone: a remote server is reconnected, a child restarted.
                Some(reason)
            }
            Err(e) => {
                self.observe(now, false, None, false);
                self.probe_failed("ping", e.reason());
                None
            }
        }
    }

    /// Feeds the predictor one probe or call outcome (with its latency when it has one).
    fn observe(&mut self, now: Instant, call: bool, latency: Option<Duration>, ok: bool) {
        let t = now.saturating_duration_since(self.origin).as_secs_f64();
        if let Some(p) = &mut self.predictor {
            p.observe(t, call, latency.map(|l| l.as_secs_f64()), ok);
        }
    }

    /// Reads the predictor's verdict into the view; a predicted failure drains the instance.
    fn predict(&mut self) {
        let now = Instant::now();
        self.next_predict = now + PREDICT_EVERY;
        let t = now.saturating_duration_since(self.origin).as_secs_f64();
        let Some(p) = &mut self.predictor else { return };
        let a = p.evaluate(t);
        let draining = a.predicted.is_some() || a.rss_exhaustion.is_some();
        // A drift or a forecast failure holds the instance in `warning` (docs/contract.md, default policy).
        if let Some(t) = self.machine.on_degraded(degradation(&a)) {
            self.apply(t);
        }
        let shown = (!a.is_quiet()).then_some(a);
        if shown.is_some() || self.ctx.view.borrow().prediction.is_some() {
            self.update(|v| {
                v.prediction = shown;
                v.draining = draining;
            });
        }
    }

    /// A new process or connection: its trends start over (the server's baseline stays).
    fn predictor_restart(&mut self) {
        if let Some(p) = &mut self.predictor {
            p.restart();
        }
        if self.ctx.view.borrow().prediction.is_some() {
            self.update(|v| {
                v.prediction = None;
                v.draining = false;
            });
        }
    }

    /// A passive signal: how a real call ended.
    fn on_call(&mut self, report: CallReport) {
        let now = Instant::now();
        match &report.outcome {
            // The server answered, even if the tool said no.
            CallOutcome::Ok | CallOutcome::Ignorable => {
                self.stats.record_ok(now, report.latency);
                self.observe(now, true, Some(report.latency), true);
            }
            CallOutcome::Failed(reason) => {
                self.stats.record_error(now);
                let timed_out = reason.class == warden_core::FailureClass::Timeout;
                self.observe(now, true, timed_out.then_some(report.latency), false);
            }
        }
        if let Some(t) = self.machine.on_call(report.outcome, now) {
            self.apply(t);
        }
    }

    fn probe_failed(&mut self, method: &'static str, reason: Reason) {
        self.stats.record_error(Instant::now());
        self.emit(EventKind::ProbeFailed { method, reason: reason.clone() });
        match self.machine.on_probe_failed(reason.clone()) {
            Some(t) => self.apply(t),
            // Already warning or critical: the view says the latest error, not the first.
            None if matches!(
                self.view().state,
                InstanceState::Warning | InstanceState::Critical
            ) =>
            {
                self.update(|v| v.reason = Some(reason));
            }
            None => {}
        }
    }

    fn on_catalog(&mut self, res: Result<Catalog, UpstreamError>) {
        match res {
            Ok(cat) => {
                let (changed, added, removed) = match &self.catalog {
                    Some(old) => {
                        let d = cat.diff(old);
                        (!d.is_empty(), d.added, d.removed)
                    }
                    None => (false, vec![], vec![]),
                };
                let (tools, resources, prompts) =
                    (cat.tools.len(), cat.resources.len(), cat.prompts.len());
                self.update(|v| {
                    v.tools = tools;
                    v.resources = resources;
                    v.prompts = prompts;
                });
                self.emit(EventKind::CatalogListed {
                    tools,
                    resources,
                    prompts,
                    changed,
                    added: capped(added),
                    removed: capped(removed),
                });
                self.ctx.link.set_catalog(Arc::new(cat.clone()));
                self.catalog = Some(cat);
            }
            Err(UpstreamError::Timeout(_)) if self.machine.state() == InstanceState::Critical => {}
            Err(e) => self.probe_failed("tools/list", e.reason()),
        }
    }

    fn apply(&mut self, t: Transition) {
        self.set_state(t.to, t.reason);
    }

    fn set_state(&mut self, to: InstanceState, reason: Option<Reason>) {
        self.set_state_with(to, reason, |_| {});
    }

    /// Changes the state and, in the same single update of the view, whatever else belongs to
    /// the change (a retry time, an exit, a cleared pid): a reader never sees half of it.
    fn set_state_with(
        &mut self,
        to: InstanceState,
        reason: Option<Reason>,
        also: impl FnOnce(&mut InstanceView),
    ) {
        let from = self.view().state;
        let now = Instant::now();
        self.stats.observe_state(now, to.is_routable());
        let snap = self.stats.snapshot(now);
        if from == to {
            self.update(|v| {
                v.reason = reason;
                v.stats = snap;
                also(v);
            });
            return;
        }
        if to == InstanceState::Critical {
            if let Some(r) = &reason {
                self.open_incident(r, RecoveryAction::SelfRecovered);
            }
        }
        let wall = warden_core::now();
        let r2 = reason.clone();
        self.update(|v| {
            v.state = to;
            v.since = wall;
            v.reason = r2;
            v.stats = snap;
            also(v);
        });
        self.emit(EventKind::StateChanged { from, to, reason });
        if to == InstanceState::Healthy {
            self.probation_try = false;
            if let Some(i) = self.incident.take() {
                let action = i.action.unwrap_or(RecoveryAction::SelfRecovered);
                let downtime_seconds = now.duration_since(i.opened).as_secs_f64();
                self.emit_traced(
                    i.trace,
                    EventKind::Recovered { class: i.class, action, downtime_seconds },
                );
            }
        }
    }

    /// Opens an incident (a failure row) unless one is open; a later, stronger action
    /// (restart after a self-recovery wait) replaces the recorded one.
    fn open_incident(&mut self, reason: &Reason, action: RecoveryAction) {
        match self.incident.as_mut() {
            Some(i) => {
                if action != RecoveryAction::SelfRecovered
                    && i.action != Some(RecoveryAction::Operator)
                {
                    i.action = Some(action);
                }
                // The incident got worse in kind (a stall that became a hang kill, a crash):
                // that is a failure of its own, recorded under the same trace.
                if i.class != reason.class {
                    i.class = reason.class;
                    let trace = i.trace;
                    let context = format!("state {}; escalated", self.view().state);
                    self.emit_traced(trace, EventKind::Failure { reason: reason.clone(), context });
                }
            }
            None => {
                let trace = TraceId::random();
                self.incident = Some(Incident {
                    trace,
                    class: reason.class,
                    opened: Instant::now(),
                    action: (action != RecoveryAction::SelfRecovered).then_some(action),
                });
                let context = format!("state {}", self.view().state);
                self.emit_traced(trace, EventKind::Failure { reason: reason.clone(), context });
            }
        }
    }

    fn sample(&mut self) {
        let now = Instant::now();
        self.next_sample = now + self.ctx.metrics_interval;
        let snap = self.stats.snapshot(now);
        let restarts = self.restarts;
        // Each child leads its own process group: its RSS is the group's.
        let rss = self.rss.sample(self.view().pid.filter(|_| self.ctx.spec.is_stdio()));
        if let (Some(bytes), Some(p)) = (rss, &mut self.predictor) {
            p.observe_rss(now.saturating_duration_since(self.origin).as_secs_f64(), bytes);
        }
        self.update(|v| {
            v.stats = snap.clone();
            v.restarts = restarts;
            v.rss_bytes = rss;
        });
        if let Some(tx) = &self.ctx.samples {
            let v = self.view();
            let _ = tx.try_send(MetricSample {
                instance: self.ctx.id.clone(),
                at: warden_core::now(),
                state: v.state,
                response_time_ms: snap.p50_ms,
                p95_ms: snap.p95_ms,
                p99_ms: snap.p99_ms,
                error_rate: snap.error_rate,
                availability: snap.availability,
                throughput: snap.throughput,
            });
        }
    }

    fn view(&self) -> InstanceView {
        self.ctx.view.borrow().clone()
    }

    fn update(&self, f: impl FnOnce(&mut InstanceView)) {
        let restarts = self.restarts;
        #[cfg(test)]
        let probation = self.ctx.spec.restart.probation.is_some();
        self.ctx.view.send_modify(|v| {
            f(v);
            v.restarts = restarts;
            #[cfg(test)]
            if !consistent(v, probation) {
                INCONSISTENT.fetch_add(1, Ordering::SeqCst);
                tracing::error!(view = ?v, "a view was published half-updated");
            }
        });
    }

    fn emit(&self, kind: EventKind) {
        let trace = self.incident.as_ref().map_or(self.session_trace, |i| i.trace);
        self.emit_traced(trace, kind);
    }

    fn emit_traced(&self, trace: TraceId, kind: EventKind) {
        self.ctx.bus.emit(Event::new(Some(self.ctx.id.clone()), trace, kind));
    }
}

/// Lists a session's catalog under Warden's own deadline.
fn list(session: &dyn Session) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
    Box::pin(async move {
        tokio::time::timeout(
            CATALOG_TIMEOUT + DEADLINE_MARGIN,
            session.list_catalog(CATALOG_TIMEOUT),
        )
        .await
        .unwrap_or(Err(UpstreamError::Timeout(CATALOG_TIMEOUT)))
    })
}

/// At most [`DIFF_NAMES`] names, then how many more there were.
fn capped(mut names: Vec<String>) -> Vec<String> {
    if names.len() > DIFF_NAMES {
        let more = names.len() - DIFF_NAMES;
        names.truncate(DIFF_NAMES);
        names.push(format!("… and {more} more"));
    }
    names
}

async fn wait_exited(
    events: &mut mpsc::Receiver<SessionEvent>,
    within: Duration,
) -> Option<ExitInfo> {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(SessionEvent::Exited(e))) => return Some(e),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The wall-clock time of a monotonic instant (for `next_retry_at`).
fn to_wall(at: Instant) -> warden_core::Timestamp {
    let ahead = at.saturating_duration_since(Instant::now());
    warden_core::now() + chrono::Duration::from_std(ahead).unwrap_or_default()
}

/// Why the predictor thinks an instance is degrading, as a state reason (`None`: it does not).
fn degradation(a: &warden_predict::Assessment) -> Option<Reason> {
    use warden_predict::Signal;
    let class = |s: Signal| match s {
        Signal::Latency => FailureClass::Timeout,
        Signal::ErrorRatio => FailureClass::ServerError,
        Signal::Rss => FailureClass::Crash,
    };
    let value = |s: Signal, v: f64| match s {
        Signal::Latency if v >= 1.0 => format!("{v:.1} s"),
        Signal::Latency => format!("{:.1} ms", v * 1000.0),
        Signal::ErrorRatio => format!("{:.0} %", v * 100.0),
        Signal::Rss => format!("{:.0} MiB", v / 1_048_576.0),
    };
    if let Some(p) = &a.predicted {
        let when = p.eta_seconds.map_or("soon".to_owned(), |s| format!("in {s:.0} s"));
        return Some(Reason::new(
            class(p.signal),
            format!(
                "{} forecast to reach its limit ({}) {when}",
                p.signal.as_str().replace('_', " "),
                value(p.signal, p.limit)
            ),
        ));
    }
    if let Some(e) = &a.rss_exhaustion {
        let when = e.eta_seconds.map_or("soon".to_owned(), |s| format!("in {s:.0} s"));
        return Some(Reason::new(
            FailureClass::Crash,
            format!(
                "memory forecast to reach its limit ({}) {when}",
                value(Signal::Rss, e.limit_bytes as f64)
            ),
        ));
    }
    a.drift.map(|d| {
        Reason::new(
            class(d.signal),
            format!(
                "{} drifting up: {} → {}",
                d.signal.as_str().replace('_', " "),
                value(d.signal, d.baseline),
                value(d.signal, d.recent)
            ),
        )
    })
}

/// What the runner does after a session ended in failure.
enum Next {
    /// Not restarted by policy: wait for an operator.
    Wait,
    /// Crash-looping (`exceeded`: the restart intensity was just exceeded) or a failed
    /// probation try: `failed`.
    Failed { exceeded: bool },
    /// Restart after this delay, at this instant.
    Retry(Duration, Instant),
}

/// The backoff's exponent falls by one for every this long an instance served.
pub(crate) const DECAY_EVERY: Duration = Duration::from_secs(10);

/// `level` less one per [`DECAY_EVERY`] of `served`, never below 0.
fn decayed(level: f64, served: Duration) -> f64 {
    (level - served.as_secs_f64() / DECAY_EVERY.as_secs_f64()).max(0.0)
}

/// Views published half-updated (tests only): see [`consistent`].
#[cfg(test)]
static INCONSISTENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cfg(test)]
pub(crate) fn inconsistent_views() -> u32 {
    INCONSISTENT.load(Ordering::SeqCst)
}

/// A view that could only be seen between two halves of one change.
#[cfg(test)]
fn consistent(v: &InstanceView, probation: bool) -> bool {
    match v.state {
        InstanceState::Failed => v.next_retry_at.is_some() == probation,
        InstanceState::Starting => v.next_retry_at.is_none(),
        InstanceState::Offline => v.pid.is_none(),
        _ => true,
    }
}
