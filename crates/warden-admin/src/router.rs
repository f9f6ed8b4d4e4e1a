//! The router: Warden's own health, the server view and `/metrics`, merged with every other
//! route (API, alerts, reports, tuning, event stream, the MCP endpoints) behind the guard and
//! the session limit; and the listener that serves it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use warden_core::ServerStatus;
use warden_store::Store;

use warden_supervisor::Views;

/// What the base routes (health, the server view, `/metrics`) read.
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    store: Store,
    store_fallback: Option<String>,
    overview: Views,
    health: crate::health::Health,
    metrics: warden_metrics::Metrics,
    fleet: warden_ops::fleet::Fleet,
}

impl State {
    /// `store_fallback`: why the configured database is not in use, if it is not.
    pub fn new(
        started: Instant,
        store: Store,
        store_fallback: Option<String>,
        overview: Views,
        health: crate::health::Health,
        metrics: warden_metrics::Metrics,
        fleet: warden_ops::fleet::Fleet,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                started,
                store,
                store_fallback,
                overview,
                health,
                metrics,
                fleet,
            }),
        }
    }

    /// The replicas sharing the database.
    pub fn fleet(&self) -> &warden_ops::fleet::Fleet {
        &self.inner.fleet
    }
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/status", get(health_status))
        .route("/health/ecosystem", get(ecosystem))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { crate::api::error(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

/// Limits on the MCP endpoints' client sessions.
#[derive(Clone, Copy)]
pub struct Limits {
    pub sessions: warden_gateway::SessionLimits,
    pub max_sessions: usize,
}

/// Everything the routes need.
pub struct Surface {
    pub state: State,
    pub guard: crate::guard::Guard,
    pub limits: Limits,
    pub stop: CancellationToken,
    pub stream: crate::stream::Stream,
    pub api: crate::api::Api,
    pub alerts: warden_ops::alerting::Alerts,
    pub reports: warden_ops::reports::Reports,
    pub tuner: warden_ops::tuning::Tuner,
    /// Warden's own log lines, live (`GET /logs`).
    pub logs: warden_ops::logstream::LogTap,
}

/// Every route behind the guard: the API, health, and the MCP endpoints.
pub fn app(s: &Surface, gateway: warden_gateway::Gateway) -> Router {
    front(s, gateway).router
}

/// [`app`] with the fast lane's door, as the listener serves it ([`crate::DataPlane::serve`]).
pub fn front(s: &Surface, gateway: warden_gateway::Gateway) -> crate::front::Front {
    let (limits, stop) = (s.limits, &s.stop);
    // The aggregated MCP endpoint and one endpoint per server.
    let loopback = s.guard.loopback;
    let app = router(s.state.clone())
        .merge(crate::api::routes(s.api.clone()))
        .merge(crate::routes::alerts::routes(s.alerts.clone()))
        .merge(crate::routes::logs::routes(s.logs.clone()))
        .merge(crate::routes::hub::routes(crate::routes::hub::Hub {
            views: s.api.servers.clone(),
            gateway: gateway.clone(),
            fleet: s.state.fleet().clone(),
        }))
        .merge(crate::routes::reports::routes(s.reports.clone()))
        .merge(crate::routes::tuning::routes(s.tuner.clone()))
        .merge(crate::stream::routes(s.stream.clone()))
        .merge(crate::ui::routes())
        .nest_service(
            "/mcp",
            gateway.http_service(None, loopback, limits.sessions, stop.child_token()),
        )
        .merge(
            Router::new().route("/endpoints/{name}/mcp", axum::routing::any(endpoint)).with_state(
                Scoped {
                    gateway: gateway.clone(),
                    loopback,
                    limits: limits.sessions,
                    stop: stop.clone(),
                },
            ),
        )
        .merge(Router::new().route("/servers/{name}/mcp", axum::routing::any(scoped)).with_state(
            Scoped {
                gateway: gateway.clone(),
                loopback,
                limits: limits.sessions,
                stop: stop.clone(),
            },
        ));
    let inner = app
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), unresumable))
        .layer(axum::middleware::from_fn(session_ended))
        .layer(axum::middleware::from_fn_with_state(
            (gateway.clone(), limits.max_sessions),
            session_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(s.guard.clone(), crate::guard::check));
    // The gateway's fast lane for `tools/call` sits in front of the routing (crate::front).
    let door = crate::front::LaneDoor {
        guard: s.guard.clone(),
        gateway,
        max_body: limits.sessions.max_body,
    };
    let router =
        Router::new().fallback_service(crate::front::FrontDoor { door: door.clone(), inner });
    crate::front::Front { router, lane: Some(door) }
}

/// What the per-server MCP endpoints need.
#[derive(Clone)]
struct Scoped {
    gateway: warden_gateway::Gateway,
    loopback: bool,
    limits: warden_gateway::SessionLimits,
    stop: CancellationToken,
}

/// `/servers/{name}/mcp`: the server's own endpoint, for the servers the config has now.
async fn scoped(
    AxState(s): AxState<Scoped>,
    axum::extract::Path(name): axum::extract::Path<String>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use tower::ServiceExt;
    match s.gateway.scoped_service(&name, s.loopback, s.limits, &s.stop) {
        Some(service) => match service.oneshot(request).await {
            Ok(r) => r.into_response(),
            Err(never) => match never {},
        },
        None => crate::api::error(StatusCode::NOT_FOUND, format!("no server named {name:?}")),
    }
}

/// `/endpoints/{name}/mcp`: an aggregated endpoint with its own starting exposure.
async fn endpoint(
    AxState(s): AxState<Scoped>,
    axum::extract::Path(name): axum::extract::Path<String>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use tower::ServiceExt;
    match s.gateway.endpoint_service(&name, s.loopback, s.limits, &s.stop) {
        Some(service) => match service.oneshot(request).await {
            Ok(r) => r.into_response(),
            Err(never) => match never {},
        },
        None => crate::api::error(
            StatusCode::NOT_FOUND,
            format!("no endpoint named {name:?} (warden.tools.endpoints)"),
        ),
    }
}

/// Ending an MCP session (`DELETE` with its `Mcp-Session-Id`) answers 200: rmcp answers 202,
/// which the Python SDK takes for a failure ("Session termination failed: 202").
async fn session_ended(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let delete =
        request.method() == axum::http::Method::DELETE && request.uri().path().ends_with("/mcp");
    let mut response = next.run(request).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// A client resuming a request's broken SSE stream (`GET` with `Last-Event-ID`
/// `index/request`) on a replica that did not begin its session (the one that did died; a
/// balancer sent the resumption here) is told at once that the stream cannot be resumed here (405, which ends an rmcp client's
/// reconnecting; the call it waited for fails and the client retries it). Without this, rmcp
/// continued the session, opened an empty stream, and the client resumed in a loop until its
/// deadline. A plain `GET` (the session's own stream) is served as always.
async fn unresumable(
    AxState(gateway): AxState<warden_gateway::Gateway>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if request.method() == axum::http::Method::GET && request.uri().path().ends_with("/mcp") {
        if let (Some(id), Some(last)) = (text("mcp-session-id"), text("last-event-id")) {
            if !gateway.resumable_here(id, last).await {
                return crate::api::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this stream cannot be resumed on this replica (its replica is gone); \
                     retry the request"
                        .to_owned(),
                );
            }
        }
    }
    next.run(request).await
}

/// Refuses a new MCP session (a POST without `Mcp-Session-Id`) once `max` are open, with a
/// JSON-RPC error saying so; requests within open sessions always pass.
async fn session_limit(
    AxState((gateway, max)): AxState<(warden_gateway::Gateway, usize)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let new_session = request.method() == axum::http::Method::POST
        && request.uri().path().ends_with("/mcp")
        && !request.headers().contains_key("mcp-session-id");
    if new_session && gateway.http_sessions().await >= max {
        tracing::warn!(max, "refusing a new MCP session: the session limit is reached");
        let body = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {
                "code": -32000,
                "message": format!("too many client sessions (the limit is {max}); close idle sessions or raise warden.sessions.max"),
            },
        });
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "5")], Json(body))
            .into_response();
    }
    next.run(request).await
}

async fn health(AxState(state): AxState<State>) -> impl IntoResponse {
    let overview = state.inner.overview.get();
    let store = state.inner.store.health();
    let status = match overview.status {
        ServerStatus::Healthy if store.ok && state.inner.store_fallback.is_none() => "ok",
        ServerStatus::Unhealthy => "down",
        _ => "degraded",
    };
    let last_check =
        overview.servers.iter().flat_map(|s| s.instances.iter()).filter_map(|i| i.last_check).max();
    let code = if status == "down" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (
        code,
        Json(json!({
            "status": status,
            "uptime_seconds": state.inner.started.elapsed().as_secs(),
            "last_check": last_check,
            "version": env!("CARGO_PKG_VERSION"),
            "database": { "ok": store.ok && state.inner.store_fallback.is_none(), "error": store.last_error.or(state.inner.store_fallback.clone()) },
        })),
    )
}

/// The `HealthCheckResponse` model, from the snapshot refreshed every second. 503 when
/// unhealthy, so a load balancer can use it too.
async fn health_status(AxState(state): AxState<State>) -> impl IntoResponse {
    let snap = state.inner.health.get();
    let code =
        if snap.status == "unhealthy" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, [(axum::http::header::CONTENT_TYPE, "application/json")], snap.body.clone())
}

/// Every server and instance with its state and reason.
/// `?scope=fleet`: every replica sharing the database, not only this one.
#[derive(serde::Deserialize)]
pub(crate) struct Scope {
    scope: Option<String>,
}

impl Scope {
    /// `Ok(true)` for the fleet, `Ok(false)` for this replica, else the 400 to answer.
    pub(crate) fn fleet(&self) -> Result<bool, String> {
        match self.scope.as_deref() {
            None | Some("local") => Ok(false),
            Some("fleet") => Ok(true),
            Some(other) => Err(format!("scope must be local or fleet, not {other:?}")),
        }
    }
}

/// The fleet document, or a 503 when the database cannot be read.
pub(crate) async fn fleet_document(fleet: &warden_ops::fleet::Fleet) -> axum::response::Response {
    match fleet.document().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => crate::api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the fleet cannot be read from the database: {e}"),
        ),
    }
}

async fn ecosystem(
    AxState(state): AxState<State>,
    axum::extract::Query(scope): axum::extract::Query<Scope>,
) -> axum::response::Response {
    match scope.fleet() {
        Ok(true) => return fleet_document(&state.inner.fleet).await,
        Ok(false) => {}
        Err(message) => return crate::api::error(StatusCode::BAD_REQUEST, message),
    }
    let o = state.inner.overview.get();
    Json(json!({
        "status": o.status,
        "timestamp": warden_core::now(),
        "servers": o.servers.iter().map(|s| json!({
            "name": s.name,
            "status": s.status,
            "served_by": s.served_by,
            "instances": s.instances.iter().map(|i| json!({
                "id": i.id,
                "state": i.state,
                "since": i.since,
                "reason": i.reason,
                "pid": i.pid,
                "restarts": i.restarts,
                "next_retry_at": i.next_retry_at,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Alive: the runtime still runs Warden's own tasks.
async fn livez(AxState(state): AxState<State>) -> impl IntoResponse {
    if state.inner.health.live() {
        (StatusCode::OK, Json(json!({ "status": "alive" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "stalled", "reason": "the health task has not run for 10 s" })),
        )
    }
}

/// Ready by the configured readiness policy (`warden.readiness`).
async fn readyz(AxState(state): AxState<State>) -> impl IntoResponse {
    let snap = state.inner.health.get();
    let code = if snap.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ready": snap.ready, "reason": snap.ready_reason })))
}

/// Prometheus text exposition (see `metrics.rs`).
async fn metrics(AxState(state): AxState<State>) -> impl IntoResponse {
    crate::metrics::exposition(&state.inner.metrics)
}
