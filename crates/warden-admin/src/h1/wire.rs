//! HTTP/1.1 on the wire for the listener's own loop ([`super`]): a request's head and what it
//! says of its body (RFC 9112), the spans of the headers the fast lane and the guard read, the
//! request as the router takes it, and an answer's head and chunks. Pure functions over
//! buffers, testable without a socket.

use std::io::Write;
use std::ops::Range;

use axum::body::Body;
use axum::http::{self, HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;

use crate::guard::Heads;

/// The largest request head read (request line and headers); past it, hyper answers 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header lines a request may have here (hyper's default too).
const MAX_HEADERS: usize = 100;

/// What the bytes at the start of a connection's buffer are.
#[derive(Debug)]
pub(crate) enum Step {
    /// Not yet a whole head.
    Partial,
    /// A request this loop serves.
    Head(Head),
    /// Anything else (a malformed head, HTTP/1.0, `HEAD`, an upgrade, a chunked or expected
    /// body, one over `max_body`): hyper serves the connection from here on, and answers it as
    /// it always has.
    Hyper,
}

/// A request head this loop serves.
#[derive(Debug)]
pub(crate) struct Head {
    /// Bytes of the head, through its empty line.
    pub(crate) len: usize,
    /// Bytes of the body that follows (`Content-Length`, else none).
    pub(crate) body: usize,
    /// The client asked for the connection to close after the answer.
    pub(crate) close: bool,
    /// A POST on an MCP endpoint within a session: what the fast lane and the guard read.
    pub(crate) lane: Option<Spans>,
}

/// Where, in the request's bytes, the fast lane's and the guard's headers are.
#[derive(Debug, Default, Clone)]
pub(crate) struct Spans {
    /// The request target's path (no query).
    pub(crate) path: Range<usize>,
    pub(crate) session: Range<usize>,
    accept: Option<Range<usize>>,
    content_type: Option<Range<usize>>,
    protocol_version: Option<Range<usize>>,
    host: Option<Range<usize>>,
    origin: Option<Range<usize>>,
    authorization: Option<Range<usize>>,
}

/// `part`'s place in `base` (a slice httparse took from it).
fn span(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// Reads the head at the start of `buf`, if it is whole (see [`Step`]).
pub(crate) fn read_head(buf: &[u8], max_body: usize) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Step::Partial,
        _ => return Step::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Step::Hyper;
    };
    if !matches!(method, "GET" | "POST" | "DELETE" | "PUT" | "PATCH" | "OPTIONS") {
        return Step::Hyper;
    }
    let mut body = None;
    let mut close = false;
    let mut spans = Spans::default();
    let mut session = None;
    for h in req.headers.iter() {
        let name = h.name;
        let value = Some(span(buf, h.value));
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()));
            match n.and_then(|v| v.parse::<usize>().ok()) {
                Some(n) if body.is_none() && n <= max_body => body = Some(n),
                _ => return Step::Hyper,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Step::Hyper;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, b"upgrade") {
                return Step::Hyper;
            }
            close |= has_token(h.value, b"close");
        } else if name.eq_ignore_ascii_case("mcp-session-id") {
            session = session.or(value);
        } else if name.eq_ignore_ascii_case("accept") {
            spans.accept = spans.accept.or(value);
        } else if name.eq_ignore_ascii_case("content-type") {
            spans.content_type = spans.content_type.or(value);
        } else if name.eq_ignore_ascii_case("mcp-protocol-version") {
            spans.protocol_version = spans.protocol_version.or(value);
        } else if name.eq_ignore_ascii_case("host") {
            spans.host = spans.host.or(value);
        } else if name.eq_ignore_ascii_case("origin") {
            spans.origin = spans.origin.or(value);
        } else if name.eq_ignore_ascii_case("authorization") {
            spans.authorization = spans.authorization.or(value);
        }
    }
    let path = target.split('?').next().unwrap_or(target);
    let lane = match session {
        Some(session) if method == "POST" && path.ends_with("/mcp") => {
            Some(Spans { path: span(buf, path.as_bytes()), session, ..spans })
        }
        _ => None,
    };
    Step::Head(Head { len, body: body.unwrap_or(0), close, lane })
}

/// Whether the comma-separated header `value` (`Connection`) lists `token`, in any case.
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&c| c == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A request's lane headers, read through its [`Spans`].
pub(crate) struct Lane<'a> {
    pub(crate) msg: &'a [u8],
    pub(crate) spans: &'a Spans,
}

impl Lane<'_> {
    fn at(&self, r: &Option<Range<usize>>) -> Option<&[u8]> {
        r.clone().and_then(|r| self.msg.get(r))
    }

    pub(crate) fn path(&self) -> Option<&str> {
        std::str::from_utf8(self.msg.get(self.spans.path.clone())?).ok()
    }

    /// What the gateway's lane reads; `None` if the session id or path is not text.
    pub(crate) fn head(&self, body: usize) -> Option<warden_gateway::LaneHead<'_>> {
        Some(warden_gateway::LaneHead {
            path: self.path()?,
            session: self.text("mcp-session-id")?,
            accept: self.text("accept"),
            content_type: self.text("content-type"),
            length: Some(body),
            protocol_version: self.text("mcp-protocol-version"),
        })
    }
}

impl Heads for Lane<'_> {
    fn raw(&self, name: &str) -> Option<&[u8]> {
        let s = self.spans;
        match name {
            "mcp-session-id" => self.msg.get(s.session.clone()),
            "accept" => self.at(&s.accept),
            "content-type" => self.at(&s.content_type),
            "mcp-protocol-version" => self.at(&s.protocol_version),
            "host" => self.at(&s.host),
            "origin" => self.at(&s.origin),
            "authorization" => self.at(&s.authorization),
            _ => None,
        }
    }
}

/// The request in `msg` (a head of `len` bytes read by [`read_head`], then its body) as the
/// router takes it; `None` if a header is one `http` refuses (then it is answered 400).
pub(crate) fn request(msg: &Bytes, len: usize) -> Option<http::Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&msg[..len]).ok()?;
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri = http::Uri::from_maybe_shared(msg.slice_ref(req.path?.as_bytes())).ok()?;
    let mut out = http::Request::new(Body::from(msg.slice(len..)));
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    let map = out.headers_mut();
    map.reserve(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_maybe_shared(msg.slice_ref(h.value)).ok()?;
        map.append(name, value);
    }
    Some(out)
}

/// How an answer's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (1xx, 204, 304).
    None,
    /// This many bytes, as the answer's own `Content-Length` says or as the body knows.
    Length(Option<u64>),
    /// Chunked: a body of unknown length (a stream).
    Chunked,
}

/// Appends an answer's head: status, `parts`' headers (framing headers replaced by
/// `framing`'s), `Date` unless it has one, and `Connection: close` when `close`.
pub(crate) fn answer_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    framing: Framing,
    close: bool,
) {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in &parts.headers {
        if name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
            || (name == http::header::CONTENT_LENGTH && framing != Framing::Length(None))
        {
            continue;
        }
        dated |= name == http::header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(Some(n)) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Length(None) | Framing::None => {}
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How `parts`' body goes: none for 1xx/204/304, its own `Content-Length` if it has one,
/// else `exact` (what the body knows of its length), else chunked.
pub(crate) fn framing(parts: &http::response::Parts, exact: Option<u64>) -> Framing {
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Framing::None;
    }
    if parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        return Framing::Length(None);
    }
    match exact {
        Some(n) => Framing::Length(Some(n)),
        None => Framing::Chunked,
    }
}

/// Appends `data` as one chunk.
pub(crate) fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, no trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends the current time as an HTTP date, formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
