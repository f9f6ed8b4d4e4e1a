//! The server-side fast lane for Streamable HTTP: a `tools/call` POSTed on a legacy
//! (`Mcp-Session-Id`) session is run by that session's [`Handler`] as rmcp's dispatch runs it
//! for the session (`lane::run`: same validation, result shape and error codes; the server's
//! result passed on as written once rmcp can read it) on the request's own task, and
//! answered on the POST as one JSON body when it ends within a second without progress; at
//! its first progress or past that second it moves to a task of its own and is answered as
//! SSE — progress events, then the answer. Either way without rmcp's session worker, the task
//! it spawns per request, its request-wise channels, and the priming event (this stream cannot
//! be resumed, so none is promised; SEP-1699's SHOULD is about streams that can be).
//!
//! A session is known to the lane once its client sent `notifications/initialized`
//! (`Handler::on_initialized` registers its handler and rmcp's peer). Not taken, and left to
//! rmcp unchanged: every other message; a session the lane does not know or whose rmcp
//! session is over; calls from a client that can answer the server's requests (sampling,
//! elicitation, roots: its answers go to rmcp's session worker, which would not know the
//! lane's calls); one call per session every eighth of the idle timeout (rmcp's worker resets
//! its idle timer only on messages it sees); and bodies without a length or over the limit.
//! A POSTed `notifications/cancelled` naming a lane call cancels it (answered 202, and the call
//! is not answered), as does the client going away. `WARDEN_SERVER_FAST_PATH=0` turns it off.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use futures::StreamExt;
use rmcp::model::{ProgressNotificationParam, RequestId, ServerJsonRpcMessage, ServerNotification};
use rmcp::service::{Peer, RequestContext, RoleServer};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::lane::{self, Calls, Taken};

/// What a lane call's request context carries (one extension: rmcp's `Parts` are not there).
#[derive(Clone)]
pub(crate) struct LaneContext {
    /// Its `Mcp-Session-Id` (`memory::session_of` reads it, or rmcp's `Parts`).
    pub(crate) session: String,
    /// Where its progress goes: `forward` sends it here instead of through the peer.
    pub(crate) progress: mpsc::UnboundedSender<ProgressNotificationParam>,
}

/// How often a lane answer's stream gets a keep-alive comment (rmcp's streams: 15 s).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a call runs on its request's task, to be answered as one JSON body, before its
/// answer becomes a stream (well inside clients' time-to-headers limits: the Python SDK's is
/// 30 s).
const JSON_WINDOW: Duration = Duration::from_secs(1);

/// One session the lane serves.
struct Entry {
    /// The endpoint the session belongs to (`/mcp`, `/servers/{name}/mcp`, …).
    path: String,
    handler: Handler,
    peer: Peer<RoleServer>,
    /// When a call of this session last went through rmcp (which keeps the session alive).
    through_rmcp: Instant,
    in_flight: Calls,
}

/// The sessions the lane serves, by `Mcp-Session-Id`.
#[derive(Default)]
pub(crate) struct Lanes {
    sessions: Mutex<foldhash::HashMap<String, Entry>>,
    /// rmcp's idle timeout for sessions (a call per eighth of it goes through rmcp).
    idle: Mutex<Option<Duration>>,
}

impl Lanes {
    pub(crate) fn set_idle(&self, idle: Duration) {
        *self.idle.lock().expect("not poisoned") = Some(idle);
    }

    /// A legacy session whose client is initialized, on endpoint `path`: its calls there may
    /// take the lane.
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
            in_flight: Calls::default(),
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
                e.in_flight.cancel_all();
            }
            open
        });
    }

    /// What the lane needs for a call on `session`, unless it goes to rmcp.
    fn take(&self, session: &str, path: &str) -> Option<(Handler, Peer<RoleServer>, Calls)> {
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
        Some((e.handler.clone(), e.peer.clone(), e.in_flight.clone()))
    }

    fn in_flight(&self, session: &str) -> Option<Calls> {
        let sessions = self.sessions.lock().expect("not poisoned");
        sessions.get(session).map(|e| e.in_flight.clone())
    }

    /// Whether a POST with `head` may be the lane's, judged before its body is read: what rmcp
    /// would refuse (406, 415) it refuses itself, and a body without a length or over the limit
    /// is rmcp's too.
    pub(crate) fn admits(&self, head: &LaneHead<'_>, max_body: usize) -> bool {
        let accepts = head
            .accept
            .is_some_and(|a| a.contains("text/event-stream") && a.contains("application/json"));
        let json = head.content_type.is_some_and(|c| c.starts_with("application/json"));
        lane::enabled()
            && accepts
            && json
            && head.length.is_some_and(|n| n <= max_body)
            && self.in_flight(head.session).is_some()
    }

    /// Answers the POST with `head` (admitted by [`Lanes::admits`]) and `body` if it is the
    /// lane's (see the module documentation); `None` if it is rmcp's.
    pub(crate) async fn run(&self, head: &LaneHead<'_>, body: &[u8]) -> Option<Response<Body>> {
        match lane::read(body)? {
            Taken::Cancel(id) => self
                .in_flight(head.session)
                .is_some_and(|calls| calls.cancel(&id))
                .then(|| status(StatusCode::ACCEPTED)),
            Taken::Call { id, mut request } => {
                let (handler, peer, in_flight) = self.take(head.session, head.path)?;
                let legacy = peer.peer_info().is_some_and(|p| {
                    p.protocol_version.has_initialize()
                        && !crate::forward::declares_answers(&p.capabilities)
                });
                let version_ok = head.protocol_version.is_none_or(|v| {
                    peer.peer_info().is_some_and(|p| p.protocol_version.as_str() == v)
                });
                if !legacy || !version_ok {
                    return None;
                }
                let ct = in_flight.begin(&id)?;
                let (progress_tx, progress_rx) = mpsc::unbounded_channel();
                let mut ctx = lane::context(&id, peer, ct, &mut request);
                let session = head.session.to_owned();
                ctx.extensions.insert(LaneContext { session, progress: progress_tx });
                Some(answer(handler, request, ctx, id, in_flight, progress_rx).await)
            }
        }
    }

    /// Answers `request` if it is the lane's (see the module documentation); otherwise gives it
    /// back, unchanged, for rmcp. (For connections hyper serves; Warden's own HTTP/1 loop reads
    /// the head itself and calls [`Lanes::admits`] and [`Lanes::run`].)
    pub(crate) async fn serve(
        &self,
        request: Request<Body>,
        max_body: usize,
    ) -> Result<Response<Body>, Request<Body>> {
        let admitted = request.method() == Method::POST
            && head_of(request.uri().path(), request.headers())
                .is_some_and(|head| self.admits(&head, max_body));
        if !admitted {
            return Err(request);
        }
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, max_body).await {
            Ok(b) => b,
            // The client stopped sending: nothing to answer on.
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
        };
        let answer = match head_of(parts.uri.path(), &parts.headers) {
            Some(head) => self.run(&head, &bytes).await,
            None => None,
        };
        answer.ok_or_else(|| Request::from_parts(parts, Body::from(bytes)))
    }
}

/// What the lane reads of a request with `headers` on `path`; `None` without a session.
fn head_of<'a>(path: &'a str, headers: &'a axum::http::HeaderMap) -> Option<LaneHead<'a>> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Some(LaneHead {
        path,
        session: text("mcp-session-id")?,
        accept: text(header::ACCEPT.as_str()),
        content_type: text(header::CONTENT_TYPE.as_str()),
        length: text(header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok()),
        protocol_version: text("mcp-protocol-version"),
    })
}

/// What the lane reads of a POST's head (the header values as text).
pub struct LaneHead<'a> {
    /// The endpoint (`/mcp`, `/servers/{name}/mcp`, …), without the query.
    pub path: &'a str,
    /// `Mcp-Session-Id`.
    pub session: &'a str,
    pub accept: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// `Content-Length`, if it is one.
    pub length: Option<usize>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<&'a str>,
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

/// One SSE event carrying the message `json` (one line: JSON text has no raw line breaks
/// but whitespace, and rmcp writes none; the lane's own answers are checked for them).
fn event_of(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// One SSE event carrying `message`.
fn event(message: &ServerJsonRpcMessage) -> Option<Bytes> {
    Some(event_of(&serde_json::to_vec(message).ok()?))
}

/// A lane call being run: its answer, as a JSON-RPC message's text.
type Work = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;

/// A call not yet answered. Dropped before its answer (the client went away while the call
/// ran on the request's task), it is cancelled and finishes on a task of its own, as rmcp's
/// cancelled calls do (the upstream hears the cancellation), and then leaves the session's
/// calls in flight.
struct Running {
    work: Option<Work>,
    ct: CancellationToken,
    id: RequestId,
    calls: Calls,
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        self.ct.cancel();
        let (id, calls) = (self.id.clone(), self.calls.clone());
        let finish = async move {
            work.await;
            calls.finish(&id);
        };
        // Not while unwinding from a panic in the call itself (it would be polled again).
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !std::thread::panicking() => {
                runtime.spawn(finish);
            }
            _ => {
                self.calls.finish(&self.id);
            }
        }
    }
}

type Note = ProgressNotificationParam;

/// Runs the call on the request's own task and answers it as one JSON body when it ends
/// within [`JSON_WINDOW`] without progress (no task, channel or stream framing); at its first
/// progress, or past the window, it moves to a task of its own and is answered as SSE:
/// progress events, keep-alive comments, then the answer.
async fn answer(
    handler: Handler,
    request: lane::LaneCall,
    ctx: RequestContext<RoleServer>,
    id: RequestId,
    in_flight: Calls,
    mut progress: mpsc::UnboundedReceiver<Note>,
) -> Response<Body> {
    let ct = ctx.ct.clone();
    let run_id = id.clone();
    let work: Work = Box::pin(async move { lane::run(&handler, run_id, request, ctx).await });
    let mut running = Running { work: Some(work), ct, id, calls: in_flight };
    let first = {
        let work = running.work.as_mut().expect("not yet run");
        tokio::select! {
            biased;
            message = work => Ok(message),
            Some(p) = progress.recv() => Err(Some(p)),
            _ = tokio::time::sleep(JSON_WINDOW) => Err(None),
        }
    };
    let message = match first {
        Ok(message) => {
            running.work.take(); // answered: nothing for `Running`'s drop to finish
            message
        }
        Err(first) => return stream(running, first, progress),
    };
    // Progress that came with the answer goes before it, on a stream; a call cancelled
    // meanwhile is not answered (its progress only, as on rmcp's path).
    let mut events: Vec<Bytes> =
        std::iter::from_fn(|| progress.try_recv().ok()).filter_map(|p| event(&note(p))).collect();
    let answered = running.calls.finish(&running.id);
    if !answered || !events.is_empty() {
        if answered {
            events.push(event_of(&message));
        }
        let events = events.into_iter().map(Ok::<_, std::convert::Infallible>);
        return sse(Body::from_stream(futures::stream::iter(events)));
    }
    let mut r = Response::new(Body::from(message));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn note(p: Note) -> ServerJsonRpcMessage {
    ServerJsonRpcMessage::notification(ServerNotification::ProgressNotification(
        rmcp::model::ProgressNotification::new(p),
    ))
}

/// An SSE answer with `body`.
fn sse(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Goes on with the call on a task of its own and answers with `first` (its first progress,
/// if that is why), the rest of its progress and then its result, as SSE.
fn stream(
    mut running: Running,
    first: Option<Note>,
    mut progress: mpsc::UnboundedReceiver<Note>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    // The client going away (the body dropped unfinished) cancels the call.
    let gone = running.ct.clone().drop_guard();
    tokio::spawn(async move {
        if let Some(e) = first.and_then(|p| event(&note(p))) {
            let _ = tx.send(e).await;
        }
        let Some(work) = running.work.as_mut() else { return };
        // A comment every 15 s, as rmcp's streams have (`sse_keep_alive`): clients and proxies
        // with read timeouts keep a long call's stream.
        let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        let message = loop {
            tokio::select! {
                biased;
                r = &mut *work => break r,
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
        running.work.take(); // answered: nothing for `Running`'s drop to finish
        while let Ok(p) = progress.try_recv() {
            if let Some(e) = event(&note(p)) {
                let _ = tx.send(e).await;
            }
        }
        if !running.calls.finish(&running.id) {
            return; // no answer to a cancelled call
        }
        let _ = tx.send(event_of(&message)).await;
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }).map(
            move |b| {
                let _ = &gone;
                Ok::<_, std::convert::Infallible>(b)
            },
        );
    sse(Body::from_stream(stream))
}
