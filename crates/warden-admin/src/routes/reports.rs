//! `GET /api/reports/{kind}?since=&until=&server=` (warden-ops `reports` builds them).

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use warden_ops::reports::{Kind, Reports};

use crate::api::{error, Params};

#[derive(Deserialize)]
struct Query {
    since: Option<String>,
    until: Option<String>,
    server: Option<String>,
}

pub(crate) fn routes(reports: Reports) -> Router {
    Router::new().route("/api/reports/{kind}", get(report)).with_state(reports)
}

/// `GET /api/reports/{kind}?since=7d&until=&server=`.
async fn report(
    AxState(reports): AxState<Reports>,
    Path(kind): Path<String>,
    Params(q): Params<Query>,
) -> Response {
    let Some(kind) = Kind::parse(&kind) else {
        let known: Vec<&str> = Kind::ALL.iter().map(|(_, n)| *n).collect();
        return error(StatusCode::NOT_FOUND, format!("no report {kind:?} ({})", known.join(", ")));
    };
    let answer = match reports.range(
        q.since.as_deref(),
        q.until.as_deref(),
        q.server.as_deref(),
        warden_core::now(),
    ) {
        Ok(r) => reports.build(kind, &r).await,
        Err(refusal) => Err(refusal),
    };
    match answer {
        Ok(v) => Json(v).into_response(),
        Err((status, message)) => error(status, message),
    }
}
