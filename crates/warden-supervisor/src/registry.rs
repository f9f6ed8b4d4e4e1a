//! How a config becomes running tasks: one supervisor task per instance, grouped by server —
//! and how a live reload changes them server by server (`add`, `remove`, `update`,
//! `reconcile`) without touching the others.

use std::sync::{Arc, Mutex};
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
use crate::view::{Failover, FailoverControl, Overview, ServerParts};
use crate::InstanceView;

/// Builds the connector for a server (real ones in production, fakes in tests).
pub type ConnectorFactory = Arc<dyn Fn(&ServerSpec) -> Arc<dyn Connector> + Send + Sync>;

/// Called with every server's handles each time the set changes (the gateway follows here).
pub type OnChange = Arc<dyn Fn(&[ServerHandle]) + Send + Sync>;

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
    /// Instances the operators have stopped across a fleet: they start stopped.
    pub stopped: StoppedAtStart,
}

/// The operators' standing decisions to stop or start servers (or one instance of one), oldest
/// first: `(server, instance, stopped)`. A fleet replica reads them from the shared database
/// before [`Registry::start`] (`warden-ops`), so an instance stopped across the fleet starts
/// stopped instead of running until the decision is replayed. Only the instances started with
/// the registry follow them; a later reload's new instances follow the operators' commands.
#[derive(Clone, Default)]
pub struct StoppedAtStart(pub Arc<Vec<(String, Option<u32>, bool)>>);

impl StoppedAtStart {
    /// Whether instance `index` of `server` stays stopped: the last decision that names it
    /// (or its whole server) says so.
    pub fn holds(&self, server: &str, index: u32) -> bool {
        self.0
            .iter()
            .rfind(|(s, i, _)| s == server && i.is_none_or(|i| i == index))
            .is_some_and(|(_, _, stopped)| *stopped)
    }
}

/// One instance task's handles.
#[derive(Clone)]
struct Slot {
    view: watch::Receiver<InstanceView>,
    commands: mpsc::Sender<Command>,
    link: Arc<InstanceLink>,
    /// Where the instance reads its server's policy (replaced in place by a reload).
    spec: Arc<watch::Sender<Arc<ServerSpec>>>,
    /// Stops this instance alone (a child of the registry's shutdown).
    stop: CancellationToken,
}

/// One server's instances (cheap to clone: channels and shared links).
#[derive(Clone)]
pub struct ServerHandle {
    pub spec: Arc<ServerSpec>,
    instances: Vec<Slot>,
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
        self.instances.iter().map(|s| s.view.borrow().clone()).collect()
    }

    /// Sends `cmd` to every instance but the standby (or only to `index`); returns how many
    /// took it. Never waits: an instance with 8 commands already queued does not take another.
    pub async fn command(&self, cmd: Command, index: Option<u32>) -> usize {
        let mut sent = 0;
        for (i, slot) in self.instances.iter().enumerate() {
            let wanted = match index {
                Some(want) => want as usize == i,
                None => !self.spec.is_standby(i as u32),
            };
            if wanted && slot.commands.try_send(cmd).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Where a router reports the calls it sends to instance `index`.
    pub fn link(&self, index: usize) -> Option<Arc<InstanceLink>> {
        self.instances.get(index).map(|s| Arc::clone(&s.link))
    }

    /// Receivers that change whenever an instance's view does.
    pub fn watchers(&self) -> Vec<watch::Receiver<InstanceView>> {
        self.instances.iter().map(|s| s.view.clone()).collect()
    }

    /// Calls in flight on every instance.
    pub fn in_flight(&self) -> usize {
        self.instances.iter().map(|s| s.link.in_flight()).sum()
    }
}

/// What every instance task shares, and what a reload needs to start new ones.
struct Spawner {
    factory: ConnectorFactory,
    bus: Arc<EventBus>,
    options: SupervisorOptions,
    prediction: Option<warden_predict::PredictorConfig>,
    shutdown: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
}

impl Spawner {
    /// Starts instance `index` of the server.
    fn slot(
        &self,
        spec: &Arc<watch::Sender<Arc<ServerSpec>>>,
        connector: &Arc<dyn Connector>,
        tuning: &watch::Sender<Tuned>,
        index: u32,
        held: bool,
    ) -> Slot {
        let current = Arc::clone(&spec.borrow());
        let id = InstanceId::new(current.name.as_str(), index);
        let view =
            InstanceView { standby: current.is_standby(index), ..InstanceView::new(id.clone()) };
        let (view_tx, view_rx) = watch::channel(view);
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (failed_tx, failed_rx) = mpsc::channel(1);
        let link = Arc::new(InstanceLink::new(failed_tx, self.options.metrics.instance(&id)));
        let stop = self.shutdown.child_token();
        let ctx = InstanceCtx {
            id,
            spec: spec.subscribe(),
            connector: Arc::clone(connector),
            bus: Arc::clone(&self.bus),
            samples: self.options.samples.clone(),
            metrics_interval: self.options.metrics_interval,
            view: view_tx,
            commands: cmd_rx,
            link: Arc::clone(&link),
            failed: failed_rx,
            shutdown: stop.clone(),
            prediction: self.prediction.clone(),
            tuning: tuning.subscribe(),
            seeds: self.options.seeds.clone(),
            held,
        };
        let mut tasks = self.tasks.lock().expect("not poisoned");
        // Reap the tasks of instances a reload stopped.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(instance::run(ctx));
        Slot { view: view_rx, commands: cmd_tx, link, spec: Arc::clone(spec), stop }
    }

    /// A new server and all its instances; those `stopped` holds start stopped.
    fn server(&self, spec: ServerSpec, stopped: &StoppedAtStart) -> ServerHandle {
        let spec = Arc::new(spec);
        let connector = (self.factory)(&spec);
        let spec_tx = Arc::new(watch::channel(Arc::clone(&spec)).0);
        let tuning = Arc::new(watch::channel(Tuned::default()).0);
        let instances = (0..spec.slot_count())
            .map(|i| {
                let held = stopped.holds(&spec.name, i);
                self.slot(&spec_tx, &connector, &tuning, i, held)
            })
            .collect();
        let failover = Arc::new(FailoverControl::new(spec.fallback_strategy));
        ServerHandle { spec, instances, tuning, failover }
    }
}

/// A reload that changes `fallback_strategy` in the config replaces what the operator set.
fn follow_strategy(control: &FailoverControl, old: &ServerSpec, new: &ServerSpec) {
    if old.fallback_strategy != new.fallback_strategy {
        control.set(Failover { strategy: new.fallback_strategy, ..control.get() });
    }
}

/// Every supervised server. Call [`Registry::shutdown`] to stop them gracefully; dropping the
/// registry aborts the tasks, and each child's process group is then killed outright.
pub struct Registry {
    servers: watch::Sender<Arc<Vec<ServerHandle>>>,
    spawner: Spawner,
    on_change: Mutex<Vec<OnChange>>,
    /// One edit of the list at a time (reloads of different servers run side by side).
    editing: Mutex<()>,
}

impl Registry {
    /// Starts one task per instance of every server in `config`.
    pub fn start(
        config: &Config,
        factory: ConnectorFactory,
        bus: Arc<EventBus>,
        options: SupervisorOptions,
    ) -> Self {
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
        let spawner = Spawner {
            factory,
            bus,
            options,
            prediction,
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(JoinSet::new()),
        };
        let stopped = spawner.options.stopped.clone();
        let servers = config.servers.iter().map(|s| spawner.server(s.clone(), &stopped)).collect();
        Self {
            servers: watch::channel(Arc::new(servers)).0,
            spawner,
            on_change: Mutex::default(),
            editing: Mutex::default(),
        }
    }

    /// The metrics every instance records into.
    pub fn metrics(&self) -> &Metrics {
        &self.spawner.options.metrics
    }

    /// Every server now, in config order.
    pub fn servers(&self) -> Arc<Vec<ServerHandle>> {
        Arc::clone(&self.servers.borrow())
    }

    pub fn server(&self, name: &str) -> Option<ServerHandle> {
        self.servers.borrow().iter().find(|s| s.spec.name == name).cloned()
    }

    /// A handle that builds the server view from anywhere, without the registry; it follows
    /// every reload.
    pub fn views(&self) -> Views {
        Views(self.servers.subscribe())
    }

    /// The server view of everything, with fallbacks taken into account.
    pub fn overview(&self) -> Overview {
        self.views().get()
    }

    /// Calls `f` with every server's handles now and after each change (before the change's
    /// method returns, so whoever routes calls never sees a stopped instance as new).
    pub fn on_change(&self, f: OnChange) {
        f(&self.servers());
        self.on_change.lock().expect("not poisoned").push(f);
    }

    /// Publishes `servers` and tells every follower.
    fn publish(&self, servers: Vec<ServerHandle>) {
        let servers = Arc::new(servers);
        self.servers.send_replace(Arc::clone(&servers));
        let followers = self.on_change.lock().expect("not poisoned").clone();
        for f in followers {
            f(&servers);
        }
    }

    /// Edits the list of servers and publishes it.
    fn edit<T>(&self, f: impl FnOnce(&mut Vec<ServerHandle>) -> T) -> T {
        let _one = self.editing.lock().expect("not poisoned");
        let mut servers = self.servers().as_ref().clone();
        let out = f(&mut servers);
        self.publish(servers);
        out
    }

    /// Starts a new server (placed as in `order`, the new config's names).
    pub fn add(&self, spec: ServerSpec, order: &[String]) {
        let handle = self.spawner.server(spec, &StoppedAtStart::default());
        self.edit(|servers| {
            servers.push(handle);
            sort_by(servers, order);
        });
    }

    /// Takes a server out at once (no new calls reach it), lets the calls in flight finish
    /// within `grace`, then stops its instances the usual way and waits for them.
    pub async fn remove(&self, name: &str, grace: Duration) {
        let removed = self.edit(|servers| {
            let at = servers.iter().position(|s| s.spec.name == name)?;
            Some(servers.remove(at))
        });
        if let Some(h) = removed {
            let deadline = stop_deadline(&h.spec);
            retire(h.instances, grace, deadline).await;
        }
    }

    /// A policy-only change: the instances and the gateway use the new spec from their next
    /// probe or call; nothing is restarted. An enabled server that became `disabled` is
    /// stopped, and started again when enabled.
    pub async fn update(&self, spec: ServerSpec) {
        let spec = Arc::new(spec);
        let Some(old) = self.edit(|servers| {
            let h = servers.iter_mut().find(|s| s.spec.name == spec.name)?;
            let old = std::mem::replace(&mut h.spec, Arc::clone(&spec));
            Some((old, h.clone()))
        }) else {
            return;
        };
        let (old, h) = old;
        for slot in &h.instances {
            slot.spec.send_replace(Arc::clone(&spec));
        }
        follow_strategy(&h.failover, &old, &spec);
        if old.disabled != spec.disabled {
            let cmd = if spec.disabled { Command::Stop } else { Command::Start };
            h.command(cmd, None).await;
        }
    }

    /// Brings a server's instances to `spec`: a slot whose process must change (`restart`: a
    /// new transport; or a slot whose role — standby or not — changed) is replaced one at a
    /// time, the new instance started and serving (or given its start-up time) before the old
    /// one is drained and stopped, so a server with replicas never stops serving; slots beyond
    /// the new count are drained and stopped, new ones started. The others are untouched.
    pub async fn reconcile(&self, spec: ServerSpec, restart: bool, grace: Duration) {
        let Some(old) = self.server(&spec.name) else { return };
        let spec = Arc::new(spec);
        let connector = (self.spawner.factory)(&spec);
        // Slots that keep running follow the new policy; new ones read it from the start.
        let spec_tx = if restart {
            Arc::new(watch::channel(Arc::clone(&spec)).0)
        } else {
            let tx = old.instances.first().map_or_else(
                || Arc::new(watch::channel(Arc::clone(&spec)).0),
                |s| Arc::clone(&s.spec),
            );
            tx.send_replace(Arc::clone(&spec));
            tx
        };
        let (from, to) = (old.spec.slot_count(), spec.slot_count());
        self.edit(|servers| {
            if let Some(h) = servers.iter_mut().find(|s| s.spec.name == spec.name) {
                h.spec = Arc::clone(&spec);
            }
        });
        follow_strategy(&old.failover, &old.spec, &spec);
        let mut retired = Vec::new();
        for index in 0..from.max(to) {
            let same_role = old.spec.is_standby(index) == spec.is_standby(index);
            if index < from.min(to) && !restart && same_role {
                continue;
            }
            let new = (index < to)
                .then(|| self.spawner.slot(&spec_tx, &connector, &old.tuning, index, false));
            if let Some(slot) = &new {
                if index < from && !spec.is_standby(index) && !spec.disabled {
                    ready(slot, spec.health.startup_timeout + Duration::from_secs(5)).await;
                }
            }
            let out = self.edit(|servers| {
                let h = servers.iter_mut().find(|s| s.spec.name == spec.name)?;
                let i = index as usize;
                match new {
                    Some(slot) if i < h.instances.len() => {
                        Some(std::mem::replace(&mut h.instances[i], slot))
                    }
                    Some(slot) => {
                        h.instances.push(slot);
                        None
                    }
                    // Beyond the new count: the slots after `to` go, one per turn.
                    None => {
                        (h.instances.len() > to as usize).then(|| h.instances.remove(to as usize))
                    }
                }
            });
            if let Some(slot) = out {
                if restart || index < to {
                    // Rolling: the old one goes before the next slot is replaced.
                    retire(vec![slot], grace, stop_deadline(&old.spec)).await;
                } else {
                    retired.push(slot);
                }
            }
        }
        retire(retired, grace, stop_deadline(&old.spec)).await;
    }

    /// How long a graceful stop of everything may take: the longest stop policy (grace, then
    /// SIGTERM and its wait, then SIGKILL and reaping), plus slack.
    pub fn stop_deadline(&self) -> Duration {
        self.servers().iter().map(|s| stop_deadline(&s.spec)).max().unwrap_or_default()
    }

    /// Stops every instance gracefully (close stdin → SIGTERM → SIGKILL, per server policy)
    /// and waits for all of them, at most `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        self.spawner.shutdown.cancel();
        let mut tasks = std::mem::take(&mut *self.spawner.tasks.lock().expect("not poisoned"));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("some instances did not stop within {deadline:?}; aborting their tasks");
            tasks.abort_all();
        }
    }
}

/// How long stopping one of this server's instances may take, with slack.
fn stop_deadline(spec: &ServerSpec) -> Duration {
    spec.restart.stop_grace + spec.restart.term_timeout + Duration::from_secs(10)
}

/// Puts `servers` in the order of `order` (names not in it last, as they were).
fn sort_by(servers: &mut [ServerHandle], order: &[String]) {
    servers.sort_by_key(|s| order.iter().position(|n| *n == s.spec.name).unwrap_or(usize::MAX));
}

/// Waits until a new instance serves (routable, its catalog listed), at most `limit`.
async fn ready(slot: &Slot, limit: Duration) {
    let mut view = slot.view.clone();
    let serving = async {
        loop {
            if view.borrow_and_update().state.is_routable() && slot.link.catalog().is_some() {
                return;
            }
            // The catalog lands after the state: look again shortly even without a change.
            let _ = tokio::time::timeout(Duration::from_millis(50), view.changed()).await;
        }
    };
    let _ = tokio::time::timeout(limit, serving).await;
}

/// Drains instances no router sends new calls to any more: the calls in flight get `grace`
/// to finish, then each instance is stopped the usual way; waits until their tasks ended (at
/// most `deadline`).
async fn retire(slots: Vec<Slot>, grace: Duration, deadline: Duration) {
    if slots.is_empty() {
        return;
    }
    let drained = async {
        while slots.iter().any(|s| s.link.in_flight() > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::time::timeout(grace, drained).await;
    for s in &slots {
        s.stop.cancel();
    }
    let ended = futures::future::join_all(slots.iter().map(|s| {
        let mut view = s.view.clone();
        // The view's sender goes with the task: `changed` fails once it has ended.
        async move { while view.changed().await.is_ok() {} }
    }));
    if tokio::time::timeout(deadline, ended).await.is_err() {
        tracing::warn!("a retired instance did not stop within {deadline:?}");
    }
}

/// Every server's live view, readable from anywhere (the HTTP surfaces, alerting, reports)
/// without the registry: it follows every reload. No lock is held across a read but the watch
/// channel's own. Cheap to clone.
#[derive(Clone)]
pub struct Views(watch::Receiver<Arc<Vec<ServerHandle>>>);

impl Views {
    /// The server view of everything now (as [`Registry::overview`]).
    pub fn get(&self) -> Overview {
        Overview::from_parts(self.0.borrow().iter().map(ServerHandle::parts).collect())
    }

    /// Every server's handle now.
    pub fn handles(&self) -> Arc<Vec<ServerHandle>> {
        Arc::clone(&self.0.borrow())
    }

    /// One server's handle now.
    pub fn handle(&self, name: &str) -> Option<ServerHandle> {
        self.0.borrow().iter().find(|s| s.spec.name == name).cloned()
    }

    /// Every server's config now.
    pub fn specs(&self) -> Vec<Arc<ServerSpec>> {
        self.0.borrow().iter().map(|s| Arc::clone(&s.spec)).collect()
    }
}

#[cfg(test)]
mod stopped_tests {
    use super::StoppedAtStart;
    use std::sync::Arc;

    #[test]
    fn the_last_decision_naming_an_instance_or_its_server_holds() {
        let s = |server: &str, instance: Option<u32>, stopped: bool| {
            (server.to_owned(), instance, stopped)
        };
        let held = StoppedAtStart(Arc::new(vec![
            s("a", None, true),
            s("a", Some(1), false),
            s("b", Some(0), true),
            s("c", Some(0), true),
            s("c", None, false),
        ]));
        assert!(held.holds("a", 0) && held.holds("a", 2), "the whole server was stopped");
        assert!(!held.holds("a", 1), "then one instance started again");
        assert!(held.holds("b", 0) && !held.holds("b", 1), "one instance only");
        assert!(!held.holds("c", 0), "the server started after its instance was stopped");
        assert!(!held.holds("d", 0), "no decision");
        assert!(!StoppedAtStart::default().holds("a", 0));
    }
}
