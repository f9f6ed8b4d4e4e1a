//! The listener's own HTTP/1.1 loop: each connection's requests are read, answered and written
//! here, on its thread's event loop, without hyper's connection dispatcher or axum's service
//! plumbing (with the guard, these were ~20 k instructions of every proxied call under
//! callgrind, a fifth of the hop).
//!
//! - A POST within an MCP session on an MCP endpoint (`…/mcp` with `Mcp-Session-Id`) passes the
//!   guard (Host, Origin, token) read straight from the head, and goes to the gateway's fast
//!   lane with its body (`Gateway::lane_admits`, `Gateway::lane_run`).
//! - Every other request, and every one the lane gives back, goes to the router as an
//!   `http::Request` (the guard, the session layers, every route), marked so the front door
//!   does not offer it to the lane again.
//! - What this loop does not serve — a malformed head, HTTP/1.0, `HEAD`, an upgrade (the
//!   dashboard's WebSocket), a chunked body, `Expect`, a body over the session's limit — hands
//!   the connection, with the bytes already read, to hyper for the rest of its life: it answers
//!   them as it always has.
//!
//! Answers are written as the body gives them: one write for a body of known length (head and
//! body together), chunked for a stream (each frame as it comes: SSE). While a request is
//! being answered the socket is watched: the client closing it drops the answer (a lane call
//! is cancelled, as rmcp's are when hyper sees the close). Keep-alive is the default; a client's
//! `Connection: close`, or stopping, ends the connection after the answer; an idle one ends at
//! once when serving stops. A request begun (head or body) whose next bytes do not come within
//! [`HEAD_TIMEOUT`], or a write that makes no progress for `SEND_TIMEOUT`, ends the connection.
//!
//! A connection whose requests are answered [`MOVE_AFTER`] times in a row by a stdio child read
//! on another serving thread (through the lane) moves to that thread after the answer
//! (`crate::data_plane::Peers`); any other request in between starts the count again.

mod handoff;
mod wire;

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::data_plane::{Counted, Peers};
use crate::front::{Front, LaneTried};
use crate::send_timeout::{timed_out, SEND_TIMEOUT};
use wire::{Framing, Step};

/// How long the next bytes of a request begun (its head or body) may take to arrive.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read at a time.
const READ: usize = 8 * 1024;
/// A body of a known length up to this is written with its head, in one write.
const ONE_WRITE: usize = 64 * 1024;
/// Requests in a row answered on the same other thread before the connection moves there (one
/// alone may be a connection of the aggregated endpoint passing by).
const MOVE_AFTER: u8 = 2;

/// Serves the connection `io` until it ends, the client goes, or `stop` (after the answer in
/// progress).
pub(crate) async fn serve(
    io: Counted,
    read: BytesMut,
    front: Front,
    stop: CancellationToken,
    peers: Peers,
) {
    let mut conn = Conn { io, buf: read, out: Vec::new(), home: None, streak: 0 };
    match warden_upstream::home::scope(conn.run(&front, &stop, &peers)).await {
        Ok(End::Hyper) => handoff::serve(conn.io, conn.buf.freeze(), front.router, stop).await,
        Ok(End::Move(home)) => peers.hand(home, conn.io, conn.buf),
        Ok(End::Close) => {
            use tokio::io::AsyncWriteExt;
            let _ = conn.io.io.shutdown().await;
        }
        Err(e) => tracing::debug!(error = %e, "an HTTP connection ended"),
    }
}

enum End {
    /// Closed (the client's or this side's choice).
    Close,
    /// hyper serves the rest.
    Hyper,
    /// The thread with this index serves the rest.
    Move(usize),
}

struct Conn {
    io: Counted,
    /// What has been read and not yet served.
    buf: BytesMut,
    /// An answer's bytes being written.
    out: Vec<u8>,
    /// The other thread the last requests were answered on, and how many in a row.
    home: Option<usize>,
    streak: u8,
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        &self.io.io
    }

    async fn run(
        &mut self,
        front: &Front,
        stop: &CancellationToken,
        peers: &Peers,
    ) -> io::Result<End> {
        let max_body = front.lane.as_ref().map_or(wire::MAX_HEAD, |l| l.max_body);
        loop {
            let head = loop {
                match wire::read_head(&self.buf, max_body) {
                    Step::Head(head) => break head,
                    Step::Hyper => return Ok(End::Hyper),
                    Step::Partial => {}
                }
                let more = if self.buf.is_empty() {
                    tokio::select! {
                        () = stop.cancelled() => return Ok(End::Close),
                        more = self.fill() => more?,
                    }
                } else {
                    self.fill_within().await?
                };
                if !more {
                    return Ok(End::Close);
                }
            };
            while self.buf.len() < head.len + head.body {
                if !self.fill_within().await? {
                    return Ok(End::Close);
                }
            }
            let msg = self.buf.split_to(head.len + head.body).freeze();
            let Some((response, home)) = self.answer(&head, &msg, front).await else {
                return Ok(End::Close); // the client went
            };
            let keep = self.write(response, head.close).await?;
            if !keep || stop.is_cancelled() {
                return Ok(End::Close);
            }
            if let Some(home) = self.moving(home, peers) {
                return Ok(End::Move(home));
            }
        }
    }

    /// Where the connection should move after a request answered on `home` (see
    /// [`MOVE_AFTER`]), counting the requests in a row answered on the same other thread.
    fn moving(&mut self, home: Option<usize>, peers: &Peers) -> Option<usize> {
        let Some(home) = home.filter(|h| peers.elsewhere(*h)) else {
            (self.home, self.streak) = (None, 0);
            return None;
        };
        if self.home == Some(home) {
            self.streak += 1;
        } else {
            (self.home, self.streak) = (Some(home), 1);
        }
        (self.streak >= MOVE_AFTER).then_some(home)
    }

    /// The answer to the request `msg` (its head read as `head`), and the thread a call to a
    /// stdio child was answered on (`warden_upstream::home`); `None` if the client went.
    async fn answer(
        &mut self,
        head: &wire::Head,
        msg: &bytes::Bytes,
        front: &Front,
    ) -> Option<(Response<Body>, Option<usize>)> {
        if let (Some(door), Some(spans)) = (&front.lane, &head.lane) {
            let lane = wire::Lane { msg, spans };
            let path = lane.path().unwrap_or("");
            if let Some(refused) = crate::guard::refuse_head(&door.guard, path, || None, &lane) {
                return Some((refused, None));
            }
            if let Some(lane_head) = lane.head(head.body) {
                if door.gateway.lane_admits(&lane_head, door.max_body) {
                    let body = &msg[head.len..];
                    let answered = self.watching(door.gateway.lane_run(&lane_head, body)).await?;
                    let home = warden_upstream::home::take();
                    // `None`: rmcp's, for the router.
                    if let Some(response) = answered {
                        return Some((response, home));
                    }
                }
            }
        }
        let Some(mut request) = wire::request(msg, head.len) else {
            let refused = crate::api::error(
                axum::http::StatusCode::BAD_REQUEST,
                "the request has a header that cannot be read",
            );
            return Some((refused, None));
        };
        if front.lane.is_some() {
            request.extensions_mut().insert(LaneTried);
        }
        // Taken here too: rmcp's own calls do not note, but a route may.
        match self.watching(front.router.clone().oneshot(request)).await? {
            Ok(response) => Some((response, warden_upstream::home::take())),
            Err(never) => match never {},
        }
    }

    /// Writes `response`; whether the connection may carry another request.
    async fn write(&mut self, response: Response<Body>, close: bool) -> io::Result<bool> {
        let (parts, body) = response.into_parts();
        let framing = wire::framing(&parts, http_body::Body::size_hint(&body).exact());
        let close = close
            || parts
                .headers
                .get(axum::http::header::CONNECTION)
                .is_some_and(|v| wire::has_token(v.as_bytes(), b"close"));
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        wire::answer_head(&mut out, &parts, framing, close);
        if framing != Framing::None && !self.body(&mut out, body, framing).await? {
            return Ok(false); // the client went, or the body failed
        }
        let r = self.send(&out).await;
        out.clear();
        self.out = out;
        r?;
        Ok(!close)
    }

    /// Appends `body`'s frames to `out` as `framing` says, writing as they come (what is
    /// ready goes in one write; a stream's head and what it gave go before waiting for more),
    /// and leaves the last write in `out`; `false` if the client went or the body failed.
    async fn body(
        &mut self,
        out: &mut Vec<u8>,
        mut body: Body,
        framing: Framing,
    ) -> io::Result<bool> {
        let chunked = framing == Framing::Chunked;
        loop {
            let frame = match futures::FutureExt::now_or_never(body.frame()) {
                Some(frame) => frame,
                None => {
                    if chunked && !out.is_empty() {
                        self.send(out).await?;
                        out.clear();
                    }
                    tokio::select! {
                        biased;
                        frame = body.frame() => frame,
                        () = watch(&mut self.io.io, &mut self.buf) => {
                            return Ok(false); // the client went
                        }
                    }
                }
            };
            let data = match frame {
                None => {
                    if chunked {
                        out.extend_from_slice(wire::LAST_CHUNK);
                    }
                    return Ok(true);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers: not sent
                },
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "an answer's body failed; connection closed");
                    return Ok(false);
                }
            };
            if chunked {
                if !data.is_empty() {
                    wire::chunk(out, &data);
                }
            } else {
                out.extend_from_slice(&data);
            }
            if out.len() > ONE_WRITE {
                self.send(out).await?;
                out.clear();
            }
        }
    }

    /// Writes all of `bytes`; fails if the client takes none of them for `SEND_TIMEOUT`.
    async fn send(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.tcp().try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout(SEND_TIMEOUT, self.tcp().writable()).await {
                        Ok(r) => r?,
                        Err(_) => return Err(timed_out(SEND_TIMEOUT)),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more; `false` at the end of the client's stream. (Through `AsyncRead`, which
    /// takes a read that did not fill the buffer for the socket drained: the next wait needs no
    /// read that fails with `EAGAIN` first, as `try_read` would.)
    async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(READ);
        Ok(self.io.io.read_buf(&mut self.buf).await? > 0)
    }

    /// [`Conn::fill`] for a request begun: its next bytes must come within [`HEAD_TIMEOUT`].
    async fn fill_within(&mut self) -> io::Result<bool> {
        match tokio::time::timeout(HEAD_TIMEOUT, self.fill()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "a request came too slowly")),
        }
    }

    /// `work`'s output, or `None` if the client closed the connection first.
    async fn watching<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = work => Some(out),
            () = watch(&mut self.io.io, &mut self.buf) => None,
        }
    }
}

/// Ends when the client closes its side (or the connection fails); what it sends meanwhile (a
/// pipelined request) is kept in `buf`, up to a head's worth.
async fn watch(tcp: &mut TcpStream, buf: &mut BytesMut) {
    loop {
        if buf.len() > wire::MAX_HEAD {
            return std::future::pending().await;
        }
        buf.reserve(READ);
        if !matches!(tcp.read_buf(buf).await, Ok(n) if n > 0) {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
