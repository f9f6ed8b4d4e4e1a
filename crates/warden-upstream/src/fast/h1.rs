//! The fast path's HTTP/1.1 client for a plain-`http://` upstream, driven in the caller's
//! task. reqwest (hyper-util's pooled client) runs each connection on a task of its own: a
//! call's request goes to that task over a channel and its answer and body chunks come back
//! the same way, a cross-task wake-up each (−25…−47 µs a call in the prototype,
//! docs/perf/gateway-profile.md). Here the caller writes its request on the socket itself,
//! reads the answer in its own task ([`super::h1_codec`] frames it: one POST, one answer, no
//! pipelining), and puts the connection back in a small pool when the answer has been read to
//! its end. (A first cut drove hyper's client connection in the caller's task; its dispatcher
//! was a fifth of the hop's instructions.)
//!
//! Only the call's POST goes this way: notifications, answers to the server's requests and
//! resumed streams stay on reqwest, and so does everything when the URL is `https://` or holds
//! credentials, when a proxy is configured in the environment (reqwest would use it), or when
//! `WARDEN_UPSTREAM_H1=0`. A redirect answer is left to the caller, which then repeats the call
//! on reqwest (whose policy follows same-origin redirects only).

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::HeaderMap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::h1_codec::{self, Decoded};

/// The most idle connections kept (more calls at once open more, closed when done).
const MAX_IDLE: usize = 32;
/// The most calls (connections) at once; more wait for one to end. As rmcp's own client is
/// allowed on a session (`remote.rs`): a burst of calls never becomes a storm of connections.
const MAX_OPEN: usize = 1024;
/// An idle connection older than this is closed rather than reused (servers close theirs).
const IDLE_FOR: Duration = Duration::from_secs(60);
/// As reqwest's `connect_timeout` for remote servers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much is read at a time.
const READ: usize = 16 * 1024;

/// One connection, and what has been read on it past the last answer (nothing, when idle).
struct Link {
    /// The runtime whose reactor its socket is registered with: a call on another runtime
    /// (Warden's HTTP threads each have one, `warden_admin::DataPlane`) would be woken from
    /// there, a hand-off between threads each way, so it takes a connection of its own.
    home: tokio::runtime::Id,
    tcp: TcpStream,
    buf: BytesMut,
}

impl Link {
    /// Whether an idle link can take a request: the server has not closed it (nor sent
    /// anything unasked), as far as its reactor has seen.
    fn usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads more into the buffer; `Ok(false)` at the end of the connection.
    /// (Through `AsyncRead`, which takes a read that did not fill the buffer for the socket
    /// drained: [`Link::usable`] then knows without a read that fails with `EAGAIN`.)
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        self.buf.reserve(READ);
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.buf))?;
        Poll::Ready(Ok(n > 0))
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
    authority: String,
    path: String,
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
    /// Refused, reset, closed, or an answer no HTTP/1.1 server sends: the cause.
    Broken(String),
}

/// An H1 answer: status, content type (lower case), and the body as it comes.
pub(crate) struct Answer<'a> {
    pub(crate) status: u16,
    pub(crate) content_type: String,
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
        // What goes on the request line and in `Host` must be plain visible ASCII (a parsed
        // URL's are: it percent-encodes the rest).
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !plain(&authority) || !plain(&path) {
            return None;
        }
        // A bracketed IPv6 host connects without its brackets.
        let connect_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Some(Self {
            host: connect_host,
            port,
            authority,
            path,
            idle: Mutex::default(),
            open: tokio::sync::Semaphore::new(open),
        })
    }

    /// POSTs `body` with `headers`; the answer's head, its body to be read by the caller.
    /// A request whose write fails on a pooled connection (the server had closed it) goes on
    /// the next pooled one, or a new one; a new connection's failure is the call's. Once
    /// written, a request is never sent again: a connection that then ends is the call's error.
    pub(crate) async fn post(
        &self,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer<'_>, Failure> {
        #[cfg(test)]
        H1_POSTS.with(|c| c.set(c.get() + 1));
        let permit = self.open.acquire().await.map_err(|e| Failure::Broken(e.to_string()))?;
        let mut request = Vec::with_capacity(512 + body.len());
        h1_codec::post(&mut request, &self.path, self.authority.as_bytes(), headers, &body);
        let broken = |e: io::Error| Failure::Broken(e.to_string());
        let mut link = loop {
            let (mut link, pooled) = match self.checkout() {
                Some(link) => (link, true),
                None => (self.connect().await?, false),
            };
            match link.tcp.write_all(&request).await {
                Ok(()) => break link,
                Err(_) if pooled => continue,
                Err(e) => return Err(broken(e)),
            }
        };
        let head = loop {
            if let Some(head) = h1_codec::head(&mut link.buf).map_err(Failure::Broken)? {
                break head;
            }
            if !std::future::poll_fn(|cx| link.poll_fill(cx)).await.map_err(broken)? {
                return Err(Failure::Broken("the connection closed before an answer".into()));
            }
        };
        Ok(Answer {
            status: head.status,
            content_type: head.content_type,
            body: Driven {
                pool: self,
                link: Some(link),
                body: h1_codec::Body::new(head.body),
                reusable: head.reusable,
                eof: false,
                _permit: permit,
            },
        })
    }

    /// The most recently used idle connection of the caller's runtime.
    fn checkout(&self) -> Option<Link> {
        let here = tokio::runtime::Handle::current().id();
        let mut idle = self.idle.lock().expect("not poisoned");
        while let Some(i) = idle.iter().rposition(|(link, _)| link.home == here) {
            let (link, since) = idle.remove(i);
            if since.elapsed() < IDLE_FOR && link.usable() {
                return Some(link);
            }
        }
        None
    }

    fn checkin(&self, link: Link) {
        if !link.buf.is_empty() || !link.usable() {
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
        let home = tokio::runtime::Handle::current().id();
        Ok(Link { home, tcp, buf: BytesMut::new() })
    }
}

/// An answer's body, read in the caller's task; the connection goes back to the pool when the
/// body has been read to its end (dropped earlier, it is closed, as HTTP/1 requires).
pub(crate) struct Driven<'a> {
    pool: &'a H1,
    /// `None` once the body has ended or failed: then nothing more is read.
    link: Option<Link>,
    body: h1_codec::Body,
    /// Whether the connection may carry another call once the body has ended.
    reusable: bool,
    /// The server closed the connection.
    eof: bool,
    /// The call's place among [`MAX_OPEN`], held until its answer is read or dropped.
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Stream for Driven<'_> {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(link) = this.link.as_mut() else { return Poll::Ready(None) };
        loop {
            match this.body.decode(&mut link.buf, this.eof) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Decoded::End) => {
                    let link = this.link.take().expect("checked above");
                    if this.reusable && !this.eof {
                        this.pool.checkin(link);
                    }
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => match ready!(link.poll_fill(cx)) {
                    Ok(more) => this.eof = !more,
                    Err(e) => {
                        this.link = None;
                        return Poll::Ready(Some(Err(e.to_string())));
                    }
                },
                Err(e) => {
                    this.link = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
