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

mod link;
mod predict;
mod session;
mod state;

pub use link::{CallGuard, InstanceLink};
use session::wait_exited;
#[cfg(test)]
pub(crate) use state::inconsistent_views;

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

impl Command {
    /// The command an operator names (`restart`, `stop`, `start`, `reset`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "restart" => Some(Self::Restart),
            "stop" => Some(Self::Stop),
            "start" => Some(Self::Start),
            "reset" => Some(Self::Reset),
            _ => None,
        }
    }
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
    /// The server's config; a live reload replaces its policy here (never its transport:
    /// that starts new instances).
    pub(crate) spec: watch::Receiver<Arc<ServerSpec>>,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) samples: Option<mpsc::Sender<MetricSample>>,
    pub(crate) metrics_interval: Duration,
    pub(crate) view: watch::Sender<InstanceView>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) link: Arc<InstanceLink>,
    /// A failed call is waiting in the link's batch.
    pub(crate) failed: mpsc::Receiver<()>,
    pub(crate) shutdown: CancellationToken,
    /// Failure prediction, unless turned off.
    pub(crate) prediction: Option<warden_predict::PredictorConfig>,
    /// Run-time overrides of the probe policy (tuning).
    pub(crate) tuning: watch::Receiver<crate::Tuned>,
    /// The server's learnt baselines: taken at each start while not armed, published once
    /// learnt here.
    pub(crate) seeds: crate::SeedBook,
    /// Start stopped: the operators stopped it across the fleet ([`crate::StoppedAtStart`]).
    pub(crate) held: bool,
}

/// How often the predictor's verdict is read into the view.
const PREDICT_EVERY: Duration = Duration::from_secs(2);
/// How often an instance publishes the baselines it learnt to its server's seed book.
const PUBLISH_SEEDS_EVERY: Duration = Duration::from_secs(60);

/// The outcome of one real call routed to an instance: a passive health signal.
#[derive(Clone, Debug)]
pub struct CallReport {
    pub latency: Duration,
    pub outcome: CallOutcome,
    /// When the call ended.
    pub at: Instant,
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
    next_publish: Instant,
}

impl Runner {
    fn new(ctx: InstanceCtx) -> Self {
        let spec = Arc::clone(&ctx.spec.borrow());
        let (h, r) = (&spec.health, &spec.restart);
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
                let mut limits = warden_predict::Limits::new(spec.timeout);
                limits.memory_limit_bytes = spec.memory_limit;
                crate::predict::Predictors::new(limits, cfg)
            }),
            origin: Instant::now(),
            next_predict: Instant::now() + PREDICT_EVERY,
            next_publish: Instant::now(),
            ctx,
        }
    }

    async fn main(&mut self) {
        // A standby waits stopped until it is needed; so does an instance the operators stopped.
        let mut stopped =
            self.spec().disabled || self.spec().is_standby(self.ctx.id.index()) || self.ctx.held;
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
                let probation = self.spec().restart.probation.map(|p| Instant::now() + p);
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
                    let mode = self.spec().restart.mode;
                    let restart =
                        !(mode == RestartMode::Never || (mode == RestartMode::OnFailure && clean));
                    // Decide first, so the view changes once: offline, with its retry time.
                    let next = if !restart {
                        Next::Wait
                    } else if std::mem::take(&mut self.probation_try) {
                        Next::Failed { exceeded: false }
                    } else if self.spec().is_stdio() && self.intensity.record(Instant::now()) {
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
                                let window_seconds = self.spec().restart.window.as_secs();
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

    /// The server's config in force.
    fn spec(&self) -> Arc<ServerSpec> {
        Arc::clone(&self.ctx.spec.borrow())
    }

    /// A live reload changed the server's policy: thresholds, backoff, restart intensity and
    /// the predictor's limits follow it from now on (the caller re-reads the probe policy).
    fn apply_spec(&mut self) {
        let spec = Arc::clone(&self.ctx.spec.borrow_and_update());
        let (h, r) = (&spec.health, &spec.restart);
        self.machine.set_thresholds(Thresholds {
            unhealthy: h.unhealthy_threshold,
            healthy: h.healthy_threshold,
        });
        self.backoff = Backoff::new(r.backoff.clone());
        self.intensity = RestartIntensity::new(r.max_restarts, r.window);
        let call_timeout = self.ctx.tuning.borrow().call_timeout(&spec);
        if let Some(p) = self.predictor.as_mut() {
            p.set_call_timeout(call_timeout);
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
                Some(()) = self.ctx.failed.recv() => {
                    self.ctx.link.take_settled();
                }
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
        while self.ctx.failed.try_recv().is_ok() {}
        self.ctx.link.take_settled();
        let deadline = self.spec().health.startup_timeout;
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
        if self.spec().is_stdio() {
            RecoveryAction::Restart
        } else {
            RecoveryAction::Reconnect
        }
    }

    fn stop_policy(&self) -> StopPolicy {
        StopPolicy { grace: self.spec().restart.stop_grace, term: self.spec().restart.term_timeout }
    }
}

/// The wall-clock time of a monotonic instant (for `next_retry_at`).
fn to_wall(at: Instant) -> warden_core::Timestamp {
    let ahead = at.saturating_duration_since(Instant::now());
    warden_core::now() + chrono::Duration::from_std(ahead).unwrap_or_default()
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
