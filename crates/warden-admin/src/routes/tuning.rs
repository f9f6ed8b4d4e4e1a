//! `/api/tuning*`: what was learnt and changed, and the operator's changes (warden-ops
//! `tuning` does the work).

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use warden_ops::tuning::{row_json, Tuner};
use warden_ops::Refusal;

use crate::api::{error, Params};

#[derive(Deserialize)]
struct Query {
    since: Option<String>,
    server: Option<String>,
}

pub(crate) fn routes(tuner: Tuner) -> Router {
    Router::new()
        .route("/api/tuning", get(overview))
        .route("/api/tuning/apply", post(apply))
        .route("/api/tuning/set", post(set))
        .route("/api/tuning/reset", post(reset))
        .route("/api/tuning/{id}/revert", post(revert))
        .with_state(tuner)
}

fn answer(r: Result<Value, Refusal>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err((status, message)) => error(status, message),
    }
}

fn body(bytes: &[u8]) -> Result<Value, Refusal> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err((StatusCode::BAD_REQUEST, "the body must be a JSON object".into()));
    }
    Ok(v)
}

fn opt_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, Refusal> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err((StatusCode::BAD_REQUEST, format!("{key}: {other} is not a string"))),
    }
}

fn source(v: &Value) -> Result<&str, Refusal> {
    match opt_str(v, "source")? {
        None => Ok("api"),
        Some(s @ ("api" | "cli" | "mcp")) => Ok(s),
        Some(s) => Err((StatusCode::BAD_REQUEST, format!("source: {s:?} is not api, cli or mcp"))),
    }
}

/// `GET /api/tuning?since=&server=`.
async fn overview(AxState(t): AxState<Tuner>, Params(q): Params<Query>) -> Response {
    answer(t.overview(q.since.as_deref(), q.server.as_deref()).await)
}

/// `POST /api/tuning/apply` `{server?, since?, dry_run?}`.
async fn apply(AxState(t): AxState<Tuner>, bytes: axum::body::Bytes) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let dry_run = match v.get("dry_run") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(o) => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("dry_run: {o} is not true or false"),
                    ))
                }
            };
            t.apply(opt_str(&v, "since")?, opt_str(&v, "server")?, dry_run, source(&v)?).await
        }
        .await,
    )
}

/// `POST /api/tuning/set` `{server, parameter, value, instance?}`.
async fn set(AxState(t): AxState<Tuner>, bytes: axum::body::Bytes) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_owned());
            let server = opt_str(&v, "server")?.ok_or_else(|| bad("server: required"))?;
            let parameter = opt_str(&v, "parameter")?.ok_or_else(|| bad("parameter: required"))?;
            let value = v.get("value").ok_or_else(|| bad("value: required"))?;
            let instance = match v.get("instance") {
                None | Some(Value::Null) => None,
                Some(i) => Some(
                    i.as_u64()
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| bad("instance: give the instance's index (0, 1, …)"))?,
                ),
            };
            let row = t.set(server, instance, parameter, value, source(&v)?).await?;
            Ok(row_json(&row))
        }
        .await,
    )
}

/// `POST /api/tuning/reset` `{server?}`.
async fn reset(AxState(t): AxState<Tuner>, bytes: axum::body::Bytes) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let reverted = t.reset(opt_str(&v, "server")?, source(&v)?).await?;
            Ok(json!({ "reverted": reverted }))
        }
        .await,
    )
}

/// `POST /api/tuning/{id}/revert`.
async fn revert(
    AxState(t): AxState<Tuner>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    answer(
        async {
            let v = body(&bytes)?;
            let id: i64 = id
                .parse()
                .map_err(|_| (StatusCode::BAD_REQUEST, format!("id: {id:?} is not a change id")))?;
            Ok(row_json(&t.revert(id, source(&v)?).await?))
        }
        .await,
    )
}
