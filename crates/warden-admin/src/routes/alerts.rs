//! `/api/alerts*` and `/api/silences*`: what fires, its history, the notification outbox, and
//! silences (warden-ops `alerting` does the work).

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get};
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use warden_alerts::Silence;
use warden_ops::alerting::{parse_silence, Alerts};

use crate::api::{error, from_store, limit, Params};

pub(crate) fn routes(alerts: Alerts) -> Router {
    Router::new()
        .route("/api/alerts", get(current))
        .route("/api/alerts/history", get(history))
        .route("/api/alerts/notifications", get(notifications))
        .route("/api/silences", get(silences).post(create_silence))
        .route("/api/silences/{id}", delete(expire))
        .with_state(alerts)
}

async fn current(AxState(a): AxState<Alerts>) -> Json<Value> {
    Json(a.view())
}

#[derive(Deserialize)]
struct HistoryQuery {
    since: Option<String>,
    server: Option<String>,
    limit: Option<i64>,
}

async fn history(AxState(a): AxState<Alerts>, Params(q): Params<HistoryQuery>) -> Response {
    let since = match q.since.as_deref().map(|s| warden_ops::parse_instant("since", s, Utc::now()))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(m)) => return error(StatusCode::BAD_REQUEST, m),
    };
    from_store(a.store().alerts(since, q.server.as_deref(), limit(q.limit, 100)).await, |rows| {
        Json(json!({ "alerts": rows })).into_response()
    })
}

#[derive(Deserialize)]
struct NotificationQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn notifications(
    AxState(a): AxState<Alerts>,
    Params(q): Params<NotificationQuery>,
) -> Response {
    if let Some(s) = q.state.as_deref() {
        if !["pending", "delivered", "expired"].contains(&s) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state: {s:?} is not pending, delivered or expired"),
            );
        }
    }
    from_store(a.store().notifications(q.state.as_deref(), limit(q.limit, 100)).await, |rows| {
        Json(json!({ "notifications": rows })).into_response()
    })
}

async fn silences(AxState(a): AxState<Alerts>) -> Json<Value> {
    let now = Utc::now();
    let list: Vec<Silence> = a.silences().into_iter().filter(|s| s.ends_at > now).collect();
    Json(json!({ "silences": list }))
}

/// `POST /api/silences`: `{"matchers": ["server=search"] | [{"name","value","equal"}],
/// "duration": "2h" | "ends_at": RFC 3339, "starts_at"?, "comment", "created_by"?}`.
async fn create_silence(AxState(a): AxState<Alerts>, body: axum::body::Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    };
    match parse_silence(&v) {
        Ok(s) => (StatusCode::CREATED, Json(json!(a.add_silence(s).await))).into_response(),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

async fn expire(AxState(a): AxState<Alerts>, Path(id): Path<String>) -> Response {
    if a.expire_silence(&id).await {
        Json(json!({ "expired": id })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no active silence {id:?}"))
    }
}
