//! `GET /logs`: Warden's own log lines as Server-Sent Events (each `data:` one JSON object, as
//! the JSON log files write it, scrubbed of secrets); `?level=warn` keeps that level and above.
//! A subscriber that falls 1024 lines behind gets a `{"level":"WARN","dropped":N}` line.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use warden_ops::logstream::{at_least, is_level, LogTap};

use crate::api::{error, Params};

pub(crate) fn routes(tap: LogTap) -> Router {
    Router::new().route("/logs", get(logs)).with_state(tap)
}

#[derive(Deserialize)]
struct Query {
    level: Option<String>,
}

async fn logs(AxState(tap): AxState<LogTap>, Params(q): Params<Query>) -> Response {
    let level = q.level.unwrap_or_else(|| "info".to_owned());
    if !is_level(&level) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("level: {level:?} is not a level (trace, debug, info, warn, error)"),
        );
    }
    Sse::new(lines(tap, level))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn lines(tap: LogTap, level: String) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = tap.subscribe();
    futures::stream::unfold((rx, level), |(mut rx, level)| async move {
        loop {
            match rx.recv().await {
                Ok(line) if at_least(&line, &level) => {
                    return Some((Ok(Event::default().data(&*line)), (rx, level)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    let note = format!(
                        r#"{{"level":"WARN","dropped":{n},"fields":{{"message":"{n} log lines missed: this subscriber fell behind"}}}}"#
                    );
                    return Some((Ok(Event::default().data(note)), (rx, level)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}
