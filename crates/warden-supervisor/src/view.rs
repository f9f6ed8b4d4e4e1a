//! The server view (docs/contract.md): one shape for `warden check --json`, `GET /api/servers` and
//! `warden status --json`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;
use warden_config::{FallbackStrategy, ServerSpec};
use warden_core::{ExitInfo, InstanceId, InstanceState, Reason, ServerStatus, Timestamp};
use warden_health::StatsSnapshot;

/// What is known about one instance right now.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceView {
    pub id: InstanceId,
    pub state: InstanceState,
    pub since: Timestamp,
    pub pid: Option<u32>,
    pub reason: Option<Reason>,
    /// The most recent probe round-trip, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Restarts (or reconnects) since Warden started.
    pub restarts: u32,
    pub last_check: Option<Timestamp>,
    /// Consecutive failed starts feeding the backoff.
    pub attempt: u32,
    pub next_retry_at: Option<Timestamp>,
    pub last_exit: Option<ExitInfo>,
    pub tools: usize,
    pub resources: usize,
    pub prompts: usize,
    pub protocol_version: Option<String>,
    pub stats: StatsSnapshot,
    /// The child's resident memory, sampled with the metrics (stdio instances).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// The predictor's verdict while it says anything (drift, a predicted failure, memory
    /// running out); `None` when quiet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<warden_predict::Assessment>,
    /// Whether prediction watches this instance yet; `None` when prediction is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictor: Option<PredictorStatus>,
    /// A failure is predicted: new calls go to other instances while any can take them.
    pub draining: bool,
    /// The server's reserve instance: stopped until another is predicted to fail.
    pub standby: bool,
}

impl InstanceView {
    pub fn new(id: InstanceId) -> Self {
        Self {
            id,
            state: InstanceState::Starting,
            since: warden_core::now(),
            pid: None,
            reason: None,
            latency_ms: None,
            restarts: 0,
            last_check: None,
            attempt: 0,
            next_retry_at: None,
            last_exit: None,
            tools: 0,
            resources: 0,
            prompts: 0,
            protocol_version: None,
            stats: StatsSnapshot::default(),
            rss_bytes: None,
            prediction: None,
            predictor: None,
            draining: false,
            standby: false,
        }
    }
}

/// Whether an instance's predictor can alarm, and on what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PredictorStatus {
    /// Its detectors have a baseline: drift and predicted failures can be raised.
    pub armed: bool,
    /// The baseline is the server's, learnt by another instance or before Warden restarted
    /// (see `seeds.rs`); the instance learns its own once its warm-up is over.
    pub seeded: bool,
}

/// One server: its instances and who serves it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerView {
    pub name: String,
    pub status: ServerStatus,
    /// Tools offered by the instance that serves (the first routable one).
    pub tools: usize,
    /// The server whose instances take this server's calls: itself, a fallback, or `null`.
    pub served_by: Option<String>,
    pub transport: &'static str,
    /// `mcp`, or an integration's check: `http`, `tcp`, `command`, `postgres`, `sqlite`.
    pub kind: &'static str,
    /// What is watched, secret-free: a command, a URL's display form, an address, a path.
    pub target: String,
    pub disabled: bool,
    /// The operator's labels (`tags`).
    pub tags: Vec<String>,
    /// What happens to its calls while it is down (`fallback_strategy`, or as the operator
    /// last set it).
    pub fallback_strategy: &'static str,
    pub instances: Vec<InstanceView>,
}

/// Everything: the overall status and every server.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    pub status: ServerStatus,
    pub servers: Vec<ServerView>,
}

/// A server's own status, before fallbacks: healthy when every instance is, unhealthy when none
/// is routable, degraded otherwise.
pub(crate) fn own_status(instances: &[InstanceView]) -> ServerStatus {
    // A standby in reserve is neither up nor down.
    let owned: Vec<&InstanceView> =
        instances.iter().filter(|i| !(i.standby && i.state == InstanceState::Stopped)).collect();
    let instances = owned.as_slice();
    let routable = instances.iter().filter(|i| i.state.is_routable()).count();
    let healthy = instances.iter().filter(|i| i.state == InstanceState::Healthy).count();
    if !instances.is_empty() && healthy == instances.len() {
        ServerStatus::Healthy
    } else if routable == 0 {
        ServerStatus::Unhealthy
    } else {
        ServerStatus::Degraded
    }
}

/// The failover settings of one server, as the gateway routes by them: fallbacks take over
/// only while `enabled` and as the strategy allows; `forced` (the operator failed it over) sends
/// every call to the fallbacks. The strategy starts as configured (`fallback_strategy`); the
/// operator may change it at run time, and a reload that changes it in the config resets it.
#[derive(Debug)]
pub struct FailoverControl {
    enabled: AtomicBool,
    forced: AtomicBool,
    strategy: std::sync::atomic::AtomicU8,
}

impl Default for FailoverControl {
    fn default() -> Self {
        Self::new(FallbackStrategy::default())
    }
}

impl FailoverControl {
    pub fn new(strategy: FallbackStrategy) -> Self {
        Self {
            enabled: AtomicBool::new(true),
            forced: AtomicBool::new(false),
            strategy: std::sync::atomic::AtomicU8::new(strategy_index(strategy)),
        }
    }

    pub fn get(&self) -> Failover {
        Failover {
            enabled: self.enabled.load(Relaxed),
            forced: self.forced.load(Relaxed),
            strategy: FallbackStrategy::ALL
                .get(usize::from(self.strategy.load(Relaxed)))
                .copied()
                .unwrap_or_default(),
        }
    }

    pub fn set(&self, f: Failover) {
        self.enabled.store(f.enabled, Relaxed);
        // Fail-fast has no fallback tier to be forced onto.
        self.forced.store(f.forced && f.strategy != FallbackStrategy::FailFast, Relaxed);
        self.strategy.store(strategy_index(f.strategy), Relaxed);
    }
}

fn strategy_index(s: FallbackStrategy) -> u8 {
    FallbackStrategy::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

/// A snapshot of [`FailoverControl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failover {
    pub enabled: bool,
    pub forced: bool,
    pub strategy: FallbackStrategy,
}

impl Default for Failover {
    fn default() -> Self {
        Self { enabled: true, forced: false, strategy: FallbackStrategy::default() }
    }
}

impl Failover {
    /// Whether the server's own instances take its calls (not while failed over by hand).
    pub fn serves_own(&self) -> bool {
        !self.forced
    }

    /// Whether its fallbacks take its calls when its own cannot: automatically under
    /// graceful degradation and offline mode, only once the operator failed it over under
    /// manual, never under fail-fast.
    pub fn uses_fallbacks(&self) -> bool {
        self.enabled
            && match self.strategy {
                FallbackStrategy::GracefulDegradation | FallbackStrategy::OfflineMode => true,
                FallbackStrategy::Manual => self.forced,
                FallbackStrategy::FailFast => false,
            }
    }
}

/// One server's parts of the view: its spec, its instances' views and its failover settings.
pub type ServerParts = (Arc<ServerSpec>, Vec<InstanceView>, Failover);

impl ServerView {
    /// Something serves its calls now: a routable instance of its own, or a fallback.
    pub fn is_served(&self) -> bool {
        self.served_by.is_some() || self.instances.iter().any(|i| i.state.is_routable())
    }
}

impl Overview {
    /// Builds the view from each server's spec, instance views and failover settings — the
    /// one builder behind every surface, so no two views can disagree. A server with nothing
    /// routable (or failed over by the operator) is `degraded` while its first routable
    /// fallback serves, else `unhealthy`.
    pub fn from_parts(own: Vec<ServerParts>) -> Self {
        let status_of =
            |name: &str| own.iter().find(|(s, ..)| s.name == name).map(|(_, v, _)| own_status(v));
        let mut servers = Vec::new();
        for (spec, instances, failover) in &own {
            let mine = own_status(instances);
            let fallback = || {
                spec.fallback
                    .iter()
                    .find(|f| status_of(f).is_some_and(|s| s != ServerStatus::Unhealthy))
                    .map_or((ServerStatus::Unhealthy, None), |fb| {
                        (ServerStatus::Degraded, Some(fb.clone()))
                    })
            };
            // As the gateway routes (`Failover::serves_own`, `uses_fallbacks`).
            let (status, served_by) = if spec.disabled {
                (ServerStatus::Unhealthy, None)
            } else if failover.serves_own() && mine != ServerStatus::Unhealthy {
                (mine, Some(spec.name.clone()))
            } else if failover.uses_fallbacks() {
                fallback()
            } else {
                (ServerStatus::Unhealthy, None)
            };
            let tools = instances.iter().find(|i| i.state.is_routable()).map_or(0, |i| i.tools);
            servers.push(ServerView {
                name: spec.name.clone(),
                status,
                tools,
                served_by,
                transport: match &spec.transport {
                    warden_config::Transport::Stdio { .. } => "stdio",
                    warden_config::Transport::Remote { .. } => "http",
                    warden_config::Transport::Check(_) => "check",
                },
                kind: spec.kind(),
                target: spec.target(),
                disabled: spec.disabled,
                tags: spec.tags.clone(),
                fallback_strategy: failover.strategy.as_str(),
                instances: instances.clone(),
            });
        }
        // Disabled servers are reported but do not drag the whole status down.
        let enabled: Vec<&ServerView> = servers.iter().filter(|s| !s.disabled).collect();
        let status = if enabled.iter().all(|s| s.status == ServerStatus::Healthy) {
            ServerStatus::Healthy
        } else if enabled.iter().all(|s| s.status == ServerStatus::Unhealthy) {
            ServerStatus::Unhealthy
        } else {
            ServerStatus::Degraded
        };
        Self { status, servers }
    }
}
