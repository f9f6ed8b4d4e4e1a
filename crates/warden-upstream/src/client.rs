//! The rmcp client shared by both transports: the handler that turns server notifications into
//! [`SessionEvent`]s, the handshake, and probes and listings sent as raw requests so that no
//! client-side cache ever answers for the server.
// Sampling, roots and logging are deprecated by SEP-2577 (protocol 2026-07-28), but servers on
// earlier versions still use them, and Warden forwards them to its clients.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientRequest, CreateMessageRequestParams,
    CreateMessageResult, DiscoverRequest, DiscoverRequestParams, ElicitRequestParams, ElicitResult,
    ErrorCode, Implementation, ListPromptsRequest, ListResourceTemplatesRequest,
    ListResourcesRequest, ListRootsResult, ListToolsRequest, LoggingMessageNotificationParam,
    PaginatedRequestParams, PingRequest, ProgressNotificationParam, ProtocolVersion,
    ResourceUpdatedNotificationParam, ServerResult, SubscriptionFilter,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, PeerRequestOptions, RequestContext,
    RoleClient, RunningService,
};
use rmcp::{ClientHandler, ErrorData, Peer};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;
use warden_config::ProbeMethod;
use warden_core::ExitInfo;

use crate::catalog::Entry;
use crate::relay::{Call, Notice, Progress, Shared};
use crate::{
    Activity, BoxFuture, Catalog, PeerInfo, Session, SessionEvent, StopPolicy, ToolEntry,
    UpstreamError,
};

/// Receives server-initiated notifications and requests for one session.
#[derive(Clone)]
pub(crate) struct Handler {
    events: mpsc::Sender<SessionEvent>,
    shared: Arc<Shared>,
}

impl Handler {
    pub(crate) fn new(events: mpsc::Sender<SessionEvent>, shared: Arc<Shared>) -> Self {
        Self { events, shared }
    }

    fn list_changed(&self) {
        // A full queue already holds a pending relist; dropping this one loses nothing.
        let _ = self.events.try_send(SessionEvent::ListChanged);
    }
}

/// Relays a server's request to the client session it belongs to (decided by the gateway).
async fn relay<P: serde::Serialize, R: DeserializeOwned>(
    shared: &Shared,
    method: &str,
    params: P,
) -> Result<R, ErrorData> {
    let params =
        serde_json::to_value(params).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    match shared.request(method, params).await {
        Ok(v) => serde_json::from_value(v).map_err(|e| {
            ErrorData::internal_error(
                format!("the client's answer to {method} does not parse: {e}"),
                None,
            )
        }),
        Err(UpstreamError::Server { code, message }) => {
            Err(ErrorData::new(ErrorCode(code), message, None))
        }
        Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
    }
}

impl ClientHandler for Handler {
    /// Warden declares what its clients may be able to do; a request no client can answer
    /// gets an error from the gateway.
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            serde_json::from_value::<ClientCapabilities>(serde_json::json!({
                "roots": { "listChanged": true },
                "sampling": {},
                "elicitation": {},
            }))
            .unwrap_or_default(),
            Implementation::new("warden", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        relay(&self.shared, "sampling/createMessage", params).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        relay(&self.shared, "elicitation/create", params).await
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        relay(&self.shared, "roots/list", serde_json::json!({})).await
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.shared.progress(
            &p.progress_token,
            Progress { progress: p.progress, total: p.total, message: p.message },
        );
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        if let Ok(v) = serde_json::to_value(p) {
            self.shared.notice(Notice::Log { params: v, origin: None });
        }
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.shared.notice(Notice::ResourceUpdated(p.uri));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed();
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed();
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed();
    }
}

pub(crate) type Running = RunningService<RoleClient, Handler>;

/// Performs the handshake: `server/discover` first (2026-07-28), `initialize` for older servers.
pub(crate) async fn handshake<T, E, A>(
    handler: Handler,
    transport: T,
    deadline: Duration,
) -> Result<(Running, PeerInfo), UpstreamError>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
    };
    let running =
        match tokio::time::timeout(deadline, handler.serve_with_lifecycle(transport, lifecycle))
            .await
        {
            Err(_) => return Err(UpstreamError::Timeout(deadline)),
            Ok(Err(e)) => return Err(UpstreamError::from_init(e, deadline)),
            Ok(Ok(r)) => r,
        };
    let info = peer_info(running.peer());
    Ok((running, info))
}

/// On protocol 2026-07-28 a server sends `list_changed` only on a `subscriptions/listen` stream
/// the client opened; older servers send them unprompted (see [`Handler`]). Opens that stream
/// for the lists the server says can change and turns each notification into a
/// [`SessionEvent::ListChanged`].
pub(crate) fn spawn_list_listener(
    peer: &Peer<RoleClient>,
    info: &PeerInfo,
    events: mpsc::Sender<SessionEvent>,
) {
    if !info.modern {
        return;
    }
    let Some(caps) = peer.peer_info().map(|p| p.capabilities.clone()) else { return };
    let mut filter = SubscriptionFilter::builder();
    let mut any = false;
    if caps.tools.as_ref().and_then(|t| t.list_changed).unwrap_or(false) {
        filter = filter.tools_list_changed();
        any = true;
    }
    if caps.prompts.as_ref().and_then(|p| p.list_changed).unwrap_or(false) {
        filter = filter.prompts_list_changed();
        any = true;
    }
    if caps.resources.as_ref().and_then(|r| r.list_changed).unwrap_or(false) {
        filter = filter.resources_list_changed();
        any = true;
    }
    if !any {
        return;
    }
    let peer = peer.clone();
    let filter = filter.build();
    tokio::spawn(async move {
        let mut sub = match peer.listen(filter).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "the server refused a list_changed subscription; relying on periodic listing");
                return;
            }
        };
        while let Ok(Some(_)) = sub.next().await {
            if events.send(SessionEvent::ListChanged).await.is_err() {
                return;
            }
        }
    });
}

fn peer_info(peer: &Peer<RoleClient>) -> PeerInfo {
    match peer.peer_info() {
        Some(p) => PeerInfo {
            protocol_version: p.protocol_version.to_string(),
            server_name: p.server_info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
            server_version: p.server_info.as_ref().map(|i| i.version.clone()).unwrap_or_default(),
            modern: !p.protocol_version.has_initialize(),
        },
        None => PeerInfo::default(),
    }
}

async fn request(
    peer: &Peer<RoleClient>,
    req: ClientRequest,
    timeout: Duration,
) -> Result<ServerResult, UpstreamError> {
    let handle = peer
        .send_request_with_option(req, PeerRequestOptions::with_timeout(timeout))
        .await
        .map_err(|e| UpstreamError::from_service(e, timeout))?;
    handle.await_response().await.map_err(|e| UpstreamError::from_service(e, timeout))
}

/// One liveness probe. A JSON-RPC error answer proves the server alive, so it counts as success.
pub(crate) async fn probe(
    peer: &Peer<RoleClient>,
    info: &PeerInfo,
    method: ProbeMethod,
    timeout: Duration,
    activity: &Arc<Activity>,
) -> Result<Duration, UpstreamError> {
    let req = match method {
        ProbeMethod::ToolsList => ClientRequest::ListToolsRequest(ListToolsRequest::default()),
        ProbeMethod::Auto if info.modern => {
            ClientRequest::DiscoverRequest(DiscoverRequest::new(DiscoverRequestParams {}))
        }
        ProbeMethod::Auto | ProbeMethod::Ping => ClientRequest::PingRequest(PingRequest::default()),
    };
    let started = Instant::now();
    let result = request(peer, req, timeout).await;
    let rtt = started.elapsed();
    match result {
        Ok(_) | Err(UpstreamError::Server { .. }) => {
            // An answer proves the server alive (on HTTP, every message it sends counts too:
            // see `fast::Tap` and the legacy SSE reader).
            activity.touch(0);
            Ok(rtt)
        }
        Err(e) => Err(e),
    }
}

/// Lists everything the server advertises, following pagination, within `timeout` overall.
pub(crate) async fn list_catalog(
    peer: &Peer<RoleClient>,
    timeout: Duration,
) -> Result<Catalog, UpstreamError> {
    let work = async {
        let caps = peer.peer_info().map(|p| p.capabilities.clone()).unwrap_or_default();
        let mut catalog = Catalog::default();
        if caps.tools.is_some() {
            catalog.tools = paginate(
                peer,
                timeout,
                "tools/list",
                |params| {
                    ClientRequest::ListToolsRequest(ListToolsRequest {
                        params,
                        ..Default::default()
                    })
                },
                |r| match r {
                    ServerResult::ListToolsResult(r) => Some((
                        r.tools
                            .iter()
                            .filter_map(|t| ToolEntry::from_json(serde_json::to_value(t).ok()?))
                            .collect(),
                        r.next_cursor,
                    )),
                    _ => None,
                },
            )
            .await
            .or_else(answered)?;
        }
        if caps.resources.is_some() {
            catalog.resources = paginate(
                peer,
                timeout,
                "resources/list",
                |params| {
                    ClientRequest::ListResourcesRequest(ListResourcesRequest {
                        params,
                        ..Default::default()
                    })
                },
                |r| match r {
                    ServerResult::ListResourcesResult(r) => {
                        Some((entries(&r.resources, "uri"), r.next_cursor))
                    }
                    _ => None,
                },
            )
            .await
            .or_else(answered)?;
            catalog.templates = paginate(
                peer,
                timeout,
                "resources/templates/list",
                |params| {
                    ClientRequest::ListResourceTemplatesRequest(ListResourceTemplatesRequest {
                        params,
                        ..Default::default()
                    })
                },
                |r| match r {
                    ServerResult::ListResourceTemplatesResult(r) => {
                        Some((entries(&r.resource_templates, "uriTemplate"), r.next_cursor))
                    }
                    _ => None,
                },
            )
            .await
            .or_else(answered)?;
        }
        if caps.prompts.is_some() {
            catalog.prompts = paginate(
                peer,
                timeout,
                "prompts/list",
                |params| {
                    ClientRequest::ListPromptsRequest(ListPromptsRequest {
                        params,
                        ..Default::default()
                    })
                },
                |r| match r {
                    ServerResult::ListPromptsResult(r) => {
                        Some((entries(&r.prompts, "name"), r.next_cursor))
                    }
                    _ => None,
                },
            )
            .await
            .or_else(answered)?;
        }
        Ok(catalog)
    };
    tokio::time::timeout(timeout, work).await.unwrap_or(Err(UpstreamError::Timeout(timeout)))
}

/// Keeps each listed item as JSON, keyed by `field`.
fn entries<T: serde::Serialize>(items: &[T], field: &str) -> Vec<Entry> {
    items.iter().filter_map(|i| Entry::from_json(serde_json::to_value(i).ok()?, field)).collect()
}

/// A server that answers a listing with a JSON-RPC error is alive; that list is just empty.
fn answered<T>(e: UpstreamError) -> Result<Vec<T>, UpstreamError> {
    match e {
        UpstreamError::Server { code, message } => {
            tracing::debug!(code, %message, "a listing was refused; counting it as empty");
            Ok(Vec::new())
        }
        other => Err(other),
    }
}

/// Follows `nextCursor` through at most 100 pages of one list.
async fn paginate<T>(
    peer: &Peer<RoleClient>,
    timeout: Duration,
    method: &str,
    request: impl Fn(Option<PaginatedRequestParams>) -> ClientRequest,
    take: impl Fn(ServerResult) -> Option<(Vec<T>, Option<String>)>,
) -> Result<Vec<T>, UpstreamError> {
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let result = self::request(peer, request(page(cursor.take())), timeout).await?;
        let shown = serde_json::to_string(&result).unwrap_or_default();
        let (page_items, next) = take(result).ok_or_else(|| {
            UpstreamError::Protocol(format!(
                "unexpected answer to {method}: {}",
                shown.chars().take(120).collect::<String>()
            ))
        })?;
        items.extend(page_items);
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    Ok(items)
}

fn page(cursor: Option<String>) -> Option<PaginatedRequestParams> {
    cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)))
}

/// What every rmcp-backed session shares: the running service, its peer, what the server said
/// about itself, and byte-level activity. The stdio and remote sessions wrap one.
pub(crate) struct Core {
    running: Mutex<Option<Running>>,
    peer: Peer<RoleClient>,
    info: PeerInfo,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl Core {
    pub(crate) fn new(
        running: Running,
        info: PeerInfo,
        activity: Arc<Activity>,
        shared: Arc<Shared>,
    ) -> Self {
        let peer = running.peer().clone();
        Self { running: Mutex::new(Some(running)), peer, info, activity, shared }
    }

    pub(crate) fn probe(
        &self,
        method: ProbeMethod,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Duration, UpstreamError>> {
        Box::pin(probe(&self.peer, &self.info, method, timeout, &self.activity))
    }

    pub(crate) fn list_catalog(
        &self,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
        Box::pin(list_catalog(&self.peer, timeout))
    }

    pub(crate) fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }

    /// Forwards one call: registered as in flight for its origin, progress routed back to its
    /// caller, and the server told with `notifications/cancelled` if the caller gives up.
    pub(crate) fn request(&self, call: Call) -> BoxFuture<'_, Result<crate::Reply, UpstreamError>> {
        Box::pin(async move {
            let Call {
                method, params, arguments, timeout, deadline, origin, cancel, progress, ..
            } = call;
            let mut message = serde_json::json!({ "method": method });
            if let Some(p) = crate::relay::params_tree(params, arguments)? {
                message["params"] = p;
            }
            let req: ClientRequest = serde_json::from_value(message)
                .map_err(|e| UpstreamError::Protocol(format!("cannot forward {method}: {e}")))?;
            let mut options = PeerRequestOptions::with_timeout(timeout);
            if progress.is_some() {
                // A call that reports progress is alive; only the deadline bounds it.
                options = options.reset_timeout_on_progress().with_max_total_timeout(
                    deadline.map_or(timeout * 10, |d| d.saturating_duration_since(Instant::now())),
                );
            }
            let mut in_flight = self.shared.begin(origin);
            let handle = self
                .peer
                .send_request_with_option(req, options)
                .await
                .map_err(|e| UpstreamError::from_service(e, timeout))?;
            if let Some(to) = progress {
                self.shared.watch_progress(&mut in_flight, handle.progress_token.clone(), to);
            }
            let id = handle.id.clone();
            let result = tokio::select! {
                r = handle.await_response() => r.map_err(|e| UpstreamError::from_service(e, timeout))?,
                _ = cancel.cancelled() => {
                    let note = rmcp::model::CancelledNotification::new(
                        rmcp::model::CancelledNotificationParam::new(
                            Some(id),
                            Some("cancelled by the client".into()),
                        ),
                    );
                    let _ = self.peer.send_notification(note.into()).await;
                    return Err(UpstreamError::Cancelled);
                }
            };
            // rmcp hands notifications to tasks it spawns, answers directly: a progress update
            // the server sent just before its answer may still be on its way. Let those tasks
            // run, and for a call that has reported progress, wait a moment for stragglers.
            if in_flight.watches_progress() {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                if self.shared.had_progress(&in_flight) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            drop(in_flight);
            serde_json::value::to_raw_value(&result)
                .map(crate::Reply::from_raw)
                .map_err(|e| UpstreamError::Protocol(e.to_string()))
        })
    }

    /// Ends the rmcp service (for a child, this closes its stdin), waiting at most `grace`.
    pub(crate) fn close(&self, grace: Duration) -> BoxFuture<'static, ()> {
        let running = self.running.lock().expect("not poisoned").take();
        Box::pin(async move {
            if let Some(r) = running {
                let _ = tokio::time::timeout(grace, r.cancel()).await;
            }
        })
    }

    /// Cancels the rmcp service at once, without waiting.
    pub(crate) fn cancel_now(&self) {
        if let Some(r) = self.running.lock().expect("not poisoned").as_ref() {
            r.cancellation_token().cancel();
        }
    }
}

/// A remote session is its rmcp core: no process, and stopping it closes the session.
impl Session for Core {
    fn probe(
        &self,
        method: ProbeMethod,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Duration, UpstreamError>> {
        Core::probe(self, method, timeout)
    }

    fn list_catalog(&self, timeout: Duration) -> BoxFuture<'_, Result<Catalog, UpstreamError>> {
        Core::list_catalog(self, timeout)
    }

    fn activity(&self) -> Arc<Activity> {
        Core::activity(self)
    }

    fn request(&self, call: Call) -> BoxFuture<'_, Result<crate::Reply, UpstreamError>> {
        Core::request(self, call)
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn shutdown(&self, policy: StopPolicy) -> BoxFuture<'static, Option<ExitInfo>> {
        let close = self.close(policy.grace);
        Box::pin(async move {
            close.await;
            None
        })
    }

    fn kill(&self) {
        self.cancel_now();
    }
}
