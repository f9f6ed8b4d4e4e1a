//! The data plane over real sockets: which thread serves a connection, and how long what a
//! handler opened there keeps working.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f).await.expect("in time")
}

/// One keep-alive connection to the data plane.
struct Client {
    tcp: TcpStream,
    /// Read and not yet taken as an answer.
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        Self { tcp: bounded(TcpStream::connect(addr)).await.unwrap(), buf: Vec::new() }
    }

    /// GETs `path` and returns the body (the handlers answer with a content length).
    async fn get(&mut self, path: &str) -> String {
        let head = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        self.tcp.write_all(head.as_bytes()).await.unwrap();
        self.next_answer().await
    }

    /// Reads the next answer and returns its body.
    async fn next_answer(&mut self) -> String {
        let buf = &mut self.buf;
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a content length");
                if buf.len() >= end + 4 + length {
                    let answer: Vec<u8> = buf.drain(..end + 4 + length).collect();
                    return String::from_utf8(answer[end + 4..].to_vec()).unwrap();
                }
            }
            let mut chunk = [0u8; 1024];
            let n = bounded(self.tcp.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "the connection closed before its answer");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Answers with the name of the thread that serves the request.
fn who() -> Router {
    Router::new().route("/who", get(|| async { std::thread::current().name().unwrap().to_owned() }))
}

/// `app` served on `l` by `threads` threads until `stop`.
fn serve(l: TcpListener, app: Router, stop: &CancellationToken, threads: usize) -> DataPlane {
    let mut plane = DataPlane::start(threads).expect("the threads start");
    plane.serve(l, app, stop);
    plane
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Waits until the threads serve `want` connections.
async fn settle(plane: &DataPlane, want: &[usize]) {
    for _ in 0..200 {
        if plane.open_connections() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("open connections {:?}, not {want:?}", plane.open_connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_served_by_one_thread_and_goes_to_the_least_busy() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let plane = serve(l, who(), &stop, 2);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(addr).await;
        let name = c.get("/who").await;
        clients.push((c, name));
    }
    settle(&plane, &[2, 2]).await;
    // Every request of a connection is served where it landed, on a thread of the plane.
    for (c, name) in &mut clients {
        assert!(name.starts_with("warden-http-"), "{name}");
        for _ in 0..5 {
            assert_eq!(&c.get("/who").await, name);
        }
    }
    let first = clients[0].1.clone();
    let on_first = clients.iter().filter(|(_, n)| *n == first).count();
    assert_eq!(
        on_first,
        2,
        "two connections on each thread: {:?}",
        clients.iter().map(|c| &c.1).collect::<Vec<_>>()
    );
    // The first thread's connections close: the next two go there.
    clients.retain(|(_, n)| *n != first);
    let closed = if first == "warden-http-0" { [0, 2] } else { [2, 0] };
    settle(&plane, &closed).await;
    for _ in 0..2 {
        let mut c = Client::connect(addr).await;
        assert_eq!(c.get("/who").await, first);
        clients.push((c, first.clone()));
    }
    settle(&plane, &[2, 2]).await;
    drop(clients);
    settle(&plane, &[0, 0]).await;
    stop.cancel();
    plane.release().await;
}

/// A socket a handler opened lives on its thread's reactor: it keeps working after the servers
/// stop (Warden may still use it while it stops: a pooled upstream or database connection),
/// until the plane is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_handler_opened_works_until_release_and_new_connections_stop_with_serving() {
    // An echo server on the test's runtime.
    let (echo, echo_addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                    if tcp.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let kept: Arc<Mutex<Option<TcpStream>>> = Arc::default();
    let keep = Arc::clone(&kept);
    let app = Router::new().route(
        "/open",
        get(move || async move {
            let tcp = TcpStream::connect(echo_addr).await.unwrap();
            *keep.lock().unwrap() = Some(tcp);
            "opened".to_owned()
        }),
    );
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let mut plane = serve(l, app, &stop, 1);
    let mut c = Client::connect(addr).await;
    assert_eq!(c.get("/open").await, "opened");
    drop(c);
    stop.cancel();
    bounded(plane.stopped(Duration::from_secs(5))).await;
    // Serving has stopped: nothing answers on the address any more.
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed after stop");
    // The handler's socket still works from here.
    let mut tcp = kept.lock().unwrap().take().unwrap();
    tcp.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    bounded(tcp.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");
    // Released, its reactor is gone with its runtime.
    bounded(plane.release()).await;
    let after = async {
        tcp.write_all(b"pong").await?;
        tcp.read_exact(&mut buf).await.map(|_| ())
    };
    assert!(bounded(after).await.is_err(), "the socket's reactor has ended");
}

/// The serving thread's index, from its name (`warden-http-N`).
fn this_thread() -> usize {
    let name = std::thread::current().name().unwrap().to_owned();
    name.strip_prefix("warden-http-").and_then(|n| n.parse().ok()).expect("a serving thread")
}

/// `/other` notes the other thread as its call's home (as a stdio lane call to a child read
/// there does: `warden_upstream::home`), `/here` notes this one; both answer with the thread
/// that served them.
fn homes() -> Router {
    let other = || async {
        let me = this_thread();
        warden_upstream::home::note(1 - me);
        me.to_string()
    };
    let here = || async {
        let me = this_thread();
        warden_upstream::home::note(me);
        me.to_string()
    };
    Router::new().route("/other", get(other)).route("/here", get(here))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_calls_are_answered_on_another_thread_moves_there() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let plane = serve(l, homes(), &stop, 2);
    let mut c = Client::connect(addr).await;
    let first = c.get("/other").await;
    // One call alone does not move it, nor does a call at home in between.
    assert_eq!(c.get("/here").await, first);
    assert_eq!(c.get("/other").await, first);
    assert_eq!(c.get("/here").await, first);
    settle(&plane, if first == "0" { &[1, 0] } else { &[0, 1] }).await;
    // Two in a row do, after the second's answer.
    assert_eq!(c.get("/other").await, first);
    assert_eq!(c.get("/other").await, first);
    let moved = c.get("/here").await;
    assert_ne!(moved, first, "served on the other thread after two calls answered there");
    settle(&plane, if first == "0" { &[0, 1] } else { &[1, 0] }).await;
    for _ in 0..3 {
        assert_eq!(c.get("/here").await, moved);
    }
    drop(c);
    settle(&plane, &[0, 0]).await;
    stop.cancel();
    plane.release().await;
}

/// What the client sent before the move and was not served yet (a pipelined request) moves
/// with the connection and is answered there, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pipelined_before_a_move_are_answered_after_it() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let plane = serve(l, homes(), &stop, 2);
    let mut tcp = bounded(TcpStream::connect(addr)).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    let all = [get("/other"), get("/other"), get("/here"), get("/here")].concat();
    tcp.write_all(all.as_bytes()).await.unwrap();
    let mut c = Client { tcp, buf: Vec::new() };
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(c.next_answer().await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_ne!(answers[1], answers[2], "moved after the second: {answers:?}");
    assert_eq!(answers[2], answers[3]);
    drop(c);
    settle(&plane, &[0, 0]).await;
    stop.cancel();
    plane.release().await;
}
