//! How a config becomes running tasks: one supervisor task per instance, grouped by server.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use warden_config::{Config, ServerSpec};
use warden_core::{EventBus, InstanceId, MetricSample};
use warden_metrics::Metrics;
use warden_upstream::Connector;

use crate::instance::{self, Command, InstanceCtx, InstanceLink};
use crate::tuning::Tuned;
use crate::view::{FailoverControl, Overview, ServerParts};
use crate::InstanceView;

/// Builds the connector for a server (real ones in production, fakes in tests).
pub type ConnectorFactory = Arc<dyn Fn(&ServerSpec) -> Arc<dyn Connector> + Send + Sync>;

/// Knobs that are not part of a server's own config.
#[derive(Clone)]
pub struct SupervisorOptions {
    pub metrics_interval: Duration,
    pub samples: Option<mpsc::Sender<MetricSample>>,
    /// Where probes, calls and failed sessions are counted (the gateway takes its handles
    /// from here too: [`Registry::metrics`]).
    pub metrics: Metrics,
    /// Every server's learnt predictor baselines, shared by its instances (load it from the
    /// store before [`Registry::start`] so the first instances are watched at once).
    pub seeds: crate::SeedBook,
}

/// One server's instances (cheap to clone: channels and shared links).
#[derive(Clone)]
pub struct ServerHandle {
    pub spec: Arc<ServerSpec>,
    instances: Vec<(watch::Receiver<InstanceView>, mpsc::Sender<Command>, Arc<InstanceLink>)>,
    /// Run-time overrides of the policy (tuning), watched by the instances and the gateway.
    tuning: Arc<watch::Sender<Tuned>>,
    /// The operator's failover settings, routed by the gateway and shown by every view.
    failover: Arc<FailoverControl>,
}

impl ServerHandle {
    /// The overrides in force.
    pub fn tuned(&self) -> Tuned {
        self.tuning.borrow().clone()
    }

    /// Replaces the overrides; instances and the gateway use them from their next probe or
    /// call.
    pub fn set_tuned(&self, tuned: Tuned) {
        self.tuning.send_replace(tuned);
    }

    /// A receiver that always holds the overrides in force.
    pub fn tuning(&self) -> watch::Receiver<Tuned> {
        self.tuning.subscribe()
    }

    pub fn failover(&self) -> &Arc<FailoverControl> {
        &self.failover
    }

    /// This server's parts of the server view (see [`Overview::from_parts`]).
    pub fn parts(&self) -> ServerParts {
        (Arc::clone(&self.spec), self.views(), self.failover.get())
    }

    pub fn views(&self) -> Vec<InstanceView> {
        self.instances.iter().map(|(v, _, _)| v.borrow().clone()).collect()
    }

    /// Sends `cmd` to every instance but the standby (or only to `index`); returns how many
    /// took it. Never waits: an instance with 8 commands already queued does not take another.
    pub async fn command(&self, cmd: Command, index: Option<u32>) -> usize {
        let mut sent = 0;
        for (i, (_, tx, _)) in self.instances.iter().enumerate() {
            let wanted = match index {
                Some(want) => want as usize == i,
                None => !self.spec.is_standby(i as u32),
            };
            if wanted && tx.try_send(cmd).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Where a router reports the calls it sends to instance `index`.
    pub fn link(&self, index: usize) -> Option<Arc<InstanceLink>> {
        self.instances.get(index).map(|(_, _, l)| Arc::clone(l))
    }

    /// Receivers that change whenever an instance's view does.
    pub fn watchers(&self) -> Vec<watch::Receiver<InstanceView>> {
        self.instances.iter().map(|(v, _, _)| v.clone()).collect()
    }
}

/// Every supervised server. Call [`Registry::shutdown`] to stop them gracefully; dropping the
/// registry aborts the tasks, and each child's process group is then killed outright.
pub struct Registry {
    servers: Vec<ServerHandle>,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    metrics: Metrics,
}

impl Registry {
    /// Starts one task per instance of every server in `config`.
    pub fn start(
        config: &Config,
        factory: ConnectorFactory,
        bus: Arc<EventBus>,
        options: SupervisorOptions,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let p = &config.warden.prediction;
        let prediction = p.enabled.then(|| {
            let d = warden_predict::PredictorConfig::default();
            let warmup = p.warmup.as_secs_f64();
            // The default asks 30 batches in 10 minutes: keep that ratio for other warm-ups.
            let batches = (warmup / f64::from(d.batch_seconds) / 2.0) as u32;
            warden_predict::PredictorConfig {
                warmup,
                warmup_batches: batches.clamp(2, d.warmup_batches),
                ..d
            }
        });
        let mut servers = Vec::new();
        for spec in &config.servers {
            let spec = Arc::new(spec.clone());
            let connector = factory(&spec);
            let tuning = Arc::new(watch::channel(Tuned::default()).0);
            let mut instances = Vec::new();
            for index in 0..spec.slot_count() {
                let id = InstanceId::new(spec.name.as_str(), index);
                let view = InstanceView {
                    standby: spec.is_standby(index),
                    ..InstanceView::new(id.clone())
                };
                let (view_tx, view_rx) = watch::channel(view);
                let (cmd_tx, cmd_rx) = mpsc::channel(8);
                let (report_tx, report_rx) = mpsc::channel(1024);
                let link = Arc::new(InstanceLink::new(report_tx, options.metrics.instance(&id)));
                let ctx = InstanceCtx {
                    id,
                    spec: Arc::clone(&spec),
                    connector: Arc::clone(&connector),
                    bus: Arc::clone(&bus),
                    samples: options.samples.clone(),
                    metrics_interval: options.metrics_interval,
                    view: view_tx,
                    commands: cmd_rx,
                    link: Arc::clone(&link),
                    reports: report_rx,
                    shutdown: shutdown.child_token(),
                    prediction: prediction.clone(),
                    tuning: tuning.subscribe(),
                    seeds: options.seeds.clone(),
                };
                tasks.spawn(instance::run(ctx));
                instances.push((view_rx, cmd_tx, link));
            }
            servers.push(ServerHandle { spec, instances, tuning, failover: Default::default() });
        }
        Self { servers, tasks, shutdown, metrics: options.metrics }
    }

    /// The metrics every instance records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn servers(&self) -> &[ServerHandle] {
        &self.servers
    }

    pub fn server(&self, name: &str) -> Option<&ServerHandle> {
        self.servers.iter().find(|s| s.spec.name == name)
    }

    /// A handle that builds the server view from anywhere, without the registry.
    pub fn views(&self) -> Views {
        Views(Arc::new(self.servers.clone()))
    }

    /// The server view of everything, with fallbacks taken into account.
    pub fn overview(&self) -> Overview {
        Overview::from_parts(self.servers.iter().map(ServerHandle::parts).collect())
    }

    /// How long a graceful stop of everything may take: the longest stop policy (grace, then
    /// SIGTERM and its wait, then SIGKILL and reaping), plus slack.
    pub fn stop_deadline(&self) -> Duration {
        self.servers
            .iter()
            .map(|s| s.spec.restart.stop_grace + s.spec.restart.term_timeout)
            .max()
            .unwrap_or_default()
            + Duration::from_secs(10)
    }

    /// Stops every instance gracefully (close stdin → SIGTERM → SIGKILL, per server policy)
    /// and waits for all of them, at most `deadline`.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.shutdown.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("some instances did not stop within {deadline:?}; aborting their tasks");
            self.tasks.abort_all();
        }
    }
}

/// Every server's live view, readable from anywhere (the HTTP surfaces, alerting, reports)
/// without the registry: clones of the servers' handles (watch channels), no lock, no query.
/// Cheap to clone.
#[derive(Clone)]
pub struct Views(Arc<Vec<ServerHandle>>);

impl Views {
    /// The server view of everything now (as [`Registry::overview`]).
    pub fn get(&self) -> Overview {
        Overview::from_parts(self.0.iter().map(ServerHandle::parts).collect())
    }
}
