//! The legacy HTTP+SSE transport (protocol 2024-11-05), server side: `GET /sse` opens an event
//! stream whose first `endpoint` event names where to `POST` messages; answers come back as
//! `message` events. Each stream is bridged to the rmcp server through an in-memory pipe.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::Router;
use futures::Stream;
use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, WriteHalf};

use crate::Misbehave;

type Sessions = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<WriteHalf<DuplexStream>>>>>>;

#[derive(Clone)]
struct AppState {
    server: Misbehave,
    sessions: Sessions,
}

/// Serves the legacy SSE transport at `/sse` and `/messages` until the process ends.
pub(crate) async fn serve_legacy_sse(server: Misbehave, listener: tokio::net::TcpListener) {
    let state = AppState { server, sessions: Arc::default() };
    let app =
        Router::new().route("/sse", get(open)).route("/messages", post(message)).with_state(state);
    axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        app,
    )
    .await
    .expect("serve legacy SSE");
}

async fn open(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = format!("{:016x}", rand::random::<u64>());
    let (ours, theirs) = tokio::io::duplex(1024 * 1024);
    let (srv_read, srv_write) = tokio::io::split(theirs);
    let server = state.server.clone();
    tokio::spawn(async move {
        if let Ok(running) = server.serve((srv_read, srv_write)).await {
            let _ = running.waiting().await;
        }
    });
    let (from_server, to_server) = tokio::io::split(ours);
    state
        .sessions
        .lock()
        .expect("not poisoned")
        .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(to_server)));
    let endpoint = Event::default().event("endpoint").data(format!("/messages?sessionId={id}"));
    let lines = BufReader::new(from_server).lines();
    let messages = futures::stream::unfold(lines, |mut lines| async move {
        match lines.next_line().await {
            Ok(Some(line)) => Some((Ok(Event::default().event("message").data(line)), lines)),
            _ => None,
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::once(async { Ok(endpoint) }), messages);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn message(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> StatusCode {
    let Some(id) = q.get("sessionId") else { return StatusCode::BAD_REQUEST };
    let Some(pipe) = state.sessions.lock().expect("not poisoned").get(id).cloned() else {
        return StatusCode::NOT_FOUND;
    };
    let mut pipe = pipe.lock().await;
    let line = body.replace('\n', " ");
    if pipe.write_all(format!("{line}\n").as_bytes()).await.is_err() {
        return StatusCode::GONE;
    }
    StatusCode::ACCEPTED
}
