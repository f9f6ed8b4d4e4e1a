//! The harness every supervisor scenario runs against: a scripted fake connector and session,
//! and a registry over them, on paused tokio time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{self, Instant};
use warden_config::{BackoffPolicy, Config, RestartPolicy, ServerSpec, Transport, WardenSettings};
use warden_core::{Event, EventBus, EventKind, ExitInfo, InstanceState};
use warden_upstream::{
    Activity, BoxFuture, Call, Catalog, Connected, Connector, PeerInfo, Session, SessionEvent,
    StopPolicy, ToolEntry, UpstreamError,
};

use crate::{Registry, SeedBook, SupervisorOptions};

/// How the fake server behaves on probes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Probe {
    Answer,
    /// No answer, no bytes: hung.
    Silent,
    /// No answer to the probe, but bytes keep coming (a busy single-threaded server).
    Busy,
    /// The probe never ends at all, not even with a timeout (a request stuck behind a full
    /// stdin pipe): only Warden's own deadline ends it.
    Stuck,
}

pub(super) struct FakeShared {
    pub(super) probe: Mutex<Probe>,
    pub(super) activity: Arc<Activity>,
    pub(super) events: mpsc::Sender<SessionEvent>,
    pub(super) killed: AtomicU32,
    pub(super) graceful_stops: AtomicU32,
    /// Probes received, and the timeout the last one was given.
    pub(super) probes: AtomicU32,
    pub(super) last_probe_timeout: Mutex<Duration>,
}

pub(super) struct FakeSession(Arc<FakeShared>);

impl Session for FakeSession {
    fn probe(
        &self,
        _: warden_config::ProbeMethod,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Duration, UpstreamError>> {
        let mode = *self.0.probe.lock().unwrap();
        self.0.probes.fetch_add(1, Ordering::SeqCst);
        *self.0.last_probe_timeout.lock().unwrap() = timeout;
        let activity = Arc::clone(&self.0.activity);
        Box::pin(async move {
            match mode {
                Probe::Answer => {
                    time::sleep(Duration::from_millis(3)).await;
                    activity.touch(10);
                    Ok(Duration::from_millis(3))
                }
                Probe::Silent => {
                    time::sleep(timeout).await;
                    Err(UpstreamError::Timeout(timeout))
                }
                Probe::Stuck => std::future::pending().await,
                Probe::Busy => {
                    time::sleep(timeout / 2).await;
                    activity.touch(100); // a progress notification
                    time::sleep(timeout / 2).await;
                    Err(UpstreamError::Timeout(timeout))
                }
            }
        })
    }

    fn list_catalog(&self, _: Duration) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
        Box::pin(async {
            let tool = ToolEntry::from_json(serde_json::json!({"name": "echo", "inputSchema": {}}))
                .unwrap();
            Ok(Catalog { tools: vec![tool], ..Default::default() })
        })
    }

    fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.0.activity)
    }

    fn request(&self, _: Call) -> BoxFuture<'_, Result<warden_upstream::Reply, UpstreamError>> {
        Box::pin(async {
            Ok(warden_upstream::Reply::from_value(&serde_json::json!({ "content": [] })))
        })
    }

    fn pid(&self) -> Option<u32> {
        Some(4242)
    }

    fn shutdown(&self, _: StopPolicy) -> BoxFuture<'static, Option<ExitInfo>> {
        self.0.graceful_stops.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { None })
    }

    fn kill(&self) {
        self.0.killed.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy)]
pub(super) enum Start {
    Ok,
    Fail,
    /// The handshake takes a minute.
    Slow,
}

#[derive(Default)]
pub(super) struct FakeConnector {
    pub(super) script: Mutex<VecDeque<Start>>,
    pub(super) fail_always: bool,
    pub(super) starts: AtomicU32,
    pub(super) sessions: Mutex<Vec<Arc<FakeShared>>>,
}

impl Connector for FakeConnector {
    fn connect(
        &self,
        _: warden_core::InstanceId,
        _: Duration,
    ) -> BoxFuture<'_, Result<Connected, UpstreamError>> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let plan = self.script.lock().unwrap().pop_front().unwrap_or(if self.fail_always {
            Start::Fail
        } else {
            Start::Ok
        });
        Box::pin(async move {
            time::sleep(Duration::from_millis(20)).await;
            match plan {
                Start::Slow => {
                    time::sleep(Duration::from_secs(60)).await;
                    Err(UpstreamError::Timeout(Duration::from_secs(60)))
                }
                Start::Fail => {
                    Err(UpstreamError::Closed(Some("exited with code 1 during start-up".into())))
                }
                Start::Ok => {
                    let (tx, rx) = mpsc::channel(16);
                    let shared = Arc::new(FakeShared {
                        probe: Mutex::new(Probe::Answer),
                        activity: Arc::new(Activity::new()),
                        events: tx,
                        killed: AtomicU32::new(0),
                        graceful_stops: AtomicU32::new(0),
                        probes: AtomicU32::new(0),
                        last_probe_timeout: Mutex::new(Duration::ZERO),
                    });
                    self.sessions.lock().unwrap().push(Arc::clone(&shared));
                    Ok(Connected {
                        session: Box::new(FakeSession(shared)),
                        events: rx,
                        info: PeerInfo::default(),
                    })
                }
            }
        })
    }
}

pub(super) fn spec(name: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        transport: Transport::Stdio {
            command: "fake".into(),
            args: vec![],
            display_args: vec![],
            env: Default::default(),
            cwd: None,
            inherit_env: false,
        },
        replicas: 1,
        fallback: vec![],
        trusted: false,
        retry_tools: vec![],
        cache: Default::default(),
        balance: Default::default(),
        critical: false,
        timeout: Duration::from_secs(60),
        health: Default::default(),
        restart: RestartPolicy {
            backoff: BackoffPolicy { jitter: 0.0, ..Default::default() },
            ..Default::default()
        },
        disabled: false,
        objective: None,
        memory_limit: None,
        standby: false,
        disabled_tools: vec![],
        tags: vec![],
        categories: Default::default(),
        fallback_strategy: Default::default(),
        smoke_test: None,
    }
}

pub(super) struct Harness {
    pub(super) registry: Arc<Registry>,
    pub(super) connector: Arc<FakeConnector>,
    pub(super) events: tokio::sync::broadcast::Receiver<Arc<Event>>,
    pub(super) log: Vec<Arc<Event>>,
}

impl Harness {
    pub(super) fn new(spec: ServerSpec, connector: FakeConnector) -> Self {
        Self::with_seeds(spec, connector, SeedBook::default())
    }

    pub(super) fn with_seeds(spec: ServerSpec, connector: FakeConnector, seeds: SeedBook) -> Self {
        let connector = Arc::new(connector);
        let bus = EventBus::new(None);
        let events = bus.subscribe();
        let c2 = Arc::clone(&connector);
        let config =
            Config { servers: vec![spec], warden: WardenSettings::default(), secrets: vec![] };
        let registry = Registry::start(
            &config,
            Arc::new(move |_| Arc::clone(&c2) as Arc<dyn Connector>),
            bus,
            SupervisorOptions {
                metrics_interval: Duration::from_secs(10),
                samples: None,
                metrics: Default::default(),
                seeds,
                stopped: Default::default(),
            },
        );
        Self { registry: Arc::new(registry), connector, events, log: vec![] }
    }

    pub(super) fn state(&self) -> InstanceState {
        self.registry.servers()[0].views()[0].state
    }

    /// Advances time until the instance is in `want`, at most `within`; returns the time taken.
    pub(super) async fn until(&mut self, want: InstanceState, within: Duration) -> Duration {
        let start = Instant::now();
        while self.state() != want {
            assert!(
                start.elapsed() <= within,
                "not {want} within {within:?}; still {}",
                self.state()
            );
            time::sleep(Duration::from_millis(5)).await;
            self.drain();
        }
        self.drain();
        start.elapsed()
    }

    pub(super) fn drain(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.log.push(e);
        }
    }

    pub(super) fn session(&self, n: usize) -> Arc<FakeShared> {
        Arc::clone(&self.connector.sessions.lock().unwrap()[n])
    }

    pub(super) fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.log.iter().filter(|e| pred(&e.kind)).count()
    }
}

pub(super) fn exit_by_signal(sig: i32) -> ExitInfo {
    ExitInfo { code: None, signal: Some(sig), at: warden_core::now(), pid: Some(4242) }
}
