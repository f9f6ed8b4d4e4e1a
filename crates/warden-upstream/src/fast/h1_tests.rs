//! The in-task HTTP/1 client against a raw socket server that counts what it sees.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::H1;

/// How the raw server answers each request.
#[derive(Clone, Copy)]
enum Answer {
    /// A JSON body with a length; the connection stays open.
    Json,
    /// As `Json`, then the server closes the connection (without saying so).
    JsonThenClose,
    /// A chunked body whose first chunk comes and whose end never does.
    Unfinished,
    /// No answer: the connection is closed as soon as it is accepted.
    CloseAtOnce,
    /// A chunked body with a chunk size that is not hexadecimal.
    Garbled,
}

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

async fn server(answer: Answer) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp?x=1", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(connection(tcp, answer, Arc::clone(&counts)));
        }
    });
    (url, seen)
}

/// Serves requests on one connection: reads each head and its `Content-Length` body.
async fn connection(mut tcp: TcpStream, answer: Answer, seen: Arc<Seen>) {
    if matches!(answer, Answer::CloseAtOnce) {
        return;
    }
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("post /mcp?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        seen.requests.fetch_add(1, Ordering::SeqCst);
        match answer {
            Answer::Json | Answer::JsonThenClose => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(&[head.as_bytes(), &body[..]].concat()).await;
                if matches!(answer, Answer::JsonThenClose) {
                    return;
                }
            }
            Answer::CloseAtOnce => unreachable!("closed before reading"),
            Answer::Garbled => {
                let head =
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
                let _ = tcp.write_all(head.as_bytes()).await;
            }
            Answer::Unfinished => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
                let _ = tcp.write_all(head.as_bytes()).await;
                // Keeps the connection open, never ending the body.
                let mut rest = [0u8; 1];
                let _ = tcp.read(&mut rest).await;
                return;
            }
        }
    }
}

/// The client for `url` whatever the environment says (a proxy variable on the test machine).
fn client(url: &str) -> H1 {
    H1::with_limit(&reqwest::Url::parse(url).unwrap(), 1024).expect("a plain-HTTP URL")
}

/// Posts `text` and reads the whole answer.
async fn post(h1: &H1, text: &str) -> Result<(u16, String), String> {
    let answer = h1
        .post(&HeaderMap::new(), bytes::Bytes::from(text.to_owned()))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = answer.status;
    let mut body = Vec::new();
    let mut chunks = answer.body;
    while let Some(chunk) = chunks.next().await {
        body.extend_from_slice(&chunk?);
    }
    Ok((status, String::from_utf8(body).unwrap()))
}

fn bounded<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(10), f)
}

#[tokio::test]
async fn sequential_posts_share_one_connection() {
    let (url, seen) = server(Answer::Json).await;
    let h1 = client(&url);
    for i in 0..20 {
        let (status, body) = bounded(post(&h1, &format!("call {i}"))).await.unwrap().unwrap();
        assert_eq!((status, body.as_str()), (200, format!("call {i}").as_str()));
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 20);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced_and_no_request_is_sent_twice() {
    let (url, seen) = server(Answer::JsonThenClose).await;
    let h1 = client(&url);
    for i in 0..10 {
        let (status, body) = bounded(post(&h1, &format!("call {i}"))).await.unwrap().unwrap();
        assert_eq!((status, body), (200, format!("call {i}")));
        // The close arrives before the next call (a close racing a request already written is
        // the caller's error, as on reqwest: a call is not sent twice).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 10, "each call reached the server once");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn an_answer_dropped_before_its_end_does_not_go_back_to_the_pool() {
    let (url, seen) = server(Answer::Unfinished).await;
    let h1 = client(&url);
    for _ in 0..3 {
        let answer = bounded(h1.post(&HeaderMap::new(), "x".into())).await.unwrap().unwrap();
        let mut body = answer.body;
        let first = bounded(body.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(&first[..], b"hello");
        assert!(tokio::time::timeout(Duration::from_millis(50), body.next()).await.is_err());
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        3,
        "a half-read answer's connection is closed"
    );
}

#[tokio::test]
async fn calls_past_the_limit_wait_for_one_to_end() {
    let (url, seen) = server(Answer::Unfinished).await;
    let h1 = H1::with_limit(&reqwest::Url::parse(&url).unwrap(), 2).unwrap();
    let first = bounded(h1.post(&HeaderMap::new(), "1".into())).await.unwrap().unwrap();
    let _second = bounded(h1.post(&HeaderMap::new(), "2".into())).await.unwrap().unwrap();
    let headers = HeaderMap::new();
    let third = h1.post(&headers, "3".into());
    tokio::pin!(third);
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut third).await.is_err());
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2, "the third waits, unsent");
    drop(first);
    bounded(third).await.unwrap().unwrap();
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connection_is_an_error_with_its_cause() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    drop(listener);
    let e = bounded(post(&client(&url), "x")).await.unwrap().unwrap_err();
    assert!(e.to_ascii_lowercase().contains("refused"), "{e}");
}

#[test]
fn only_plain_http_urls_without_credentials_use_it() {
    let plain = |u: &str| H1::with_limit(&reqwest::Url::parse(u).unwrap(), 1).is_some();
    assert!(!plain("https://example.com/mcp"));
    // reqwest sends a URL's user and password as `Authorization: Basic`; this client does not.
    assert!(!plain("http://user:secret@example.com/mcp"));
    assert!(!plain("http://user@example.com/mcp"));
    assert!(plain("http://[::1]:8080/mcp"));
    assert!(plain("http://localhost/mcp?k=v"));
}

/// An idle connection the server closed is seen as closed before a request is written on it
/// (the call then takes a new one at once, instead of failing or waiting for its timeout);
/// one the server keeps open is usable.
#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_used() {
    let (closing, _) = server(Answer::CloseAtOnce).await;
    let (open, _) = server(Answer::Json).await;
    let closed = bounded(client(&closing).connect()).await.unwrap().unwrap();
    let kept = bounded(client(&open).connect()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!closed.usable());
    assert!(kept.usable());
}

/// An answer the server cuts short, or frames as no HTTP/1.1 server would, is the call's error
/// with its cause, and its connection is not reused.
#[tokio::test]
async fn a_broken_answer_is_an_error_and_its_connection_is_dropped() {
    let (url, seen) = server(Answer::Garbled).await;
    let h1 = client(&url);
    for _ in 0..2 {
        let e = bounded(post(&h1, "x")).await.unwrap().unwrap_err();
        assert!(e.contains("chunk size"), "{e}");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

/// Warden's HTTP threads each run a runtime of their own: a call takes a pooled connection of
/// its own runtime (whose reactor its socket answers to), never another's, so its I/O is never
/// handed between threads. The server runs on a third runtime, as an upstream would.
#[test]
fn each_runtime_keeps_its_own_connections() {
    let current = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (url, seen) = server_rt.block_on(server(Answer::Json));
    let h1 = Arc::new(client(&url));
    let (a, b) = (current(), current());
    let call = |rt: &tokio::runtime::Runtime, text: &str| {
        let (status, body) =
            rt.block_on(async { bounded(post(&h1, text)).await }).unwrap().unwrap();
        assert_eq!((status, body.as_str()), (200, text));
    };
    call(&a, "a1");
    call(&a, "a2");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    call(&b, "b1");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2, "b does not take a's connection");
    for i in 0..5 {
        call(&a, &format!("a{i}"));
        call(&b, &format!("b{i}"));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2, "each reuses its own");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 13);
}
