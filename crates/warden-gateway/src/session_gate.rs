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

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use futures::future::BoxFuture;
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
}

impl McpService {
    /// `inner` over `manager`; `restores` when a session store lets it restore sessions.
    pub(crate) fn new(inner: Rmcp, manager: Arc<LocalSessionManager>, restores: bool) -> Self {
        let gate = restores.then(|| Arc::new(Gate { manager, entering: Mutex::default() }));
        Self { inner, gate }
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
    use http_body_util::BodyExt;
    let mut answer =
        axum::http::Response::new(http_body_util::Full::new(axum::body::Bytes::new()).boxed());
    *answer.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    answer
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
        let (inner, gate) = (self.inner.clone(), self.gate.clone());
        let session = request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            Ok(match (gate, session) {
                (Some(gate), Some(id)) => gate.serve(id, inner, request).await,
                _ => inner.handle(request).await,
            })
        })
    }
}
