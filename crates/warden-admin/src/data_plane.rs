//! The HTTP data plane: the listener's connections are served by a few threads, each running a
//! current-thread runtime of its own (nginx's model of one event loop per core).
//!
//! Why: on tokio's multi-thread runtime a proxied call woke a second worker twice (the
//! scheduler's "searching" protocol, a `futex` each, on the client's request and on the
//! upstream's answer), and on a saturated two-core machine those wakes cost more than the
//! second worker brought (docs/perf/gateway-profile.md, sessions 14–16). Here a connection
//! lives on one thread (from accept to close, or until it moves to its stdio child's, below):
//! the request is read, the upstream written and read (the HTTP upstream client keeps its
//! connections per runtime) and the answer written by one event loop, with no hand-off between
//! threads.
//!
//! One task on the caller's runtime accepts, and hands each connection to the thread serving
//! the fewest at that moment (keep-alive connections stay where they land, so counting them
//! balances better than a shared accept queue would). Every route is served there, by the
//! listener's own HTTP/1 loop (`crate::h1`): the MCP endpoints, the API, the dashboard and its
//! streams.
//!
//! A stdio child's stdout is read on one of these threads (`warden_upstream::home`). A
//! connection whose calls keep going to a child read on another thread moves there between two
//! requests ([`Peers::hand`]): its socket leaves this thread's reactor for that one's, with
//! whatever it had sent that was not yet served, so its calls need no wake-up across threads.
//!
//! The threads' runtimes outlive serving: after `stop` their servers close (graceful: idle
//! connections at once, the others after the answer in progress), but the runtimes keep
//! running until [`DataPlane::release`] (or the value is dropped), because sockets a handler
//! opened there — an upstream's pooled connection, a database connection the pool made during
//! a request — are registered with that runtime's reactor and may still be used by the rest of
//! Warden while it stops.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::front::Front;

/// How long a thread's runtime gets to end its tasks once released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);
/// A serving thread always has a timer due within this (see [`anchor`]).
const ANCHOR: Duration = Duration::from_millis(500);

/// The serving threads of one listener.
pub struct DataPlane {
    /// One per thread: fires when that thread's server has stopped.
    served: Vec<oneshot::Receiver<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The threads' runtimes, for work that should live where the calls are served.
    handles: Vec<tokio::runtime::Handle>,
    /// Each thread's share of the listener, until [`DataPlane::serve`] hands it over.
    assign: Vec<oneshot::Sender<Assignment>>,
    /// Stops serving (a child of the caller's token once serving, also cancelled on drop).
    stop: CancellationToken,
    /// Lets the runtimes end.
    release: CancellationToken,
    /// Each thread's open connections.
    open: Vec<Arc<AtomicUsize>>,
    /// The task accepting on the listener (which it holds until it ends).
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

/// Each serving thread's count of open connections.
#[derive(Clone, Debug)]
pub struct Connections(Vec<Arc<AtomicUsize>>);

impl Connections {
    /// How many connections each thread serves now, by thread.
    pub fn per_thread(&self) -> Vec<usize> {
        self.0.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }
}

/// What a thread serves: its connections, the routes, until when, and where its connections
/// may move.
type Assignment = (Handed, Front, CancellationToken, Peers);

/// One thread's share: where its connections are sent and how many it has open.
struct Worker {
    handoff: mpsc::UnboundedSender<Arrival>,
    open: Arc<AtomicUsize>,
}

impl Worker {
    /// One more of this thread's open connections.
    fn count(&self) -> Count {
        self.open.fetch_add(1, Ordering::Relaxed);
        Count(Arc::clone(&self.open))
    }
}

/// A connection handed to a thread, counted among its open ones (until dropped, if it is never
/// served): from the acceptor, or moved from another thread with what it had sent and was not
/// yet served.
struct Arrival {
    tcp: std::net::TcpStream,
    read: BytesMut,
    count: Count,
}

/// Every thread's share, and which is this thread's: a connection moves with them.
#[derive(Clone)]
pub(crate) struct Peers {
    me: usize,
    workers: Arc<[Worker]>,
}

impl Peers {
    /// Whether `home` is another serving thread.
    pub(crate) fn elsewhere(&self, home: usize) -> bool {
        home != self.me && home < self.workers.len()
    }

    /// Moves the connection `io` to thread `home`, with `read` (bytes it sent that were not
    /// served yet). The connection is closed if that thread no longer takes connections (it
    /// stopped serving; one handed to it as it stopped is still served, see `serve_thread`).
    pub(crate) fn hand(&self, home: usize, io: Counted, read: BytesMut) {
        let Counted { io, count } = io;
        drop(count);
        let Some(w) = self.workers.get(home) else { return };
        let Ok(tcp) = io.into_std() else { return };
        // Not handed over: dropped with its count.
        let _ = w.handoff.send(Arrival { tcp, read, count: w.count() });
    }
}

impl DataPlane {
    /// Starts `threads` threads (at least one), each with its runtime, serving nothing yet:
    /// their runtimes can take work (a stdio child's reader) before the listener is served.
    pub fn start(threads: usize) -> io::Result<Self> {
        let mut plane = Self {
            served: vec![],
            threads: vec![],
            handles: vec![],
            assign: vec![],
            stop: CancellationToken::new(),
            release: CancellationToken::new(),
            open: vec![],
            acceptor: None,
        };
        for n in 0..threads.max(1) {
            let (assign_tx, assign_rx) = oneshot::channel::<Assignment>();
            let (served_tx, served_rx) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("warden-http-blocking")
                .build()?;
            plane.handles.push(runtime.handle().clone());
            let release = plane.release.clone();
            let thread =
                std::thread::Builder::new().name(format!("warden-http-{n}")).spawn(move || {
                    runtime.block_on(async move {
                        tokio::spawn(anchor(release.clone()));
                        let assigned = tokio::select! {
                            a = assign_rx => a.ok(),
                            () = release.cancelled() => None,
                        };
                        if let Some((handed, front, stop, peers)) = assigned {
                            serve_thread(handed, front, stop, peers).await;
                        }
                        let _ = served_tx.send(());
                        release.cancelled().await;
                    });
                    runtime.shutdown_timeout(RELEASE_TIMEOUT);
                })?;
            plane.served.push(served_rx);
            plane.threads.push(thread);
            plane.assign.push(assign_tx);
            plane.open.push(Arc::new(AtomicUsize::new(0)));
        }
        Ok(plane)
    }

    /// The threads' runtimes.
    pub fn handles(&self) -> Vec<tokio::runtime::Handle> {
        self.handles.clone()
    }

    /// Serves `front` (a router, or `crate::front` with the fast lane's door) on `listener`
    /// until `stop` (once; later calls do nothing).
    pub fn serve(
        &mut self,
        listener: TcpListener,
        front: impl Into<Front>,
        stop: &CancellationToken,
    ) {
        if self.assign.is_empty() {
            return;
        }
        let front = front.into();
        self.stop = stop.child_token();
        let (mut workers, mut receivers) = (Vec::new(), Vec::new());
        for open in &self.open {
            let (handoff, rx) = mpsc::unbounded_channel();
            receivers.push(Handed { rx });
            workers.push(Worker { handoff, open: Arc::clone(open) });
        }
        let workers: Arc<[Worker]> = workers.into();
        for (me, (assign, handed)) in self.assign.drain(..).zip(receivers).enumerate() {
            let peers = Peers { me, workers: Arc::clone(&workers) };
            let _ = assign.send((handed, front.clone(), self.stop.clone(), peers));
        }
        self.acceptor = Some(tokio::spawn(accept(listener, workers, self.stop.clone())));
    }

    /// Waits (at most `timeout`) until every thread has stopped serving and the listener is
    /// closed (after `stop`).
    pub async fn stopped(&mut self, timeout: Duration) {
        let acceptor = self.acceptor.take();
        let all = async {
            futures::future::join_all(self.served.iter_mut()).await;
            if let Some(a) = acceptor {
                let _ = a.await;
            }
        };
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// How many connections each thread serves now.
    #[cfg(test)]
    pub(crate) fn open_connections(&self) -> Vec<usize> {
        self.connections().per_thread()
    }

    /// Each thread's open connections, read when asked (`/metrics`).
    pub fn connections(&self) -> Connections {
        Connections(self.open.clone())
    }

    /// Ends the threads' runtimes (once the rest of Warden no longer needs what they drive) and
    /// waits for the threads.
    pub async fn release(mut self) {
        self.stop.cancel();
        self.release.cancel();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop.cancel();
        self.release.cancel();
    }
}

/// Keeps a timer due within [`ANCHOR`] on the thread's runtime until `release`. tokio's time
/// driver wakes its loop (an eventfd write, and an `epoll_wait` that returns at once) whenever a
/// new timer is due before the time the loop last parked for — with no timer at all, every new
/// one: a call's timeout and the JSON window, two a call. With this one pending, a call's
/// timers (a second or more) are never the earliest. Two wake-ups a second per thread.
async fn anchor(release: CancellationToken) {
    let mut tick = tokio::time::interval(ANCHOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = release.cancelled() => return,
        }
    }
}

/// Accepts until `stop`, handing each connection to the thread with the fewest open.
async fn accept(listener: TcpListener, workers: Arc<[Worker]>, stop: CancellationToken) {
    loop {
        let (tcp, _addr) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        // TCP_NODELAY: answers are written whole, and waiting for an ACK only adds latency.
        let _ = tcp.set_nodelay(true);
        let Some(w) = workers.iter().min_by_key(|w| w.open.load(Ordering::Relaxed)) else {
            return;
        };
        // The socket leaves the acceptor's reactor here, and joins the thread's there. Not
        // handed over (that thread stopped serving): dropped with its count.
        let Ok(tcp) = tcp.into_std() else { continue };
        let _ = w.handoff.send(Arrival { tcp, read: BytesMut::new(), count: w.count() });
    }
}

/// As `axum::serve`: a connection that failed before it was accepted is skipped; anything else
/// (out of file descriptors, say) is logged and accepting pauses a second.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A serving thread's listener: the connections handed to it (by the acceptor, or moved from
/// another thread).
struct Handed {
    rx: mpsc::UnboundedReceiver<Arrival>,
}

impl Handed {
    /// The next connection handed over, with what it sent that is not served yet (never, once
    /// the acceptor has stopped and no thread is serving: serving ends with `stop`).
    async fn next(&mut self) -> (Counted, BytesMut) {
        loop {
            let Some(arrival) = self.rx.recv().await else {
                return std::future::pending().await;
            };
            if let Some(served) = Self::taken(arrival) {
                return served;
            }
        }
    }

    /// The arrival's socket on this thread's reactor, still counted until the connection ends
    /// or moves on; `None` (uncounted) if it cannot join it.
    fn taken(Arrival { tcp, read, count }: Arrival) -> Option<(Counted, BytesMut)> {
        match TcpStream::from_std(tcp) {
            Ok(io) => Some((Counted { io, count }, read)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve an accepted connection");
                None
            }
        }
    }
}

/// Serves a thread's connections (each on a task of its own, `crate::h1`) until `stop`, then
/// waits for those still open to end (graceful: the answers in progress are written).
async fn serve_thread(mut handed: Handed, front: Front, stop: CancellationToken, peers: Peers) {
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (io, read) = tokio::select! {
            () = stop.cancelled() => break,
            io = handed.next() => io,
        };
        conns.spawn(crate::h1::serve(io, read, front.clone(), stop.clone(), peers.clone()));
    }
    // No more arrivals; those handed over as serving stopped (a connection moving here between
    // two requests) are served as the others are: their request pending, if any, then closed.
    handed.rx.close();
    while let Ok(arrival) = handed.rx.try_recv() {
        if let Some((io, read)) = Handed::taken(arrival) {
            conns.spawn(crate::h1::serve(io, read, front.clone(), stop.clone(), peers.clone()));
        }
    }
    conns.close();
    conns.wait().await;
}

/// A connection counted among its thread's open ones until it is dropped (or moves on).
pub(crate) struct Counted {
    pub(crate) io: TcpStream,
    count: Count,
}

/// One of a thread's open connections, until dropped.
struct Count(Arc<AtomicUsize>);

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "data_plane_tests.rs"]
mod tests;
