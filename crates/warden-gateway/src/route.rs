//! Choosing an instance: routable instances of the server, else of its fallbacks; among them,
//! power of two choices on peak-EWMA latency × (calls in flight + 1), warning instances ×4.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_config::{Balance, FallbackStrategy, ServerSpec};
use warden_core::{InstanceId, InstanceState};
use warden_supervisor::{InstanceLink, InstanceView, Registry, ServerHandle, Tuned};
use warden_upstream::{Catalog, Session};

use crate::breaker::{Breaker, RetryBudget};

/// Latency assumed for an instance with no measurement yet (Linkerd's default).
const DEFAULT_RTT_MS: f64 = 30.0;
/// How fast a latency peak decays back.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Cost multiplier for an instance in `warning`: still routable, but less attractive.
const WARNING_PENALTY: f64 = 4.0;
/// The lowest balancing weight honoured (tuning keeps weights at 0.1 or more anyway).
const MIN_WEIGHT: f64 = 0.05;

/// Round-robin with weights: turn `turn` of a cycle in which each instance gets a share of
/// 20 slots proportional to its weight (at least one). `None` when the weights are equal
/// (plain round-robin).
fn weighted_turn(turn: usize, weights: &[f64]) -> Option<usize> {
    if weights.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-9) {
        return None;
    }
    let top = weights.iter().copied().fold(0.0_f64, f64::max).max(MIN_WEIGHT);
    let slots: Vec<usize> =
        weights.iter().map(|w| ((w / top * 20.0).round() as usize).max(1)).collect();
    let mut pos = turn % slots.iter().sum::<usize>();
    for (i, s) in slots.iter().enumerate() {
        if pos < *s {
            return Some(i);
        }
        pos -= s;
    }
    None
}

/// Peak-sensitive moving average of latency (Finagle, Linkerd, tower).
#[derive(Debug)]
pub(crate) struct PeakEwma {
    value_ms: f64,
    at: Instant,
}

impl PeakEwma {
    fn new() -> Self {
        Self { value_ms: DEFAULT_RTT_MS, at: Instant::now() }
    }

    pub(crate) fn observe(&mut self, rtt: Duration) {
        let now = Instant::now();
        let rtt_ms = rtt.as_secs_f64() * 1000.0;
        if rtt_ms > self.value_ms {
            self.value_ms = rtt_ms;
        } else {
            let w = (-now.duration_since(self.at).as_secs_f64() / EWMA_DECAY.as_secs_f64()).exp();
            self.value_ms = self.value_ms * w + rtt_ms * (1.0 - w);
        }
        self.at = now;
    }

    /// The estimate now: it decays toward zero while no call is observed, so an instance
    /// left alone after a latency peak is tried again (Tower, Finagle, Linkerd).
    fn get(&self) -> f64 {
        let idle = Instant::now().duration_since(self.at).as_secs_f64();
        self.value_ms * (-idle / EWMA_DECAY.as_secs_f64()).exp()
    }
}

pub(crate) struct Instance {
    pub(crate) id: InstanceId,
    view: watch::Receiver<InstanceView>,
    pub(crate) link: Arc<InstanceLink>,
    pub(crate) ewma: Mutex<PeakEwma>,
    pub(crate) breaker: Mutex<Breaker>,
    /// The session the breaker's history belongs to (its address): a new one resets it.
    breaker_session: Mutex<usize>,
    /// Its server's tuning (for this instance's balancing weight).
    tuning: watch::Receiver<Tuned>,
}

fn session_key(s: &Arc<dyn Session>) -> usize {
    Arc::as_ptr(s) as *const () as usize
}

impl Instance {
    fn state(&self) -> InstanceState {
        self.view.borrow().state
    }

    /// Routable, with a live session, and its breaker letting calls through.
    fn usable(&self, now: Instant) -> Option<Arc<dyn Session>> {
        if !self.state().is_routable() {
            return None;
        }
        let session = self.link.session()?;
        let mut b = self.breaker.lock().expect("not poisoned");
        let mut seen = self.breaker_session.lock().expect("not poisoned");
        if *seen != session_key(&session) {
            // A restarted instance starts with a clean record.
            *seen = session_key(&session);
            b.reset();
        }
        b.routable(now).then_some(session)
    }

    /// Records a call's outcome in the breaker: `Some(ok)`, or `None` for no signal.
    pub(crate) fn record(&self, ok: Option<bool>) {
        let mut b = self.breaker.lock().expect("not poisoned");
        let before = b.state();
        b.record(Instant::now(), ok);
        if b.state() != before {
            tracing::info!(instance = %self.id, from = before.as_str(), to = b.state().as_str(), "circuit breaker");
        }
    }

    /// Its balancing weight (tuning; 1 unless lowered).
    fn weight(&self) -> f64 {
        self.tuning.borrow().weight(self.id.index()).max(MIN_WEIGHT)
    }

    /// Peak-EWMA latency × (calls in flight + 1), divided by the weight: a weight of 0.5
    /// makes an instance look twice as loaded.
    fn cost(&self) -> f64 {
        let penalty = if self.state() == InstanceState::Warning { WARNING_PENALTY } else { 1.0 };
        self.ewma.lock().expect("not poisoned").get()
            * (self.link.in_flight() as f64 + 1.0)
            * penalty
            / self.weight()
    }
}

pub(crate) struct Server {
    pub(crate) spec: Arc<ServerSpec>,
    pub(crate) instances: Vec<Arc<Instance>>,
    pub(crate) budget: Mutex<RetryBudget>,
    /// Retries, failovers and refusals of calls that name this server.
    pub(crate) metrics: warden_metrics::ServerMetrics,
    /// Next turn, for round-robin balancing.
    turn: std::sync::atomic::AtomicUsize,
    /// The operator's switches (the supervisor's, so every view shows what routing does):
    /// whether the fallback tiers may serve, and whether they serve even while this server is
    /// routable.
    pub(crate) failover: Arc<warden_supervisor::FailoverControl>,
    /// Tool calls that name this server, per tool and hour (see `usage.rs`).
    pub(crate) usage: Arc<crate::usage::Usage>,
    /// Run-time overrides of its policy (tuning): the call timeout, instance weights.
    pub(crate) tuning: watch::Receiver<Tuned>,
}

impl Server {
    /// The deadline of one call: the configured `timeout`, or what tuning set.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.tuning.borrow().call_timeout(&self.spec)
    }

    /// Whether a tool may be retried on another instance and coalesced with identical calls:
    /// annotated read-only or idempotent on a trusted server, or listed by the operator.
    pub(crate) fn safe_tool(&self, tool: &warden_upstream::ToolEntry) -> bool {
        (self.spec.trusted && (tool.read_only || tool.idempotent))
            || self.spec.retry_tools.contains(&tool.name)
    }

    /// Whether offline mode may answer a tool from its last result: annotated read-only, or
    /// one whose results the operator lets be cached.
    pub(crate) fn offline_tool(&self, tool: &warden_upstream::ToolEntry) -> bool {
        tool.read_only || self.spec.cache.contains_key(&tool.name)
    }

    /// A tool as the first instance with a catalog describes it.
    pub(crate) fn tool(&self, name: &str) -> Option<warden_upstream::ToolEntry> {
        self.instances
            .iter()
            .filter_map(|i| i.link.catalog())
            .find_map(|c| c.tools.iter().find(|t| t.name == name).cloned())
    }

    /// Sessions of every routable instance.
    pub(crate) fn live_sessions(&self) -> Vec<Arc<dyn Session>> {
        self.instances
            .iter()
            .filter(|i| i.state().is_routable())
            .filter_map(|i| i.link.session())
            .collect()
    }

    /// Each instance's current session, for noticing restarts.
    pub(crate) fn session_keys(&self) -> Vec<usize> {
        self.instances.iter().map(|i| i.link.session().as_ref().map_or(0, session_key)).collect()
    }
}

/// Why nothing can serve a server right now.
#[derive(Clone, Debug)]
pub struct Unavailable {
    pub server: String,
    pub reason: String,
    pub retry_after_ms: u64,
}

/// An instance chosen for one call.
pub(crate) struct Pick<'a> {
    /// The server whose instance serves (the named one, or a fallback).
    pub(crate) serving: &'a Server,
    pub(crate) instance: &'a Instance,
    pub(crate) session: Arc<dyn Session>,
}

/// Every server and instance the gateway can route to, as the registry last published them:
/// a reload swaps in a new table; a call keeps the one it started with (so a removed server's
/// calls in flight finish on it).
pub struct Routes {
    table: RwLock<Arc<Table>>,
    metrics: warden_metrics::Metrics,
    /// One counter per list kind (tools, prompts, resources), bumped when that list changed.
    generation: watch::Sender<[u64; 3]>,
}

impl Routes {
    /// Follows `registry`: every change it publishes becomes a new table before the
    /// registry's method returns.
    pub(crate) fn new(registry: &Registry) -> Arc<Self> {
        let routes = Arc::new(Self {
            table: RwLock::new(Arc::new(Table { servers: Vec::new() })),
            metrics: registry.metrics().clone(),
            generation: watch::channel([0; 3]).0,
        });
        let weak = Arc::downgrade(&routes);
        registry.on_change(Arc::new(move |handles| {
            if let Some(routes) = weak.upgrade() {
                routes.sync(handles);
            }
        }));
        routes
    }

    /// The table now.
    pub(crate) fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().expect("not poisoned"))
    }

    /// A new table for `handles`: servers and instances that did not change keep their state
    /// (latency, breaker, tool usage); a server whose policy changed gets the new spec.
    fn sync(&self, handles: &[ServerHandle]) {
        let old = self.table();
        let servers = handles
            .iter()
            // Integrations are not MCP servers: never listed, mounted or routed to.
            .filter(|h| !h.spec.is_check())
            .map(|h| {
                let before = old.servers.iter().find(|s| s.spec.name == h.spec.name);
                let instances: Vec<Arc<Instance>> = h
                    .watchers()
                    .into_iter()
                    .enumerate()
                    .map(|(i, view)| {
                        let link = h.link(i).expect("an instance has a link");
                        let kept = before.and_then(|b| {
                            b.instances.iter().find(|x| Arc::ptr_eq(&x.link, &link)).cloned()
                        });
                        kept.unwrap_or_else(|| {
                            Arc::new(Instance {
                                id: warden_core::InstanceId::new(h.spec.name.as_str(), i as u32),
                                view,
                                link,
                                ewma: Mutex::new(PeakEwma::new()),
                                breaker: Mutex::new(Breaker::default()),
                                breaker_session: Mutex::new(0),
                                tuning: h.tuning(),
                            })
                        })
                    })
                    .collect();
                if let Some(b) = before {
                    let same = Arc::ptr_eq(&b.spec, &h.spec)
                        && b.instances.len() == instances.len()
                        && b.instances.iter().zip(&instances).all(|(x, y)| Arc::ptr_eq(x, y));
                    if same {
                        return Arc::clone(b);
                    }
                }
                Arc::new(Server {
                    spec: Arc::clone(&h.spec),
                    instances,
                    budget: Mutex::new(RetryBudget::default()),
                    metrics: self.metrics.server(&h.spec.name, &h.spec.fallback),
                    turn: Default::default(),
                    failover: Arc::clone(h.failover()),
                    usage: before.map(|b| Arc::clone(&b.usage)).unwrap_or_default(),
                    tuning: h.tuning(),
                })
            })
            .collect();
        *self.table.write().expect("not poisoned") = Arc::new(Table { servers });
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<[u64; 3]> {
        self.generation.subscribe()
    }

    /// Bumps the counter of each list kind (tools, prompts, resources) whose content changed
    /// for any server — a server added or removed by a reload included (checked every
    /// 200 ms: cheap, and quick enough that a dead server's tools leave the list well inside a
    /// second).
    pub(crate) async fn watch_changes(&self, stop: CancellationToken) {
        let mut hashes = HashCache::new();
        let mut last = self.table().fingerprint(&mut hashes);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let now = self.table().fingerprint(&mut hashes);
            let changed = changed_kinds(&last, &now);
            if changed.iter().any(|c| *c) {
                self.generation.send_modify(|g| {
                    for (count, bump) in g.iter_mut().zip(changed) {
                        *count += u64::from(bump);
                    }
                });
            }
            last = now;
        }
    }
}

/// One published set of servers.
pub(crate) struct Table {
    servers: Vec<Arc<Server>>,
}

impl Table {
    pub(crate) fn server_names(&self) -> Vec<String> {
        self.servers.iter().filter(|s| !s.spec.disabled).map(|s| s.spec.name.clone()).collect()
    }

    pub(crate) fn servers(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().map(|s| s.as_ref()).filter(|s| !s.spec.disabled)
    }

    pub(crate) fn server(&self, name: &str) -> Option<&Server> {
        self.servers().find(|s| s.spec.name == name)
    }

    /// The server that serves `name` now (itself or a fallback) and its catalog.
    ///
    /// Not through the balancer: the lists are what the serving tier offers whichever replica
    /// takes a call, read from its first routable replica that has listed. (Choosing through
    /// the balancer made every pick of another replica look like a changed list.)
    pub(crate) fn serving_catalog(&self, name: &str) -> Option<(&Server, Arc<Catalog>)> {
        let server = self.server(name)?;
        let now = Instant::now();
        for tier in self.tiers(server) {
            let mut usable = tier.instances.iter().filter(|i| i.usable(now).is_some()).peekable();
            if usable.peek().is_some() {
                return usable.find_map(|i| i.link.catalog()).map(|c| (tier, c));
            }
        }
        None
    }

    /// What the lists show for `name`: what serves it now, or — under offline mode, while
    /// nothing does — its read-only tools as last listed, answered from their last results.
    pub(crate) fn listed_catalog(&self, name: &str) -> Option<(&Server, Arc<Catalog>)> {
        if let Some(serving) = self.serving_catalog(name) {
            return Some(serving);
        }
        let server = self.server(name)?;
        if server.failover.get().strategy != FallbackStrategy::OfflineMode {
            return None;
        }
        let last = server.instances.iter().find_map(|i| i.link.catalog())?;
        let mut offline = (*last).clone();
        offline.tools.retain(|t| server.offline_tool(t));
        offline.prompts.clear();
        offline.resources.clear();
        offline.templates.clear();
        Some((server, Arc::new(offline)))
    }

    /// The servers that may serve `server`'s calls, in order: itself (unless failed over by
    /// the operator), then its fallbacks (while failover is enabled).
    fn tiers<'a>(&'a self, server: &'a Server) -> impl Iterator<Item = &'a Server> + 'a {
        let failover = server.failover.get();
        let own = failover.serves_own().then_some(server);
        let fallbacks: &[String] =
            if failover.uses_fallbacks() { &server.spec.fallback } else { &[] };
        own.into_iter().chain(fallbacks.iter().filter_map(|f| self.server(f)))
    }

    /// Chooses an instance for a call to `name`, avoiding `exclude` (a retry goes elsewhere),
    /// and lets its breaker admit the call.
    pub(crate) fn pick(
        &self,
        name: &str,
        exclude: &[&InstanceId],
    ) -> Result<Pick<'_>, Unavailable> {
        let mut exclude = exclude.to_vec();
        // A breaker whose one trial was just taken by another call refuses; choose again
        // (each round excludes one more instance, so this ends).
        loop {
            let pick = self.choose(name, &exclude)?;
            if pick.instance.breaker.lock().expect("not poisoned").admit(Instant::now()) {
                return Ok(pick);
            }
            exclude.push(&pick.instance.id);
        }
    }

    /// Chooses without admitting (for deciding what the lists show).
    fn choose<'a>(&'a self, name: &str, exclude: &[&InstanceId]) -> Result<Pick<'a>, Unavailable> {
        let now = Instant::now();
        let Some(server) = self.server(name) else {
            return Err(Unavailable {
                server: name.to_owned(),
                reason: "no such server".into(),
                retry_after_ms: 0,
            });
        };
        for tier in self.tiers(server) {
            let mut usable: Vec<(&Instance, Arc<dyn Session>)> = tier
                .instances
                .iter()
                .filter(|i| !exclude.contains(&&i.id))
                .filter_map(|i| i.usable(now).map(|s| (i.as_ref(), s)))
                .collect();
            // An instance that has not listed its catalog yet (it connected a moment ago: a
            // restart, a standby just started) takes calls only when nothing else can, or a
            // call would find "no such tool" on it.
            if usable.len() > 1 && usable.iter().any(|(i, _)| i.link.catalog().is_none()) {
                let listed: Vec<_> =
                    usable.iter().filter(|(i, _)| i.link.catalog().is_some()).cloned().collect();
                if !listed.is_empty() {
                    usable = listed;
                }
            }
            // An instance predicted to fail takes calls only when nothing else can.
            if usable.len() > 1 && usable.iter().any(|(i, _)| i.view.borrow().draining) {
                let steady: Vec<_> =
                    usable.iter().filter(|(i, _)| !i.view.borrow().draining).cloned().collect();
                if !steady.is_empty() {
                    usable = steady;
                }
            }
            let chosen = match usable.len() {
                0 => continue,
                1 => 0,
                n if tier.spec.balance == Balance::RoundRobin => {
                    let turn = tier.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    weighted_turn(turn, &usable.iter().map(|(i, _)| i.weight()).collect::<Vec<_>>())
                        .unwrap_or(turn % n)
                }
                n => {
                    let mut rng = rand::thread_rng();
                    let a = rng.gen_range(0..n);
                    let b = (a + 1 + rng.gen_range(0..n - 1)) % n;
                    if usable[a].0.cost() <= usable[b].0.cost() {
                        a
                    } else {
                        b
                    }
                }
            };
            let (instance, session) = usable.into_iter().nth(chosen).expect("in range");
            return Ok(Pick { serving: tier, instance, session });
        }
        Err(self.unavailable(server))
    }

    fn unavailable(&self, server: &Server) -> Unavailable {
        let views: Vec<InstanceView> =
            server.instances.iter().map(|i| i.view.borrow().clone()).collect();
        let now = Instant::now();
        // Routable instances whose breakers are open: say so, and when one may be tried.
        let open: Vec<Duration> = server
            .instances
            .iter()
            .filter(|i| i.state().is_routable() && i.link.session().is_some())
            .map(|i| i.breaker.lock().expect("not poisoned").retry_after(now))
            .collect();
        if !open.is_empty() {
            let wait = open.iter().min().copied().unwrap_or_default();
            return Unavailable {
                server: server.spec.name.clone(),
                reason: format!(
                    "circuit breaker open on {} instance(s) after repeated failures",
                    open.len()
                ),
                retry_after_ms: wait.as_millis() as u64,
            };
        }
        let reason = views
            .iter()
            .find_map(|v| v.reason.as_ref().map(|r| format!("{} ({})", r, v.state)))
            .unwrap_or_else(|| {
                format!(
                    "no routable instance ({})",
                    views.first().map_or("none".into(), |v| v.state.to_string())
                )
            });
        let now = warden_core::now();
        let retry_after_ms = views
            .iter()
            .filter_map(|v| v.next_retry_at)
            .map(|t| (t - now).num_milliseconds().max(0) as u64)
            .min()
            .unwrap_or(1000);
        Unavailable { server: server.spec.name.clone(), reason, retry_after_ms }
    }

    /// What the aggregated lists show of each server: which server serves it and the content
    /// of that server's tools, prompts and resources (hashed once per catalog listed).
    fn fingerprint(&self, hashes: &mut HashCache) -> Vec<Fingerprint> {
        let mut seen = HashCache::new();
        let out = self
            .servers()
            .map(|s| {
                let hidden = &s.spec.disabled_tools;
                let served = self.listed_catalog(&s.spec.name).map(|(serving, c)| {
                    let key = (Arc::as_ptr(&c) as usize, hidden_key(hidden));
                    let h = match hashes.get(&key) {
                        Some((_, h)) => *h,
                        None => content_hashes(&c, hidden),
                    };
                    seen.insert(key, (c, h));
                    (serving.spec.name.clone(), h)
                });
                (s.spec.name.clone(), served)
            })
            .collect();
        // Keep only the catalogs served now (holding their `Arc`, so no address is reused).
        *hashes = seen;
        out
    }
}

/// Content hashes of catalogs, by the address of the `Arc` they were read from and the tools
/// hidden from it (`disabledTools`, which a reload may change).
type HashCache = HashMap<(usize, u64), (Arc<Catalog>, [u64; 3])>;

fn hidden_key(hidden: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hidden.hash(&mut h);
    h.finish()
}

/// Hashes of the tools (less the `hidden` ones), prompts and resources (with templates) a
/// catalog offers; 0 for an empty list, so a server with nothing routable and one offering
/// none look alike.
fn content_hashes(c: &Catalog, hidden: &[String]) -> [u64; 3] {
    use std::hash::{Hash, Hasher};
    let hash = |empty: bool, f: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
        if empty {
            return 0;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        f(&mut h);
        h.finish() | 1
    };
    [
        hash(c.tools.iter().all(|t| hidden.contains(&t.name)), &|h| {
            c.tools
                .iter()
                .filter(|t| !hidden.contains(&t.name))
                .for_each(|t| (&t.name, t.fingerprint).hash(h))
        }),
        hash(c.prompts.is_empty(), &|h| c.prompts.iter().for_each(|p| p.raw.to_string().hash(h))),
        hash(c.resources.is_empty() && c.templates.is_empty(), &|h| {
            c.resources.iter().for_each(|r| r.raw.to_string().hash(h));
            0u8.hash(h);
            c.templates.iter().for_each(|t| t.raw.to_string().hash(h));
        }),
    ]
}

/// Which list kinds (tools, prompts, resources) differ between two fingerprints: content that
/// changed, or a list now served by another server (a fallback took over or handed back; the
/// names on `/mcp` stay, but what stands behind them is another server's, so clients re-list).
fn changed_kinds(old: &[Fingerprint], new: &[Fingerprint]) -> [bool; 3] {
    let of = |fp: &[Fingerprint], name: &str| {
        fp.iter().find(|(n, _)| n == name).and_then(|(_, s)| s.clone())
    };
    let mut changed = [false; 3];
    for name in old.iter().chain(new).map(|(n, _)| n.as_str()) {
        let (a, b) = (of(old, name), of(new, name));
        let moved = matches!((&a, &b), (Some((x, _)), Some((y, _))) if x != y);
        let (a, b) = (a.map_or([0; 3], |(_, h)| h), b.map_or([0; 3], |(_, h)| h));
        for k in 0..3 {
            changed[k] |= a[k] != b[k] || (moved && a[k] != 0);
        }
    }
    changed
}

/// A server's name, and who serves it with which content hashes (`None`: nothing routable).
type Fingerprint = (String, Option<(String, [u64; 3])>);

#[cfg(test)]
mod tests {
    use super::{changed_kinds, weighted_turn, Fingerprint};

    fn fp(served: Option<(&str, [u64; 3])>) -> Vec<Fingerprint> {
        vec![("s".to_owned(), served.map(|(by, h)| (by.to_owned(), h)))]
    }

    #[test]
    fn only_the_list_kinds_that_changed_are_announced() {
        let tools_only = [7, 0, 0];
        assert_eq!(
            changed_kinds(&fp(Some(("s", tools_only))), &fp(Some(("s", tools_only)))),
            [false; 3]
        );
        assert_eq!(changed_kinds(&fp(Some(("s", tools_only))), &fp(None)), [true, false, false]);
        assert_eq!(changed_kinds(&fp(None), &fp(Some(("s", [0, 3, 0])))), [false, true, false]);
        assert_eq!(
            changed_kinds(&fp(Some(("s", [7, 1, 2]))), &fp(Some(("s", [8, 1, 2])))),
            [true, false, false]
        );
        // A fallback takes over with the same content: its lists are re-announced.
        assert_eq!(
            changed_kinds(&fp(Some(("s", tools_only))), &fp(Some(("b", tools_only)))),
            [true, false, false]
        );
    }

    #[test]
    fn weighted_round_robin_shares_turns_by_weight() {
        assert_eq!(weighted_turn(7, &[1.0, 1.0, 1.0]), None, "equal weights: plain round-robin");
        let mut count = [0usize; 2];
        for turn in 0..300 {
            count[weighted_turn(turn, &[1.0, 0.5]).unwrap()] += 1;
        }
        assert_eq!(count, [200, 100]);
        // A tiny weight still gets a turn now and then.
        let picks: Vec<_> = (0..21).map(|t| weighted_turn(t, &[1.0, 0.01]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|i| **i == 1).count(), 1);
    }
}
