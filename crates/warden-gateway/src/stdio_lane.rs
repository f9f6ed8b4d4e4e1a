//! Warden's stdio server with a fast lane (`warden run --stdio`, the desktop path): a client's
//! `tools/call` is taken off stdin, handled by the session's [`Handler`] as rmcp's dispatch
//! handles it for the session (`lane::run`: the same validation, result shape and error
//! codes; the server's result passed on as written once rmcp can read it), and its answer
//! written as one line on stdout — without rmcp's service loop, the task
//! it spawns per request, and the sink and transport tasks an answer passes through.
//!
//! Everything else is rmcp's, on the same pipes: the handshake, lists, settings, the client's
//! answers to the server's requests, and every message of a 2026-07-28 session. The lane's
//! calls use rmcp's peer for what they send on their way (progress, log messages, the
//! server's requests relayed to the client), so those reach stdout before the answer, as on
//! rmcp's path. A `notifications/cancelled` for a lane call cancels it (rmcp does not know it)
//! and it is not answered. A request rmcp cannot read at all is answered here under its id
//! (`handler::refusal`). Tested on the wire in `crates/warden/tests/stdio_server.rs` and
//! `malformed.rs`.

use std::sync::Arc;

use rmcp::service::{Peer, RoleServer};
use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::handler::Handler;
use crate::lane::{self, Calls, Taken};

/// Serves `handler` on `input`/`output` until the client closes `input`.
pub(crate) async fn serve<I, O>(handler: Handler, input: I, output: O) -> std::io::Result<()>
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin + Send + 'static,
{
    let (rmcp_in, tap) = tokio::io::duplex(1024 * 1024);
    let (rmcp_out, lane_out) = warden_upstream::share_lines(output);
    let (rmcp_read, _unused) = tokio::io::split(rmcp_in);
    let peer_slot: Arc<std::sync::OnceLock<Peer<RoleServer>>> = Arc::default();
    let reader = tokio::spawn(read_input(
        input,
        tap,
        Lane { handler: handler.clone(), peer: Arc::clone(&peer_slot), out: lane_out },
    ));
    let running = handler
        .serve((rmcp_read, rmcp_out))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let _ = peer_slot.set(running.peer().clone());
    let _ = running.waiting().await;
    reader.abort();
    Ok(())
}

struct Lane {
    handler: Handler,
    /// rmcp's peer for the session, once the handshake is over.
    peer: Arc<std::sync::OnceLock<Peer<RoleServer>>>,
    out: warden_upstream::LineSender,
}

/// Copies the client's lines to rmcp, except the lane's calls and their cancellations.
async fn read_input<I: AsyncRead + Unpin>(
    input: I,
    mut to_rmcp: tokio::io::DuplexStream,
    lane: Lane,
) {
    let in_flight = Calls::default();
    let ended = screen(input, &mut to_rmcp, &lane.out, |line| lane.take(line, &in_flight)).await;
    if ended == Ended::Eof {
        // The lane's calls still running are answered first (up to 5 s, as rmcp waits for its
        // own); then dropping `to_rmcp` ends rmcp's session, whose writer closing ends stdout.
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !in_flight.is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Why [`screen`] returned.
#[derive(Debug, PartialEq)]
pub(crate) enum Ended {
    /// The client closed its end (or it failed).
    Eof,
    /// rmcp or stdout is gone.
    Gone,
}

/// Copies the client's lines from `input` to rmcp (`to_rmcp`), except those `take` takes, and
/// answers on `out` a request rmcp cannot read, under its id: rmcp's own answer names no
/// request, and the client's call would wait for its timeout. (Text that is not JSON, and
/// other messages rmcp cannot read, are left to rmcp, which ignores the one and answers the
/// other with an id-less -32600.)
pub(crate) async fn screen<I: AsyncRead + Unpin>(
    input: I,
    to_rmcp: &mut tokio::io::DuplexStream,
    out: &warden_upstream::LineSender,
    mut take: impl FnMut(&[u8]) -> bool,
) -> Ended {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let activity = warden_upstream::Activity::new();
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        match warden_upstream::read_bounded_line(
            &mut reader,
            &mut line,
            warden_upstream::MAX_MESSAGE,
            &activity,
        )
        .await
        {
            Ok((0, _)) | Err(_) => return Ended::Eof,
            Ok((_, true)) => {
                tracing::warn!(target: "warden::gateway", "dropped a message over 64 MiB on stdin");
                continue;
            }
            Ok(_) => {}
        }
        if take(&line) {
            continue;
        }
        if let Some(refusal) = crate::handler::refusal(&line).filter(|r| r.id.is_some()) {
            let mut answer = refusal.to_json();
            answer.push(b'\n');
            if out.send(answer).await.is_err() {
                return Ended::Gone;
            }
            continue;
        }
        if to_rmcp.write_all(&line).await.is_err() {
            return Ended::Gone;
        }
    }
}

impl Lane {
    /// Takes `line` if it is a `tools/call` of an initialized session before 2026-07-28 (run
    /// here), or the cancellation of one; anything else is rmcp's.
    fn take(&self, line: &[u8], in_flight: &Calls) -> bool {
        let Some(peer) = self.peer.get().filter(|_| lane::enabled()) else {
            return false;
        };
        if peer.peer_info().is_none_or(|p| !p.protocol_version.has_initialize()) {
            return false;
        }
        match lane::read(line) {
            Some(Taken::Call { id, mut request }) => {
                let Some(ct) = in_flight.begin(&id) else { return false };
                let ctx = lane::context(&id, peer.clone(), ct, &mut request);
                let handler = self.handler.clone();
                let out = self.out.clone();
                let in_flight = in_flight.clone();
                // The call's future (~4 KB) goes in a box of its own: the task's future stays
                // small, and tokio's moves of it (into the task, at each change of its stage)
                // copy a few hundred bytes, not the call (~5k instructions a call).
                tokio::spawn(async move {
                    let answer = Box::pin(lane::run(&handler, id.clone(), request, ctx)).await;
                    if !in_flight.finish(&id) {
                        return; // no answer to a cancelled request
                    }
                    let mut bytes = answer;
                    bytes.push(b'\n');
                    let _ = out.send(bytes).await;
                });
                true
            }
            Some(Taken::Cancel(id)) => in_flight.cancel(&id),
            None => false,
        }
    }
}
