//! The MCP server Warden presents to clients: tools aggregated or scoped, calls routed.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter,
    Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler};
use serde_json::json;
use tokio::time::Instant;
use warden_core::{FailureClass, Reason};
use warden_supervisor::CallOutcome;
use warden_upstream::UpstreamError;

use crate::route::{Routes, Unavailable};
use crate::{UNAVAILABLE, UPSTREAM_FAILED};

/// Separates a server's name from its tool's in aggregated names (`files__read_file`).
const SEP: &str = "__";

/// One MCP server face of the gateway: aggregated (`scope: None`) or one server's.
#[derive(Clone)]
pub struct Handler {
    routes: Arc<Routes>,
    scope: Option<String>,
}

impl Handler {
    pub(crate) fn new(routes: Arc<Routes>, scope: Option<String>) -> Self {
        Self { routes, scope }
    }

    /// The servers this face shows.
    fn names(&self) -> Vec<String> {
        match &self.scope {
            Some(s) => vec![s.clone()],
            None => self.routes.server_names(),
        }
    }

    /// `(server, tool)` for a tool name as this face shows it.
    fn split(&self, name: &str) -> Result<(String, String), ErrorData> {
        match &self.scope {
            Some(s) => Ok((s.clone(), name.to_owned())),
            None => {
                name.split_once(SEP).map(|(s, t)| (s.to_owned(), t.to_owned())).ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("unknown tool {name:?}: tools here are named server{SEP}tool"),
                        None,
                    )
                })
            }
        }
    }
}

fn unavailable(u: Unavailable) -> ErrorData {
    ErrorData::new(
        ErrorCode(UNAVAILABLE),
        format!("server {:?} is unavailable: {}", u.server, u.reason),
        Some(json!({ "server": u.server, "reason": u.reason, "retry_after_ms": u.retry_after_ms })),
    )
}

fn failed(server: &str, e: &UpstreamError) -> ErrorData {
    ErrorData::new(
        ErrorCode(UPSTREAM_FAILED),
        format!("server {server:?} failed: {e}"),
        Some(json!({ "server": server, "reason": e.reason(), "retry_after_ms": 1000 })),
    )
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        let mut config = ServerConfig::new(
            ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build(),
        )
        .with_instructions(match &self.scope {
            None => "Warden: every supervised MCP server's tools, named server__tool.".to_owned(),
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
        let mut tools = Vec::new();
        for name in self.names() {
            // A server with nothing routable (and no fallback) simply has no tools right now.
            let Some((_, catalog)) = self.routes.serving_catalog(&name) else { continue };
            for entry in &catalog.tools {
                let mut raw = (*entry.raw).clone();
                if self.scope.is_none() {
                    raw["name"] = json!(format!("{name}{SEP}{}", entry.name));
                }
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
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (server, tool) = self.split(&req.name)?;
        let mut tried = Vec::new();
        let mut last: Option<UpstreamError> = None;
        for attempt in 0..2 {
            let exclude: Vec<&warden_core::InstanceId> = tried.iter().collect();
            let pick = match self.routes.pick(&server, &exclude) {
                Ok(p) => p,
                Err(u) if attempt == 0 => return Err(unavailable(u)),
                // No other instance for the retry: report the failure that made us retry.
                Err(_) => {
                    return Err(failed(&server, last.as_ref().expect("a retry follows a failure")))
                }
            };
            let entry = pick
                .instance
                .link
                .catalog()
                .and_then(|c| c.tools.iter().find(|t| t.name == tool).cloned());
            if entry.is_none() {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {:?}", req.name),
                    None,
                ));
            }
            let params = json!({ "name": tool, "arguments": req.arguments });
            let guard = pick.instance.link.begin_call();
            let started = Instant::now();
            let result =
                pick.session.request("tools/call", Some(params), pick.serving.spec.timeout).await;
            let rtt = started.elapsed();
            drop(guard);
            let link = &pick.instance.link;
            match result {
                Ok(value) => {
                    let result: CallToolResult = serde_json::from_value(value).map_err(|e| {
                        ErrorData::internal_error(format!("unreadable tool result: {e}"), None)
                    })?;
                    // isError is the tool's answer, not the server's failure.
                    let outcome = if result.is_error == Some(true) {
                        CallOutcome::Ignorable
                    } else {
                        CallOutcome::Ok
                    };
                    link.report(rtt, outcome);
                    pick.instance.ewma.lock().expect("not poisoned").observe(rtt);
                    return Ok(CallToolResponse::Complete(result));
                }
                Err(UpstreamError::Server { code, message }) => {
                    // The caller's mistake (bad params, unknown method) says nothing about the server.
                    let outcome = if code == ErrorCode::INVALID_PARAMS.0
                        || code == ErrorCode::METHOD_NOT_FOUND.0
                    {
                        CallOutcome::Ignorable
                    } else {
                        CallOutcome::Failed(Reason::new(
                            FailureClass::ServerError,
                            format!("{code}: {message}"),
                        ))
                    };
                    link.report(rtt, outcome);
                    pick.instance.ewma.lock().expect("not poisoned").observe(rtt);
                    return Err(ErrorData::new(ErrorCode(code), message, None));
                }
                Err(e) => {
                    link.report(rtt, CallOutcome::Failed(e.reason()));
                    // One retry, elsewhere, only for what is safe to repeat on a trusted server.
                    let safe = entry.is_some_and(|t| {
                        pick.serving.spec.trusted && (t.read_only || t.idempotent)
                    });
                    if attempt == 0 && safe {
                        tracing::info!(server = %server, tool = %tool, instance = %pick.instance.id, error = %e, "retrying a safe call on another instance");
                        tried.push(pick.instance.id.clone());
                        last = Some(e);
                        continue;
                    }
                    return Err(failed(&server, &e));
                }
            }
        }
        Err(failed(&server, last.as_ref().expect("two attempts end in a failure")))
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    /// 2026-07-28 clients hear about tool list changes on their `subscriptions/listen` stream.
    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut generation = self.routes.subscribe();
        loop {
            tokio::select! {
                _ = ctx.cancelled() => return Ok(()),
                changed = generation.changed() => {
                    if changed.is_err() || ctx.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Older clients are told about tool list changes unprompted.
    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        let mut generation = self.routes.subscribe();
        let peer = ctx.peer;
        tokio::spawn(async move {
            while generation.changed().await.is_ok() {
                if peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }
}
