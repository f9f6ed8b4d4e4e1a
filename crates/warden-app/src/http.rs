//! The HTTP surface of the core: Warden's own health and the server view. The full operator
//! API, metrics, event stream and dashboard are built on this router.

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

use crate::App;

#[derive(Clone)]
pub(crate) struct State {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    store: Store,
    store_fallback: Option<String>,
    overview: Box<dyn Fn() -> warden_supervisor::Overview + Send + Sync>,
}

impl State {
    pub(crate) fn new(app: &App, started: Instant) -> Self {
        // Views are read through watch channels; the closure owns clones of them.
        let handles: Vec<_> =
            app.registry.servers().iter().map(|s| (Arc::clone(&s.spec), s.watchers())).collect();
        let overview = move || overview_from(&handles);
        Self {
            inner: Arc::new(Inner {
                started,
                store: app.store.clone(),
                store_fallback: app.store_fallback.clone(),
                overview: Box::new(overview),
            }),
        }
    }
}

type Handles = Vec<(
    Arc<warden_config::ServerSpec>,
    Vec<tokio::sync::watch::Receiver<warden_supervisor::InstanceView>>,
)>;

fn overview_from(handles: &Handles) -> warden_supervisor::Overview {
    warden_supervisor::Overview::from_views(
        handles
            .iter()
            .map(|(spec, w)| (Arc::clone(spec), w.iter().map(|r| r.borrow().clone()).collect()))
            .collect(),
    )
}

pub(crate) fn router(state: State) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/servers", get(servers))
        .with_state(state)
}

/// Limits on the MCP endpoints' client sessions.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) sessions: warden_gateway::SessionLimits,
    pub(crate) max_sessions: usize,
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    guard: crate::guard::Guard,
    gateway: warden_gateway::Gateway,
    limits: Limits,
    stop: CancellationToken,
) {
    // The aggregated MCP endpoint and one endpoint per server.
    let loopback = guard.loopback;
    let mut app = router(state).nest_service(
        "/mcp",
        gateway.http_service(None, loopback, limits.sessions, stop.child_token()),
    );
    for name in gateway.server_names() {
        app = app.nest_service(
            &format!("/servers/{name}/mcp"),
            gateway.http_service(Some(name), loopback, limits.sessions, stop.child_token()),
        );
    }
    let app = app
        .layer(axum::middleware::from_fn_with_state((gateway, limits.max_sessions), session_limit))
        .layer(axum::middleware::from_fn_with_state(guard, crate::guard::check));
    if let Err(e) = axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        app,
    )
    .with_graceful_shutdown(stop.cancelled_owned())
    .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
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
    let overview = (state.inner.overview)();
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

async fn servers(AxState(state): AxState<State>) -> impl IntoResponse {
    Json((state.inner.overview)())
}
