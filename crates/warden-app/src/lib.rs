//! The composition root: turns a validated config into running parts and owns their shutdown.
//! It builds, wires, starts and drains — nothing else (ARCHITECTURE.md, "Crates"). Each step's
//! details are in `wiring.rs`; the order is here, on one screen.
//!
//! Shutdown runs backwards: stop serving, stop every instance gracefully, flush what the
//! services keep in memory, then the writer, then close the database.

mod check;
mod demo;
mod reload;
mod render;
mod seeds;
mod sessions;
mod watch;
mod wiring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_config::Config;
use warden_core::EventBus;
use warden_gateway::Gateway;
use warden_store::{Location, Store};
use warden_supervisor::{ConnectorFactory, Registry};

pub use check::{check, CheckOptions};
pub use demo::demo_config;
pub use reload::SecretsHook;
pub use render::render_table;
pub use warden_admin::Liveness;
pub use warden_ops::logfiles::LogFilesStatus;
pub use warden_ops::logstream::LogTap;
pub use warden_supervisor::{Command, Overview};
pub use wiring::real_connectors;

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
    /// Threads serving the HTTP listener, each with a runtime of its own
    /// (`warden_admin::DataPlane`); `None`: one per core.
    pub http_threads: Option<usize>,
}

/// A running Warden. Call [`App::shutdown`] to stop it cleanly.
pub struct App {
    registry: Arc<Registry>,
    /// Live reload (a config file to read is given by [`App::enable_reload`]).
    reloader: reload::Reloader,
    config_status: warden_ops::reloads::ConfigStatus,
    store: Store,
    recording: wiring::Recording,
    gateway: Gateway,
    services: wiring::Services,
    /// What the HTTP routes serve from (built even without a listener: tests drive it).
    surface: warden_admin::Surface,
    http: Option<(SocketAddr, warden_admin::DataPlane)>,
    /// Warden's own log files (written by the binary), for `/health/status`.
    log_files: warden_ops::logfiles::Slot,
    liveness: Liveness,
}

/// Why Warden could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

impl App {
    pub async fn start(options: RunOptions) -> Result<Self, StartError> {
        let started = Instant::now();
        // 1. The port first: a taken port must fail before any child is started.
        let listener = wiring::bind(options.listen).await?;
        // Its serving threads next: stdio children's output is read on their runtimes.
        let plane = match &listener {
            Some((_, bound)) => {
                let threads = options.http_threads.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                let plane = warden_admin::DataPlane::start(threads)
                    .map_err(|source| StartError::Listen { addr: *bound, source })?;
                Some(plane)
            }
            None => None,
        };
        // 2. The store; if it cannot be opened, record in memory (supervision never waits).
        let (store, store_fallback) = wiring::open_store(&options.database).await;
        // This replica's name, on the rows it opens (several may share the database).
        let replica = wiring::replica_info(&listener);
        store.set_replica(&replica.id);
        // 3. Recording: the event bus, metrics, the batching writer, the JSONL event log.
        let (recording, samples) = wiring::Recording::start(&store, &options);
        wiring::prepare_store(&store, &options.config).await;
        // 4. Supervision: every instance, seeded with what its server learnt before.
        let seeds = seeds::load(&store).await;
        // In a fleet, what the operators stopped stays stopped from the first moment.
        let stopped = warden_ops::fleet::stopped_at_start(&store).await;
        let relay = warden_upstream::Relay::default();
        if let Some(plane) = &plane {
            relay.set_homes(plane.handles());
        }
        let registry =
            wiring::supervise(&options, &recording, samples, seeds.clone(), stopped, &relay);
        let registry = Arc::new(registry);
        // 5. The gateway in front of every server.
        let gateway = Gateway::new(&registry, &relay);
        if store.is_shared() {
            // Any replica continues a client session another began.
            gateway.set_session_store(std::sync::Arc::new(sessions::DbSessions(store.clone())));
        }
        // 6. The services: tool usage, seeds, tuning, alerting, standby control.
        let services = wiring::Services::start(
            &registry,
            &gateway,
            &store,
            &recording,
            seeds.clone(),
            &options,
            replica,
        )
        .await;
        // 7. The surfaces: HTTP routes and Warden's own MCP tools.
        let log_files = warden_ops::logfiles::Slot::default();
        let config_status = warden_ops::reloads::ConfigStatus::default();
        let reloader = reload::Reloader::new(reload::Parts {
            file: None,
            config: options.config.clone(),
            registry: Arc::clone(&registry),
            store: store.clone(),
            bus: Arc::clone(&recording.bus),
            status: config_status.clone(),
            seeds,
            secrets: None,
            settings: Arc::clone(&recording.settings),
        });
        let (surface, liveness) = wiring::surface(
            &registry,
            &gateway,
            &store,
            store_fallback,
            &recording,
            &services,
            &log_files,
            &config_status,
            &options,
            &listener,
            plane.as_ref().map(warden_admin::DataPlane::connections),
            started,
        )
        .await;
        // 8. Serve.
        let http = listener.zip(plane).map(|((l, bound), mut plane)| {
            let front = warden_admin::front(&surface, gateway.clone());
            plane.serve(l, front, &surface.stop);
            tracing::info!(listen = %bound, threads = plane.handles().len(), "HTTP API listening");
            (bound, plane)
        });
        let instances: u32 = options.config.servers.iter().map(|s| s.instance_count()).sum();
        tracing::info!(servers = options.config.servers.len(), instances, database = %store.location(), "warden started");
        Ok(Self {
            registry,
            reloader,
            config_status,
            store,
            recording,
            gateway,
            services,
            surface,
            http,
            log_files,
            liveness,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reads `file` on every reload (SIGHUP, `POST /api/reload`, `warden reload`) and, while
    /// `warden.reload.watch` is on, whenever it changes on disk. `secrets` is told of the
    /// secrets each new config holds.
    pub fn enable_reload(&mut self, file: std::path::PathBuf, secrets: Option<SecretsHook>) {
        self.reloader = self.reloader.with_file(file, secrets);
        self.config_status.set_file(self.reloader.file().map(|f| f.display().to_string()));
        let reloader = self.reloader.clone();
        self.config_status.install(Arc::new(move |trigger| {
            let reloader = reloader.clone();
            Box::pin(async move { reloader.reload(trigger).await })
        }));
        watch::spawn(self.reloader.clone(), self.services.stop.child_token());
    }

    /// Reloads the config file now (`trigger`: who asked, as events and logs name it): the
    /// diff applied, or every error (nothing changed).
    pub async fn reload(&self, trigger: &'static str) -> Result<serde_json::Value, Vec<String>> {
        self.reloader.reload(trigger).await
    }

    /// Warden's own settings, as the last reload left them.
    pub fn settings(&self) -> tokio::sync::watch::Receiver<warden_config::WardenSettings> {
        self.recording.settings.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn bus(&self) -> &Arc<EventBus> {
        &self.recording.bus
    }

    /// The MCP gateway in front of every server.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Every HTTP route (API, health, MCP) behind the guard, as served on the listener.
    pub fn router(&self) -> axum::Router {
        warden_admin::app(&self.surface, self.gateway.clone())
    }

    /// Shows the log files' health as `checks.logs` of `/health/status` (`off` until called).
    pub fn set_log_files(&self, status: LogFilesStatus) {
        self.log_files.set(status);
    }

    /// Where Warden's own log lines go for `GET /logs` (the binary's logging sends them).
    pub fn log_tap(&self) -> warden_ops::logstream::LogTap {
        self.surface.logs.clone()
    }

    /// Whether Warden is alive (as `/livez` says), for a service manager's watchdog.
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// The address the HTTP API is bound to.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(a, _)| *a)
    }

    /// Stops serving, stops every instance, flushes the database.
    pub async fn shutdown(self) {
        self.services.gateway_stop.cancel();
        // The services' loops and every surface (a child token) stop first.
        self.services.stop.cancel();
        let mut http = self.http.map(|(_, plane)| plane);
        if let Some(plane) = http.as_mut() {
            plane.stopped(Duration::from_secs(2)).await;
        }
        // A reload's drains and rolling restarts get a moment to finish; the rest stops with
        // everything else.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.reloader.settled()).await;
        let deadline = self.registry.stop_deadline();
        self.registry.shutdown(deadline).await;
        self.services.drain().await;
        self.recording.drain().await;
        self.store.close().await;
        // Last: what the serving threads' runtimes drive (a pooled upstream connection, a
        // database connection opened during a request) was in use until now.
        if let Some(plane) = http {
            plane.release().await;
        }
        tracing::info!("warden stopped");
    }
}

#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
