//! The MCP server Warden presents to clients. One [`Handler`] per client session.
//!
//! Names on the aggregated face: tools and prompts are `server__name`; resources keep their
//! URIs (a URI names a thing, and clients show and store it) and get `server__name` names.
//! Collision policy: when two servers offer the same resource URI or URI template, the server
//! listed first in the config serves it and the other's is left out of the aggregated lists
//! (logged once); `/servers/{name}/mcp` shows each server's own unaltered.
// Logging is deprecated by SEP-2577 (2026-07-28); older clients and servers use it.
#![allow(deprecated)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation,
    InputRequiredResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, Prompt, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, Resource, ResourceTemplate,
    ServerCapabilities, ServerConfig, ServerRequest, SetLevelRequestParams, SubscribeRequestParams,
    SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use warden_upstream::{Call, Catalog, Origin, Reply};

use crate::clients::{level_param, level_rank, Clients};
use crate::forward::{self, clean_params, Flights, Request, ResultCache};
use crate::route::{Routes, Table};
use crate::template::template_matches;

/// Separates a server's name from its tool's or prompt's in aggregated names.
const SEP: &str = "__";
/// Rounds of input requests Warden drives for a client that cannot (protocol < 2026-07-28).
const MAX_INPUT_ROUNDS: usize = 10;

/// What every session's handler shares.
pub(crate) struct Shared {
    pub(crate) routes: Arc<Routes>,
    pub(crate) clients: Arc<Clients>,
    flights: Flights,
    cache: ResultCache,
    /// Offline mode's last good results.
    last_good: crate::offline::LastGood,
    /// The tool index and categories.
    pub(crate) search: crate::search::Search,
    /// What each session is shown.
    pub(crate) exposures: crate::exposure::Exposures,
    /// Choices of tools for prompts, by method and outcome.
    pub(crate) categorizations: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// Requests to the tool-choosing model, and their seconds in all.
    pub(crate) llm_time: Mutex<(u64, f64)>,
    /// Collisions already logged, so each is logged once.
    collisions: Mutex<HashSet<String>>,
    /// Warden's own tools and resources (aggregated endpoint only).
    pub(crate) builtin: crate::builtin::Slot,
    /// Where sessions' settings are kept for other replicas (a shared database), if anywhere.
    pub(crate) memory: std::sync::RwLock<Option<Arc<dyn crate::memory::SessionMemory>>>,
    /// Sessions another replica began and this one continues (restored by rmcp).
    pub(crate) restored: Mutex<HashSet<String>>,
    /// Legacy sessions whose `tools/call`s the HTTP fast lane may run.
    pub(crate) lanes: crate::http_lane::Lanes,
}

impl Shared {
    pub(crate) fn new(routes: Arc<Routes>, clients: Arc<Clients>) -> Self {
        Self {
            routes,
            clients,
            flights: Flights::default(),
            cache: ResultCache::default(),
            last_good: Default::default(),
            search: Default::default(),
            exposures: Default::default(),
            categorizations: Mutex::default(),
            llm_time: Mutex::default(),
            collisions: Mutex::default(),
            builtin: Default::default(),
            memory: Default::default(),
            restored: Mutex::default(),
            lanes: Default::default(),
        }
    }

    pub(crate) fn joined_calls(&self) -> u64 {
        self.flights.joined.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn cache_hits(&self) -> u64 {
        self.cache.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn stale_answers(&self) -> u64 {
        self.last_good.served.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Closes the session's registration when rmcp drops its handler.
struct Ticket {
    id: Origin,
    shared: Arc<Shared>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.exposures.forget(self.id);
        if let Some(session) = self.shared.clients.session(self.id) {
            self.shared.restored.lock().expect("not poisoned").remove(&session);
        }
        let orphaned = self.shared.clients.close(self.id);
        if orphaned.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for (server, uri) in orphaned {
                    upstream_all(
                        &shared.routes.table(),
                        &server,
                        "resources/unsubscribe",
                        json!({ "uri": uri }),
                    )
                    .await;
                }
            });
        }
    }
}

/// One client session's MCP server: aggregated (`scope: None`) or one server's.
#[derive(Clone)]
pub struct Handler {
    shared: Arc<Shared>,
    scope: Option<String>,
    ticket: Arc<Ticket>,
}

/// Sends a request to every routable instance of `server` (log levels, subscriptions), best
/// effort: a refusal is logged at debug level.
pub(crate) async fn upstream_all(routes: &Table, server: &str, method: &str, params: Value) {
    let Some(s) = routes.server(server) else { return };
    for session in s.live_sessions() {
        let call = Call::new(
            method,
            Some(params.clone()),
            s.spec.timeout.min(std::time::Duration::from_secs(10)),
        );
        if let Err(e) = session.request(call).await {
            tracing::debug!(server, method, error = %e, "an instance refused");
        }
    }
}

fn parse<T: DeserializeOwned>(v: Value, what: &str) -> Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| {
        ErrorData::internal_error(format!("unreadable {what} from the server: {e}"), None)
    })
}

/// A server's result read as `T`.
fn read<T: DeserializeOwned>(r: &Reply, what: &str) -> Result<T, ErrorData> {
    r.parse().map_err(|e| {
        ErrorData::internal_error(format!("unreadable {what} from the server: {e}"), None)
    })
}

fn is_input_required(r: &Reply) -> bool {
    r.peek().input_required
}

/// A server's answer to a `tools/call`, typed as rmcp answers the client with it.
pub(crate) fn tool_response(value: &Reply) -> Result<CallToolResponse, ErrorData> {
    if is_input_required(value) {
        return Ok(CallToolResponse::InputRequired(read::<InputRequiredResult>(
            value,
            "input request",
        )?));
    }
    Ok(CallToolResponse::Complete(read::<CallToolResult>(value, "tool result")?))
}

/// A server's `tools/call` result, checked as rmcp checks it (unreadable: the same internal
/// error as [`tool_response`]'s).
pub(crate) fn check_tool_result(value: &Reply) -> Result<(), ErrorData> {
    read::<CallToolResult>(value, "tool result").map(drop)
}

fn to_params<T: serde::Serialize>(p: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(p)
        .map(clean_params)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// A `tools/call` of a server's tool as the handler forwards it: rmcp's params, but the
/// arguments as the JSON text of an object (as a lane read them, or as rmcp's serialize), sent
/// on as they are.
pub(crate) struct ToolCall {
    /// The params, their `arguments` apart.
    pub(crate) params: CallToolRequestParams,
    pub(crate) arguments: Option<Arc<str>>,
}

impl From<CallToolRequestParams> for ToolCall {
    fn from(mut params: CallToolRequestParams) -> Self {
        let arguments =
            params.arguments.take().and_then(|a| serde_json::to_string(&a).ok().map(Arc::from));
        Self { params, arguments }
    }
}

impl Handler {
    /// A session of an aggregated endpoint that starts from its own exposure.
    pub(crate) fn exposed(shared: Arc<Shared>, start: crate::Exposure) -> Self {
        let h = Self::new(shared, None);
        h.shared.exposures.start(h.ticket.id, start);
        h
    }

    pub(crate) fn new(shared: Arc<Shared>, scope: Option<String>) -> Self {
        let id = shared.clients.open(scope.clone());
        let ticket = Arc::new(Ticket { id, shared: Arc::clone(&shared) });
        Self { shared, scope, ticket }
    }

    /// This session's id.
    pub(crate) fn ticket_id(&self) -> Origin {
        self.ticket.id
    }

    /// The routing table now (a call keeps the one it started with).
    fn table(&self) -> Arc<Table> {
        self.shared.routes.table()
    }

    fn origin(&self, ctx: &RequestContext<RoleServer>) -> Origin {
        self.shared.clients.attach(self.ticket.id, &ctx.peer, crate::memory::session_of(ctx));
        self.ticket.id
    }

    /// The servers this face shows, in config order.
    fn names(&self) -> Vec<String> {
        match &self.scope {
            Some(s) => vec![s.clone()],
            None => self.table().server_names(),
        }
    }

    /// `(server, name)` for a tool or prompt name as this face shows it.
    fn split(&self, name: &str, what: &str) -> Result<(String, String), ErrorData> {
        match &self.scope {
            Some(s) => Ok((s.clone(), name.to_owned())),
            None => name
                .split_once(SEP)
                .filter(|(s, _)| self.table().server(s).is_some())
                .map(|(s, t)| (s.to_owned(), t.to_owned()))
                .ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!(
                            "unknown {what} {name:?}: {what}s here are named server{SEP}{what}"
                        ),
                        None,
                    )
                }),
        }
    }

    fn shown_name(&self, server: &str, name: &str) -> String {
        match &self.scope {
            Some(_) => name.to_owned(),
            None => format!("{server}{SEP}{name}"),
        }
    }

    /// Warden's own tools and resources, on the aggregated face only.
    fn builtin(&self) -> Option<&Arc<dyn crate::Builtin>> {
        self.scope.is_none().then(|| self.shared.builtin.get()).flatten()
    }

    /// Every server's serving catalog, in config order, without its `disabledTools`.
    fn catalogs(&self) -> Vec<(String, Arc<Catalog>)> {
        let table = self.table();
        self.names()
            .into_iter()
            .filter_map(|n| {
                let (_, catalog) = table.listed_catalog(&n)?;
                let hidden = &table.server(&n)?.spec.disabled_tools;
                if hidden.is_empty() || !catalog.tools.iter().any(|t| hidden.contains(&t.name)) {
                    return Some((n, catalog));
                }
                let mut shown = (*catalog).clone();
                shown.tools.retain(|t| !hidden.contains(&t.name));
                Some((n, Arc::new(shown)))
            })
            .collect()
    }

    /// A call to a tool the config disables (`disabledTools`) is refused, whatever the server
    /// offers.
    fn refuse_disabled(&self, server: &str, tool: &str) -> Result<(), ErrorData> {
        let disabled = self
            .table()
            .server(server)
            .is_some_and(|s| s.spec.disabled_tools.iter().any(|t| t == tool));
        if disabled {
            return Err(ErrorData::invalid_params(
                format!("tool {tool:?} is disabled on server {server:?} (disabledTools)"),
                None,
            ));
        }
        Ok(())
    }

    fn collision(&self, key: &str, winner: &str, loser: &str) {
        if self.shared.collisions.lock().expect("not poisoned").insert(format!("{loser}:{key}")) {
            tracing::warn!(
                uri = key,
                served_by = winner,
                hidden_from = loser,
                "two servers offer the same resource; the first in the config serves it"
            );
        }
    }

    /// The server that serves a resource URI: the first (config order) that lists it, else the
    /// first whose URI template matches it.
    fn resource_server(&self, uri: &str) -> Result<String, ErrorData> {
        let catalogs = self.catalogs();
        if let Some((name, _)) =
            catalogs.iter().find(|(_, c)| c.resources.iter().any(|r| r.key == uri))
        {
            return Ok(name.clone());
        }
        if let Some((name, _)) =
            catalogs.iter().find(|(_, c)| c.templates.iter().any(|t| template_matches(&t.key, uri)))
        {
            return Ok(name.clone());
        }
        match &self.scope {
            // One server: let it answer for URIs it does not list.
            Some(s) => Ok(s.clone()),
            None => Err(ErrorData::resource_not_found(
                format!("no server offers the resource {uri:?}"),
                Some(json!({ "uri": uri })),
            )),
        }
    }

    /// Forwards, then answers the server's input requests itself for a client that speaks a
    /// protocol before 2026-07-28 (a newer client gets them and answers them itself).
    async fn forward_with_input(
        &self,
        mut req: Request<'_>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Reply, ErrorData> {
        let origin = self.origin(ctx);
        let modern_client =
            ctx.peer.peer_info().is_some_and(|p| !p.protocol_version.has_initialize());
        for _ in 0..MAX_INPUT_ROUNDS {
            let value = forward::forward(&self.table(), &req, ctx, origin).await?;
            if !is_input_required(&value) || modern_client {
                return Ok(value);
            }
            let mut answers = serde_json::Map::new();
            let value: Value = read(&value, "input request")?;
            if let Some(asks) = value.get("inputRequests").and_then(Value::as_object) {
                for (key, ask) in asks {
                    let request: ServerRequest = parse(ask.clone(), "input request")?;
                    // Boxed: a ~2 KB future every call's would otherwise make room for.
                    let answer = Box::pin(ctx.peer.send_request(request)).await.map_err(|e| {
                        ErrorData::internal_error(
                            format!("the client could not answer the server's request: {e}"),
                            None,
                        )
                    })?;
                    answers.insert(key.clone(), serde_json::to_value(answer).unwrap_or_default());
                }
            }
            let params = req.params.as_object_mut().expect("params are an object");
            params.insert("inputResponses".into(), Value::Object(answers));
            match value.get("requestState") {
                Some(s) => params.insert("requestState".into(), s.clone()),
                None => params.remove("requestState"),
            };
        }
        Err(ErrorData::internal_error(
            format!("the server asked for input more than {MAX_INPUT_ROUNDS} times"),
            None,
        ))
    }

    /// Whether `name` is one of Warden's own tools (rmcp's dispatch runs those).
    pub(crate) fn is_own_tool(&self, name: &str) -> bool {
        self.builtin()
            .is_some_and(|b| name.strip_prefix(b.prefix()).is_some_and(|tool| b.has_tool(tool)))
    }

    /// A `tools/call` of a server's tool, forwarded: the server's result as it wrote it.
    pub(crate) async fn call(
        &self,
        call: ToolCall,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Reply, ErrorData> {
        let ToolCall { params: req, arguments } = call;
        let (server, tool) = self.split(&req.name, "tool")?;
        self.refuse_disabled(&server, &tool)?;
        let params =
            if req.meta.is_none() && req.input_responses.is_none() && req.request_state.is_none() {
                json!({ "name": tool })
            } else {
                let mut params = to_params(&req)?;
                params["name"] = json!(tool);
                params
            };
        let request =
            Request { server: &server, method: "tools/call", params, arguments, tool: Some(&tool) };
        let table = self.table();
        let Some(s) = table.server(&server) else {
            return self.forward_with_input(request, ctx).await;
        };
        // Only plain calls are shared or cached: a call carrying input answers is a continuation.
        let plain = req.input_responses.is_none() && req.request_state.is_none();
        let entry = s.tool(&tool);
        let ttl = s.spec.cache.get(&tool).copied();
        let safe = entry.as_ref().is_some_and(|t| s.safe_tool(t));
        let offline = plain
            && s.failover.get().strategy == warden_config::FallbackStrategy::OfflineMode
            && entry.as_ref().is_some_and(|t| s.offline_tool(t));
        if !plain || (!safe && ttl.is_none() && !offline) {
            return self.forward_with_input(request, ctx).await;
        }
        // The arguments as a tree writes them (keys in order): equal values, one key.
        let canonical = request.arguments.as_deref().map_or_else(
            || "null".to_owned(),
            |a| serde_json::from_str::<Value>(a).map_or_else(|_| a.to_owned(), |v| v.to_string()),
        );
        let key = format!("{server}\u{0}{tool}\u{0}{canonical}");
        if ttl.is_some() {
            if let Some(hit) = self.shared.cache.get(&key) {
                return Ok(hit);
            }
        }
        // A client that can answer the server's requests (elicitation, sampling, roots) may
        // shape the result with its answers: such a call neither leads nor joins a shared call,
        // and its result is not cached for others.
        let answers = crate::forward::client_answers(ctx);
        let result = if safe && !answers {
            self.shared
                .flights
                .run(key.clone(), &ctx.ct, || self.forward_with_input(request, ctx))
                .await
        } else {
            self.forward_with_input(request, ctx).await
        };
        let good = |v: &Reply| {
            let peek = v.peek();
            !peek.is_error && !peek.input_required
        };
        match &result {
            Ok(v) if !answers && good(v) => {
                if let Some(ttl) = ttl {
                    self.shared.cache.put(key.clone(), ttl, v.clone());
                }
                if offline {
                    self.shared.last_good.put(key, v);
                }
            }
            // Nothing can serve it: offline mode answers from the last good result.
            Err(e) if offline && e.code.0 == crate::UNAVAILABLE => {
                let why = e.message.to_string();
                if let Some(stale) = self.shared.last_good.stale(&key, &why) {
                    return Ok(stale);
                }
            }
            _ => {}
        }
        result
    }
}

mod protocol;
mod unreadable;

pub(crate) use unreadable::refusal;
