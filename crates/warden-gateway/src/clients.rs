//! Warden's client sessions, and the traffic servers send them unprompted: log messages (to
//! sessions that set a level), resource updates (to sessions that subscribed), and requests —
//! sampling, elicitation, roots — to the one session they belong to.
//!
//! Which session a server's request belongs to: before protocol 2026-07-28 the request carries
//! no link to the call that caused it, so Warden uses the calls in flight on that instance when
//! it arrived. One client session with calls in flight there: that session. None: the only
//! session that can see the server, if there is exactly one. Otherwise Warden refuses rather
//! than risk showing one client's request to another.
// Sampling, roots and logging are deprecated by SEP-2577 (2026-07-28); older servers use them.
#![allow(deprecated)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::model::{
    ClientResult, ErrorCode, LoggingMessageNotificationParam, ResourceUpdatedNotificationParam,
    ServerRequest,
};
use rmcp::service::{PeerRequestOptions, RoleServer, ServiceError};
use rmcp::Peer;
use serde_json::Value;
use warden_core::InstanceId;
use warden_upstream::{BoxFuture, Downstream, Notice, Origin, UpstreamError};

use crate::route::Routes;

/// How long a client may take to answer a server's request (a person may be asked).
const CLIENT_ANSWER: Duration = Duration::from_secs(600);

struct Client {
    peer: Option<Peer<RoleServer>>,
    /// The server this session is scoped to (`/servers/{name}/mcp`), or `None` (aggregated).
    scope: Option<String>,
    /// The lowest log level the client asked for, as a rank (see [`level_rank`]).
    level: Option<u8>,
    /// `(server, uri)` pairs the client subscribed to.
    subscriptions: HashSet<(String, String)>,
    /// Its HTTP session id (legacy `Mcp-Session-Id` sessions), once a request showed it.
    session: Option<String>,
}

/// Every connected client session.
pub(crate) struct Clients {
    next: AtomicU64,
    map: RwLock<foldhash::HashMap<Origin, Client>>,
    routes: Arc<Routes>,
}

/// RFC 5424 severity order of MCP log levels, lowest first.
pub(crate) fn level_rank(level: &str) -> Option<u8> {
    ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
        .iter()
        .position(|l| *l == level)
        .map(|p| p as u8)
}

pub(crate) fn level_name(rank: u8) -> &'static str {
    ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
        [rank.min(7) as usize]
}

impl Clients {
    pub(crate) fn new(routes: Arc<Routes>) -> Self {
        Self { next: AtomicU64::new(1), map: RwLock::default(), routes }
    }

    pub(crate) fn open(&self, scope: Option<String>) -> Origin {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let client =
            Client { peer: None, scope, level: None, subscriptions: HashSet::new(), session: None };
        self.map.write().expect("not poisoned").insert(id, client);
        id
    }

    /// Remembers how to reach the session (first request or `initialized`), and its HTTP
    /// session id when the request shows one.
    pub(crate) fn attach(&self, id: Origin, peer: &Peer<RoleServer>, session: Option<&str>) {
        let known = {
            let map = self.map.read().expect("not poisoned");
            map.get(&id)
                .is_none_or(|c| c.peer.is_some() && (session.is_none() || c.session.is_some()))
        };
        if known {
            return;
        }
        let mut map = self.map.write().expect("not poisoned");
        if let Some(c) = map.get_mut(&id) {
            if c.peer.is_none() {
                c.peer = Some(peer.clone());
            }
            if c.session.is_none() {
                c.session = session.map(str::to_owned);
            }
        }
    }

    /// Session `id`'s HTTP session id, if a request showed it.
    pub(crate) fn session(&self, id: Origin) -> Option<String> {
        self.map.read().expect("not poisoned").get(&id).and_then(|c| c.session.clone())
    }

    /// Session `id`'s log level and subscriptions.
    pub(crate) fn settings(&self, id: Origin) -> (Option<u8>, Vec<(String, String)>) {
        let map = self.map.read().expect("not poisoned");
        map.get(&id)
            .map_or((None, Vec::new()), |c| (c.level, c.subscriptions.iter().cloned().collect()))
    }

    /// Forgets a closed session; returns the subscriptions nobody else holds now.
    pub(crate) fn close(&self, id: Origin) -> Vec<(String, String)> {
        let mut map = self.map.write().expect("not poisoned");
        let Some(gone) = map.remove(&id) else { return Vec::new() };
        gone.subscriptions
            .into_iter()
            .filter(|s| !map.values().any(|c| c.subscriptions.contains(s)))
            .collect()
    }

    /// How to reach session `id`, once it is attached.
    pub(crate) fn peer(&self, id: Origin) -> Option<Peer<RoleServer>> {
        self.map.read().expect("not poisoned").get(&id).and_then(|c| c.peer.clone())
    }

    /// Every connected session of the aggregated face.
    pub(crate) fn ids(&self) -> Vec<Origin> {
        let map = self.map.read().expect("not poisoned");
        map.iter().filter(|(_, c)| c.scope.is_none()).map(|(id, _)| *id).collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.map.read().expect("not poisoned").len()
    }

    pub(crate) fn set_level(&self, id: Origin, rank: u8) {
        if let Some(c) = self.map.write().expect("not poisoned").get_mut(&id) {
            c.level = Some(rank);
        }
    }

    /// The lowest level any session that sees `server` asked for.
    pub(crate) fn min_level(&self, server: &str) -> Option<u8> {
        let map = self.map.read().expect("not poisoned");
        map.values().filter(|c| self.shows(c, server)).filter_map(|c| c.level).min()
    }

    /// Records a subscription; true if it is the first to `(server, uri)`.
    pub(crate) fn subscribe(&self, id: Origin, server: &str, uri: &str) -> bool {
        let key = (server.to_owned(), uri.to_owned());
        let mut map = self.map.write().expect("not poisoned");
        let first = !map.values().any(|c| c.subscriptions.contains(&key));
        if let Some(c) = map.get_mut(&id) {
            c.subscriptions.insert(key);
        }
        first
    }

    /// Drops a subscription; true if nobody holds `(server, uri)` any more.
    pub(crate) fn unsubscribe(&self, id: Origin, server: &str, uri: &str) -> bool {
        let key = (server.to_owned(), uri.to_owned());
        let mut map = self.map.write().expect("not poisoned");
        if let Some(c) = map.get_mut(&id) {
            c.subscriptions.remove(&key);
        }
        !map.values().any(|c| c.subscriptions.contains(&key))
    }

    /// Every URI some session is subscribed to on `server`.
    pub(crate) fn subscribed(&self, server: &str) -> HashSet<String> {
        let map = self.map.read().expect("not poisoned");
        map.values()
            .flat_map(|c| c.subscriptions.iter())
            .filter(|(s, _)| s == server)
            .map(|(_, u)| u.clone())
            .collect()
    }

    /// Whether a session sees `server`: the aggregated face sees all; a scoped face sees its
    /// server and the fallbacks that serve for it.
    fn shows(&self, c: &Client, server: &str) -> bool {
        match &c.scope {
            None => true,
            Some(s) if s == server => true,
            Some(s) => self
                .routes
                .table()
                .server(s)
                .is_some_and(|x| x.spec.fallback.iter().any(|f| f == server)),
        }
    }

    fn peers_where(&self, keep: impl Fn(&Client) -> bool) -> Vec<Peer<RoleServer>> {
        let map = self.map.read().expect("not poisoned");
        map.values().filter(|c| keep(c)).filter_map(|c| c.peer.clone()).collect()
    }

    /// The session `origin`, if it is connected and `keep` accepts it.
    fn peer_of(&self, origin: Origin, keep: impl Fn(&Client) -> bool) -> Vec<Peer<RoleServer>> {
        let map = self.map.read().expect("not poisoned");
        map.get(&origin).filter(|c| keep(c)).and_then(|c| c.peer.clone()).into_iter().collect()
    }

    /// The session a server's request belongs to (see the module documentation).
    fn owner(&self, server: &str, origins: &[Origin]) -> Result<Peer<RoleServer>, String> {
        let map = self.map.read().expect("not poisoned");
        let live: Vec<&Client> = origins.iter().filter_map(|o| map.get(o)).collect();
        let candidates: Vec<&Client> = if live.is_empty() {
            map.values().filter(|c| self.shows(c, server) && c.peer.is_some()).collect()
        } else {
            live
        };
        match candidates.as_slice() {
            [one] => one.peer.clone().ok_or_else(|| "the client session is not ready".to_owned()),
            [] => Err("no client session is connected".to_owned()),
            many => Err(format!(
                "{} client sessions have calls in flight on this instance, and the request does \
                 not say which one it belongs to (protocol 2026-07-28 does)",
                many.len()
            )),
        }
    }
}

/// The gateway's side of the upstream relay.
pub(crate) struct Relayer {
    pub(crate) clients: Arc<Clients>,
}

fn capable(peer: &Peer<RoleServer>, method: &str) -> bool {
    let Some(info) = peer.peer_info() else { return false };
    let caps = &info.capabilities;
    match method {
        "sampling/createMessage" => caps.sampling.is_some(),
        "elicitation/create" => caps.elicitation.is_some(),
        "roots/list" => caps.roots.is_some(),
        _ => false,
    }
}

fn refuse(code: ErrorCode, message: String) -> UpstreamError {
    UpstreamError::Server { code: code.0, message }
}

impl Downstream for Relayer {
    fn notice(&self, from: &InstanceId, notice: Notice) {
        let server = from.server().to_owned();
        match notice {
            Notice::Log { params, origin } => {
                let Ok(mut p) = serde_json::from_value::<LoggingMessageNotificationParam>(params)
                else {
                    return;
                };
                let rank = serde_json::to_value(p.level)
                    .ok()
                    .and_then(|v| v.as_str().and_then(level_rank))
                    .unwrap_or(0);
                // Say which server spoke.
                p.logger = Some(match p.logger.take() {
                    Some(l) => format!("{server}/{l}"),
                    None => server.clone(),
                });
                // A call's log goes to the session that made the call; one from a channel all
                // sessions share, to every session that sees the server and asked for logs.
                let peers = match origin {
                    Some(o) => self.clients.peer_of(o, |c| c.level.is_some_and(|l| rank >= l)),
                    None => self.clients.peers_where(|c| {
                        self.clients.shows(c, &server) && c.level.is_some_and(|l| rank >= l)
                    }),
                };
                for peer in peers {
                    let p = p.clone();
                    tokio::spawn(async move {
                        let _ = peer.notify_logging_message(p).await;
                    });
                }
            }
            Notice::ResourceUpdated(uri) => {
                let key = (server, uri.clone());
                let peers = self.clients.peers_where(|c| c.subscriptions.contains(&key));
                for peer in peers {
                    let p = ResourceUpdatedNotificationParam::new(uri.clone());
                    tokio::spawn(async move {
                        let _ = peer.notify_resource_updated(p).await;
                    });
                }
            }
        }
    }

    fn request(
        &self,
        from: &InstanceId,
        origins: Vec<Origin>,
        method: &str,
        params: Value,
    ) -> BoxFuture<'static, Result<Value, UpstreamError>> {
        let owner = self.clients.owner(from.server(), &origins);
        let method = method.to_owned();
        let from = from.clone();
        Box::pin(async move {
            let peer = owner.map_err(|why| {
                tracing::info!(instance = %from, %method, %why, "a server's request has no client to go to");
                refuse(ErrorCode::INTERNAL_ERROR, format!("{method}: {why}"))
            })?;
            if !capable(&peer, &method) {
                return Err(refuse(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("{method}: the client did not declare this capability"),
                ));
            }
            let req: ServerRequest =
                serde_json::from_value(serde_json::json!({ "method": method, "params": params }))
                    .map_err(|e| refuse(ErrorCode::INVALID_PARAMS, format!("{method}: {e}")))?;
            let handle = peer
                .send_request_with_option(req, PeerRequestOptions::with_timeout(CLIENT_ANSWER))
                .await
                .map_err(client_error)?;
            let result: ClientResult = handle.await_response().await.map_err(client_error)?;
            serde_json::to_value(result).map_err(|e| UpstreamError::Protocol(e.to_string()))
        })
    }
}

fn client_error(e: ServiceError) -> UpstreamError {
    match e {
        ServiceError::McpError(e) => {
            UpstreamError::Server { code: e.code.0, message: e.message.into() }
        }
        other => refuse(ErrorCode::INTERNAL_ERROR, format!("the client did not answer: {other}")),
    }
}

/// Whether a client level rank should be forwarded upstream as a string.
pub(crate) fn level_param(rank: u8) -> Value {
    serde_json::json!({ "level": level_name(rank) })
}
