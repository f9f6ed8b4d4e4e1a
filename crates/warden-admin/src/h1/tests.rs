//! The loop over real sockets, with a raw client: keep-alive and pipelining, answers of known
//! and unknown length, a client that goes away, and what is handed to hyper.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::DataPlane;

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f).await.expect("in time")
}

/// Set when the `/hold` handler's future is dropped.
type Dropped = Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>;

struct Guard(Dropped);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

fn app(dropped: Dropped) -> Router {
    let stream = || async {
        let parts = futures::stream::unfold(0, |n| async move {
            if n == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            Some((Ok::<_, std::convert::Infallible>(format!("part {n};")), n + 1))
        });
        Body::from_stream(parts)
    };
    let echo = post(|body: String| async move { format!("got {body}") });
    Router::new()
        .route("/n", get(|| async { "hello" }))
        // (Bound first: warden-app's guard tests scan this source for state-changing routes.)
        .route("/echo", echo)
        .route("/stream", get(stream))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/late",
            get(|| async {
                let late = futures::stream::once(async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok::<_, std::convert::Infallible>("late")
                });
                Body::from_stream(late)
            }),
        )
        .route(
            "/hold",
            get(move || async move {
                let _guard = Guard(dropped);
                std::future::pending::<()>().await;
            }),
        )
}

struct Served {
    addr: SocketAddr,
    stop: CancellationToken,
    _plane: DataPlane,
}

async fn served(dropped: Dropped) -> Served {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = CancellationToken::new();
    let mut plane = DataPlane::start(1).expect("the thread starts");
    plane.serve(l, app(dropped), &stop);
    Served { addr, stop, _plane: plane }
}

/// Sends `bytes` and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = bounded(TcpStream::connect(addr)).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    bounded(tcp.read_to_end(&mut out)).await.unwrap();
    out
}

/// One answer: status, head (lower case), body (chunks joined).
type Answer = (u16, String, Vec<u8>);

/// The answers in `bytes`, read by their framing.
fn answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole head");
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap().to_ascii_lowercase();
        bytes = &bytes[end + 4..];
        let status = head[9..12].parse().unwrap();
        let field = |name: &str| {
            head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
        };
        let mut body = Vec::new();
        if let Some(n) = field("content-length") {
            let n: usize = n.parse().unwrap();
            body.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        } else if field("transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let line = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
                let size = usize::from_str_radix(std::str::from_utf8(&bytes[..line]).unwrap(), 16);
                let size = size.unwrap();
                bytes = &bytes[line + 2..];
                body.extend_from_slice(&bytes[..size]);
                assert_eq!(&bytes[size..size + 2], b"\r\n");
                bytes = &bytes[size + 2..];
                if size == 0 {
                    break;
                }
            }
        }
        out.push((status, head, body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_on_one_connection_are_answered_in_order() {
    let s = served(Dropped::default()).await;
    let bytes = exchange(
        s.addr,
        b"GET /n HTTP/1.1\r\nhost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc\
          GET /stream HTTP/1.1\r\nhost: x\r\n\r\n\
          GET /empty HTTP/1.1\r\nhost: x\r\n\r\n\
          GET /missing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let got = answers(&bytes);
    let summary: Vec<_> =
        got.iter().map(|(s, _, b)| (*s, String::from_utf8_lossy(b).into_owned())).collect();
    assert_eq!(
        summary,
        [
            (200, "hello".to_owned()),
            (200, "got abc".to_owned()),
            (200, "part 0;part 1;part 2;".to_owned()),
            (204, String::new()),
            (404, String::new()),
        ]
    );
    assert!(got[0].1.contains("\r\ncontent-length: 5"), "{}", got[0].1);
    assert!(got[0].1.contains("\r\ndate: "), "{}", got[0].1);
    assert!(got[2].1.contains("transfer-encoding: chunked"), "{}", got[2].1);
    assert!(got[4].1.contains("connection: close"), "{}", got[4].1);
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_split_across_writes_is_answered_once_whole() {
    let s = served(Dropped::default()).await;
    let mut tcp = bounded(TcpStream::connect(s.addr)).await.unwrap();
    let request =
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nwhole";
    for part in request.chunks(7) {
        tcp.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut out = Vec::new();
    bounded(tcp.read_to_end(&mut out)).await.unwrap();
    let got = answers(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2, b"got whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_drops_its_answer() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = served(Arc::new(Mutex::new(Some(tx)))).await;
    let mut tcp = bounded(TcpStream::connect(s.addr)).await.unwrap();
    tcp.write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(tcp);
    bounded(rx).await.expect("the handler's future was dropped when the client went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_loop_does_not_serve_hyper_answers_on_the_same_connection() {
    let s = served(Dropped::default()).await;
    // A served request first, then a chunked body (hyper's from there on), then another.
    let bytes = exchange(
        s.addr,
        b"GET /n HTTP/1.1\r\nhost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /n HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let bodies: Vec<_> = answers(&bytes).into_iter().map(|a| (a.0, a.2)).collect();
    assert_eq!(
        bodies,
        [(200, b"hello".to_vec()), (200, b"got abc".to_vec()), (200, b"hello".to_vec())]
    );
    // HTTP/1.0, HEAD, and a malformed head.
    let old = answers(&exchange(s.addr, b"GET /n HTTP/1.0\r\n\r\n").await);
    assert_eq!((old[0].0, old[0].2.as_slice()), (200, &b"hello"[..]));
    let head = exchange(s.addr, b"HEAD /n HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head}");
    let bad = exchange(s.addr, b"GET /n HTTP/1.1\r\nbad header\r\n\r\n").await;
    assert!(bad.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_an_idle_connection() {
    let s = served(Dropped::default()).await;
    let mut tcp = bounded(TcpStream::connect(s.addr)).await.unwrap();
    tcp.write_all(b"GET /n HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = bounded(tcp.read(&mut buf)).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    s.stop.cancel();
    let n = bounded(tcp.read(&mut buf)).await.unwrap();
    assert_eq!(n, 0, "closed once serving stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_head_is_written_before_its_first_data() {
    let s = served(Dropped::default()).await;
    let mut tcp = bounded(TcpStream::connect(s.addr)).await.unwrap();
    tcp.write_all(b"GET /late HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_millis(1500), tcp.read(&mut buf))
        .await
        .expect("the head before the data (3 s later)")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head}");
    s.stop.cancel();
}
