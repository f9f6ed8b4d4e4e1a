//! Live reload: the config file is compiled in full; with any error nothing changes (the errors
//! go back to whoever asked, to the log, to a `config_rejected` event and to
//! `/health/status`). Otherwise [`ConfigDiff`] says what changed and it is applied server by
//! server: new servers start and removed ones stop taking calls at once, policy changes apply
//! in place; replaced processes (rolling, one instance at a time), resizes and the draining of
//! removed servers take their time, and a later change of the same server waits for them.
//! Nothing that did not change is touched, and client sessions stay.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use warden_config::{Config, ConfigDiff, Secret, ServerSpec};
use warden_core::{Event, EventBus, EventKind, TraceId};
use warden_ops::reloads::ConfigStatus;
use warden_store::Store;
use warden_supervisor::{Registry, SeedBook};

/// Told of every secret a new config holds (the binary redacts them from its logs).
pub type SecretsHook = Arc<dyn Fn(&[Secret]) + Send + Sync>;

/// Reloads the config; cheap to clone.
#[derive(Clone)]
pub(crate) struct Reloader {
    file: Option<PathBuf>,
    secrets: Option<SecretsHook>,
    inner: Arc<Inner>,
}

struct Inner {
    /// The config in force; a reload holds it while it validates, compares and starts its
    /// operations, so reloads are compared one after another.
    current: Arc<Mutex<Config>>,
    /// Each server's last operation, for the next one on that server to wait for.
    busy: Arc<std::sync::Mutex<HashMap<String, Done>>>,
    registry: Arc<Registry>,
    store: Store,
    bus: Arc<EventBus>,
    status: ConfigStatus,
    seeds: SeedBook,
    /// Where the services read Warden's own settings (alerts, tuning, retention).
    settings: Arc<tokio::sync::watch::Sender<warden_config::WardenSettings>>,
}

pub(crate) struct Parts {
    pub(crate) file: Option<PathBuf>,
    pub(crate) config: Config,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Store,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) status: ConfigStatus,
    pub(crate) seeds: SeedBook,
    pub(crate) secrets: Option<SecretsHook>,
    pub(crate) settings: Arc<tokio::sync::watch::Sender<warden_config::WardenSettings>>,
}

impl Reloader {
    pub(crate) fn new(p: Parts) -> Self {
        Self {
            file: p.file,
            secrets: p.secrets,
            inner: Arc::new(Inner {
                current: Arc::new(Mutex::new(p.config)),
                busy: Arc::default(),
                registry: p.registry,
                store: p.store,
                bus: p.bus,
                status: p.status,
                seeds: p.seeds,
                settings: p.settings,
            }),
        }
    }

    /// The same reloader reading `file` (and telling `secrets` of the secrets in it).
    pub(crate) fn with_file(&self, file: PathBuf, secrets: Option<SecretsHook>) -> Self {
        Self { file: Some(file), secrets, inner: Arc::clone(&self.inner) }
    }

    pub(crate) fn file(&self) -> Option<&PathBuf> {
        self.file.as_ref()
    }

    /// Whether the file watch is on, as the config in force says (`warden.reload.watch`).
    pub(crate) async fn watching(&self) -> bool {
        self.inner.current.lock().await.warden.reload.watch
    }

    /// Reads the file and applies what changed; `trigger` says who asked (`file`, `signal`,
    /// `api`). Returns the diff as JSON, or every error (nothing changed).
    pub(crate) async fn reload(&self, trigger: &'static str) -> Result<Value, Vec<String>> {
        let inner = &self.inner;
        let Some(file) = self.file.clone() else {
            let why = "this Warden has no config file to reload (it runs the demo)";
            tracing::warn!(trigger, "{why}");
            return Err(vec![why.to_owned()]);
        };
        let mut current = inner.current.lock().await;
        let loaded = match tokio::task::spawn_blocking(move || warden_config::load(&file)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                let errors: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
                self.reject(trigger, errors.clone());
                return Err(errors);
            }
            Err(e) => {
                let errors = vec![format!("the config could not be read: {e}")];
                self.reject(trigger, errors.clone());
                return Err(errors);
            }
        };
        if let Some(hook) = &self.secrets {
            hook(&loaded.config.secrets);
        }
        for w in &loaded.warnings {
            tracing::warn!("config: {w}");
        }
        let new = loaded.config;
        let diff = ConfigDiff::between(&current, &new);
        let summary = diff.summary();
        self.apply(&new, &diff).await;
        inner.settings.send_replace(new.warden.clone());
        if let Err(e) = inner.store.sync_failover_configs(&crate::wiring::failover_rows(&new)).await
        {
            tracing::warn!(error = %e, "could not record the failover configuration");
        }
        inner.status.applied(trigger, &summary);
        inner.bus.emit(Event::new(None, TraceId::random(), reloaded(trigger, &summary, &diff)));
        let answer = json!({
            "applied": true,
            "trigger": trigger,
            "summary": summary,
            "added": diff.added,
            "removed": diff.removed,
            "restarted": diff.restarted,
            "resized": diff.resized.iter().map(|r| json!({ "server": r.server, "from": r.from, "to": r.to })).collect::<Vec<_>>(),
            "changed_in_place": diff.in_place.iter().map(|c| json!({ "server": c.server, "fields": c.fields })).collect::<Vec<_>>(),
            "applied_live": diff.live,
            "needs_restart": diff.needs_restart,
        });
        *current = new;
        Ok(answer)
    }

    fn reject(&self, trigger: &'static str, errors: Vec<String>) {
        self.inner.status.rejected(trigger, errors.clone());
        self.inner.bus.emit(Event::new(
            None,
            TraceId::random(),
            EventKind::ConfigRejected { trigger: trigger.to_owned(), errors },
        ));
    }

    /// Applies `diff`, one operation per server changed. Operations on different servers run
    /// side by side; on one server they run in the order of the reloads that asked for them (a
    /// rolling restart still going on delays only the next change of that same server). What
    /// is quick (a server added, a policy changed, a server taken out of routing) is done as
    /// soon as its server is free; drains and rolling restarts take their time.
    async fn apply(&self, new: &Config, diff: &ConfigDiff) {
        let inner = &self.inner;
        let grace = new.warden.reload.grace;
        let order: Vec<String> = new.servers.iter().map(|s| s.name.clone()).collect();
        let spec = |name: &str| new.server(name).cloned();
        // A new program learns its own baselines.
        for name in diff.restarted.iter().chain(&diff.removed) {
            inner.seeds.forget(name);
            if let Err(e) = inner.store.delete_predictor_seed(name).await {
                tracing::debug!(server = %name, error = %e, "a predictor seed was not deleted");
            }
        }
        let slow: Vec<&str> = diff
            .resized
            .iter()
            .map(|r| r.server.as_str())
            .chain(diff.restarted.iter().map(String::as_str))
            .collect();
        let mut ops: Vec<(String, Op)> = Vec::new();
        for name in &diff.added {
            if let Some(s) = spec(name) {
                ops.push((name.clone(), Op::Add(s, order.clone())));
            }
        }
        for c in diff.in_place.iter().filter(|c| !slow.contains(&c.server.as_str())) {
            if let Some(s) = spec(&c.server) {
                ops.push((c.server.clone(), Op::Update(s)));
            }
        }
        for name in &diff.removed {
            ops.push((name.clone(), Op::Remove));
        }
        for name in &diff.restarted {
            if let Some(s) = spec(name) {
                ops.push((name.clone(), Op::Reconcile(s, true)));
            }
        }
        for r in &diff.resized {
            if let Some(s) = spec(&r.server) {
                ops.push((r.server.clone(), Op::Reconcile(s, false)));
            }
        }
        let mut busy = inner.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget the servers whose last operation is over.
        busy.retain(|_, done| done.peek().is_none());
        for (server, op) in ops {
            let before = busy.remove(&server);
            let registry = Arc::clone(&inner.registry);
            let name = server.clone();
            let task = tokio::spawn(async move {
                if let Some(before) = before {
                    before.await;
                }
                match op {
                    Op::Add(s, order) => registry.add(s, &order),
                    Op::Update(s) => registry.update(s).await,
                    // Out of routing at once; stopped after the calls in flight.
                    Op::Remove => registry.remove(&name, grace).await,
                    Op::Reconcile(s, restart) => registry.reconcile(s, restart, grace).await,
                }
            });
            let done: Done = async move {
                let _ = task.await;
            }
            .boxed()
            .shared();
            busy.insert(server, done);
        }
    }

    /// Waits until every operation the reloads so far started has finished (tests, shutdown).
    pub(crate) async fn settled(&self) {
        let pending: Vec<Done> = {
            let busy = self.inner.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            busy.values().cloned().collect()
        };
        futures::future::join_all(pending).await;
    }
}

/// One server's part of a reload.
enum Op {
    Add(ServerSpec, Vec<String>),
    Update(ServerSpec),
    Remove,
    Reconcile(ServerSpec, bool),
}

/// When a server's last operation is over.
type Done = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

fn reloaded(trigger: &str, summary: &str, d: &ConfigDiff) -> EventKind {
    let names = |v: &[&'static str]| v.iter().map(|s| (*s).to_owned()).collect();
    EventKind::ConfigReloaded {
        trigger: trigger.to_owned(),
        summary: summary.to_owned(),
        added: d.added.clone(),
        removed: d.removed.clone(),
        restarted: d.restarted.clone(),
        resized: d.resized.iter().map(|r| format!("{} {}→{}", r.server, r.from, r.to)).collect(),
        changed_in_place: d.in_place.iter().map(|c| c.server.clone()).collect(),
        applied_live: names(&d.live),
        needs_restart: names(&d.needs_restart),
    }
}
