//! The MCP methods a client calls on `/mcp` (or a server's own endpoint): each answered from
//! the serving catalogs or forwarded to the instance the router picks, and the notifications
//! (`list_changed`, resource updates) a session listens for.

use rmcp::model::{CustomRequest, CustomResult, InitializeRequestParams, InitializeResult};
use rmcp::transport::streamable_http_server::SessionRestoreMarker;

use crate::memory::Setting;

use super::*;

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

    /// A request of a method Warden serves whose params rmcp could not read comes here: it is
    /// refused as invalid params, saying why (`unreadable`), not as an unknown method.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Err(super::unreadable::refused(&request))
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // The aggregated face shows what this session's exposure lets through.
        let exposure = match self.scope {
            None => self.shared.exposures.get(self.ticket_id()),
            Some(_) => crate::Exposure::All,
        };
        let index =
            (exposure != crate::Exposure::All).then(|| self.shared.search.index(&self.table()));
        let mut tools: Vec<Tool> = self
            .builtin()
            .map(|b| {
                b.tools()
                    .into_iter()
                    .filter(|t| {
                        let name = t["name"].as_str().unwrap_or_default();
                        let bare = name.strip_prefix(b.prefix()).unwrap_or(name);
                        b.is_meta(bare) || exposure.shows_builtin(name)
                    })
                    .filter_map(|t| serde_json::from_value(t).ok())
                    .collect()
            })
            .unwrap_or_default();
        // A server with nothing routable (and no fallback) simply has no tools right now.
        for (name, catalog) in self.catalogs() {
            for entry in &catalog.tools {
                let shown = self.shown_name(&name, &entry.name);
                if let Some(idx) = &index {
                    if !exposure.shows(&shown, idx.categories_of(&shown)) {
                        continue;
                    }
                }
                let mut raw = (*entry.raw).clone();
                raw["name"] = json!(shown);
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
        let builtin = self.builtin().and_then(|b| {
            let tool = req.name.strip_prefix(b.prefix())?;
            b.has_tool(tool).then_some((b, tool))
        });
        if let Some((b, tool)) = builtin {
            let args = Value::Object(req.arguments.clone().unwrap_or_default());
            let origin = self.origin(&ctx);
            let value =
                b.call(tool, args, origin).await.map_err(|e| ErrorData::invalid_params(e, None))?;
            return Ok(CallToolResponse::Complete(parse::<CallToolResult>(value, "tool result")?));
        }
        tool_response(&self.call(req.into(), &ctx).await?)
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
                Request {
                    server: &server,
                    method: "prompts/get",
                    params,
                    arguments: None,
                    tool: None,
                },
                &ctx,
            )
            .await?;
        if is_input_required(&value) {
            return Ok(GetPromptResponse::InputRequired(read(&value, "input request")?));
        }
        Ok(GetPromptResponse::Complete(read::<GetPromptResult>(&value, "prompt")?))
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
                Request {
                    server: &server,
                    method: "resources/read",
                    params,
                    arguments: None,
                    tool: None,
                },
                &ctx,
            )
            .await?;
        if is_input_required(&value) {
            return Ok(ReadResourceResponse::InputRequired(read(&value, "input request")?));
        }
        Ok(ReadResourceResponse::Complete(read::<ReadResourceResult>(&value, "resource")?))
    }

    async fn subscribe(
        &self,
        req: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let server = self.resource_server(&req.uri)?;
        let origin = self.origin(&ctx);
        if self.shared.clients.subscribe(origin, &server, &req.uri) {
            upstream_all(&self.table(), &server, "resources/subscribe", json!({ "uri": req.uri }))
                .await;
        }
        self.shared.remember(origin, Setting::Subscriptions).await;
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
                &self.table(),
                &server,
                "resources/unsubscribe",
                json!({ "uri": req.uri }),
            )
            .await;
        }
        self.shared.remember(origin, Setting::Subscriptions).await;
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
            &self.table(),
            &Request {
                server: &server,
                method: "completion/complete",
                params,
                arguments: None,
                tool: None,
            },
            &ctx,
            self.origin(&ctx),
        )
        .await?;
        read(&value, "completion")
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
        self.shared.remember(origin, Setting::Level).await;
        // Each server logs at the lowest level any of its viewers asked for.
        for server in self.names() {
            if let Some(min) = self.shared.clients.min_level(&server) {
                upstream_all(&self.table(), &server, "logging/setLevel", level_param(min)).await;
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
        let mut generation = self.shared.routes.subscribe();
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

    /// A legacy session another replica began (rmcp replays its `initialize` here) gets the
    /// settings that replica kept; otherwise rmcp's own answer.
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        ctx.peer.set_peer_info(request.clone());
        if let Some(marker) = ctx.extensions.get::<SessionRestoreMarker>() {
            let origin = self.origin(&ctx);
            self.shared.restored.lock().expect("not poisoned").insert(marker.id.to_string());
            self.shared.restore(origin, &marker.id).await;
        }
        self.negotiate_initialize(&request)
    }

    /// Older clients are told about list changes unprompted.
    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        let parts = ctx.extensions.get::<axum::http::request::Parts>();
        let session = parts.and_then(|p| p.headers.get("mcp-session-id")?.to_str().ok());
        self.shared.clients.attach(self.ticket.id, &ctx.peer, session);
        // The endpoint as the client named it (`/mcp` is a nested service: its own path is
        // stripped; axum keeps the original).
        let path = parts.map(|p| match p.extensions.get::<axum::extract::OriginalUri>() {
            Some(original) => original.path(),
            None => p.uri.path(),
        });
        if let (Some(id), Some(path)) = (session.filter(|_| crate::lane::enabled()), path) {
            self.shared.lanes.register(id, path, self.clone(), ctx.peer.clone());
        }
        let mut generation = self.shared.routes.subscribe();
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
