//! The server-side fast lane for Streamable HTTP: a `tools/call` POSTed on a legacy
//! (`Mcp-Session-Id`) session is run by that session's [`Handler`] through rmcp's own dispatch
//! (`Service::handle_request`: same validation, result shape and error codes) in a task of its
//! own, and answered on the POST as SSE — progress events, then the answer — without rmcp's
//! session worker, the task it spawns per request, its request-wise channels, and the priming
//! event (this stream cannot be resumed, so none is promised; SEP-1699's SHOULD is about
//! streams that can be).
//!
//! A session is known to the lane once its client sent `notifications/initialized`
//! (`Handler::on_initialized` registers its handler and rmcp's peer). Not taken, and left to
//! rmcp unchanged: every other message; a session the lane does not know or whose rmcp
//! session is over; calls from a client that can answer the server's requests (sampling,
//! elicitation, roots: its answers go to rmcp's session worker, which would not know the
//! lane's calls); one call per session every quarter of the idle timeout (rmcp's worker resets
//! its idle timer only on messages it sees); and bodies without a length or over the limit.
//! A POSTed `notifications/cancelled` naming a lane call cancels it (answered 202, and the call
//! is not answered), as does the client going away. `WARDEN_SERVER_FAST_PATH=0` turns it off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use futures::StreamExt;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, GetMeta, JsonRpcMessage,
    JsonRpcNotification, JsonRpcRequest, ProgressNotificationParam, RequestId,
    ServerJsonRpcMessage, ServerNotification,
};
use rmcp::service::{Peer, RequestContext, RoleServer, Service};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;

/// Where a lane call's progress goes (an extension of its request context; `forward` sends
/// progress here instead of through the peer).
#[derive(Clone)]
pub(crate) struct LaneProgress(pub(crate) mpsc::UnboundedSender<ProgressNotificationParam>);

/// How often a lane answer's stream gets a keep-alive comment (rmcp's streams: 15 s).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A session's lane calls in flight, by request id.
type InFlight = Arc<Mutex<HashMap<RequestId, CancellationToken>>>;

/// One session the lane serves.
struct Entry {
    /// The endpoint the session belongs to (`/mcp`, `/servers/{name}/mcp`, …).
    path: String,
    handler: Handler,
    peer: Peer<RoleServer>,
    /// When a call of this session last went through rmcp (which keeps the session alive).
    through_rmcp: Instant,
    in_flight: InFlight,
}

/// The sessions the lane serves, by `Mcp-Session-Id`.
#[derive(Default)]
pub(crate) struct Lanes {
    sessions: Mutex<HashMap<String, Entry>>,
    /// rmcp's idle timeout for sessions (a call per quarter of it goes through rmcp).
    idle: Mutex<Option<Duration>>,
}

/// The server lanes (this one and `stdio_lane`) are on unless `WARDEN_SERVER_FAST_PATH=0` (for
/// comparisons, and a way out).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WARDEN_SERVER_FAST_PATH").map_or(true, |v| v != "0"))
}

impl Lanes {
    pub(crate) fn set_idle(&self, idle: Duration) {
        *self.idle.lock().expect("not poisoned") = Some(idle);
    }

    /// A legacy session whose client is initialized: its calls may take the lane. Sessions
    /// rmcp has closed are forgotten here too (their handlers hold client registrations).
    pub(crate) fn register(
        &self,
        session: &str,
        path: &str,
        handler: Handler,
        peer: Peer<RoleServer>,
    ) {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        let entry = Entry {
            path: path.to_owned(),
            handler,
            peer,
            through_rmcp: Instant::now(),
            in_flight: Arc::default(),
        };
        sessions.insert(session.to_owned(), entry);
    }

    /// Forgets sessions rmcp has closed, releasing their handlers (and with them their client
    /// registrations and upstream subscriptions) — called every 200 ms by the gateway.
    /// Their lane calls still running are cancelled, as rmcp cancels its own.
    pub(crate) fn sweep(&self) {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        sessions.retain(|_, e| {
            let open = !e.peer.is_transport_closed();
            if !open {
                e.in_flight.lock().expect("not poisoned").values().for_each(|ct| ct.cancel());
            }
            open
        });
    }

    /// What the lane needs for a call on `session`, unless it goes to rmcp.
    fn take(&self, session: &str, path: &str) -> Option<(Handler, Peer<RoleServer>, InFlight)> {
        let idle = *self.idle.lock().expect("not poisoned");
        let mut sessions = self.sessions.lock().expect("not poisoned");
        let e = sessions.get_mut(session).filter(|e| e.path == path)?;
        if e.peer.is_transport_closed() {
            sessions.remove(session);
            return None;
        }
        // One call in every eighth of the idle timeout goes through rmcp, whose worker resets
        // the session's idle timer only on what it sees (so a session active on the lane alone
        // lives at least 7/8 of the timeout past its last call).
        if idle.is_some_and(|idle| e.through_rmcp.elapsed() > idle / 8) {
            e.through_rmcp = Instant::now();
            return None;
        }
        Some((e.handler.clone(), e.peer.clone(), Arc::clone(&e.in_flight)))
    }

    fn in_flight(&self, session: &str) -> Option<InFlight> {
        let sessions = self.sessions.lock().expect("not poisoned");
        sessions.get(session).map(|e| Arc::clone(&e.in_flight))
    }

    /// Answers `request` if it is the lane's (see the module documentation); otherwise gives it
    /// back, unchanged, for rmcp.
    pub(crate) async fn serve(
        &self,
        request: Request<Body>,
        max_body: usize,
    ) -> Result<Response<Body>, Request<Body>> {
        if !enabled() || request.method() != Method::POST {
            return Err(request);
        }
        let headers = request.headers();
        let Some(session) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
            return Err(request);
        };
        let session = session.to_owned();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        // What rmcp would refuse (406, 415) it refuses itself.
        let accepts = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream") && a.contains("application/json"));
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        if !accepts
            || !json
            || length.is_none_or(|n| n > max_body)
            || self.in_flight(&session).is_none()
        {
            return Err(request);
        }
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, max_body).await {
            Ok(b) => b,
            // The client stopped sending: nothing to answer on.
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
        };
        let rebuilt = |parts, bytes: Bytes| Request::from_parts(parts, Body::from(bytes));
        let call = memchr::memmem::find(&bytes, b"\"tools/call\"").is_some();
        let cancel =
            !call && memchr::memmem::find(&bytes, b"\"notifications/cancelled\"").is_some();
        if !call && !cancel {
            return Err(rebuilt(parts, bytes));
        }
        let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(&bytes) else {
            return Err(rebuilt(parts, bytes));
        };
        match message {
            JsonRpcMessage::Notification(JsonRpcNotification {
                notification: ClientNotification::CancelledNotification(n),
                ..
            }) => {
                let in_flight = self.in_flight(&session);
                let ct = n.params.request_id.as_ref().and_then(|id| {
                    in_flight.and_then(|f| f.lock().expect("not poisoned").remove(id))
                });
                match ct {
                    Some(ct) => {
                        ct.cancel();
                        Ok(status(StatusCode::ACCEPTED))
                    }
                    None => Err(rebuilt(parts, bytes)),
                }
            }
            JsonRpcMessage::Request(JsonRpcRequest {
                id,
                request: mut request @ ClientRequest::CallToolRequest(_),
                ..
            }) => {
                let Some((handler, peer, in_flight)) = self.take(&session, parts.uri.path()) else {
                    return Err(rebuilt(parts, bytes));
                };
                let legacy = peer.peer_info().is_some_and(|p| {
                    p.protocol_version.has_initialize()
                        && !crate::forward::declares_answers(&p.capabilities)
                });
                let version_ok = parts
                    .headers
                    .get("mcp-protocol-version")
                    .and_then(|v| v.to_str().ok())
                    .is_none_or(|v| {
                        peer.peer_info().is_some_and(|p| p.protocol_version.as_str() == v)
                    });
                if !legacy || !version_ok {
                    return Err(rebuilt(parts, bytes));
                }
                let ct = CancellationToken::new();
                {
                    let mut calls = in_flight.lock().expect("not poisoned");
                    if calls.contains_key(&id) {
                        drop(calls);
                        return Err(rebuilt(parts, bytes));
                    }
                    calls.insert(id.clone(), ct.clone());
                }
                let (progress_tx, progress_rx) = mpsc::unbounded_channel();
                let mut ctx = RequestContext::new(id.clone(), peer);
                ctx.ct = ct.clone();
                ctx.meta = std::mem::take(request.get_meta_mut());
                ctx.extensions.insert(parts);
                ctx.extensions.insert(LaneProgress(progress_tx));
                Ok(answer(handler, request, ctx, id, in_flight, progress_rx))
            }
            _ => Err(rebuilt(parts, bytes)),
        }
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

/// One SSE event carrying `message`.
fn event(message: &ServerJsonRpcMessage) -> Option<Bytes> {
    let json = serde_json::to_vec(message).ok()?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&json);
    out.extend_from_slice(b"\n\n");
    Some(Bytes::from(out))
}

/// Runs the call in a task of its own and answers with its progress and then its result.
fn answer(
    handler: Handler,
    request: ClientRequest,
    ctx: RequestContext<RoleServer>,
    id: RequestId,
    in_flight: InFlight,
    mut progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    // The client going away (the body dropped unfinished) cancels the call.
    let gone = ctx.ct.clone().drop_guard();
    let ct = ctx.ct.clone();
    tokio::spawn(async move {
        let note = |p: ProgressNotificationParam| {
            ServerJsonRpcMessage::notification(ServerNotification::ProgressNotification(
                rmcp::model::ProgressNotification::new(p),
            ))
        };
        let work = handler.handle_request(request, ctx);
        tokio::pin!(work);
        // A comment every 15 s, as rmcp's streams have (`sse_keep_alive`): clients and proxies
        // with read timeouts keep a long call's stream.
        let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        let result = loop {
            tokio::select! {
                biased;
                r = &mut work => break r,
                Some(p) = progress.recv() => {
                    if let Some(e) = event(&note(p)) {
                        let _ = tx.send(e).await;
                    }
                }
                _ = keep_alive.tick() => {
                    let _ = tx.send(Bytes::from_static(b":\n\n")).await;
                }
            }
        };
        while let Ok(p) = progress.try_recv() {
            if let Some(e) = event(&note(p)) {
                let _ = tx.send(e).await;
            }
        }
        let cancelled =
            in_flight.lock().expect("not poisoned").remove(&id).is_none() || ct.is_cancelled();
        if cancelled {
            return; // no answer to a cancelled call
        }
        let message = match result {
            Ok(r) => ServerJsonRpcMessage::response(r, id),
            Err(e) => ServerJsonRpcMessage::error(e, Some(id)),
        };
        if let Some(e) = event(&message) {
            let _ = tx.send(e).await;
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }).map(
            move |b| {
                let _ = &gone;
                Ok::<_, std::convert::Infallible>(b)
            },
        );
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
