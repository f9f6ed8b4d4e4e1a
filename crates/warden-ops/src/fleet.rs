//! The fleet: Warden replicas sharing one PostgreSQL database, each supervising its own
//! instances. Each replica writes a heartbeat every 2 s and its servers' views when they change
//! (every 4 s at most); any replica answers for the whole fleet from those rows, its own servers
//! from memory. A replica silent for more than [`GONE_AFTER`] seconds (by the database's clock)
//! is `gone`; one gone for an hour is forgotten.
//!
//! With SQLite (one Warden, no fleet) nothing is written: the fleet is this replica alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use warden_store::{ReplicaInfo, ReplicaRow, Store};
use warden_supervisor::Views;

/// Seconds without a heartbeat after which a replica is `gone` (5 missed beats).
pub const GONE_AFTER: f64 = 10.0;
const BEAT: Duration = Duration::from_secs(2);
/// Views are published every this many beats.
const VIEWS_EVERY: u64 = 2;
/// What a replica silent this long (seconds) left open is closed by the leader.
const ABANDON_AFTER: f64 = 60.0;
/// Gone replicas are deleted after this long (checked every 60 beats).
const FORGET_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// The fleet as this replica sees it; cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    views: Views,
    me: ReplicaInfo,
    leading: warden_store::Leading,
}

/// This replica's id: `WARDEN_REPLICA`, else `HOST:PORT` of its listener (`HOST:pidPID`
/// without one), so a restarted replica keeps its id and its row.
pub fn replica_id(host: &str, listen: Option<std::net::SocketAddr>) -> String {
    if let Some(id) = std::env::var("WARDEN_REPLICA").ok().filter(|v| !v.trim().is_empty()) {
        return id.trim().to_owned();
    }
    match listen {
        Some(a) => format!("{host}:{}", a.port()),
        None => format!("{host}:pid{}", std::process::id()),
    }
}

/// The machine's name (the kernel's), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Fleet {
    pub fn new(
        store: Store,
        views: Views,
        me: ReplicaInfo,
        leading: warden_store::Leading,
    ) -> Self {
        Self { inner: Arc::new(Inner { store, views, me, leading }) }
    }

    /// This replica leads the fleet now (always, alone).
    pub fn leading(&self) -> bool {
        *self.inner.leading.borrow()
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.inner.me.id
    }

    /// Starts the heartbeat, and the task that applies the operator actions other replicas
    /// record (only with a shared database). When `stop` fires the heartbeat marks this
    /// replica stopped and removes its views, then ends.
    pub fn spawn(
        &self,
        gateway: warden_gateway::Gateway,
        tuner: crate::tuning::Tuner,
        stop: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let inner = Arc::clone(&self.inner);
        // Alone (SQLite), there is no fleet to beat for or follow.
        if !inner.store.is_shared() {
            return None;
        }
        let targets = Targets { gateway, tuner };
        tokio::spawn(follow_commands(Arc::clone(&inner), targets, stop.clone()));
        Some(tokio::spawn(heartbeat(inner, stop)))
    }

    /// The fleet document served as `/api/servers?scope=fleet` and
    /// `/health/ecosystem?scope=fleet`: every replica with its state, and every server with
    /// its instances on every replica (each labelled with its replica).
    pub async fn document(&self) -> Result<Value, warden_store::DbError> {
        let me = &self.inner.me;
        let (rows, views) = if self.inner.store.is_shared() {
            self.inner.store.fleet().await?
        } else {
            (Vec::new(), Vec::new())
        };
        let mut replicas: Vec<Value> = rows.iter().map(|r| replica_json(r, &me.id)).collect();
        if !rows.iter().any(|r| r.id == me.id) {
            // Not written yet (or no shared database): this replica, from memory.
            replicas.push(json!({
                "id": me.id, "host": me.host, "pid": me.pid, "version": me.version,
                "listen": me.listen, "started_at": me.started_at, "state": "live", "self": true,
                "leading": self.leading(),
            }));
        }
        let state_of: HashMap<String, String> =
            replicas.iter().map(|r| (text(&r["id"]), text(&r["state"]))).collect();
        // server → replica → view; this replica's own from memory (fresher than its rows).
        let mut by_server: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for v in views.into_iter().filter(|v| v.replica != me.id) {
            by_server.entry(v.server).or_default().insert(v.replica, v.view);
        }
        let local = serde_json::to_value(self.inner.views.get()).unwrap_or(Value::Null);
        for s in local["servers"].as_array().into_iter().flatten() {
            by_server.entry(text(&s["name"])).or_default().insert(me.id.clone(), s.clone());
        }
        let mut servers = Vec::new();
        let mut overall = 0;
        for (name, on) in by_server {
            let mut instances = Vec::new();
            let mut statuses = serde_json::Map::new();
            let mut worst: Option<u8> = None;
            for (replica, view) in on {
                let state = state_of.get(&replica).cloned().unwrap_or_else(|| "gone".into());
                let status = text(&view["status"]);
                if state == "live" {
                    worst = Some(worst.unwrap_or(0).max(rank(&status)));
                }
                statuses
                    .insert(replica.clone(), json!({ "status": status, "replica_state": state }));
                for mut i in view["instances"].as_array().cloned().unwrap_or_default() {
                    i["replica"] = json!(replica);
                    i["replica_state"] = json!(state);
                    instances.push(i);
                }
            }
            // Served by no live replica: unhealthy.
            let worst = worst.unwrap_or(2);
            overall = overall.max(worst);
            servers.push(json!({
                "name": name,
                "status": STATUS[usize::from(worst)],
                "replicas": statuses,
                "instances": instances,
            }));
        }
        let live = replicas.iter().filter(|r| r["state"] == "live").count();
        let leader = replicas
            .iter()
            .find(|r| r["leading"] == true && r["state"] == "live")
            .map(|r| r["id"].clone());
        Ok(json!({
            "scope": "fleet",
            "replica": me.id,
            "leading": self.leading(),
            "leader": leader,
            "status": STATUS[usize::from(overall)],
            "replicas_live": live,
            "replicas": replicas,
            "servers": servers,
        }))
    }
}

const STATUS: [&str; 3] = ["healthy", "degraded", "unhealthy"];

fn rank(status: &str) -> u8 {
    match status {
        "healthy" => 0,
        "degraded" => 1,
        _ => 2,
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn replica_json(r: &ReplicaRow, me: &str) -> Value {
    let state = if r.stopped_at.is_some() {
        "stopped"
    } else if r.age_seconds > GONE_AFTER {
        "gone"
    } else {
        "live"
    };
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["age_seconds"] = json!((r.age_seconds * 10.0).round() / 10.0);
    v["state"] = json!(state);
    v["self"] = json!(r.id == me);
    v
}

async fn heartbeat(inner: Arc<Inner>, stop: CancellationToken) {
    let mut written: HashMap<String, String> = HashMap::new();
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    for beat in 0_u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let result = async {
            let leading = *inner.leading.borrow();
            inner.store.replica_heartbeat(&inner.me, leading).await?;
            if beat % VIEWS_EVERY == 0 {
                publish_views(&inner, &mut written).await?;
            }
            if beat % 60 == 59 {
                inner.store.forget_replicas(warden_core::now() - FORGET_AFTER).await?;
            }
            // The leader closes what replicas gone for a minute left open.
            if beat % 15 == 14 && leading {
                let n = inner.store.abandon_gone_replicas(ABANDON_AFTER).await?;
                if n > 0 {
                    tracing::info!(
                        rows = n,
                        "closed failure rows of replicas that are gone (abandoned)"
                    );
                }
            }
            Ok::<_, warden_store::DbError>(())
        }
        .await;
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(replica = %inner.me.id, "fleet heartbeat written again");
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(replica = %inner.me.id, error = %e, "fleet heartbeat failed; retrying every 2 s");
            }
            _ => {}
        }
    }
    let stopped = tokio::time::timeout(Duration::from_secs(3), async {
        inner.store.replica_stopped(&inner.me.id).await
    })
    .await;
    if !matches!(stopped, Ok(Ok(()))) {
        tracing::warn!(replica = %inner.me.id, "could not mark this replica stopped; it will read as gone");
    }
}

/// Writes the views that changed since the last successful write, deletes removed ones.
async fn publish_views(
    inner: &Inner,
    written: &mut HashMap<String, String>,
) -> Result<(), warden_store::DbError> {
    let overview = inner.views.get();
    let mut now: HashMap<String, String> = HashMap::with_capacity(overview.servers.len());
    for s in &overview.servers {
        now.insert(s.name.clone(), serde_json::to_string(s).unwrap_or_default());
    }
    let changed: Vec<(String, String)> = now
        .iter()
        .filter(|(name, view)| written.get(*name) != Some(*view))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let removed: Vec<String> = written.keys().filter(|n| !now.contains_key(*n)).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        return Ok(());
    }
    inner.store.put_server_views(&inner.me.id, &changed, &removed).await?;
    *written = now;
    Ok(())
}

/// What the operator actions of other replicas act on here.
struct Targets {
    gateway: warden_gateway::Gateway,
    tuner: crate::tuning::Tuner,
}

/// Applies, every second, the operator actions the other replicas recorded since the last
/// seen (from the newest at start: history is not replayed).
async fn follow_commands(inner: Arc<Inner>, targets: Targets, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<i64> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(after) = last else {
            // Starting: the newest command is where following begins, and the operators'
            // standing decisions (a server stopped, a failover forced or turned off) made
            // before this replica (re)started are applied first, so it does not run what the
            // rest of the fleet has stopped.
            let Ok(newest) = inner.store.last_fleet_command().await else { continue };
            match inner.store.recent_operator_commands(STANDING_WINDOW).await {
                Ok(recent) => {
                    for c in standing(recent) {
                        apply(&inner, &targets, &c).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the operators' standing decisions failed")
                }
            }
            last = Some(newest);
            continue;
        };
        let Ok(commands) = inner.store.fleet_commands_after(after).await else { continue };
        for c in commands {
            last = Some(c.id);
            if c.origin != inner.me.id {
                apply(&inner, &targets, &c).await;
            }
        }
    }
}

/// The operators' standing decisions to stop or start servers, for a replica about to start
/// its instances (read before supervision starts, so a server stopped across the fleet never
/// runs here, not even until `follow_commands` replays it). Empty without a shared database,
/// or when it cannot be read within 2 s (then the replay after start is what applies them).
pub async fn stopped_at_start(store: &Store) -> warden_supervisor::StoppedAtStart {
    if !store.is_shared() {
        return warden_supervisor::StoppedAtStart::default();
    }
    let read = store.recent_operator_commands(STANDING_WINDOW);
    let recent = match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(recent)) => recent,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading the operators' standing decisions failed");
            return warden_supervisor::StoppedAtStart::default();
        }
        Err(_) => return warden_supervisor::StoppedAtStart::default(),
    };
    let decisions = standing(recent)
        .into_iter()
        .filter(|c| c.kind == "server" && matches!(c.action.as_str(), "stop" | "start"))
        .map(|c| (c.server, c.instance, c.action == "stop"))
        .collect();
    warden_supervisor::StoppedAtStart(Arc::new(decisions))
}

/// How many of the newest operator commands a starting replica reads for standing decisions.
const STANDING_WINDOW: i64 = 5000;

/// Of operator commands (newest first), the decisions still standing, to apply oldest first
/// to a replica that just started. Replayed oldest first per server (or instance) and kind
/// (stop/start, enable/disable, trigger/restore): a decision for a whole server replaces the
/// earlier ones for its instances. What stands is kept if it departs from how a replica starts
/// (stop, disable, trigger), and so is an instance's own decision made after one for its whole
/// server (alpha stopped, then alpha#0 started: stop alpha, then start alpha#0).
fn standing(newest_first: Vec<warden_store::FleetCommand>) -> Vec<warden_store::FleetCommand> {
    use std::collections::BTreeMap;
    let mut last: BTreeMap<(String, Option<u32>, &'static str), warden_store::FleetCommand> =
        BTreeMap::new();
    for c in newest_first.into_iter().rev() {
        let group = match (c.kind.as_str(), c.action.as_str()) {
            ("server", "stop" | "start") => "run",
            ("failover", "enable" | "disable") => "mode",
            ("failover", "trigger" | "restore") => "route",
            _ => continue,
        };
        if c.instance.is_none() {
            last.retain(|(server, _, g), _| !(server == &c.server && *g == group));
        }
        last.insert((c.server.clone(), c.instance, group), c);
    }
    let mut out: Vec<warden_store::FleetCommand> = last
        .iter()
        .filter(|((server, instance, group), c)| {
            matches!(c.action.as_str(), "stop" | "disable" | "trigger")
                || (instance.is_some() && last.contains_key(&(server.clone(), None, *group)))
        })
        .map(|(_, c)| c.clone())
        .collect();
    out.sort_by_key(|c| c.id);
    out
}

async fn apply(inner: &Inner, targets: &Targets, c: &warden_store::FleetCommand) {
    use warden_gateway::FailoverAction;
    use warden_supervisor::Command;
    let done = match (c.kind.as_str(), c.action.as_str()) {
        ("server", action) => match (Command::parse(action), inner.views.handle(&c.server)) {
            (Some(cmd), Some(h)) => Ok(h.command(cmd, c.instance).await > 0),
            (None, _) => Err(format!("unknown action {action:?}")),
            (_, None) => Err("no such server here".to_owned()),
        },
        // The recording side never records `test` (it moves no traffic).
        ("failover", action) => match FailoverAction::parse(action) {
            Some(a) => targets.gateway.failover(&c.server, a).await.map(|_| true),
            None => Err(format!("unknown failover action {action:?}")),
        },
        // Tuning changed somewhere: the changes in force are the database's.
        ("tuning", _) => targets.tuner.follow().await.map(|_| true),
        (kind, _) => Err(format!("unknown kind {kind:?}")),
    };
    match done {
        Ok(_) => tracing::info!(
            server = %c.server, instance = ?c.instance, action = %c.action, from = %c.origin,
            "applied an operator action made on another replica"
        ),
        Err(e) => tracing::warn!(
            server = %c.server, action = %c.action, from = %c.origin, error = %e,
            "could not apply an operator action made on another replica"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::standing;
    use warden_store::FleetCommand;

    fn c(id: i64, server: &str, instance: Option<u32>, kind: &str, action: &str) -> FleetCommand {
        FleetCommand {
            id,
            origin: "r1".into(),
            server: server.into(),
            instance,
            kind: kind.into(),
            action: action.into(),
        }
    }

    #[test]
    fn only_the_newest_decision_of_each_kind_stands_and_only_if_it_departs_from_the_start() {
        let newest_first = vec![
            c(9, "a", None, "server", "start"),
            c(8, "a", Some(1), "server", "stop"),
            c(7, "b", Some(0), "server", "stop"),
            c(6, "b", None, "server", "reset"),
            c(5, "c", None, "failover", "trigger"),
            c(4, "c", None, "failover", "disable"),
            c(3, "c", None, "failover", "restore"),
            c(2, "d", None, "failover", "enable"),
            c(1, "d", None, "failover", "disable"),
            c(0, "a", None, "server", "stop"),
        ];
        let ids: Vec<i64> = standing(newest_first).iter().map(|c| c.id).collect();
        // a: started after it was stopped (whole server, then one instance stopped before the
        // start); b: instance 0 stopped (a reset decides nothing); c: failover off and traffic
        // forced to the fallbacks; d: enabled again.
        assert_eq!(ids, [4, 5, 7]);
        // An instance started after its whole server was stopped: stop all, then start it.
        let later = vec![c(2, "e", Some(0), "server", "start"), c(1, "e", None, "server", "stop")];
        let kept: Vec<(i64, String)> =
            standing(later).iter().map(|c| (c.id, c.action.clone())).collect();
        assert_eq!(kept, [(1, "stop".to_owned()), (2, "start".to_owned())]);
    }
}
