//! The composition root: turns a validated config into running parts and owns their shutdown.
//!
//! Start order: store (falling back to memory if the file cannot be opened) → writer → event
//! bus → supervisor registry → HTTP listener. Shutdown runs backwards: stop serving, stop every
//! instance gracefully, then flush the writer and close the database.

mod alerts;
mod api;
mod check;
mod demo;
mod eventlog;
mod guard;
mod health;
mod http;
mod logfiles;
mod metrics;
mod render;
mod reports;
mod send_timeout;
mod stream;
mod tools;
mod tuning;
mod usage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warden_config::Config;
use warden_core::EventBus;
use warden_gateway::Gateway;
use warden_store::{FailoverConfig, Location, Store, WriterOptions};
use warden_supervisor::{ConnectorFactory, Registry, SupervisorOptions};
use warden_upstream::Relay;

pub use check::{check, CheckOptions};
pub use demo::demo_config;
pub use health::Liveness;
pub use logfiles::LogFilesStatus;
pub use render::render_table;
pub use warden_supervisor::{Command, Overview};

/// What `warden run` needs.
pub struct RunOptions {
    pub config: Config,
    pub database: Location,
    /// Serve the HTTP API here (`None`: no listener).
    pub listen: Option<SocketAddr>,
    /// Required as a bearer token on every HTTP request but the health probes, when set.
    pub token: Option<String>,
    /// Real connectors unless a test injects fakes.
    pub connectors: Option<ConnectorFactory>,
}

/// A running Warden. Call [`App::shutdown`] to stop it cleanly.
pub struct App {
    registry: Registry,
    store: Store,
    bus: Arc<EventBus>,
    writer: tokio::task::JoinHandle<()>,
    writer_stop: CancellationToken,
    http: Option<(SocketAddr, tokio::task::JoinHandle<()>, CancellationToken)>,
    /// What the HTTP routes serve from.
    surface: Option<http::Surface>,
    /// Why the configured database is not in use, if it is not.
    store_fallback: Option<String>,
    gateway: Gateway,
    gateway_stop: CancellationToken,
    /// Writes the gateway's per-tool call counts to the store (stopped after the instances).
    usage_task: tokio::task::JoinHandle<()>,
    usage_stop: CancellationToken,
    /// The JSONL event log next to the database.
    event_log: eventlog::EventLog,
    /// Warden's own log files (written by the binary), for `/health/status`.
    log_files: logfiles::Slot,
    liveness: Option<health::Liveness>,
}

/// Why Warden could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Connectors that start and reach real servers; what servers send their clients goes to
/// `relay` (the gateway installs itself there).
pub fn real_connectors(relay: Relay) -> ConnectorFactory {
    Arc::new(move |spec| warden_upstream::connector_for(spec, &relay))
}

impl App {
    pub async fn start(options: RunOptions) -> Result<Self, StartError> {
        let started = Instant::now();
        // Bind first: a taken port must fail before any child is started.
        let listener = match options.listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Listen { addr, source })?;
                let bound = l.local_addr().map_err(|source| StartError::Listen { addr, source })?;
                Some((l, bound))
            }
            None => None,
        };
        // The database must never stop supervision: if it cannot be opened, record in memory.
        let (store, store_fallback) = match Store::open(&options.database).await {
            Ok(s) => (s, None),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the database; recording in memory until restart");
                let s = Store::open(&Location::Memory)
                    .await
                    .expect("an in-memory SQLite database opens");
                (s, Some(e.to_string()))
            }
        };
        let (events_tx, events_rx) = mpsc::channel(16_384);
        let (samples_tx, samples_rx) = mpsc::channel(16_384);
        let bus = EventBus::new(Some(events_tx));
        // Counting starts before anything can emit, so /metrics misses no event.
        let metrics = warden_metrics::Metrics::new();
        metrics.spawn_event_counter(bus.subscribe());
        let writer_stop = CancellationToken::new();
        let writer = store.spawn_writer(
            events_rx,
            samples_rx,
            WriterOptions {
                retention: options.config.warden.retention,
                prune_every: Duration::from_secs(3600),
                bus: Some(Arc::clone(&bus)),
            },
            writer_stop.clone(),
        );
        let event_log = eventlog::EventLog::start(
            eventlog::dir_for(&options.database),
            options.config.warden.retention,
            &bus,
        );
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
        if let Err(e) = store.sync_failover_configs(&failover_rows(&options.config)).await {
            tracing::warn!(error = %e, "could not record the failover configuration");
        }
        let relay = Relay::default();
        let registry = Registry::start(
            &options.config,
            options.connectors.unwrap_or_else(|| real_connectors(relay.clone())),
            Arc::clone(&bus),
            SupervisorOptions {
                metrics_interval: options.config.warden.metrics_interval,
                samples: Some(samples_tx),
                metrics,
            },
        );
        let gateway = Gateway::new(&registry, &relay);
        let gateway_stop = CancellationToken::new();
        gateway.spawn_change_watcher(gateway_stop.clone());
        let usage = usage::UsageFlusher::new(gateway.clone(), store.clone());
        let usage_stop = CancellationToken::new();
        let usage_task = usage.spawn(usage_stop.clone());
        let mut app = Self {
            registry,
            store,
            bus,
            writer,
            writer_stop,
            http: None,
            surface: None,
            store_fallback,
            gateway,
            gateway_stop,
            usage_task,
            usage_stop,
            event_log,
            log_files: logfiles::Slot::default(),
            liveness: None,
        };
        // The HTTP surface is built even without a listener (tests drive it directly).
        let stop = CancellationToken::new();
        let overview = http::overview_of(&app);
        metrics::register(&app, started);
        let stream = stream::Stream::start(&app.bus, app.store.clone(), stop.clone());
        let health = health::Health::start(
            health::Sources {
                overview: Arc::clone(&overview),
                store: app.store.clone(),
                store_fallback: app.store_fallback.clone(),
                gateway: app.gateway.clone(),
                readiness: options.config.warden.readiness,
                critical: options
                    .config
                    .servers
                    .iter()
                    .filter(|s| s.critical && !s.disabled)
                    .map(|s| s.name.clone())
                    .collect(),
                data_dir: match &options.database {
                    Location::Sqlite(p) => p.parent().map(Into::into),
                    Location::Memory => None,
                },
                started,
                listen: listener.as_ref().map(|(_, b)| b.to_string()),
                event_log: app.event_log.status(),
                log_files: app.log_files.clone(),
                stream: stream.clone(),
            },
            stop.clone(),
        )
        .await;
        app.liveness = Some(health.liveness());
        let reports = reports::Reports {
            store: app.store.clone(),
            servers: Arc::new(app.registry.servers().to_vec()),
            gateway: app.gateway.clone(),
            usage,
            metrics_interval: options.config.warden.metrics_interval,
        };
        let tuner = tuning::Tuner::new(
            reports.clone(),
            Arc::clone(&app.bus),
            options.config.warden.tuning.clone(),
        );
        // Changes still in force are put back before anything is served.
        match tuner.restore().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(parameters = n, "tuning changes restored"),
            Err(e) => tracing::warn!("tuning changes could not be read back: {e}"),
        }
        tuner.spawn_auto(stop.clone());
        app.gateway.install_builtin(Arc::new(tools::Tools {
            overview: Arc::clone(&overview),
            health: health.clone(),
            gateway: app.gateway.clone(),
            servers: Arc::new(app.registry.servers().to_vec()),
            reports: reports.clone(),
            tuner: tuner.clone(),
        }));
        let alerts = alerts::Alerts::start(
            alerts::Sources {
                overview: Arc::clone(&overview),
                metrics: app.registry.metrics().clone(),
                servers: app.registry.servers().iter().map(|s| Arc::clone(&s.spec)).collect(),
                store: app.store.clone(),
                bus: Arc::clone(&app.bus),
                settings: options.config.warden.alerts.clone(),
                external_url: match &listener {
                    Some((_, bound)) => format!("http://{bound}"),
                    None => "http://127.0.0.1:7420".to_owned(),
                },
                handles: app.registry.servers().to_vec(),
            },
            stop.clone(),
        )
        .await;
        app.registry.metrics().register_collector(Box::new(alerts::AlertMetrics(alerts.clone())));
        let w = &options.config.warden;
        app.surface = Some(http::Surface {
            state: http::State::new(&app, started, Arc::clone(&overview), health.clone()),
            guard: guard::Guard {
                token: options.token.map(Into::into),
                loopback: listener.as_ref().is_none_or(|(_, b)| b.ip().is_loopback()),
            },
            limits: http::Limits {
                sessions: warden_gateway::SessionLimits {
                    idle: w.session_idle_timeout,
                    max_body: w.max_request_body,
                },
                max_sessions: w.max_sessions,
            },
            stop: stop.clone(),
            stream,
            alerts,
            reports,
            tuner,
            api: api::Api {
                servers: Arc::new(app.registry.servers().to_vec()),
                gateway: app.gateway.clone(),
                store: app.store.clone(),
                bus: Arc::clone(&app.bus),
            },
        });
        if let Some((listener, bound)) = listener {
            let router = app.router();
            let task = tokio::spawn(http::serve(listener, router, stop.clone()));
            tracing::info!(listen = %bound, "HTTP API listening");
            app.http = Some((bound, task, stop));
        }
        let servers = options.config.servers.len();
        let instances: u32 = options.config.servers.iter().map(|s| s.instance_count()).sum();
        tracing::info!(servers, instances, database = %app.store.location(), "warden started");
        Ok(app)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    /// The MCP gateway in front of every server.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Every HTTP route (API, health, MCP) behind the guard, as served on the listener.
    pub fn router(&self) -> axum::Router {
        let s = self.surface.as_ref().expect("the HTTP surface is built at start");
        http::app(s, self.gateway.clone())
    }

    /// Shows the log files' health as `checks.logs` of `/health/status` (`off` until called).
    pub fn set_log_files(&self, status: LogFilesStatus) {
        self.log_files.set(status);
    }

    /// Whether Warden is alive (as `/livez` says), for a service manager's watchdog.
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone().expect("the health task starts in App::start")
    }

    /// The address the HTTP API is bound to.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(a, _, _)| *a)
    }

    /// Stops serving, stops every instance, flushes the database.
    pub async fn shutdown(self) {
        self.gateway_stop.cancel();
        if let Some(s) = &self.surface {
            s.stop.cancel();
        }
        if let Some((_, task, stop)) = self.http {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let deadline = self.registry.stop_deadline();
        self.registry.shutdown(deadline).await;
        self.usage_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.usage_task).await;
        self.event_log.close().await;
        self.writer_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.writer).await;
        self.store.close().await;
        tracing::info!("warden stopped");
    }
}

/// One `failover_configurations` row per server, from its config.
fn failover_rows(config: &Config) -> Vec<FailoverConfig> {
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

#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
