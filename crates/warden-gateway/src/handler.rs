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
use warden_upstream::{Call, Catalog, Origin};

use crate::clients::{level_param, level_rank, Clients};
use crate::forward::{self, clean_params, Flights, Request, ResultCache};
use crate::route::Routes;
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
    /// Collisions already logged, so each is logged once.
    collisions: Mutex<HashSet<String>>,
    /// Warden's own tools and resources (aggregated endpoint only).
    pub(crate) builtin: crate::builtin::Slot,
}

impl Shared {
    pub(crate) fn new(routes: Arc<Routes>, clients: Arc<Clients>) -> Self {
        Self {
            routes,
            clients,
            flights: Flights::default(),
            cache: ResultCache::default(),
            collisions: Mutex::default(),
            builtin: Default::default(),
        }
    }

    pub(crate) fn joined_calls(&self) -> u64 {
        self.flights.joined.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn cache_hits(&self) -> u64 {
        self.cache.hits.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Closes the session's registration when rmcp drops its handler.
struct Ticket {
    id: Origin,
    shared: Arc<Shared>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let orphaned = self.shared.clients.close(self.id);
        if orphaned.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for (server, uri) in orphaned {
                    upstream_all(
                        &shared.routes,
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
pub(crate) async fn upstream_all(routes: &Routes, server: &str, method: &str, params: Value) {
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

fn is_input_required(v: &Value) -> bool {
    v.get("resultType").and_then(Value::as_str) == Some("input_required")
}

fn to_params<T: serde::Serialize>(p: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(p)
        .map(clean_params)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

impl Handler {
    pub(crate) fn new(shared: Arc<Shared>, scope: Option<String>) -> Self {
        let id = shared.clients.open(scope.clone());
        let ticket = Arc::new(Ticket { id, shared: Arc::clone(&shared) });
        Self { shared, scope, ticket }
    }

    fn routes(&self) -> &Routes {
        &self.shared.routes
    }

    fn origin(&self, ctx: &RequestContext<RoleServer>) -> Origin {
        self.shared.clients.attach(self.ticket.id, &ctx.peer);
        self.ticket.id
    }

    /// The servers this face shows, in config order.
    fn names(&self) -> Vec<String> {
        match &self.scope {
            Some(s) => vec![s.clone()],
            None => self.routes().server_names(),
        }
    }

    /// `(server, name)` for a tool or prompt name as this face shows it.
    fn split(&self, name: &str, what: &str) -> Result<(String, String), ErrorData> {
        match &self.scope {
            Some(s) => Ok((s.clone(), name.to_owned())),
            None => name
                .split_once(SEP)
                .filter(|(s, _)| self.routes().server(s).is_some())
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

    /// Every server's serving catalog, in config order.
    fn catalogs(&self) -> Vec<(String, Arc<Catalog>)> {
        self.names()
            .into_iter()
            .filter_map(|n| self.routes().serving_catalog(&n).map(|(_, c)| (n, c)))
            .collect()
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
    ) -> Result<Value, ErrorData> {
        let origin = self.origin(ctx);
        let modern_client =
            ctx.peer.peer_info().is_some_and(|p| !p.protocol_version.has_initialize());
        for _ in 0..MAX_INPUT_ROUNDS {
            let attempt = Request {
                server: req.server,
                method: req.method,
                params: req.params.clone(),
                tool: req.tool,
            };
            let value = forward::forward(self.routes(), attempt, ctx, origin).await?;
            if !is_input_required(&value) || modern_client {
                return Ok(value);
            }
            let mut answers = serde_json::Map::new();
            if let Some(asks) = value.get("inputRequests").and_then(Value::as_object) {
                for (key, ask) in asks {
                    let request: ServerRequest = parse(ask.clone(), "input request")?;
                    let answer = ctx.peer.send_request(request).await.map_err(|e| {
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

    async fn call(
        &self,
        req: CallToolRequestParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Value, ErrorData> {
        let (server, tool) = self.split(&req.name, "tool")?;
        let mut params = to_params(&req)?;
        params["name"] = json!(tool);
        let request = Request { server: &server, method: "tools/call", params, tool: Some(&tool) };
        let Some(s) = self.routes().server(&server) else {
            return self.forward_with_input(request, ctx).await;
        };
        // Only plain calls are shared or cached: a call carrying input answers is a continuation.
        let plain = req.input_responses.is_none() && req.request_state.is_none();
        let entry = s.tool(&tool);
        let ttl = s.spec.cache.get(&tool).copied();
        let safe = entry.as_ref().is_some_and(|t| s.safe_tool(t));
        if !plain || (!safe && ttl.is_none()) {
            return self.forward_with_input(request, ctx).await;
        }
        let key = format!(
            "{server}\u{0}{tool}\u{0}{}",
            serde_json::to_string(&req.arguments).unwrap_or_default()
        );
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
        if let (Some(ttl), Ok(v), false) = (ttl, &result, answers) {
            if v.get("isError").and_then(Value::as_bool) != Some(true) && !is_input_required(v) {
                self.shared.cache.put(key, ttl, v.clone());
            }
        }
        result
    }
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        let mut config = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts_list_changed()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .build(),
        )
        .with_instructions(match &self.scope {
            None => "Warden: every supervised MCP server's tools and prompts, named server__name."
                .to_owned(),
            Some(s) => format!("Warden: the tools of {s}, served by its healthy instances."),
        });
        config.server_info = Implementation::new("warden", env!("CARGO_PKG_VERSION"));
        config
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools: Vec<Tool> = self
            .builtin()
            .map(|b| b.tools().into_iter().filter_map(|t| serde_json::from_value(t).ok()).collect())
            .unwrap_or_default();
        // A server with nothing routable (and no fallback) simply has no tools right now.
        for (name, catalog) in self.catalogs() {
            for entry in &catalog.tools {
                let mut raw = (*entry.raw).clone();
                raw["name"] = json!(self.shown_name(&name, &entry.name));
                match serde_json::from_value::<Tool>(raw) {
                    Ok(t) => tools.push(t),
                    Err(e) => {
                        tracing::debug!(server = %name, tool = %entry.name, error = %e, "skipping a tool that does not parse")
                    }
                }
            }
        }
        Ok(ListToolsResult { tools, ..Default::default() })
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let (Some(b), Some(tool)) =
            (self.builtin(), req.name.strip_prefix(crate::BUILTIN_PREFIX))
        {
            let args = Value::Object(req.arguments.clone().unwrap_or_default());
            let value = b.call(tool, args).await.map_err(|e| ErrorData::invalid_params(e, None))?;
            return Ok(CallToolResponse::Complete(parse::<CallToolResult>(value, "tool result")?));
        }
        let value = self.call(req, &ctx).await?;
        if is_input_required(&value) {
            return Ok(CallToolResponse::InputRequired(parse::<InputRequiredResult>(
                value,
                "input request",
            )?));
        }
        Ok(CallToolResponse::Complete(parse::<CallToolResult>(value, "tool result")?))
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut prompts = Vec::new();
        for (name, catalog) in self.catalogs() {
            for entry in &catalog.prompts {
                let mut raw = (*entry.raw).clone();
                raw["name"] = json!(self.shown_name(&name, &entry.key));
                if let Ok(p) = serde_json::from_value::<Prompt>(raw) {
                    prompts.push(p);
                }
            }
        }
        Ok(ListPromptsResult { prompts, ..Default::default() })
    }

    async fn get_prompt(
        &self,
        req: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let (server, prompt) = self.split(&req.name, "prompt")?;
        let mut params = to_params(&req)?;
        params["name"] = json!(prompt);
        let value = self
            .forward_with_input(
                Request { server: &server, method: "prompts/get", params, tool: None },
                &ctx,
            )
            .await?;
        if is_input_required(&value) {
            return Ok(GetPromptResponse::InputRequired(parse(value, "input request")?));
        }
        Ok(GetPromptResponse::Complete(parse::<GetPromptResult>(value, "prompt")?))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut owner: std::collections::HashMap<String, String> = Default::default();
        let mut resources: Vec<Resource> = self
            .builtin()
            .map(|b| {
                b.resources().into_iter().filter_map(|r| serde_json::from_value(r).ok()).collect()
            })
            .unwrap_or_default();
        for (name, catalog) in self.catalogs() {
            for entry in &catalog.resources {
                if !seen.insert(entry.key.clone()) {
                    self.collision(&entry.key, &owner[&entry.key], &name);
                    continue;
                }
                owner.insert(entry.key.clone(), name.clone());
                let mut raw = (*entry.raw).clone();
                if let Some(n) = raw.get("name").and_then(Value::as_str) {
                    raw["name"] = json!(self.shown_name(&name, n));
                }
                if let Ok(r) = serde_json::from_value::<Resource>(raw) {
                    resources.push(r);
                }
            }
        }
        Ok(ListResourcesResult { resources, ..Default::default() })
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut resource_templates: Vec<ResourceTemplate> = self
            .builtin()
            .map(|b| {
                b.templates().into_iter().filter_map(|r| serde_json::from_value(r).ok()).collect()
            })
            .unwrap_or_default();
        for (name, catalog) in self.catalogs() {
            for entry in &catalog.templates {
                if !seen.insert(entry.key.clone()) {
                    self.collision(&entry.key, "an earlier server", &name);
                    continue;
                }
                let mut raw = (*entry.raw).clone();
                if let Some(n) = raw.get("name").and_then(Value::as_str) {
                    raw["name"] = json!(self.shown_name(&name, n));
                }
                if let Ok(t) = serde_json::from_value::<ResourceTemplate>(raw) {
                    resource_templates.push(t);
                }
            }
        }
        Ok(ListResourceTemplatesResult { resource_templates, ..Default::default() })
    }

    async fn read_resource(
        &self,
        req: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if let Some(read) = self.builtin().and_then(|b| b.read(&req.uri)) {
            let value = read
                .await
                .map_err(|e| ErrorData::resource_not_found(e, Some(json!({ "uri": req.uri }))))?;
            return Ok(ReadResourceResponse::Complete(parse::<ReadResourceResult>(
                value, "resource",
            )?));
        }
        let server = self.resource_server(&req.uri)?;
        let params = to_params(&req)?;
        let value = self
            .forward_with_input(
                Request { server: &server, method: "resources/read", params, tool: None },
                &ctx,
            )
            .await?;
        if is_input_required(&value) {
            return Ok(ReadResourceResponse::InputRequired(parse(value, "input request")?));
        }
        Ok(ReadResourceResponse::Complete(parse::<ReadResourceResult>(value, "resource")?))
    }

    async fn subscribe(
        &self,
        req: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let server = self.resource_server(&req.uri)?;
        let origin = self.origin(&ctx);
        if self.shared.clients.subscribe(origin, &server, &req.uri) {
            upstream_all(self.routes(), &server, "resources/subscribe", json!({ "uri": req.uri }))
                .await;
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        req: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let server = self.resource_server(&req.uri)?;
        let origin = self.origin(&ctx);
        if self.shared.clients.unsubscribe(origin, &server, &req.uri) {
            upstream_all(
                self.routes(),
                &server,
                "resources/unsubscribe",
                json!({ "uri": req.uri }),
            )
            .await;
        }
        Ok(())
    }

    async fn complete(
        &self,
        req: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let mut params = to_params(&req)?;
        let server = match &req.r#ref {
            Reference::Prompt(p) => {
                let (server, prompt) = self.split(&p.name, "prompt")?;
                params["ref"]["name"] = json!(prompt);
                server
            }
            Reference::Resource(r) => self.resource_server(&r.uri)?,
            _ => return Err(ErrorData::invalid_params("unsupported completion reference", None)),
        };
        let value = forward::forward(
            self.routes(),
            Request { server: &server, method: "completion/complete", params, tool: None },
            &ctx,
            self.origin(&ctx),
        )
        .await?;
        parse(value, "completion")
    }

    async fn set_level(
        &self,
        req: SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let level = serde_json::to_value(req.level).ok();
        let rank = level
            .as_ref()
            .and_then(Value::as_str)
            .and_then(level_rank)
            .ok_or_else(|| ErrorData::invalid_params("unknown log level", None))?;
        let origin = self.origin(&ctx);
        self.shared.clients.set_level(origin, rank);
        // Each server logs at the lowest level any of its viewers asked for.
        for server in self.names() {
            if let Some(min) = self.shared.clients.min_level(&server) {
                upstream_all(self.routes(), &server, "logging/setLevel", level_param(min)).await;
            }
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = requested.clone();
        // Resource updates reach legacy sessions through resources/subscribe only.
        accepted.resource_subscriptions = None;
        Some(accepted)
    }

    /// 2026-07-28 clients hear about list changes on their `subscriptions/listen` stream.
    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut generation = self.routes().subscribe();
        let mut seen = *generation.borrow_and_update();
        loop {
            tokio::select! {
                _ = ctx.cancelled() => return Ok(()),
                changed = generation.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let [tools, prompts, resources] = changed_since(&mut seen, &mut generation);
                    let a = ctx.accepted();
                    let sink = ctx.sink();
                    let mut ok = true;
                    if tools && a.tools_list_changed == Some(true) {
                        ok &= sink.notify_tool_list_changed().await.is_ok();
                    }
                    if prompts && a.prompts_list_changed == Some(true) {
                        ok &= sink.notify_prompt_list_changed().await.is_ok();
                    }
                    if resources && a.resources_list_changed == Some(true) {
                        ok &= sink.notify_resource_list_changed().await.is_ok();
                    }
                    if !ok {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Older clients are told about list changes unprompted.
    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        self.shared.clients.attach(self.ticket.id, &ctx.peer);
        let mut generation = self.routes().subscribe();
        let mut seen = *generation.borrow_and_update();
        let peer = ctx.peer;
        tokio::spawn(async move {
            while generation.changed().await.is_ok() {
                let [tools, prompts, resources] = changed_since(&mut seen, &mut generation);
                if tools && peer.notify_tool_list_changed().await.is_err()
                    || prompts && peer.notify_prompt_list_changed().await.is_err()
                    || resources && peer.notify_resource_list_changed().await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Which list kinds (tools, prompts, resources) changed since `seen`, which becomes now.
fn changed_since(
    seen: &mut [u64; 3],
    generation: &mut tokio::sync::watch::Receiver<[u64; 3]>,
) -> [bool; 3] {
    let now = *generation.borrow_and_update();
    let changed = [0, 1, 2].map(|k| now[k] != seen[k]);
    *seen = now;
    changed
}
