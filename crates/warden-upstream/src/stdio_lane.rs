//! The fast path for stdio servers: a `tools/call` is written as one JSON-RPC line on the
//! child's stdin under an id of Warden's own (`"wf-<n>"`, a string: rmcp's ids are numbers, so
//! the two never meet), and its answer is taken off the child's stdout by the tap that already
//! reads every line, before rmcp sees it. rmcp's client machinery (a serde round trip through
//! `ClientRequest`/`ServerResult`, the service task and its event loop, a task per
//! notification) is skipped; any number of calls are in flight on one child at once.
//!
//! rmcp keeps everything else on the same pipes: the handshake, probes, lists, notifications,
//! and the server's own requests (sampling, elicitation, roots), which it relays to the client
//! sessions with calls in flight as before — a lane call registers as in flight too. The two
//! writers share stdin through [`wire`]: one task writes whole lines from both, so a line of
//! one is never cut by a line of the other, and stdin closes when rmcp's side closes (a stop).
//!
//! A lane call behaves as rmcp's did: the same [`UpstreamError`]s, progress routed to the same
//! sink (taken off stdout in order, so every update comes before the answer), the timeout
//! restarted by progress and bounded by the deadline, and `notifications/cancelled` sent when
//! the client gives up or the call times out.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use rmcp::model::NumberOrString;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::PollSender;

use crate::relay::{Call, Progress, Shared};
use crate::reply::Message;
use crate::{Reply, UpstreamError};

/// The prefix of the lane's request ids and progress tokens.
const PREFIX: &str = "wf-";
/// Lines queued for stdin per writer before the writer waits (a child that stops reading
/// stdin fills its pipe, then this, then its callers wait — as with one writer).
const QUEUE: usize = 256;
/// How long sending `notifications/cancelled` may take.
const NOTE_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
thread_local! {
    /// Calls that took the lane, started on this thread.
    pub(crate) static LANE_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Shares a child's stdin between rmcp and the lane: returns rmcp's writer and the lane's
/// sender, and spawns the task that writes rmcp's lines (and the lane's when they queue). It
/// ends, closing stdin, when rmcp's writer is dropped or a write fails.
pub(crate) fn wire<W>(stdin: W) -> (RmcpWriter, Out)
where
    W: AsyncWrite + Send + 'static,
{
    let stamp = Stamp::default();
    let (writer, mut lines) = share(stdin, Some(Arc::clone(&stamp)));
    lines.batch = Some(Arc::default());
    (writer, Out { lines, stamp })
}

/// The shared output and its two ends; rmcp's lines are searched for its stamp if `stamp` is
/// given (a client's requests carry it, a server's answers never do).
fn share<W>(out: W, stamp: Option<Stamp>) -> (RmcpWriter, LineSender)
where
    W: AsyncWrite + Send + 'static,
{
    let out: Output = Arc::new(tokio::sync::Mutex::new(Some(Box::pin(out))));
    let unwritten = Arc::new(AtomicUsize::new(0));
    let (rmcp_tx, rmcp_rx) = mpsc::channel(QUEUE);
    let (lane_tx, lane_rx) = mpsc::channel(QUEUE);
    tokio::spawn(write_lines(Arc::clone(&out), rmcp_rx, lane_rx, Arc::clone(&unwritten)));
    let rmcp = RmcpWriter {
        tx: PollSender::new(rmcp_tx),
        partial: Vec::new(),
        stamp,
        unwritten: Arc::clone(&unwritten),
    };
    (rmcp, LineSender { queue: lane_tx, out, unwritten, batch: None })
}

/// The `_meta` keys rmcp stamps on every request of a 2026-07-28 session (SEP-2575), as it
/// sent them on its first request after the handshake.
type Stamp = Arc<OnceLock<crate::relay::Stamped>>;

/// The shared output (a child's stdin, Warden's own stdout); `None` once closed.
type Output = Arc<tokio::sync::Mutex<Option<Pin<Box<dyn AsyncWrite + Send>>>>>;

/// The lane's way to stdin, and what its requests must carry.
pub(crate) struct Out {
    lines: LineSender,
    stamp: Stamp,
}

/// The output is closed (stdin of a child that stopped, a failed write).
#[derive(Debug)]
pub struct Closed;

/// Sends the lane's whole lines. A line is written by the caller itself when nothing queued is
/// still unwritten and no write is under way — on Warden's HTTP threads the writer task is on
/// another thread, and handing it the line cost a wake-up of that thread each call — and
/// queued for the writer task otherwise, so lines keep the order they were handed in. On a
/// child's stdin the lines of one turn are written together, at its end (see [`Batch`]).
#[derive(Clone)]
pub struct LineSender {
    queue: mpsc::Sender<Vec<u8>>,
    out: Output,
    /// Lines queued (rmcp's and the lane's) and not yet written.
    unwritten: Arc<AtomicUsize>,
    /// On a child's stdin: lines handed over in one turn of the caller's event loop are
    /// written together, by a task that runs after the calls that turn woke.
    batch: Option<Arc<Mutex<Batch>>>,
}

/// Lines waiting for the end of the turn, in the order they were handed over.
#[derive(Default)]
struct Batch {
    lines: Vec<u8>,
    /// A flush is spawned and has not handed everything over yet.
    flushing: bool,
    /// A write failed: the output is gone.
    closed: bool,
}

impl LineSender {
    /// Hands over `line` (one whole line, with its newline). Once this returns the line will
    /// be written whole, even if the caller then gives up.
    pub async fn send(&self, line: Vec<u8>) -> Result<(), Closed> {
        // Only where a spawned task runs after the turn's other tasks: on a current-thread
        // runtime (Warden's HTTP threads). A multi-threaded one runs it next (tokio's LIFO
        // slot), so it would batch nothing and cost a spawn (`run --stdio`'s one worker).
        let batch = self.batch.as_ref().filter(|_| {
            tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread
        });
        if let Some(batch) = batch {
            {
                let mut b = batch.lock().expect("not poisoned");
                // The writer task ends (dropping the queue's receiver) when the output closes.
                if b.closed || self.queue.is_closed() {
                    return Err(Closed);
                }
                if b.flushing || self.unwritten.load(Ordering::SeqCst) == 0 {
                    b.lines.extend_from_slice(&line);
                    if !b.flushing {
                        b.flushing = true;
                        tokio::spawn(self.clone().flush());
                    }
                    return Ok(());
                }
            }
            self.enqueue(line).await
        } else {
            match self.write_if_idle(line) {
                Ok(written) => written,
                Err(line) => self.enqueue(line).await,
            }
        }
    }

    /// Writes `lines` now (see [`write_now`]) if nothing queued is unwritten and no write is
    /// under way; else hands them back.
    fn write_if_idle(&self, lines: Vec<u8>) -> Result<Result<(), Closed>, Vec<u8>> {
        if self.unwritten.load(Ordering::SeqCst) == 0 {
            if let Ok(out) = Arc::clone(&self.out).try_lock_owned() {
                return Ok(write_now(out, lines));
            }
        }
        Err(lines)
    }

    /// Queues `lines` for the writer task, behind what is queued. Counted only once they are
    /// sure to be queued: a caller that gives up while waiting for room leaves nothing counted.
    async fn enqueue(&self, lines: Vec<u8>) -> Result<(), Closed> {
        let permit = self.queue.reserve().await.map_err(|_| Closed)?;
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        permit.send(lines);
        Ok(())
    }

    /// Hands the batch's lines over until none are left: written at once when nothing queued
    /// is unwritten, else queued (so they keep their place behind what is).
    async fn flush(self) {
        let batch = self.batch.as_ref().expect("a batching sender");
        loop {
            let lines = {
                let mut b = batch.lock().expect("not poisoned");
                if b.lines.is_empty() {
                    b.flushing = false;
                    return;
                }
                std::mem::take(&mut b.lines)
            };
            let handed = match self.write_if_idle(lines) {
                Ok(written) => written,
                Err(lines) => self.enqueue(lines).await,
            };
            if handed.is_err() {
                return self.closed(batch);
            }
        }
    }

    /// The output closed under a flush: what is left goes nowhere (its callers learn it from
    /// the child's stdout ending), and later lines are refused.
    fn closed(&self, batch: &Mutex<Batch>) {
        let mut b = batch.lock().expect("not poisoned");
        b.lines.clear();
        b.flushing = false;
        b.closed = true;
    }
}

/// Writes `line` now if the output takes it whole without waiting; what it does not take (a
/// full pipe, a long line) a task of its own finishes, holding the output, so the line is never
/// cut by another.
fn write_now(
    mut out: tokio::sync::OwnedMutexGuard<Option<Pin<Box<dyn AsyncWrite + Send>>>>,
    line: Vec<u8>,
) -> Result<(), Closed> {
    let Some(w) = out.as_mut() else { return Err(Closed) };
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let written = match w.as_mut().poll_write(&mut cx, &line) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(_)) => {
            *out = None;
            return Err(Closed);
        }
        Poll::Pending => 0,
    };
    if written == line.len() && matches!(w.as_mut().poll_flush(&mut cx), Poll::Ready(Ok(()))) {
        return Ok(());
    }
    tokio::spawn(async move {
        let Some(w) = out.as_mut() else { return };
        if w.write_all(&line[written..]).await.is_err() || w.flush().await.is_err() {
            *out = None;
        }
    });
    Ok(())
}

async fn write_lines(
    out: Output,
    mut rmcp: mpsc::Receiver<Vec<u8>>,
    lane: mpsc::Receiver<Vec<u8>>,
    unwritten: Arc<AtomicUsize>,
) {
    let mut lane = Some(lane);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let mut lines = 1;
        // rmcp's lines first: what rmcp was handed before a lane line (a call's progress
        // before its answer, on Warden's own stdout) is written before it.
        tokio::select! {
            biased;
            m = rmcp.recv() => match m {
                Some(b) => buf.extend_from_slice(&b),
                None => break,
            },
            m = async { lane.as_mut().expect("guarded").recv().await }, if lane.is_some() => match m {
                Some(b) => buf.extend_from_slice(&b),
                None => {
                    lane = None;
                    continue;
                }
            },
        }
        // Whatever else is ready goes out in the same write.
        while buf.len() < 64 * 1024 {
            if let Ok(b) = rmcp.try_recv() {
                buf.extend_from_slice(&b);
            } else if let Some(Ok(b)) = lane.as_mut().map(mpsc::Receiver::try_recv) {
                buf.extend_from_slice(&b);
            } else {
                break;
            }
            lines += 1;
        }
        let mut w = out.lock().await;
        let ok = match w.as_mut() {
            Some(stdin) => stdin.write_all(&buf).await.is_ok() && stdin.flush().await.is_ok(),
            None => false,
        };
        unwritten.fetch_sub(lines, Ordering::SeqCst);
        if !ok {
            *w = None;
            return;
        }
        buf.clear();
    }
    // rmcp closed its side: so does stdin (dropped here), which asks the child to exit.
    let stdin = out.lock().await.take();
    if let Some(mut stdin) = stdin {
        let _ = stdin.shutdown().await;
    }
}

/// Shares `out` between rmcp and a lane of Warden's own, line by line (see [`wire`]): rmcp
/// writes to the returned writer, the lane sends whole lines on the sender, and `out` closes
/// when rmcp's writer does. (Warden's stdio server uses it for its stdout.)
pub fn share_lines<W>(out: W) -> (RmcpWriter, LineSender)
where
    W: AsyncWrite + Send + 'static,
{
    share(out, None)
}

/// rmcp's end of stdin: passes on whole lines only, so the lane's lines go between them, and
/// notes the `_meta` rmcp stamps on its requests (on a child's stdin).
pub struct RmcpWriter {
    tx: PollSender<Vec<u8>>,
    partial: Vec<u8>,
    stamp: Option<Stamp>,
    /// Counted before a line is queued, so the lane's lines never overtake it.
    unwritten: Arc<AtomicUsize>,
}

impl RmcpWriter {
    fn note_stamp(&self, lines: &[u8]) {
        const KEY: &[u8] = b"\"io.modelcontextprotocol/protocolVersion\"";
        let Some(stamp) = self.stamp.as_ref().filter(|s| s.get().is_none()) else { return };
        if memchr::memmem::find(lines, KEY).is_none() {
            return;
        }
        for line in lines.split(|b| *b == b'\n') {
            let Ok(message) = serde_json::from_slice::<Value>(line) else { continue };
            let Some(meta) = message.pointer("/params/_meta").and_then(Value::as_object) else {
                continue;
            };
            let stamped: Map<String, Value> = crate::fast::STAMPED
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), meta.get(*k)?.clone())))
                .collect();
            if message.get("id").is_some() && !stamped.is_empty() {
                let _ = stamp.set(crate::relay::Stamped::new(stamped));
                return;
            }
        }
    }
}

impl AsyncWrite for RmcpWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = ready!(this.tx.poll_reserve(cx)) {
            return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)));
        }
        this.partial.extend_from_slice(buf);
        match this.partial.iter().rposition(|b| *b == b'\n') {
            Some(end) => {
                let rest = this.partial.split_off(end + 1);
                let whole = std::mem::replace(&mut this.partial, rest);
                this.note_stamp(&whole);
                this.unwritten.fetch_add(1, Ordering::SeqCst);
                if this.tx.send_item(whole).is_err() {
                    this.unwritten.fetch_sub(1, Ordering::SeqCst);
                    return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
                }
            }
            None => {
                this.tx.abort_send();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().tx.close();
        Poll::Ready(Ok(()))
    }
}

/// The lane's calls waiting for their answers; the stdout tap hands them over.
#[derive(Default)]
pub(crate) struct Pending {
    calls: Mutex<foldhash::HashMap<u64, oneshot::Sender<Result<Reply, UpstreamError>>>>,
    closed: AtomicBool,
}

impl Pending {
    /// Takes `line` if it is for the lane: an answer to one of its calls (or to one that gave
    /// up: dropped), or progress under one of its tokens (routed through `shared`). Anything
    /// else is rmcp's. An answer's result is handed over as the server wrote it.
    pub(crate) fn take(&self, line: &[u8], shared: &Shared) -> bool {
        if crate::finder!(b"\"wf-").find(line).is_none() {
            return false;
        }
        if let Some(m) = Message::read(line) {
            return match m.method().as_deref() {
                None => self.answered(m.id().as_deref(), || m.outcome()),
                Some("notifications/progress") => {
                    serde_json::from_slice(line).is_ok_and(|v| self.progress(&v, shared))
                }
                Some(_) => false,
            };
        }
        // What the text reading leaves to the tree (a key given twice).
        let Ok(message) = serde_json::from_slice::<Value>(line) else { return false };
        match message.get("method").and_then(Value::as_str) {
            None => {
                let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
                self.answered(id.as_deref(), || match message {
                    Value::Object(m) => crate::fast::outcome(m),
                    _ => Err(UpstreamError::Protocol("an answer that is not an object".into())),
                })
            }
            Some("notifications/progress") => self.progress(&message, shared),
            Some(_) => false,
        }
    }

    /// Hands `outcome` to lane call `id`, if `id` is one of the lane's.
    fn answered(
        &self,
        id: Option<&str>,
        outcome: impl FnOnce() -> Result<Reply, UpstreamError>,
    ) -> bool {
        let Some(n) = id.and_then(lane_number) else { return false };
        let waiting = self.calls.lock().expect("not poisoned").remove(&n);
        if let Some(tx) = waiting {
            let _ = tx.send(outcome());
        }
        true
    }

    /// Routes a progress notification under one of the lane's tokens.
    fn progress(&self, message: &Value, shared: &Shared) -> bool {
        let Some((token, p)) = message.get("params").and_then(Progress::from_params) else {
            return false;
        };
        if !matches!(&token.0, NumberOrString::String(s) if lane_number(s).is_some()) {
            return false;
        }
        shared.progress(&token, p);
        true
    }

    /// The child's stdout ended: every waiting call fails now, and later ones at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.calls.lock().expect("not poisoned").clear();
    }

    fn insert(&self, n: u64) -> Result<Waiting<'_>, UpstreamError> {
        let (tx, rx) = oneshot::channel();
        let mut calls = self.calls.lock().expect("not poisoned");
        if self.closed.load(Ordering::SeqCst) {
            return Err(UpstreamError::Closed(Some("stdout closed".into())));
        }
        calls.insert(n, tx);
        Ok(Waiting { pending: self, n, rx })
    }
}

fn lane_number(id: &str) -> Option<u64> {
    id.strip_prefix(PREFIX)?.parse().ok()
}

/// One call's place in [`Pending`], given up when the call ends however it ends.
struct Waiting<'a> {
    pending: &'a Pending,
    n: u64,
    rx: oneshot::Receiver<Result<Reply, UpstreamError>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.calls.lock().expect("not poisoned").remove(&self.n);
    }
}

/// Sends `tools/call` straight to one child.
pub(crate) struct Lane {
    out: LineSender,
    stamp: Stamp,
    /// Protocol 2026-07-28: every request carries rmcp's stamp, so none goes before rmcp's first.
    modern: bool,
    pending: Arc<Pending>,
    shared: Arc<Shared>,
    next: AtomicU64,
    /// The home the child's stdout is read on ([`crate::home`]), if it has one.
    pub(crate) home: Option<usize>,
}

impl Lane {
    pub(crate) fn new(out: Out, modern: bool, pending: Arc<Pending>, shared: Arc<Shared>) -> Self {
        let Out { lines, stamp } = out;
        Self { out: lines, stamp, modern, pending, shared, next: AtomicU64::new(1), home: None }
    }

    /// Whether this call takes the lane: a `tools/call`, and on a 2026-07-28 session only
    /// once rmcp has shown what its requests carry.
    pub(crate) fn takes(&self, call: &Call) -> bool {
        call.method == "tools/call"
            && (!self.modern || self.stamp.get().is_some())
            && crate::fast_path_enabled()
    }

    /// Forwards one call (see the module documentation).
    pub(crate) async fn request(&self, call: Call) -> Result<Reply, UpstreamError> {
        #[cfg(test)]
        LANE_CALLS.with(|c| c.set(c.get() + 1));
        let Call { method, params, arguments, timeout, deadline, origin, cancel, progress, .. } =
            call;
        if let Some(home) = self.home {
            crate::home::note(home);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{PREFIX}{n}");
        let mut in_flight = self.shared.begin(origin);
        let stamp = self.stamp.get().filter(|_| self.modern);
        let (params, watching) =
            self.shared.outgoing(&mut in_flight, &id, (params, arguments), stamp, progress);
        let mut line = crate::relay::request_bytes(&id, &method, &params)?;
        line.push(b'\n');
        let mut waiting = self.pending.insert(n)?;
        let now = Instant::now();
        // As on rmcp's path: a call that reports progress is bounded by its deadline, and each
        // update restarts its timeout; any other by its timeout.
        let hard = if watching {
            now + deadline.map_or(timeout * 10, |d| d.saturating_duration_since(now))
        } else {
            now + timeout
        };
        let mut limit = hard.min(now + timeout);
        let mut heard = 0;
        let sent = tokio::select! {
            r = self.out.send(line) => r.map_err(|_| UpstreamError::Closed(None)),
            _ = tokio::time::sleep_until(limit) => Err(UpstreamError::Timeout(timeout)),
            _ = cancel.cancelled() => Err(UpstreamError::Cancelled),
        };
        sent?;
        let answer = loop {
            tokio::select! {
                r = &mut waiting.rx => break r.unwrap_or(Err(UpstreamError::Closed(None))),
                _ = cancel.cancelled() => {
                    self.cancelled(&id, "cancelled by the client").await;
                    return Err(UpstreamError::Cancelled);
                }
                _ = tokio::time::sleep_until(limit) => {
                    let updates = self.shared.progress_count(&in_flight);
                    if updates > heard && limit < hard {
                        heard = updates;
                        limit = hard.min(Instant::now() + timeout);
                        continue;
                    }
                    self.cancelled(&id, "request timeout").await;
                    return Err(UpstreamError::Timeout(timeout));
                }
            }
        };
        drop(in_flight);
        answer
    }

    /// Tells the server to stop working on call `id`.
    async fn cancelled(&self, id: &str, reason: &str) {
        let note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": id, "reason": reason },
        });
        let mut line = note.to_string().into_bytes();
        line.push(b'\n');
        let _ = tokio::time::timeout(NOTE_WAIT, self.out.send(line)).await;
    }
}

#[cfg(test)]
#[path = "stdio_lane_tests.rs"]
mod tests;
