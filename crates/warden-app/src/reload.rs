//! Live reload: the config file is compiled in full; with any error nothing changes (the errors
//! go back to whoever asked, to the log, to a `config_rejected` event and to
//! `/health/status`). Otherwise [`ConfigDiff`] says what changed and it is applied server by
//! server: new servers start and removed ones stop taking calls at once, policy changes apply
//! in place; replaced processes (rolling, one instance at a time), resizes and the draining of
//! removed servers go on in the background while the next reload waits. Nothing that did not
//! change is touched, and client sessions stay.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Mutex;
use warden_config::{Config, ConfigDiff, Secret};
use warden_core::{Event, EventBus, EventKind, TraceId};
use warden_ops::reloads::ConfigStatus;
use warden_store::Store;
use warden_supervisor::{Registry, SeedBook};

/// Told of every secret a new config holds (the binary redacts them from its logs).
pub type SecretsHook = Arc<dyn Fn(&[Secret]) + Send + Sync>;

/// Reloads the config; cheap to clone.
#[derive(Clone)]
pub(crate) struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    file: Option<PathBuf>,
    /// The config in force. Held by a reload until everything it started has finished, so
    /// reloads apply one after another.
    current: Arc<Mutex<Config>>,
    registry: Arc<Registry>,
    store: Store,
    bus: Arc<EventBus>,
    status: ConfigStatus,
    seeds: SeedBook,
    secrets: Option<SecretsHook>,
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
            inner: Arc::new(Inner {
                file: p.file,
                current: Arc::new(Mutex::new(p.config)),
                registry: p.registry,
                store: p.store,
                bus: p.bus,
                status: p.status,
                seeds: p.seeds,
                secrets: p.secrets,
                settings: p.settings,
            }),
        }
    }

    /// The same reloader reading `file` (and telling `secrets` of the secrets in it).
    pub(crate) fn with_file(&self, file: PathBuf, secrets: Option<SecretsHook>) -> Self {
        let i = &self.inner;
        Self {
            inner: Arc::new(Inner {
                file: Some(file),
                current: Arc::clone(&i.current),
                registry: Arc::clone(&i.registry),
                store: i.store.clone(),
                bus: Arc::clone(&i.bus),
                status: i.status.clone(),
                seeds: i.seeds.clone(),
                secrets,
                settings: Arc::clone(&i.settings),
            }),
        }
    }

    pub(crate) fn file(&self) -> Option<&PathBuf> {
        self.inner.file.as_ref()
    }

    /// Whether the file watch is on, as the config in force says (`warden.reload.watch`).
    pub(crate) async fn watching(&self) -> bool {
        self.inner.current.lock().await.warden.reload.watch
    }

    /// Reads the file and applies what changed; `trigger` says who asked (`file`, `signal`,
    /// `api`). Returns the diff as JSON, or every error (nothing changed).
    pub(crate) async fn reload(&self, trigger: &'static str) -> Result<Value, Vec<String>> {
        let inner = &self.inner;
        let Some(file) = inner.file.clone() else {
            return Err(vec!["this Warden has no config file to reload".to_owned()]);
        };
        let mut current = Arc::clone(&inner.current).lock_owned().await;
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
        if let Some(hook) = &inner.secrets {
            hook(&loaded.config.secrets);
        }
        for w in &loaded.warnings {
            tracing::warn!("config: {w}");
        }
        let new = loaded.config;
        let diff = ConfigDiff::between(&current, &new);
        let summary = diff.summary();
        let background = self.apply(&new, &diff).await;
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
        // Rolling restarts, resizes and drains finish in the background; the next reload
        // waits for them (it needs the lock this task holds).
        tokio::spawn(async move {
            background.await;
            drop(current);
        });
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

    /// Applies `diff`: at once what is quick (servers added, removed from routing, changed in
    /// place); returns what takes time (drains, rolling restarts, resizes) to run after.
    async fn apply(
        &self,
        new: &Config,
        diff: &ConfigDiff,
    ) -> futures::future::BoxFuture<'static, ()> {
        let inner = &self.inner;
        let registry = &inner.registry;
        let grace = new.warden.reload.grace;
        let order: Vec<String> = new.servers.iter().map(|s| s.name.clone()).collect();
        let spec = |name: &str| new.server(name).cloned();
        for name in &diff.added {
            if let Some(s) = spec(name) {
                registry.add(s, &order);
            }
        }
        let slow: Vec<&str> = diff
            .resized
            .iter()
            .map(|r| r.server.as_str())
            .chain(diff.restarted.iter().map(String::as_str))
            .collect();
        for c in diff.in_place.iter().filter(|c| !slow.contains(&c.server.as_str())) {
            if let Some(s) = spec(&c.server) {
                registry.update(s).await;
            }
        }
        // A new program learns its own baselines.
        for name in diff.restarted.iter().chain(&diff.removed) {
            inner.seeds.forget(name);
            if let Err(e) = inner.store.delete_predictor_seed(name).await {
                tracing::debug!(server = %name, error = %e, "a predictor seed was not deleted");
            }
        }
        let mut work: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
        for name in diff.removed.clone() {
            let registry = Arc::clone(registry);
            // Out of routing at once; stopped after the calls in flight.
            work.push(Box::pin(async move { registry.remove(&name, grace).await }));
        }
        for (name, restart) in diff
            .restarted
            .iter()
            .map(|n| (n.clone(), true))
            .chain(diff.resized.iter().map(|r| (r.server.clone(), false)))
        {
            let Some(s) = spec(&name) else { continue };
            let registry = Arc::clone(registry);
            work.push(Box::pin(async move { registry.reconcile(s, restart, grace).await }));
        }
        Box::pin(async move {
            futures::future::join_all(work).await;
        })
    }
}

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
