//! HTTP/1.1 on the wire for the in-task client ([`super::h1`]): a POST's bytes, an answer's
//! head, and its body's framing (RFC 9112). Pure functions over buffers, so every way a
//! message can be split across reads is testable without a socket.

use std::io::Write;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::HeaderMap;

/// The largest answer head read (status line and headers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header lines an answer may have.
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line or trailer section read.
const MAX_LINE: usize = 8 * 1024;

/// Appends a POST of `body` to `path` (origin form) with `Host: authority`, `headers` and the
/// body's length. Framing headers in `headers` are left out: this writes its own.
pub(crate) fn post(
    out: &mut Vec<u8>,
    path: &str,
    authority: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) {
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority);
    for (name, value) in headers {
        if [HOST, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION].contains(name) {
            continue;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    let _ = write!(out, "\r\ncontent-length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// An answer's head: what the call reads of it.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// `Content-Type`, lower case (empty if none).
    pub(crate) content_type: String,
    /// How its body is delimited.
    pub(crate) body: Framing,
    /// Whether the connection may carry another request once the body has ended.
    pub(crate) reusable: bool,
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// After this many bytes (zero: no body).
    Length(u64),
    /// After the last chunk and the trailers.
    Chunked,
    /// When the server closes the connection.
    Close,
}

/// Parses an answer's head off the front of `buf`: `Ok(None)` while it is incomplete, interim
/// (1xx) answers skipped. An error for what no HTTP/1.1 server sends. Only the headers the
/// call needs are read (no header map is built: that was most of the cost).
pub(crate) fn head(buf: &mut BytesMut) -> Result<Option<Head>, String> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        let used = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(format!("an answer head longer than {MAX_HEAD} bytes"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("a malformed answer head: {e}")),
        };
        let status = parsed.code.unwrap_or_default();
        if (100..200).contains(&status) {
            if status == 101 {
                return Err("the server switched protocols".into());
            }
            buf.advance(used);
            continue;
        }
        let named = |name: &'static str| {
            parsed
                .headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let body = framing(status, named("transfer-encoding"), named("content-length"))?;
        let closes = named("connection").any(|v| {
            v.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        });
        let content_type = named("content-type")
            .next()
            .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
            .unwrap_or_default();
        let reusable = parsed.version == Some(1) && !closes && body != Framing::Close;
        buf.advance(used);
        return Ok(Some(Head { status, content_type, body, reusable }));
    }
}

/// RFC 9112 §6.3: a transfer coding ending in `chunked` wins over a length; another coding is
/// read to the close; several lengths must agree.
fn framing<'h>(
    status: u16,
    mut codings: impl Iterator<Item = &'h [u8]>,
    lengths: impl Iterator<Item = &'h [u8]>,
) -> Result<Framing, String> {
    if status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }
    if let Some(first) = codings.next() {
        let last = codings.last().unwrap_or(first);
        let last = last.rsplit(|b| *b == b',').next().unwrap_or_default();
        return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for v in lengths {
        for n in v.split(|b| *b == b',') {
            let text = String::from_utf8_lossy(n.trim_ascii());
            let n: u64 = text
                .parse()
                .ok()
                .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("an invalid Content-Length {text:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("Content-Length given twice, differently".into());
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// What the body decoder made of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// More must be read first.
    More,
    /// The body has ended; what is left in the buffer is not this answer's.
    End,
}

/// Takes an answer's body off the front of a buffer as reads fill it.
#[derive(Debug)]
pub(crate) struct Body {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes left (a length-delimited body).
    Left(u64),
    /// Until the connection closes.
    ToClose,
    /// A chunk-size line is next.
    Size,
    /// This many bytes of the current chunk are left.
    Chunk(u64),
    /// The CRLF that ends a chunk's data.
    ChunkEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    Done,
}

impl Body {
    pub(crate) fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Left(n),
            Framing::Chunked => State::Size,
            Framing::Close => State::ToClose,
        };
        Self { state }
    }

    /// The next piece of the body in `buf`, or what it waits for. `eof`: the connection has
    /// closed, so nothing more will be read.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Decoded, String> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Left(n) | State::Chunk(n) if !buf.is_empty() => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Left(_), 0) => State::Done,
                        (State::Left(_), l) => State::Left(l),
                        (_, 0) => State::ChunkEnd,
                        (_, l) => State::Chunk(l),
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::ToClose if !buf.is_empty() => {
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::ToClose if eof => {
                    self.state = State::Done;
                }
                State::Size => {
                    let Some(line) = line(buf)? else { return self.more(eof) };
                    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
                    let digits = std::str::from_utf8(digits).map(str::trim).unwrap_or("?");
                    let size = u64::from_str_radix(digits, 16)
                        .map_err(|_| format!("an invalid chunk size {digits:?}"))?;
                    self.state = if size == 0 { State::Trailers } else { State::Chunk(size) };
                }
                State::ChunkEnd => {
                    let Some(line) = line(buf)? else { return self.more(eof) };
                    if !line.is_empty() {
                        return Err("a chunk longer than its size".into());
                    }
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(line) = line(buf)? else { return self.more(eof) };
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
                State::Left(_) | State::Chunk(_) | State::ToClose => return self.more(eof),
            }
        }
    }

    fn more(&self, eof: bool) -> Result<Decoded, String> {
        if eof {
            Err("the connection closed before the answer's end".into())
        } else {
            Ok(Decoded::More)
        }
    }
}

/// A line off the front of `buf`, without its LF (or CRLF); `None` while incomplete.
fn line(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    match memchr::memchr(b'\n', buf) {
        Some(end) => {
            let mut line = buf.split_to(end + 1).freeze();
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(format!("a chunk line longer than {MAX_LINE} bytes")),
        None => Ok(None),
    }
}

#[cfg(test)]
#[path = "h1_codec_tests.rs"]
mod tests;
