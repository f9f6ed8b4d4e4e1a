//! A Streamable HTTP endpoint (rmcp's service), with the first requests of a session this
//! replica has to restore taken one at a time.
//!
//! With sessions shared by replicas (a fleet), a request for a session this replica does not
//! hold makes rmcp restore it from the store: it publishes the session, then replays the
//! client's `initialize` to a new session worker. rmcp 3.9 publishes it before the replay, so
//! a second request of the same session arriving meanwhile (a client whose replica died sends
//! its notification stream and its next calls at once) reaches a worker still waiting for
//! `initialize`; the worker quits, and every request of the session gets a 500 until the
//! client starts over. A second race fails the same way: a request that saw no session before
//! the first restore began, but asked for its own after that restore had ended, is told
//! "already present" as an error.
//!
//! Here a request whose session is not settled on this replica (not held, or being restored)
//! waits for the requests before it to be answered; the first restores the session, the
//! others find it held. A settled session's requests go straight through. Without a session
//! store nothing is restored and nothing waits.
//!
//! A POST whose body rmcp cannot read as a JSON-RPC message (it answers a plain-text 415) is
//! answered with a JSON-RPC error instead (`handler::refusal`): 200 under the request's id
//! when that reads, else 400 with a null id.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::StreamableHttpService;

use crate::handler::Handler;

type Rmcp = StreamableHttpService<Handler, LocalSessionManager>;
type Answer = <Rmcp as tower::Service<Request<Body>>>::Response;

/// How long a request waits for the one restoring its session; past it, it goes on (rmcp
/// answers it as it can) rather than wait on a restore that hangs.
const WAIT: Duration = Duration::from_secs(10);

/// One MCP endpoint: rmcp's service behind the restore gate.
#[derive(Clone)]
pub struct McpService {
    inner: Rmcp,
    gate: Option<Arc<Gate>>,
    /// The largest body rmcp takes (its `max_request_body_bytes`).
    max_body: usize,
}

impl McpService {
    /// `inner` over `manager`, taking bodies up to `max_body`; `restores` when a session store
    /// lets it restore sessions.
    pub(crate) fn new(
        inner: Rmcp,
        manager: Arc<LocalSessionManager>,
        restores: bool,
        max_body: usize,
    ) -> Self {
        let gate = restores.then(|| Arc::new(Gate { manager, entering: Mutex::default() }));
        Self { inner, gate, max_body }
    }
}

/// Sessions whose requests are entering one at a time: the lock they take turns on, and how
/// many requests hold a ticket for it.
struct Gate {
    manager: Arc<LocalSessionManager>,
    entering: Mutex<HashMap<String, Turns>>,
}

/// The lock a session's entering requests take turns on, and how many hold a ticket for it.
type Turns = (Arc<tokio::sync::Mutex<()>>, usize);

/// A request's place among those entering its session; its end (answered, or the request
/// dropped while it waited) gives the place up, and the last one removes the session's entry.
struct Ticket {
    gate: Arc<Gate>,
    id: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut entering = self.gate.entering.lock().expect("not poisoned");
        if let Some((_, holders)) = entering.get_mut(&self.id) {
            *holders -= 1;
            if *holders == 0 {
                entering.remove(&self.id);
            }
        }
    }
}

impl Gate {
    /// Serves `request` of session `id`: straight through if the session is settled here, else
    /// after the requests of it before this one.
    async fn serve(self: Arc<Self>, id: String, inner: Rmcp, request: Request<Body>) -> Answer {
        // Held and nobody entering: settled. (An entry is made before a request that may
        // restore goes in, and removed after it is answered, so a session being restored
        // always has one.)
        let held = self.manager.has_session(&id.as_str().into()).await.unwrap_or(false);
        let turn = {
            let mut entering = self.entering.lock().expect("not poisoned");
            if held && !entering.contains_key(&id) {
                None
            } else {
                let (turn, holders) = entering.entry(id.clone()).or_default();
                *holders += 1;
                Some(Arc::clone(turn))
            }
        };
        let Some(turn) = turn else { return inner.handle(request).await };
        let ticket = Ticket { gate: Arc::clone(&self), id };
        let mine = tokio::time::timeout(WAIT, turn.lock_owned()).await;
        if mine.is_err() {
            tracing::warn!(session = %ticket.id, "a session's restore took over {WAIT:?}; going on");
        }
        // On a task of its own: a restore once begun is finished even if the client goes away
        // (dropped halfway, it would leave the session published but never initialized).
        let served = tokio::spawn(async move {
            let answer = inner.handle(request).await;
            drop(mine);
            drop(ticket);
            answer
        });
        match served.await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => unavailable(),
        }
    }
}

/// The answer when the runtime is shutting down under a request.
fn unavailable() -> Answer {
    plain(StatusCode::SERVICE_UNAVAILABLE, Bytes::new())
}

/// An answer of `status` with `body` (text, as rmcp's own refusals).
fn plain(status: StatusCode, body: Bytes) -> Answer {
    let mut answer = axum::http::Response::new(http_body_util::Full::new(body).boxed());
    *answer.status_mut() = status;
    answer
}

/// `Content-Type: application/json`, parameters allowed (rmcp's test, and Warden's guard's for
/// a request that changes state).
pub fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// `request` with its body read whole (up to `max`), and the body; or rmcp's answer to a body
/// over `max` or one that failed to arrive.
async fn read_body(request: Request<Body>, max: usize) -> Result<(Request<Body>, Bytes), Answer> {
    let (parts, body) = request.into_parts();
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {max} bytes").into(),
        )),
        Err(e) => Err(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to read request body: {e}").into(),
        )),
    }
}

/// The answer to `body`, which rmcp refused as unreadable (415), if it is unreadable: a
/// JSON-RPC error under the request's id (200), or with a null id (400).
fn refused(body: &[u8]) -> Option<Answer> {
    let refusal = crate::handler::refusal(body)?;
    let status = if refusal.id.is_some() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut answer = plain(status, refusal.to_json().into());
    answer.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Some(answer)
}

impl tower::Service<Request<Body>> for McpService {
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Answer, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (inner, gate, max) = (self.inner.clone(), self.gate.clone(), self.max_body);
        let session = request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            // A JSON POST's body is kept (rmcp reads it whole either way) to say what is wrong
            // with it if rmcp cannot read it.
            let json_post =
                request.method() == axum::http::Method::POST && declares_json(request.headers());
            let (request, body) = if json_post {
                match read_body(request, max).await {
                    Ok((request, body)) => (request, Some(body)),
                    Err(answer) => return Ok(answer),
                }
            } else {
                (request, None)
            };
            let answer = match (gate, session) {
                (Some(gate), Some(id)) => gate.serve(id, inner, request).await,
                _ => inner.handle(request).await,
            };
            if answer.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                if let Some(refused) = body.as_deref().and_then(refused) {
                    return Ok(refused);
                }
            }
            Ok(answer)
        })
    }
}
