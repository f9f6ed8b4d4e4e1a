//! The live event stream: `GET /events` (Server-Sent Events) and `GET /ws` (WebSocket), each
//! event in its wire form (`warden_core::wire`), and `GET /api/events`, the recent history from
//! the store in the same form.
//!
//! One task turns each event on the bus into its JSON once and re-broadcasts the frame to every
//! subscriber, so 50 subscribers cost 50 copies, not 50 serializations. Nothing here can hold
//! the bus back: the broadcast ring keeps the last [`CAPACITY`] frames and a subscriber that
//! falls further behind is told so (`{"kind":"dropped","missed":N}`) and disconnected; a
//! subscriber that stops reading altogether is cut off by the listener's send timeout
//! (`send_timeout.rs`). Both are counted in `/health/status` (`checks.event_stream`).
//!
//! Filters: `?server=a,b` and `?kind=state_changed,failure` (comma lists), on all three. There is
//! no replay (`Last-Event-ID` is ignored): a client that reconnects reads what it missed from
//! `/api/events`, as `warden events --follow` does. A browser's `EventSource` and `WebSocket`
//! cannot send an `Authorization` header, so the two streams (and only they) also take the
//! token as `?token=` (see `guard.rs`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use warden_core::{wire, Event, EventBus};
use warden_store::Store;

use crate::api::Params;

/// Frames kept for subscribers; one further behind than this is dropped (the bus keeps as many).
pub const CAPACITY: usize = 1024;
/// A comment (SSE) or a ping (WebSocket) this often, so proxies keep an idle stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A WebSocket message not taken by the client within this long ends the connection.
const WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One event, serialized once for every subscriber.
pub struct Frame {
    seq: Option<u64>,
    kind: String,
    server: Option<String>,
    json: String,
}

impl Frame {
    fn of(e: &Event) -> Self {
        Self {
            seq: Some(e.seq),
            kind: e.kind.name().to_owned(),
            server: e.instance.as_ref().map(|i| i.server().to_owned()),
            json: wire::event_json(e).to_line(),
        }
    }

    fn notice(missed: u64, why: &str) -> Self {
        Self {
            seq: None,
            kind: "dropped".to_owned(),
            server: None,
            json: wire::dropped_notice(missed, why).to_line(),
        }
    }

    fn sse(&self) -> SseEvent {
        let e = SseEvent::default().data(&self.json);
        match self.seq {
            Some(seq) => e.id(seq.to_string()),
            None => e,
        }
    }
}

/// The stream's handle: cheap to clone.
#[derive(Clone)]
pub struct Stream {
    inner: Arc<Inner>,
}

struct Inner {
    frames: broadcast::Sender<Arc<Frame>>,
    store: Store,
    stop: CancellationToken,
    subscribers: AtomicUsize,
    /// Subscribers disconnected for being too slow.
    dropped: AtomicU64,
}

impl Stream {
    /// Starts turning the bus's events into frames, until `stop`.
    pub fn start(bus: &EventBus, store: Store, stop: CancellationToken) -> Self {
        let (frames, _) = broadcast::channel(CAPACITY);
        let stream = Self {
            inner: Arc::new(Inner {
                frames,
                store,
                stop,
                subscribers: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
            }),
        };
        let mut events = bus.subscribe();
        let inner = Arc::clone(&stream.inner);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    e = events.recv() => e,
                };
                let frame = match next {
                    // Nobody listening: nothing to serialize.
                    Ok(_) if inner.frames.receiver_count() == 0 => continue,
                    Ok(e) => Frame::of(&e),
                    // Only if this task itself is starved; every subscriber hears of it.
                    Err(RecvError::Lagged(n)) => Frame::notice(n, "the event stream fell behind"),
                    Err(RecvError::Closed) => return,
                };
                let _ = inner.frames.send(Arc::new(frame));
            }
        });
        stream
    }

    fn subscribe(&self, filter: Filter) -> Subscription {
        self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            frames: self.inner.frames.subscribe(),
            filter,
            stream: Arc::clone(&self.inner),
        }
    }

    /// `checks.event_stream` of `/health/status`.
    pub fn check(&self) -> Value {
        json!({
            "status": "ok",
            "subscribers": self.inner.subscribers.load(Ordering::Relaxed),
            "dropped_subscribers": self.inner.dropped.load(Ordering::Relaxed),
        })
    }
}

/// `?server=` and `?kind=`, comma-separated; empty means all.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filter {
    server: Option<String>,
    kind: Option<String>,
}

impl Filter {
    fn matches(&self, f: &Frame) -> bool {
        let listed = |list: &Option<String>, value: Option<&str>| match list {
            None => true,
            Some(l) if l.is_empty() => true,
            Some(l) => value.is_some_and(|v| l.split(',').any(|x| x.trim() == v)),
        };
        // A notice concerns every subscriber.
        f.seq.is_none()
            || (listed(&self.server, f.server.as_deref()) && listed(&self.kind, Some(&f.kind)))
    }
}

/// One subscriber's place in the stream; counted while it lives.
struct Subscription {
    frames: broadcast::Receiver<Arc<Frame>>,
    filter: Filter,
    stream: Arc<Inner>,
}

enum Next {
    Frame(Arc<Frame>),
    /// The subscriber fell this many frames behind.
    Lagged(u64),
    Closed,
}

impl Subscription {
    /// The next frame that passes the filter (cancel-safe).
    async fn next(&mut self) -> Next {
        loop {
            match self.frames.recv().await {
                Ok(f) if self.filter.matches(&f) => return Next::Frame(f),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => return Next::Lagged(n),
                Err(RecvError::Closed) => return Next::Closed,
            }
        }
    }

    /// Counts and logs a subscriber dropped for being slow; returns the notice it gets.
    fn dropped(&self, missed: u64, transport: &str) -> Frame {
        self.stream.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            transport,
            missed,
            "an event subscriber fell {CAPACITY}+ events behind; dropped (it may reconnect)"
        );
        Frame::notice(missed, "this subscriber fell behind and is disconnected")
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn routes(stream: Stream) -> Router {
    Router::new()
        .route("/events", get(sse))
        .route("/ws", get(ws))
        .route("/api/events", get(recent))
        .with_state(stream)
}

/// `GET /events`: an SSE stream, one `data:` line of JSON per event, `id:` its `seq`.
async fn sse(State(s): State<Stream>, Params(filter): Params<Filter>) -> impl IntoResponse {
    enum Phase {
        Hello,
        Live,
        Done,
    }
    // Subscribed before the response goes out: whatever happens after the client sees the
    // headers reaches it.
    let sub = s.subscribe(filter);
    let stop = s.inner.stop.clone();
    let events =
        futures::stream::unfold((sub, stop, Phase::Hello), |(mut sub, stop, phase)| async move {
            let step = match phase {
                Phase::Done => return None,
                Phase::Hello => {
                    return Some((
                        Ok::<_, Infallible>(SseEvent::default().comment("warden events")),
                        (sub, stop, Phase::Live),
                    ))
                }
                Phase::Live => tokio::select! {
                    _ = stop.cancelled() => Next::Closed,
                    n = sub.next() => n,
                },
            };
            match step {
                Next::Frame(f) => Some((Ok(f.sse()), (sub, stop, Phase::Live))),
                Next::Lagged(n) => {
                    let notice = sub.dropped(n, "sse").sse();
                    Some((Ok(notice), (sub, stop, Phase::Done)))
                }
                Next::Closed => None,
            }
        });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// `GET /ws`: a WebSocket, one text message of JSON per event. Messages from the client are
/// ignored (but a close is honoured).
async fn ws(
    State(s): State<Stream>,
    Params(filter): Params<Filter>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let sub = s.subscribe(filter);
    let stop = s.inner.stop.clone();
    // Nothing from the client is read but a close: no need to accept large messages.
    upgrade.max_message_size(64 * 1024).on_upgrade(move |socket| serve_ws(socket, sub, stop))
}

async fn serve_ws(mut socket: WebSocket, mut sub: Subscription, stop: CancellationToken) {
    enum Step {
        Stop,
        Next(Next),
        Ping,
        Gone,
        Ignore,
    }
    let mut ping = tokio::time::interval(KEEP_ALIVE);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        let step = tokio::select! {
            _ = stop.cancelled() => Step::Stop,
            n = sub.next() => Step::Next(n),
            _ = ping.tick() => Step::Ping,
            m = socket.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Step::Gone,
                Some(Ok(_)) => Step::Ignore,
            },
        };
        let sent = match step {
            Step::Stop => {
                close(&mut socket, 1001, "warden is stopping").await;
                return;
            }
            Step::Next(Next::Frame(f)) => {
                send(&mut socket, Message::Text(f.json.as_str().into())).await
            }
            Step::Next(Next::Lagged(n)) => {
                let notice = sub.dropped(n, "websocket");
                if send(&mut socket, Message::Text(notice.json.into())).await {
                    close(&mut socket, 1008, "too slow: events were missed").await;
                }
                return;
            }
            Step::Next(Next::Closed) | Step::Gone => return,
            Step::Ping => send(&mut socket, Message::Ping(Default::default())).await,
            Step::Ignore => true,
        };
        if !sent {
            sub.stream.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                timeout_s = WS_SEND_TIMEOUT.as_secs(),
                "a WebSocket event subscriber stopped reading; dropped"
            );
            return;
        }
    }
}

/// Sends one message; false if the client did not take it in time or the connection is gone.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(tokio::time::timeout(WS_SEND_TIMEOUT, socket.send(message)).await, Ok(Ok(())))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(WS_SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

#[derive(Deserialize)]
struct Recent {
    server: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/events?server=&kind=&limit=`: recorded events, newest first, in the wire form.
async fn recent(State(s): State<Stream>, Params(q): Params<Recent>) -> Response {
    let limit = crate::api::limit(q.limit, 100);
    let rows = s.inner.store.events_of(q.server.as_deref(), q.kind.as_deref(), limit).await;
    crate::api::from_store(rows, |rows| {
        #[derive(serde::Serialize)]
        struct Events {
            events: Vec<wire::WireEvent>,
        }
        let events = rows.into_iter().map(|r| wire::from_serialized(r.payload)).collect();
        Json(Events { events }).into_response()
    })
}
