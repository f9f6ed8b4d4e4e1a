//! The fast path's HTTP/1.1 client for a plain-`http://` upstream, driven in the caller's
//! task. reqwest (hyper-util's pooled client) runs each connection on a task of its own: a
//! call's request goes to that task over a channel and its answer and body chunks come back
//! the same way, a cross-task wake-up each (−25…−47 µs a call in the prototype,
//! docs/perf/gateway-profile.md). Here the caller polls the connection itself, with its
//! request and body, and puts it back in a small pool when the answer has been read to its
//! end.
//!
//! Only the call's POST goes this way: notifications, answers to the server's requests and
//! resumed streams stay on reqwest, and so does everything when the URL is `https://` or holds
//! credentials, when a proxy is configured in the environment (reqwest would use it), or when
//! `WARDEN_UPSTREAM_H1=0`. A redirect answer is left to the caller, which then repeats the call
//! on reqwest (whose policy follows same-origin redirects only).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::innermost;

/// The most idle connections kept (more calls at once open more, closed when done).
const MAX_IDLE: usize = 32;
/// The most calls (connections) at once; more wait for one to end. As rmcp's own client is
/// allowed on a session (`remote.rs`): a burst of calls never becomes a storm of connections.
const MAX_OPEN: usize = 1024;
/// An idle connection older than this is closed rather than reused (servers close theirs).
const IDLE_FOR: Duration = Duration::from_secs(60);
/// As reqwest's `connect_timeout` for remote servers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One connection: its request side and the connection future the caller drives.
struct Link {
    /// The runtime whose reactor its socket is registered with: a call on another runtime
    /// (Warden's HTTP threads each have one, `warden_admin::DataPlane`) would be woken from
    /// there, a hand-off between threads each way, so it takes a connection of its own.
    home: tokio::runtime::Id,
    send: SendRequest<Full<Bytes>>,
    /// `None` once it has ended (never polled again; dropping it hands any request still
    /// queued on it back to its sender, unsent, as `TrySendError` with the message).
    conn: Option<Pin<Box<Conn>>>,
}

impl Link {
    /// Drives the connection's I/O; whether it is still open.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if self.conn.as_mut().is_some_and(|c| c.as_mut().poll(cx).is_ready()) {
            self.conn = None;
        }
        self.conn.is_some()
    }

    /// Whether an idle link can take a request: polls its connection once, which reads a close
    /// from the server (the connection future ends) without waiting.
    fn usable(&mut self) -> bool {
        let waker = futures::task::noop_waker();
        self.drive(&mut Context::from_waker(&waker)) && self.send.is_ready()
    }
}

#[cfg(test)]
thread_local! {
    /// Calls posted on this client, started on this thread.
    pub(crate) static H1_POSTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A plain-HTTP upstream's connections.
pub(crate) struct H1 {
    host: String,
    port: u16,
    authority: HeaderValue,
    path: Uri,
    idle: Mutex<Vec<(Link, Instant)>>,
    open: tokio::sync::Semaphore,
}

/// Whether the environment lets calls take this client: no proxy that reqwest would use for
/// `http://` URLs, and not `WARDEN_UPSTREAM_H1=0`.
pub(crate) fn allowed_by_env() -> bool {
    let proxied = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    !proxied && std::env::var("WARDEN_UPSTREAM_H1").map_or(true, |v| v != "0")
}

/// Why a POST got no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection could not be made in time (as reqwest's `connect_timeout`).
    ConnectTimeout,
    /// Refused, reset, closed: the innermost cause.
    Broken(String),
}

/// An H1 answer: status, headers, and the body as it comes.
pub(crate) struct Answer<'a> {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Driven<'a>,
}

impl H1 {
    /// The client for `url`, if its calls can go this way (see the module documentation).
    pub(crate) fn for_url(url: &reqwest::Url) -> Option<Self> {
        Self::with_limit(url, MAX_OPEN).filter(|_| allowed_by_env())
    }

    /// For a plain `http://` URL without credentials (reqwest sends a URL's user and password
    /// as `Authorization: Basic`; this client does not): at most `open` calls at once.
    fn with_limit(url: &reqwest::Url, open: usize) -> Option<Self> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_owned();
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        // A bracketed IPv6 host connects without its brackets.
        let connect_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Some(Self {
            host: connect_host,
            port,
            authority: HeaderValue::from_str(&authority).ok()?,
            path: path.parse().ok()?,
            idle: Mutex::default(),
            open: tokio::sync::Semaphore::new(open),
        })
    }

    /// POSTs `body` with `headers`; the answer's head, its body to be read by the caller.
    /// A request that comes back unsent from a pooled connection the server had closed goes on
    /// the next pooled one, or a new one; a new connection's failure is the call's.
    pub(crate) async fn post(
        &self,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer<'_>, Failure> {
        #[cfg(test)]
        H1_POSTS.with(|c| c.set(c.get() + 1));
        let permit = self.open.acquire().await.map_err(|e| Failure::Broken(e.to_string()))?;
        let mut pooled = true;
        loop {
            let mut link = match self.checkout() {
                Some(link) => link,
                None => {
                    pooled = false;
                    self.connect().await?
                }
            };
            let sent = link.send.try_send_request(self.request(headers, body.clone()));
            match (Drive { link: &mut link, fut: Box::pin(sent) }).await {
                Ok(resp) => {
                    let (head, incoming) = resp.into_parts();
                    return Ok(Answer {
                        status: head.status.as_u16(),
                        headers: head.headers,
                        body: Driven { pool: self, link: Some(link), incoming, _permit: permit },
                    });
                }
                // Not written: the pooled connection was closed under us; try a new one.
                Err(e) if pooled && e.message().is_some() => continue,
                Err(e) => return Err(Failure::Broken(innermost(e.error()))),
            }
        }
    }

    /// The call's POST, in origin form, with `Host`.
    fn request(&self, headers: &HeaderMap, body: Bytes) -> Request<Full<Bytes>> {
        let mut r = Request::new(Full::new(body));
        *r.method_mut() = Method::POST;
        *r.uri_mut() = self.path.clone();
        *r.headers_mut() = headers.clone();
        r.headers_mut().insert(HOST, self.authority.clone());
        r
    }

    /// The most recently used idle connection of the caller's runtime.
    fn checkout(&self) -> Option<Link> {
        let here = tokio::runtime::Handle::current().id();
        let mut idle = self.idle.lock().expect("not poisoned");
        while let Some(i) = idle.iter().rposition(|(link, _)| link.home == here) {
            let (mut link, since) = idle.remove(i);
            if since.elapsed() < IDLE_FOR && link.usable() {
                return Some(link);
            }
        }
        None
    }

    fn checkin(&self, mut link: Link) {
        if !link.usable() {
            return;
        }
        let mut idle = self.idle.lock().expect("not poisoned");
        // Entries too old to reuse go now, not only when the pool drains to them.
        idle.retain(|(_, since)| since.elapsed() < IDLE_FOR);
        if idle.len() < MAX_IDLE {
            idle.push((link, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Link, Failure> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| Failure::ConnectTimeout)?
            .map_err(|e| Failure::Broken(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| Failure::Broken(innermost(&e)))?;
        let home = tokio::runtime::Handle::current().id();
        Ok(Link { home, send, conn: Some(Box::pin(conn)) })
    }
}

/// A future polled together with its connection, so the connection's I/O happens in the
/// caller's task.
struct Drive<'c, F> {
    link: &'c mut Link,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Drive<'_, F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // The connection's end (an error, a close) reaches the request future as its error.
        self.link.drive(cx);
        self.fut.as_mut().poll(cx)
    }
}

/// An answer's body, read in the caller's task; the connection goes back to the pool when the
/// body has been read to its end (dropped earlier, it is closed, as HTTP/1 requires).
pub(crate) struct Driven<'a> {
    pool: &'a H1,
    /// `None` once the body has ended or failed: then nothing more is read.
    link: Option<Link>,
    incoming: Incoming,
    /// The call's place among [`MAX_OPEN`], held until its answer is read or dropped.
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Stream for Driven<'_> {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(link) = this.link.as_mut() else { return Poll::Ready(None) };
        link.drive(cx);
        loop {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    if let Some(link) = this.link.take() {
                        this.pool.checkin(link);
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.link = None;
                    return Poll::Ready(Some(Err(innermost(&e))));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    // Trailers or an empty chunk: nothing for the reader.
                    _ => continue,
                },
            }
        }
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
