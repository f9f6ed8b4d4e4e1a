//! The operator API (`/api/...`): the server view, per-instance detail, actions on servers
//! and their failover, and history from the store. Every error is `{"error": {status,
//! message}}` — the same type the guard and the 404 fallback answer with.

use std::sync::Arc;

use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use warden_core::{Event, EventBus, EventKind, TraceId};
use warden_gateway::{FailoverAction, Gateway};
use warden_store::Store;
use warden_supervisor::{Command, ServerHandle};

/// What the API acts on.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) servers: Arc<Vec<ServerHandle>>,
    pub(crate) gateway: Gateway,
    pub(crate) store: Store,
    pub(crate) bus: Arc<EventBus>,
}

/// The one error type of the API.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (status, Json(json!({ "error": { "status": status.as_u16(), "message": message } })))
        .into_response()
}

pub(crate) fn routes(api: Api) -> Router {
    Router::new()
        .route("/api/servers/{name}", get(server))
        .route("/api/servers/{name}/instances/{index}", get(instance))
        .route("/api/servers/{name}/{action}", post(act))
        .route("/api/failover/{name}/{action}", post(failover))
        .route("/api/failures", get(failures))
        .route("/api/metrics", get(metrics))
        .with_state(api)
}

impl Api {
    /// The server named `name`, or why not (a 404 message).
    fn handle(&self, name: &str) -> Result<&ServerHandle, String> {
        self.servers
            .iter()
            .find(|s| s.spec.name == name)
            .ok_or_else(|| format!("no server named {name:?}"))
    }

    fn record(&self, what: String) {
        tracing::info!(action = %what, "operator action");
        self.bus.emit(Event::new(
            None,
            TraceId::random(),
            EventKind::OperatorAction { action: what },
        ));
    }
}

async fn server(AxState(api): AxState<Api>, Path(name): Path<String>) -> Response {
    match api.handle(&name) {
        Ok(h) => {
            let view =
                warden_supervisor::Overview::from_views(vec![(Arc::clone(&h.spec), h.views())]);
            Json(json!(view.servers[0])).into_response()
        }
        Err(m) => error(StatusCode::NOT_FOUND, m),
    }
}

/// One instance: its view, plus what the gateway knows (breaker, calls in flight).
async fn instance(
    AxState(api): AxState<Api>,
    Path((name, index)): Path<(String, usize)>,
) -> Response {
    let h = match api.handle(&name) {
        Ok(h) => h,
        Err(m) => return error(StatusCode::NOT_FOUND, m),
    };
    let Some(view) = h.views().into_iter().nth(index) else {
        return error(StatusCode::NOT_FOUND, format!("{name:?} has no instance {index}"));
    };
    let breaker = api.gateway.breakers().into_iter().find(|(id, _, _)| *id == view.id);
    let in_flight = h.link(index).map_or(0, |l| l.in_flight());
    let mut v = json!(view);
    v["breaker"] = json!({
        "state": breaker.as_ref().map(|b| b.1.as_str()),
        "opened": breaker.as_ref().map(|b| b.2),
    });
    v["in_flight"] = json!(in_flight);
    Json(v).into_response()
}

#[derive(Deserialize)]
struct Target {
    /// Only this instance (index), else all of the server's.
    instance: Option<u32>,
}

/// `restart`, `stop`, `start` or `reset` a server (or one instance with `?instance=N`).
async fn act(
    AxState(api): AxState<Api>,
    Path((name, action)): Path<(String, String)>,
    Query(t): Query<Target>,
) -> Response {
    let cmd = match action.as_str() {
        "restart" => Command::Restart,
        "stop" => Command::Stop,
        "start" => Command::Start,
        "reset" => Command::Reset,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no action {other:?} (restart, stop, start, reset)"),
            )
        }
    };
    let h = match api.handle(&name) {
        Ok(h) => h,
        Err(m) => return error(StatusCode::NOT_FOUND, m),
    };
    if let Some(i) = t.instance {
        if i as usize >= h.views().len() {
            return error(StatusCode::NOT_FOUND, format!("{name:?} has no instance {i}"));
        }
    }
    let sent = h.command(cmd, t.instance).await;
    if sent == 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the instance is busy with earlier commands; try again",
        );
    }
    let target = t.instance.map_or(name.clone(), |i| format!("{name}#{i}"));
    api.record(format!("{action} {target}"));
    (StatusCode::ACCEPTED, Json(json!({ "server": name, "action": action, "instances": sent })))
        .into_response()
}

/// `enable`, `disable`, `trigger`, `test` or `restore` a server's failover.
async fn failover(
    AxState(api): AxState<Api>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let a = match action.as_str() {
        "enable" => FailoverAction::Enable,
        "disable" => FailoverAction::Disable,
        "trigger" => FailoverAction::Trigger,
        "test" => FailoverAction::Test,
        "restore" => FailoverAction::Restore,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no failover action {other:?} (enable, disable, trigger, test, restore)"),
            )
        }
    };
    if let Err(m) = api.handle(&name) {
        return error(StatusCode::NOT_FOUND, m);
    }
    match api.gateway.failover(&name, a).await {
        Ok(v) => {
            if a != FailoverAction::Test {
                api.record(format!("failover {action} {name}"));
            }
            Json(v).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

#[derive(Deserialize)]
struct History {
    server: Option<String>,
    instance: Option<String>,
    limit: Option<i64>,
}

async fn failures(AxState(api): AxState<Api>, Query(q): Query<History>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    match api.store.failures(q.server.as_deref(), limit).await {
        Ok(rows) => Json(json!({ "failures": rows })).into_response(),
        Err(e) => {
            error(StatusCode::SERVICE_UNAVAILABLE, format!("the database did not answer: {e}"))
        }
    }
}

/// Metric samples of one instance (`?instance=name#0`), newest first.
async fn metrics(AxState(api): AxState<Api>, Query(q): Query<History>) -> Response {
    let Some(instance) = q.instance else {
        return error(StatusCode::BAD_REQUEST, "name the instance: ?instance=server#0");
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    match api.store.metrics(&instance, limit).await {
        Ok(rows) => Json(json!({ "instance": instance, "metrics": rows })).into_response(),
        Err(e) => {
            error(StatusCode::SERVICE_UNAVAILABLE, format!("the database did not answer: {e}"))
        }
    }
}
