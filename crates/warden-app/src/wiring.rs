//! The steps of [`crate::App::start`], each building one group of parts and returning the
//! handles the next steps and the shutdown need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use warden_admin::{api, guard, health, metrics, stream, tools, Liveness, Surface};
use warden_config::{Config, WardenSettings};
use warden_core::{EventBus, MetricSample};
use warden_gateway::Gateway;
use warden_ops::{alerting, eventlog, logfiles, reports, tuning, usage};
use warden_store::{FailoverConfig, Location, Store, WriterOptions};
use warden_supervisor::{ConnectorFactory, Registry, SeedBook, SupervisorOptions};
use warden_upstream::Relay;

use crate::{RunOptions, StartError};

/// Connectors that start and reach real servers; what servers send their clients goes to
/// `relay` (the gateway installs itself there).
pub fn real_connectors(relay: Relay) -> ConnectorFactory {
    Arc::new(move |spec| warden_upstream::connector_for(spec, &relay))
}

/// A receiver of one part of Warden's settings, following every reload of the whole (only
/// real changes of the part are sent on).
pub(crate) fn follow<T>(
    settings: &watch::Receiver<WardenSettings>,
    pick: fn(&WardenSettings) -> T,
) -> watch::Receiver<T>
where
    T: Clone + PartialEq + Send + Sync + 'static,
{
    let mut all = settings.clone();
    let (tx, rx) = watch::channel(pick(&all.borrow_and_update()));
    tokio::spawn(async move {
        // Ends when the settings' sender (the app) or every receiver of the part is gone.
        while all.changed().await.is_ok() {
            let part = pick(&all.borrow_and_update());
            tx.send_if_modified(|v| {
                let changed = *v != part;
                *v = part;
                changed
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// Binds the listener, if one is asked for.
pub(crate) async fn bind(
    listen: Option<SocketAddr>,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let Some(addr) = listen else { return Ok(None) };
    let l = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let bound = l.local_addr().map_err(|source| StartError::Listen { addr, source })?;
    Ok(Some((l, bound)))
}

/// The configured store, or an in-memory one and why (the database must never stop
/// supervision).
pub(crate) async fn open_store(database: &Location) -> (Store, Option<String>) {
    match Store::open(database).await {
        Ok(s) => (s, None),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the database; recording in memory until restart");
            let s =
                Store::open(&Location::Memory).await.expect("an in-memory SQLite database opens");
            (s, Some(e.to_string()))
        }
    }
}

/// Everything that records: the bus (with its event counter in the metrics), the batching
/// writer, and the JSONL event log.
pub(crate) struct Recording {
    pub(crate) bus: Arc<EventBus>,
    pub(crate) metrics: warden_metrics::Metrics,
    writer: tokio::task::JoinHandle<()>,
    writer_stop: CancellationToken,
    pub(crate) event_log: eventlog::EventLog,
    /// Warden's own settings as the last reload left them; the services follow their part.
    pub(crate) settings: Arc<watch::Sender<WardenSettings>>,
    /// Whether this replica leads the fleet (always, with SQLite); held until the writer stops.
    pub(crate) leading: warden_store::Leading,
}

impl Recording {
    /// Also returns where the supervisor sends its samples.
    pub(crate) fn start(store: &Store, options: &RunOptions) -> (Self, mpsc::Sender<MetricSample>) {
        let settings = Arc::new(watch::channel(options.config.warden.clone()).0);
        let live = settings.subscribe();
        let (events_tx, events_rx) = mpsc::channel(16_384);
        let (samples_tx, samples_rx) = mpsc::channel(16_384);
        let bus = EventBus::new(Some(events_tx));
        // Counting starts before anything can emit, so /metrics misses no event.
        let metrics = warden_metrics::Metrics::new();
        metrics.spawn_event_counter(bus.subscribe());
        let writer_stop = CancellationToken::new();
        let leading = store.spawn_leader_election(writer_stop.clone());
        let writer = store.spawn_writer(
            events_rx,
            samples_rx,
            WriterOptions {
                retention: follow(&live, |w| w.retention),
                prune_every: Duration::from_secs(3600),
                bus: Some(Arc::clone(&bus)),
                leading: Some(leading.clone()),
            },
            writer_stop.clone(),
        );
        let event_log = eventlog::EventLog::start(
            eventlog::dir_for(&options.database),
            follow(&live, |w| w.retention),
            &bus,
        );
        (Self { bus, metrics, writer, writer_stop, event_log, settings, leading }, samples_tx)
    }

    /// Closes the event log and flushes the writer.
    pub(crate) async fn drain(self) {
        self.event_log.close().await;
        self.writer_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.writer).await;
    }
}

/// Rows a previous run left open are closed; the failover configuration is recorded.
pub(crate) async fn prepare_store(store: &Store, config: &Config) {
    let (s, config) = (store.clone(), config.clone());
    once_ready(store, async move { tidy_store(&s, &config).await }).await;
}

/// Runs `work` now when the database is ready; when it is not (PostgreSQL not reached yet),
/// once it is, in the background, without holding up start-up.
async fn once_ready(store: &Store, work: impl std::future::Future<Output = ()> + Send + 'static) {
    if store.is_ready() {
        work.await;
    } else {
        let store = store.clone();
        tokio::spawn(async move {
            store.wait_ready().await;
            work.await;
        });
    }
}

/// Who this replica is: `WARDEN_REPLICA`, else `HOST:PORT` of its listener.
pub(crate) fn replica_info(
    listener: &Option<(TcpListener, SocketAddr)>,
) -> warden_store::ReplicaInfo {
    let bound = listener.as_ref().map(|(_, b)| *b);
    let host = warden_ops::fleet::host_name();
    warden_store::ReplicaInfo {
        id: warden_ops::fleet::replica_id(&host, bound),
        host,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listen: bound.map(|b| b.to_string()),
        started_at: warden_core::now(),
    }
}

/// Closes what a previous run of this replica left open; records the failover table.
async fn tidy_store(store: &Store, config: &Config) {
    match store.abandon_open_failures().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            rows = n,
            "closed failure rows a previous run left open (recovery_action = abandoned)"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not close failure rows left open by a previous run")
        }
    }
    if let Err(e) = store.sync_failover_configs(&failover_rows(config)).await {
        tracing::warn!(error = %e, "could not record the failover configuration");
    }
}

/// Starts every instance, its connectors sharing `relay` (which the gateway installs itself in).
pub(crate) fn supervise(
    options: &RunOptions,
    recording: &Recording,
    samples: mpsc::Sender<MetricSample>,
    seeds: SeedBook,
    stopped: warden_supervisor::StoppedAtStart,
    relay: &Relay,
) -> Registry {
    Registry::start(
        &options.config,
        options.connectors.clone().unwrap_or_else(|| real_connectors(relay.clone())),
        Arc::clone(&recording.bus),
        SupervisorOptions {
            metrics_interval: options.config.warden.metrics_interval,
            samples: Some(samples),
            metrics: recording.metrics.clone(),
            seeds,
            stopped,
        },
    )
}

/// The services of warden-ops, and the tasks that run beside the instances.
pub(crate) struct Services {
    pub(crate) gateway_stop: CancellationToken,
    usage_task: tokio::task::JoinHandle<()>,
    usage_stop: CancellationToken,
    seeds_task: tokio::task::JoinHandle<()>,
    seeds_stop: CancellationToken,
    pub(crate) reports: reports::Reports,
    pub(crate) tuner: tuning::Tuner,
    pub(crate) alerts: alerting::Alerts,
    /// The replicas sharing the database, and this one's heartbeat (PostgreSQL only).
    pub(crate) fleet: warden_ops::fleet::Fleet,
    fleet_task: Option<tokio::task::JoinHandle<()>>,
    fleet_stop: CancellationToken,
    /// Stops the services' own loops (tuning, alerting, standby control).
    pub(crate) stop: CancellationToken,
}

impl Services {
    pub(crate) async fn start(
        registry: &Registry,
        gateway: &Gateway,
        store: &Store,
        recording: &Recording,
        seeds: SeedBook,
        options: &RunOptions,
        replica: warden_store::ReplicaInfo,
    ) -> Self {
        let stop = CancellationToken::new();
        let gateway_stop = CancellationToken::new();
        gateway.spawn_change_watcher(gateway_stop.clone());
        let usage = usage::UsageFlusher::new(gateway.clone(), store.clone());
        let usage_stop = CancellationToken::new();
        let usage_task = usage.spawn(usage_stop.clone());
        let seeds_stop = CancellationToken::new();
        let seeds_task = crate::seeds::spawn_saver(seeds, store.clone(), seeds_stop.clone());
        let w = &options.config.warden;
        let reports = reports::Reports {
            store: store.clone(),
            servers: registry.views(),
            gateway: gateway.clone(),
            usage,
            metrics_interval: w.metrics_interval,
        };
        let tuner = tuning::Tuner::new(
            reports.clone(),
            Arc::clone(&recording.bus),
            follow(&recording.settings.subscribe(), |w| w.tuning.clone()),
        )
        .with_leading(recording.leading.clone());
        // Changes still in force are put back before anything is served (once the database
        // is reached, when PostgreSQL was down at start).
        let restoring = tuner.clone();
        once_ready(store, async move {
            match restoring.restore().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(parameters = n, "tuning changes restored"),
                Err(e) => tracing::warn!("tuning changes could not be read back: {e}"),
            }
        })
        .await;
        tuner.spawn_auto(stop.clone());
        let alerts = alerting::Alerts::start(
            alerting::Sources {
                overview: registry.views(),
                metrics: registry.metrics().clone(),
                store: store.clone(),
                bus: Arc::clone(&recording.bus),
                settings: follow(&recording.settings.subscribe(), |w| w.alerts.clone()),
                leading: recording.leading.clone(),
                external_url: match &replica.listen {
                    Some(bound) => format!("http://{bound}"),
                    None => "http://127.0.0.1:7420".to_owned(),
                },
            },
            stop.clone(),
        )
        .await;
        registry.metrics().register_collector(Box::new(alerting::AlertMetrics(alerts.clone())));
        warden_supervisor::spawn_standby_control(
            registry.views(),
            Arc::clone(&recording.bus),
            stop.clone(),
        );
        let fleet = warden_ops::fleet::Fleet::new(
            store.clone(),
            registry.views(),
            replica,
            recording.leading.clone(),
        );
        let fleet_stop = CancellationToken::new();
        let fleet_task = fleet.spawn(gateway.clone(), tuner.clone(), fleet_stop.clone());
        Self {
            fleet,
            fleet_task,
            fleet_stop,
            gateway_stop,
            usage_task,
            usage_stop,
            seeds_task,
            seeds_stop,
            reports,
            tuner,
            alerts,
            stop,
        }
    }

    /// After the instances stopped: the last tool counts and learnt baselines are written.
    pub(crate) async fn drain(self) {
        // The fleet hears this replica stopped (its row marked, its views removed).
        self.fleet_stop.cancel();
        if let Some(task) = self.fleet_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.alerts.finished()).await;
        self.usage_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.usage_task).await;
        self.seeds_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.seeds_task).await;
    }
}

/// The HTTP and MCP-tool surfaces, and Warden's liveness.
#[allow(clippy::too_many_arguments)] // one call site, every argument a different part
pub(crate) async fn surface(
    registry: &Registry,
    gateway: &Gateway,
    store: &Store,
    store_fallback: Option<String>,
    recording: &Recording,
    services: &Services,
    log_files: &logfiles::Slot,
    config: &warden_ops::reloads::ConfigStatus,
    options: &RunOptions,
    listener: &Option<(TcpListener, SocketAddr)>,
    http: Option<warden_admin::Connections>,
    started: Instant,
) -> (Surface, Liveness) {
    let stop = services.stop.child_token();
    let views = registry.views();
    metrics::register(
        registry,
        metrics::Sources {
            gateway: gateway.clone(),
            store: store.clone(),
            store_fallback: store_fallback.is_some(),
            bus: Arc::clone(&recording.bus),
            started,
            http,
        },
    );
    let stream = stream::Stream::start(&recording.bus, store.clone(), stop.clone());
    let w = &options.config.warden;
    let health = health::Health::start(
        health::Sources {
            overview: views.clone(),
            store: store.clone(),
            store_fallback: store_fallback.clone(),
            gateway: gateway.clone(),
            readiness: w.readiness,
            thresholds: w.health_thresholds.clone(),
            metadata: w.metadata.clone(),
            data_dir: options.database.local_dir(),
            started,
            listen: listener.as_ref().map(|(_, b)| b.to_string()),
            event_log: recording.event_log.status(),
            log_files: log_files.clone(),
            config: config.clone(),
            stream: stream.clone(),
        },
        stop.clone(),
    )
    .await;
    metrics::register_health(registry.metrics(), &health);
    let servers = registry.views();
    gateway.set_tool_settings(&options.config.warden.tools);
    gateway.install_builtin(Arc::new(tools::Tools {
        overview: views.clone(),
        health: health.clone(),
        gateway: gateway.clone(),
        servers: servers.clone(),
        reports: services.reports.clone(),
        tuner: services.tuner.clone(),
        prefix: options.config.warden.tools.prefix.clone(),
        bus: Arc::clone(&recording.bus),
        started: warden_core::now()
            - chrono::Duration::from_std(started.elapsed()).unwrap_or_default(),
        picker: options
            .config
            .warden
            .tools
            .llm
            .clone()
            .map(|l| Arc::new(warden_ops::toolpick::ToolPicker::new(l))),
    }));
    let liveness = health.liveness();
    let surface = Surface {
        state: warden_admin::State::new(
            started,
            store.clone(),
            store_fallback,
            views,
            health,
            registry.metrics().clone(),
            services.fleet.clone(),
        ),
        guard: guard::Guard {
            token: options.token.clone().map(Into::into),
            loopback: listener.as_ref().is_none_or(|(_, b)| b.ip().is_loopback()),
        },
        limits: warden_admin::Limits {
            sessions: warden_gateway::SessionLimits {
                idle: w.session_idle_timeout,
                max_body: w.max_request_body,
            },
            max_sessions: w.max_sessions,
        },
        stop,
        stream,
        alerts: services.alerts.clone(),
        reports: services.reports.clone(),
        tuner: services.tuner.clone(),
        logs: warden_ops::logstream::LogTap::default(),
        api: api::Api {
            servers,
            config: config.clone(),
            gateway: gateway.clone(),
            store: store.clone(),
            bus: Arc::clone(&recording.bus),
        },
    };
    (surface, liveness)
}

/// One `failover_configurations` row per server, from its config.
pub(crate) fn failover_rows(config: &Config) -> Vec<FailoverConfig> {
    config
        .servers
        .iter()
        .map(|s| FailoverConfig {
            primary_server_type: s.name.clone(),
            fallback_strategy: if s.fallback.is_empty() {
                "replicas".into()
            } else {
                "priority".into()
            },
            fallback_server_type: (!s.fallback.is_empty()).then(|| s.fallback.join(",")),
            auto_recovery_enabled: s.restart.mode != warden_config::RestartMode::Never,
            max_retry_attempts: i64::from(s.restart.max_restarts),
            retry_delay_seconds: s.restart.backoff.initial.as_secs_f64(),
            health_check_interval_seconds: s.health.interval.as_secs_f64(),
        })
        .collect()
}
