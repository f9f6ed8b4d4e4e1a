//! The MCP server side: one endpoint in front of every supervised server.
//!
//! `/mcp` (and `warden run --stdio`) aggregates every server's tools as `server__tool`;
//! `/servers/{name}/mcp` serves one server unprefixed. Every call goes to a routable instance
//! chosen by power of two choices on peak-EWMA latency × (calls in flight + 1); a server with
//! nothing routable falls back to its `fallback` servers, and otherwise answers at once with a
//! JSON-RPC error carrying `{server, reason, retry_after_ms}` — never a time-out.
//! Everything else a client can do is forwarded too (see [`handler`]), and what servers send
//! their clients unprompted goes back to the right sessions (see [`clients`]).
//! This crate and `warden-upstream` are the only ones that name rmcp types.

mod attach;
mod breaker;
mod builtin;
mod clients;
mod deep;
mod exposure;
mod forward;
mod handler;
mod http_lane;
mod lane;
mod memory;
mod offline;
mod own_stdio;
mod route;
mod search;
mod session_gate;
mod stdio_lane;
mod template;
mod usage;
mod valid;
mod written;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::session::store::SessionStore;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use warden_config::FallbackStrategy;
use warden_supervisor::{Failover, Registry};
use warden_upstream::Relay;

pub use attach::bridge_stdio;
pub use breaker::BreakerState;
pub use builtin::{Builtin, BUILTIN_PREFIX};
pub use exposure::Exposure;
pub use handler::Handler;
pub use http_lane::LaneHead;
pub use memory::SessionMemory;
pub use offline::STALE_META;
pub use route::{Routes, Unavailable};
pub use search::{Analysis, Hit, ToolDoc};
pub use session_gate::{declares_json, McpService};

/// What an operator can do to a server's failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverAction {
    /// Let the fallback servers serve when this one has nothing routable (the default).
    Enable,
    /// Never use the fallbacks.
    Disable,
    /// Send every call to the fallbacks now, even while this server is routable.
    Trigger,
    /// Probe every fallback instance, without moving any traffic.
    Test,
    /// Undo `Trigger`: this server serves again when routable.
    Restore,
}

impl FailoverAction {
    /// The action an operator names (`enable`, `disable`, `trigger`, `test`, `restore`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "enable" => Some(Self::Enable),
            "disable" => Some(Self::Disable),
            "trigger" => Some(Self::Trigger),
            "test" => Some(Self::Test),
            "restore" => Some(Self::Restore),
            _ => None,
        }
    }
}

/// Limits on client sessions of the HTTP endpoints.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// A session with no request for this long is closed (an open GET stream does not count).
    pub idle: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
}

/// JSON-RPC code for "no instance can serve this now" (in the −32000…−32019 range).
pub const UNAVAILABLE: i32 = -32001;
/// JSON-RPC code for "the instance failed while serving this call".
pub const UPSTREAM_FAILED: i32 = -32003;

/// The gateway: routes plus the MCP handlers that use them.
#[derive(Clone)]
pub struct Gateway {
    routes: Arc<Routes>,
    shared: Arc<handler::Shared>,
    managers: Arc<Mutex<Vec<Arc<LocalSessionManager>>>>,
    /// Each server's own endpoint, made on its first request (servers come and go by reload).
    scoped: Arc<Mutex<HashMap<String, McpService>>>,
    /// Where client sessions are kept for other replicas to continue (a fleet).
    session_store: Arc<Mutex<Option<Arc<dyn SessionStore>>>>,
}

impl Gateway {
    /// Builds the gateway over `registry` and takes the servers' client-bound traffic from
    /// `relay` (the relay the connectors were built with).
    pub fn new(registry: &Registry, relay: &Relay) -> Self {
        let routes = Routes::new(registry);
        let clients = Arc::new(clients::Clients::new(Arc::clone(&routes)));
        relay.install(Arc::new(clients::Relayer { clients: Arc::clone(&clients) }));
        let shared = Arc::new(handler::Shared::new(Arc::clone(&routes), clients));
        Self {
            routes,
            shared,
            managers: Arc::default(),
            scoped: Arc::default(),
            session_store: Arc::default(),
        }
    }

    /// Keeps every HTTP endpoint's client sessions in `store` too — what the client sent in
    /// `initialize`, and the settings it changed later — so that another replica sharing it
    /// continues them. Set before the endpoints are built.
    pub fn set_session_store<S: SessionStore + SessionMemory + 'static>(&self, store: Arc<S>) {
        self.shared.set_memory(Arc::clone(&store) as Arc<dyn SessionMemory>);
        *self.session_store.lock().expect("not poisoned") = Some(store);
    }

    /// Serves Warden's own tools and resources on the aggregated endpoint.
    pub fn install_builtin(&self, builtin: Arc<dyn Builtin>) {
        self.shared.builtin.install(builtin);
    }

    /// Probes every routable instance of `server` `rounds` times, one after another; returns
    /// each instance's round-trip times in milliseconds (or its error).
    pub async fn benchmark(
        &self,
        server: &str,
        rounds: usize,
    ) -> Result<Vec<(warden_core::InstanceId, Result<Vec<f64>, String>)>, String> {
        let table = self.routes.table();
        let s = table.server(server).ok_or_else(|| format!("no server named {server:?}"))?;
        let mut out = Vec::new();
        for i in &s.instances {
            let result = match i.link.session() {
                None => Err("no live session".to_owned()),
                Some(session) => {
                    let mut rtts = Vec::with_capacity(rounds);
                    let mut failed = None;
                    for _ in 0..rounds {
                        match session
                            .probe(warden_config::ProbeMethod::Ping, Duration::from_secs(2))
                            .await
                        {
                            Ok(d) => rtts.push(d.as_secs_f64() * 1000.0),
                            Err(e) => {
                                failed = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    failed.map_or(Ok(rtts), Err)
                }
            };
            out.push((i.id.clone(), result));
        }
        Ok(out)
    }

    /// Client sessions open now on the HTTP endpoints.
    pub async fn http_sessions(&self) -> usize {
        let managers: Vec<Arc<LocalSessionManager>> =
            self.managers.lock().expect("not poisoned").clone();
        let mut n = 0;
        for m in managers {
            n += m.sessions.read().await.len();
        }
        n
    }

    /// Whether a request's broken SSE stream (`Last-Event-ID` `index/request`) of session
    /// `id` can be resumed on this replica: only on the replica that began the session. With
    /// sessions shared by replicas, another replica continues the session (it is not here, or
    /// it was restored here) but has none of the streams the dead one served, and its own
    /// request numbers start again, so `index/request` may name another stream. The
    /// session's own notification stream (`Last-Event-ID` without a request) is always
    /// reopened.
    pub async fn resumable_here(&self, id: &str, last_event_id: &str) -> bool {
        if self.session_store.lock().expect("not poisoned").is_none()
            || !last_event_id.contains('/')
        {
            return true;
        }
        if self.shared.restored.lock().expect("not poisoned").contains(id) {
            return false;
        }
        let managers: Vec<Arc<LocalSessionManager>> =
            self.managers.lock().expect("not poisoned").clone();
        let id: rmcp::transport::streamable_http_server::SessionId = id.into();
        for m in managers {
            if m.sessions.read().await.contains_key(&id) {
                return true;
            }
        }
        false
    }

    /// Each instance's circuit breaker: state and how often it has opened.
    pub fn breakers(&self) -> Vec<(warden_core::InstanceId, BreakerState, u64)> {
        self.routes
            .table()
            .servers()
            .flat_map(|s| s.instances.iter())
            .map(|i| {
                let b = i.breaker.lock().expect("not poisoned");
                (i.id.clone(), b.state(), b.opened)
            })
            .collect()
    }

    /// Operator failover controls for `server` (see [`FailoverAction`]); returns the
    /// resulting failover state, and for `Test`, how each fallback instance answered a probe.
    pub async fn failover(
        &self,
        server: &str,
        action: FailoverAction,
    ) -> Result<serde_json::Value, String> {
        let table = self.routes.table();
        let s = table.server(server).ok_or_else(|| format!("no server named {server:?}"))?;
        let mut tested = Vec::new();
        let now = s.failover.get();
        match action {
            FailoverAction::Enable => s.failover.set(Failover { enabled: true, ..now }),
            FailoverAction::Disable => {
                s.failover.set(Failover { enabled: false, forced: false, ..now })
            }
            FailoverAction::Trigger => {
                if s.spec.fallback.is_empty() {
                    return Err(format!("{server:?} has no fallback servers to fail over to"));
                }
                if now.strategy == FallbackStrategy::FailFast {
                    return Err(format!(
                        "{server:?} fails fast (fallback_strategy fail_fast): it has no fallback tier to fail over to; set another strategy first"
                    ));
                }
                s.failover.set(Failover { enabled: true, forced: true, ..now });
            }
            FailoverAction::Restore => s.failover.set(Failover { forced: false, ..now }),
            FailoverAction::Test => {
                if s.spec.fallback.is_empty() {
                    return Err(format!("{server:?} has no fallback servers to test"));
                }
                for f in &s.spec.fallback {
                    let Some(fs) = table.server(f) else { continue };
                    for i in &fs.instances {
                        let result = match i.link.session() {
                            None => Err("no live session".to_owned()),
                            Some(session) => session
                                .probe(warden_config::ProbeMethod::Auto, Duration::from_secs(2))
                                .await
                                .map_err(|e| e.to_string()),
                        };
                        tested.push(serde_json::json!({
                            "instance": i.id,
                            "ok": result.is_ok(),
                            "rtt_ms": result.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
                            "error": result.err(),
                        }));
                    }
                }
            }
        }
        let served_by = table.serving_catalog(server).map(|(srv, _)| srv.spec.name.clone());
        Ok(serde_json::json!({
            "server": server,
            "fallbacks": s.spec.fallback,
            "failover_enabled": s.failover.get().enabled,
            "forced": s.failover.get().forced,
            "fallback_strategy": s.failover.get().strategy.as_str(),
            "served_by": served_by,
            "test": (action == FailoverAction::Test).then_some(tested),
        }))
    }

    /// Client sessions known to the handlers (HTTP and stdio).
    pub fn client_sessions(&self) -> usize {
        self.shared.clients.count()
    }

    /// Calls answered by sharing an identical call's result, and calls answered from the
    /// result cache.
    pub fn optimized_calls(&self) -> (u64, u64) {
        (self.shared.joined_calls(), self.shared.cache_hits())
    }

    /// Calls answered from offline mode's last good results.
    pub fn stale_answers(&self) -> u64 {
        self.shared.stale_answers()
    }

    /// Sets what happens to `server`'s calls while it is down (until a reload changes it in
    /// the config). Fail-fast ends an operator's fail-over: it has no fallback tier.
    pub fn set_fallback_strategy(
        &self,
        server: &str,
        strategy: FallbackStrategy,
    ) -> Result<(), String> {
        let table = self.routes.table();
        let s = table.server(server).ok_or_else(|| format!("no server named {server:?}"))?;
        s.failover.set(Failover { strategy, ..s.failover.get() });
        Ok(())
    }

    /// Tool calls counted since the last call, per server, tool and hour; counting starts
    /// again from zero (warden-ops adds them to the store's `tool_usage` rollup).
    pub fn take_tool_usage(&self) -> Vec<warden_core::ToolUsage> {
        self.routes.table().servers().flat_map(|s| s.usage.drain(&s.spec.name)).collect()
    }

    /// Gives back rows [`Gateway::take_tool_usage`] returned that could not be stored.
    pub fn restore_tool_usage(&self, rows: &[warden_core::ToolUsage]) {
        for s in self.routes.table().servers() {
            s.usage.restore(rows.iter().filter(|r| r.server == s.spec.name));
        }
    }

    /// `(server, tool)` for every tool `/mcp` lists now: what serves each server (itself or a
    /// fallback), less its `disabledTools`.
    pub fn tool_names(&self) -> Vec<(String, String)> {
        let table = self.routes.table();
        let mut out = Vec::new();
        for s in table.servers() {
            let Some((_, catalog)) = table.serving_catalog(&s.spec.name) else { continue };
            for t in catalog.tools.iter().filter(|t| !s.spec.disabled_tools.contains(&t.name)) {
                out.push((s.spec.name.clone(), t.name.clone()));
            }
        }
        out
    }

    /// Server names (of MCP servers, enabled), as `/servers/{name}/mcp` serves them now.
    pub fn server_names(&self) -> Vec<String> {
        self.routes.table().server_names()
    }

    /// The endpoint of one server (`/servers/{name}/mcp`), made on its first request and kept
    /// (its sessions live in it); `None` while the config has no such server (a reload may
    /// add or remove one at any time: a session on a removed server gets "no such server").
    pub fn scoped_service(
        &self,
        name: &str,
        loopback: bool,
        limits: SessionLimits,
        stop: &CancellationToken,
    ) -> Option<McpService> {
        self.routes.table().server(name)?;
        let mut scoped = self.scoped.lock().expect("not poisoned");
        let service = scoped.entry(name.to_owned()).or_insert_with(|| {
            self.http_service(Some(name.to_owned()), loopback, limits, stop.child_token())
        });
        Some(service.clone())
    }

    /// `/endpoints/{name}/mcp`: an aggregated endpoint whose sessions start from the exposure
    /// the config gives it (`warden.tools.endpoints`); `None` for a name it does not have.
    pub fn endpoint_service(
        &self,
        name: &str,
        loopback: bool,
        limits: SessionLimits,
        stop: &CancellationToken,
    ) -> Option<McpService> {
        let start = self.endpoint_exposure(name)?;
        let key = format!("endpoint\u{0}{name}");
        let mut scoped = self.scoped.lock().expect("not poisoned");
        let service = scoped.entry(key).or_insert_with(|| {
            let shared = Arc::clone(&self.shared);
            self.service_of(loopback, limits, stop.child_token(), move || {
                Handler::exposed(Arc::clone(&shared), start.clone())
            })
        });
        Some(service.clone())
    }

    /// The HTTP fast lane (`http_lane`): answers `request` if it is a `tools/call` the lane
    /// runs (or the cancellation of one), else gives it back unchanged for rmcp.
    pub async fn fast_lane(
        &self,
        request: axum::http::Request<axum::body::Body>,
        max_body: usize,
    ) -> Result<axum::http::Response<axum::body::Body>, axum::http::Request<axum::body::Body>> {
        self.shared.lanes.serve(request, max_body).await
    }

    /// Whether a POST with `head` may be the fast lane's (before its body is read): the lane's
    /// entry for an HTTP server that reads request heads itself. Then [`Gateway::lane_run`].
    pub fn lane_admits(&self, head: &LaneHead<'_>, max_body: usize) -> bool {
        self.shared.lanes.admits(head, max_body)
    }

    /// Answers the admitted POST with `head` and `body` if it is the lane's; `None` if it is
    /// rmcp's (then the request goes to the router, unchanged).
    pub async fn lane_run(
        &self,
        head: &LaneHead<'_>,
        body: &[u8],
    ) -> Option<axum::http::Response<axum::body::Body>> {
        self.shared.lanes.run(head, body).await
    }

    /// The aggregated handler (`scope: None`) or one server's (`Some(name)`).
    pub fn handler(&self, scope: Option<String>) -> Handler {
        Handler::new(Arc::clone(&self.shared), scope)
    }

    /// Streamable HTTP for a handler. On a loopback listener rmcp's own Host check (DNS-rebinding
    /// protection) allows loopback names only; on any other listener it is off and Warden's
    /// guard (token, Origin) governs, since the operator chose to be reachable by other names.
    pub fn http_service(
        &self,
        scope: Option<String>,
        loopback: bool,
        limits: SessionLimits,
        stop: CancellationToken,
    ) -> McpService {
        let gateway = self.clone();
        // A new handler (and client registration) per session.
        self.service_of(loopback, limits, stop, move || gateway.handler(scope.clone()))
    }

    fn service_of(
        &self,
        loopback: bool,
        limits: SessionLimits,
        stop: CancellationToken,
        handler: impl Fn() -> Handler + Send + Sync + 'static,
    ) -> McpService {
        let mut config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stop)
            .with_sse_keep_alive(Some(Duration::from_secs(15)))
            .with_max_request_body_bytes(limits.max_body);
        if !loopback {
            config = config.disable_allowed_hosts();
        }
        config.session_store = self.session_store.lock().expect("not poisoned").clone();
        if config.session_store.is_some() {
            // Sessions shared by replicas: a stream broken by its replica's death cannot be
            // resumed on another (the events are in the dead one's memory), so the client is
            // not told it can. Without a priming event id it gets a connection error at once
            // and retries; with one, the balancer sent its resumption to a live replica, which
            // kept the stream open without the answer until the client's deadline.
            config.sse_retry = None;
        }
        let mut manager = LocalSessionManager::default();
        let mut session = SessionConfig::default();
        session.keep_alive = Some(limits.idle);
        self.shared.lanes.set_idle(limits.idle);
        manager.session_config = session;
        let manager = Arc::new(manager);
        self.managers.lock().expect("not poisoned").push(Arc::clone(&manager));
        let restores = config.session_store.is_some();
        let rmcp = StreamableHttpService::new(move || Ok(handler()), Arc::clone(&manager), config);
        McpService::new(rmcp, manager, restores, limits.max_body)
    }

    /// Watches routability and catalogs, and tells connected clients when the tool list
    /// changes (a server's tools leave when nothing can serve them, and come back).
    pub fn spawn_change_watcher(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let routes = Arc::clone(&self.routes);
        let shared = Arc::clone(&self.shared);
        let reapply_stop = stop.clone();
        tokio::spawn(async move { reapply(shared, reapply_stop).await });
        tokio::spawn(async move { routes.watch_changes(stop).await })
    }

    /// Serves the aggregated endpoint (or `endpoint`, one of `warden.tools.endpoints`) on
    /// stdin/stdout until the client closes stdin.
    pub async fn serve_stdio(&self, endpoint: Option<&str>) -> Result<(), std::io::Error> {
        let handler = match endpoint {
            None => self.handler(None),
            Some(name) => {
                let start = self.endpoint_exposure(name).ok_or_else(|| {
                    std::io::Error::other(format!(
                        "no endpoint named {name:?} (warden.tools.endpoints)"
                    ))
                })?;
                Handler::exposed(Arc::clone(&self.shared), start)
            }
        };
        let (input, output, _restore) = own_stdio::stdio();
        stdio_lane::serve(handler, input, output).await
    }
}

/// A restarted instance has forgotten what clients asked of it through Warden: the log level
/// and resource subscriptions are sent again to every new session. (Each 200 ms tick also lets
/// the HTTP fast lane forget sessions rmcp has closed.)
async fn reapply(shared: Arc<handler::Shared>, stop: CancellationToken) {
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        shared.lanes.sweep();
        let table = shared.routes.table();
        for server in table.servers() {
            let name = &server.spec.name;
            let keys = server.session_keys();
            let before = seen.insert(name.clone(), keys.clone());
            if before.is_none_or(|b| b == keys) {
                continue;
            }
            if let Some(level) = shared.clients.min_level(name) {
                handler::upstream_all(
                    &table,
                    name,
                    "logging/setLevel",
                    clients::level_param(level),
                )
                .await;
            }
            for uri in shared.clients.subscribed(name) {
                handler::upstream_all(
                    &table,
                    name,
                    "resources/subscribe",
                    serde_json::json!({ "uri": uri }),
                )
                .await;
            }
        }
    }
}
