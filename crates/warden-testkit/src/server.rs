//! The MCP server and its knobs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Logging is deprecated by SEP-2577 (2026-07-28); the conformance suite tests it.
#[allow(deprecated)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, GetPromptRequestMethod, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestMethod,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
    SetLevelRequestMethod, SubscribeRequestMethod, SubscribeRequestParams, Tool, ToolAnnotations,
    UnsubscribeRequestMethod, UnsubscribeRequestParams,
};
use rmcp::service::{
    NotificationContext, RequestContext, RoleServer, SubscriptionContext, SubscriptionSink,
};
use rmcp::{ErrorData, Peer, ServerHandler};
use serde_json::{json, Map, Value};

use crate::conformance::{self, Conformance};

/// How the server misbehaves. Every knob is off by default.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Added to every request (ping included).
    pub latency: Duration,
    /// Up to this much more, uniformly at random.
    pub latency_jitter: Duration,
    /// After this long, latency grows by `ramp_ms_per_s` every second.
    pub ramp_after: Option<Duration>,
    pub ramp_ms_per_s: f64,
    /// Share of tool calls answered with a JSON-RPC internal error.
    pub error_rate: f64,
    /// Exit (with `exit_code`) on the N-th tool call, before answering it.
    pub crash_after_calls: Option<u64>,
    /// Exit (with `exit_code`) this long after start.
    pub crash_after: Option<Duration>,
    pub exit_code: i32,
    /// Stop answering everything after this long…
    pub hang_after: Option<Duration>,
    /// …or from the N-th tool call on.
    pub hang_after_calls: Option<u64>,
    /// Add or remove a tool (and announce `list_changed`) this often.
    pub tools_change_every: Option<Duration>,
    /// Also serve what the MCP conformance suite calls (`conformance.rs`).
    pub conformance: bool,
    /// Leave probes (`ping`, `server/discover`) unanswered while a tool call runs (a server
    /// too busy to answer them, but not hung: the call still streams progress and completes).
    pub busy_ignores_probes: bool,
    /// More tools, as another server's `tools/list` answer gives them (`--catalog`); a call to
    /// one answers with its name.
    pub catalog: Vec<Tool>,
    /// Answer the first `tools/list` this late (a server slow to list what it offers).
    pub first_list_delay: Option<Duration>,
}

/// The server state, shared by every session.
#[derive(Clone)]
pub struct Misbehave {
    inner: Arc<Inner>,
}

struct Inner {
    knobs: Knobs,
    started: Instant,
    calls: AtomicU64,
    /// Tool calls running now.
    running: AtomicU64,
    counter: AtomicU64,
    hung: AtomicBool,
    extra_tools: AtomicU64,
    peers: Mutex<Vec<Peer<RoleServer>>>,
    /// 2026-07-28 clients hear `list_changed` only on their `subscriptions/listen` streams.
    sinks: Mutex<Vec<(u64, SubscriptionSink)>>,
    next_sink: AtomicU64,
    conformance: Option<Conformance>,
    /// Whether `tools/list` was answered once (`first_list_delay`).
    listed: AtomicBool,
}

fn schema(v: Value) -> Arc<Map<String, Value>> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => unreachable!("schemas are objects"),
    }
}

impl Misbehave {
    pub fn new(knobs: Knobs) -> Self {
        let conformance = knobs.conformance.then(Conformance::default);
        Self {
            inner: Arc::new(Inner {
                conformance,
                knobs,
                started: Instant::now(),
                calls: AtomicU64::new(0),
                running: AtomicU64::new(0),
                counter: AtomicU64::new(0),
                hung: AtomicBool::new(false),
                extra_tools: AtomicU64::new(0),
                peers: Mutex::new(Vec::new()),
                sinks: Mutex::new(Vec::new()),
                next_sink: AtomicU64::new(0),
                listed: AtomicBool::new(false),
            }),
        }
    }

    pub fn knobs(&self) -> &Knobs {
        &self.inner.knobs
    }

    /// Stops answering anything from now on.
    pub fn hang(&self) {
        self.inner.hung.store(true, Ordering::SeqCst);
    }

    /// Adds or removes the changing tool and tells every client.
    pub async fn change_tools(&self) {
        let n = self.inner.extra_tools.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(extra_tools = n % 2, "tool list changed");
        let peers: Vec<Peer<RoleServer>> = self.inner.peers.lock().expect("not poisoned").clone();
        for p in peers {
            let _ = p.notify_tool_list_changed().await;
        }
        let sinks: Vec<(u64, SubscriptionSink)> =
            self.inner.sinks.lock().expect("not poisoned").clone();
        for (_, s) in sinks {
            let _ = s.notify_tool_list_changed().await;
        }
    }

    pub fn tools(&self) -> Vec<Tool> {
        let ro = ToolAnnotations::new().read_only(true).idempotent(true);
        let mut tools = vec![
            Tool::new("echo", "Returns its text argument.", schema(json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})))
                .with_annotations(ToolAnnotations::new().read_only(true)),
            Tool::new("add", "Adds two numbers.", schema(json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]})))
                .with_annotations(ro.clone()),
            Tool::new("sleep", "Sleeps for `ms` milliseconds, sending progress every 100 ms.", schema(json!({"type": "object", "properties": {"ms": {"type": "integer"}}, "required": ["ms"]})))
                .with_annotations(ro),
            Tool::new("increment", "Increments a counter (not idempotent).", schema(json!({"type": "object", "properties": {}})))
                .with_annotations(ToolAnnotations::new().read_only(false).idempotent(false).destructive(false)),
            Tool::new("fail", "Always answers with a tool error (isError: true).", schema(json!({"type": "object", "properties": {}}))),
        ];
        if self.inner.extra_tools.load(Ordering::SeqCst) % 2 == 1 {
            tools.push(Tool::new(
                "dynamic",
                "Appears and disappears at run time.",
                schema(json!({"type": "object", "properties": {}})),
            ));
        }
        if self.inner.conformance.is_some() {
            tools.extend(conformance::tools());
        }
        tools.extend(self.inner.knobs.catalog.iter().cloned());
        tools
    }

    fn conformance(&self) -> Option<&Conformance> {
        self.inner.conformance.as_ref()
    }

    /// With `--conformance`, its state once this request has had its misbehaviour (latency,
    /// hang); without, `None` at once, so these requests keep rmcp's default answers.
    async fn conformance_request(&self) -> Option<&Conformance> {
        let c = self.inner.conformance.as_ref()?;
        self.misbehave().await;
        Some(c)
    }

    fn is_hung(&self) -> bool {
        if self.inner.hung.load(Ordering::SeqCst) {
            return true;
        }
        if let Some(after) = self.inner.knobs.hang_after {
            if self.inner.started.elapsed() >= after {
                self.inner.hung.store(true, Ordering::SeqCst);
                return true;
            }
        }
        false
    }

    /// The delay every request gets right now.
    pub fn current_latency(&self) -> Duration {
        let k = &self.inner.knobs;
        let mut d = k.latency;
        if !k.latency_jitter.is_zero() {
            d += k.latency_jitter.mul_f64(rand::random::<f64>());
        }
        if let Some(after) = k.ramp_after {
            let ramping = self.inner.started.elapsed().saturating_sub(after).as_secs_f64();
            d += Duration::from_secs_f64(ramping * k.ramp_ms_per_s / 1000.0);
        }
        d
    }

    /// A probe (`ping`, `server/discover`): unanswered while busy if so asked, else like any
    /// request.
    async fn probed(&self) {
        if self.inner.knobs.busy_ignores_probes && self.inner.running.load(Ordering::SeqCst) > 0 {
            std::future::pending::<()>().await;
        }
        self.misbehave().await;
    }

    /// Applies hang and latency; never returns while hung.
    async fn misbehave(&self) {
        if self.is_hung() {
            std::future::pending::<()>().await;
        }
        let d = self.current_latency();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        if self.is_hung() {
            std::future::pending::<()>().await;
        }
    }

    fn text(s: impl Into<String>) -> CallToolResponse {
        CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(s)]))
    }
}

/// Counts a tool call as running until dropped.
struct Running<'a>(&'a AtomicU64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn num(args: &Option<Map<String, Value>>, key: &str) -> Result<f64, ErrorData> {
    args.as_ref()
        .and_then(|a| a.get(key))
        .and_then(Value::as_f64)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing number argument {key:?}"), None))
}

impl ServerHandler for Misbehave {
    fn get_info(&self) -> ServerConfig {
        let capabilities = match self.conformance() {
            Some(_) => conformance::capabilities(),
            None => ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build(),
        };
        let mut config = ServerConfig::new(capabilities)
            .with_instructions("A deliberately misbehaving MCP server for testing Warden.");
        config.server_info = Implementation::new("mcp-misbehave", env!("CARGO_PKG_VERSION"));
        config
    }

    async fn ping(&self, _: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.probed().await;
        Ok(())
    }

    /// The probe of 2026-07-28 sessions (and their handshake's first request).
    async fn discover(
        &self,
        _: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::DiscoverResult, ErrorData> {
        self.probed().await;
        Ok(rmcp::model::DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            self.get_info(),
        ))
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let key = self.inner.next_sink.fetch_add(1, Ordering::SeqCst);
        self.inner.sinks.lock().expect("not poisoned").push((key, ctx.sink().clone()));
        ctx.cancelled().await;
        self.inner.sinks.lock().expect("not poisoned").retain(|(k, _)| *k != key);
        Ok(())
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        self.inner.peers.lock().expect("not poisoned").push(ctx.peer);
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.misbehave().await;
        if let Some(d) = self.inner.knobs.first_list_delay {
            if !self.inner.listed.swap(true, Ordering::SeqCst) {
                tokio::time::sleep(d).await;
            }
        }
        Ok(ListToolsResult { tools: self.tools(), ..Default::default() })
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let n = self.inner.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.running.fetch_add(1, Ordering::SeqCst);
        let _running = Running(&self.inner.running);
        let k = &self.inner.knobs;
        if k.crash_after_calls.is_some_and(|limit| n >= limit) {
            tracing::warn!(call = n, code = k.exit_code, "crashing as asked");
            std::process::exit(k.exit_code);
        }
        if k.hang_after_calls.is_some_and(|limit| n >= limit) {
            self.hang();
        }
        self.misbehave().await;
        if k.error_rate > 0.0 && rand::random::<f64>() < k.error_rate {
            return Err(ErrorData::internal_error("injected failure", None));
        }
        if let Some(c) = self.conformance().filter(|_| conformance::is_tool(&req.name)) {
            return c.call_tool(req, ctx).await;
        }
        match req.name.as_ref() {
            "echo" => {
                let text = req
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("text"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(Self::text(text))
            }
            "add" => {
                Ok(Self::text((num(&req.arguments, "a")? + num(&req.arguments, "b")?).to_string()))
            }
            "sleep" => {
                let ms = num(&req.arguments, "ms")?.max(0.0) as u64;
                let token = ctx.meta.get_progress_token();
                let end = Instant::now() + Duration::from_millis(ms);
                let mut step = 0u32;
                while Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(100).min(end - Instant::now())).await;
                    step += 1;
                    if let Some(t) = &token {
                        let _ = ctx
                            .peer
                            .notify_progress(ProgressNotificationParam::new(
                                t.clone(),
                                f64::from(step),
                            ))
                            .await;
                    }
                }
                Ok(Self::text(format!("slept {ms} ms")))
            }
            "increment" => {
                Ok(Self::text((self.inner.counter.fetch_add(1, Ordering::SeqCst) + 1).to_string()))
            }
            "fail" => {
                Ok(CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(
                    "this tool always fails",
                )])))
            }
            "dynamic" if self.inner.extra_tools.load(Ordering::SeqCst) % 2 == 1 => {
                Ok(Self::text("here for now"))
            }
            name if self.inner.knobs.catalog.iter().any(|t| t.name == name) => {
                Ok(Self::text(format!("{name} called")))
            }
            other => Err(ErrorData::invalid_params(format!("unknown tool {other:?}"), None)),
        }
    }

    // The conformance suite's resources, prompts, completion and logging (`--conformance`);
    // without it these keep rmcp's defaults (empty lists, method not found).

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(self.conformance_request().await.map(Conformance::list_resources).unwrap_or_default())
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let c = self.conformance_request().await;
        Ok(c.map(Conformance::list_resource_templates).unwrap_or_default())
    }

    async fn read_resource(
        &self,
        req: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let c = self.conformance_request().await;
        let c = c.ok_or_else(ErrorData::method_not_found::<ReadResourceRequestMethod>)?;
        c.read_resource(&req).map(Into::into)
    }

    async fn subscribe(
        &self,
        req: SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let c = self.conformance_request().await;
        c.ok_or_else(ErrorData::method_not_found::<SubscribeRequestMethod>)?.subscribe(&req.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        req: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let c = self.conformance_request().await;
        c.ok_or_else(ErrorData::method_not_found::<UnsubscribeRequestMethod>)?
            .unsubscribe(&req.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(self.conformance_request().await.map(Conformance::list_prompts).unwrap_or_default())
    }

    async fn get_prompt(
        &self,
        req: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let c = self.conformance_request().await;
        let c = c.ok_or_else(ErrorData::method_not_found::<GetPromptRequestMethod>)?;
        c.get_prompt(&req).map(Into::into)
    }

    async fn complete(
        &self,
        req: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Ok(self.conformance_request().await.map(|c| c.complete(&req)).unwrap_or_default())
    }

    #[allow(deprecated)] // SetLevelRequestParams: see the import
    async fn set_level(
        &self,
        req: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let c = self.conformance_request().await;
        c.ok_or_else(ErrorData::method_not_found::<SetLevelRequestMethod>)?.set_level(&req);
        Ok(())
    }
}
