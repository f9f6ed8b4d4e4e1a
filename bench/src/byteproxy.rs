//! A minimal HTTP/1 byte proxy on tokio, one of the floors (issue 17): what a Rust hop costs on
//! Warden's runtime layout (a current-thread runtime per thread, each accepting from the same
//! listener) when it does nothing but pass requests and answers through — no JSON, no routing,
//! no accounting, no timers, one upstream connection per client connection (as nginx's
//! keep-alive upstream). It tells how much of Warden's hop is the runtime and the kernel, and
//! how much is Warden's own work. Not a product: the bench runs it as a child
//! (`--serve-proxy ADDR UPSTREAM THREADS`).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `addr` on `threads` threads, each passing its connections through to `upstream`,
/// until killed. `WARDEN_BENCH_PROXY_WORK_US=n` adds n µs of busy CPU to every request (what a
/// hop's own work may cost before one thread no longer keeps up).
pub(crate) fn serve_proxy(addr: &str, upstream: &str, threads: &str) {
    let work = std::time::Duration::from_micros(
        std::env::var("WARDEN_BENCH_PROXY_WORK_US").ok().and_then(|w| w.parse().ok()).unwrap_or(0),
    );
    let listener = std::net::TcpListener::bind(addr).expect("bind the proxy's address");
    listener.set_nonblocking(true).unwrap();
    let upstream: SocketAddr = upstream.parse().expect("an upstream address");
    let threads: usize = threads.parse().expect("a thread count");
    let each: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let listener = listener.try_clone().unwrap();
            std::thread::spawn(move || {
                let rt =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    loop {
                        let Ok((client, _)) = listener.accept().await else { continue };
                        let _ = client.set_nodelay(true);
                        tokio::spawn(async move {
                            let _ = conn(client, upstream, work).await;
                        });
                    }
                });
            })
        })
        .collect();
    for t in each {
        let _ = t.join();
    }
}

/// Passes one client connection's requests to its own upstream connection, one at a time, and
/// each answer back as its bytes come (an event stream flows).
async fn conn(
    mut client: TcpStream,
    upstream: SocketAddr,
    work: std::time::Duration,
) -> io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut from_client = Vec::with_capacity(16 * 1024);
    let mut from_up = Vec::with_capacity(16 * 1024);
    loop {
        let Some(n) = request(&mut client, &mut from_client).await? else { return Ok(()) };
        let began = std::time::Instant::now();
        while began.elapsed() < work {
            std::hint::spin_loop();
        }
        up.write_all(&from_client[..n]).await?;
        from_client.drain(..n);
        answer(&mut up, &mut from_up, &mut client).await?;
    }
}

/// Reads more of `io` into `buf`; `false` at its end.
async fn fill(io: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.reserve(8 * 1024);
    Ok(io.read_buf(buf).await? > 0)
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
}

fn chunked(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"))
    })
}

/// The length of the next whole request in `buf` (head and `Content-Length` body), reading as
/// much as it needs; `None` if the client closed between requests.
async fn request(client: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let total = head + content_length(req.headers).unwrap_or(0);
                while buf.len() < total {
                    if !fill(client, buf).await? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                return Ok(Some(total));
            }
            Ok(httparse::Status::Partial) => {
                if !fill(client, buf).await? {
                    return if buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    };
                }
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// Passes one answer from `up` to `client`: its head, then its body by `Content-Length`, by
/// chunks, or (neither) until `up` closes; what is read is written at once.
async fn answer(up: &mut TcpStream, buf: &mut Vec<u8>, client: &mut TcpStream) -> io::Result<()> {
    buf.clear();
    let (head, body) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let code = resp.code.unwrap_or(200);
                let body = if code < 200 || code == 204 || code == 304 {
                    Body::Length(0)
                } else if chunked(resp.headers) {
                    Body::Chunked(Chunk::Size { n: 0, ext: false })
                } else {
                    content_length(resp.headers).map_or(Body::UntilClose, Body::Length)
                };
                break (head, body);
            }
            Ok(httparse::Status::Partial) => {
                if !fill(up, buf).await? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    };
    let mut body = body;
    let mut from = head;
    loop {
        let done = match &mut body {
            Body::Length(left) => {
                let take = (*left).min(buf.len() - from);
                *left -= take;
                *left == 0
            }
            Body::Chunked(state) => feed(state, &buf[from..]),
            Body::UntilClose => false,
        };
        client.write_all(buf).await?;
        buf.clear();
        from = 0;
        if done {
            return Ok(());
        }
        if !fill(up, buf).await? {
            return match body {
                // The answer ended with the connection: so does the client's.
                Body::UntilClose => Err(io::ErrorKind::ConnectionAborted.into()),
                _ => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}

enum Body {
    Length(usize),
    Chunked(Chunk),
    UntilClose,
}

/// Where a chunked body's reading is.
#[derive(Clone, Copy)]
enum Chunk {
    Size {
        n: usize,
        ext: bool,
    },
    SizeLf {
        n: usize,
    },
    Data(usize),
    DataCr,
    DataLf,
    /// At a trailer line (`empty`: at its start).
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Reads `bytes` of a chunked body; whether its end is among them (nothing follows an answer
/// on this connection: requests go one at a time).
fn feed(state: &mut Chunk, bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        *state = match *state {
            Chunk::Size { n, ext } => match b {
                b'\r' => Chunk::SizeLf { n },
                _ if ext => Chunk::Size { n, ext },
                b';' => Chunk::Size { n, ext: true },
                _ => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as usize;
                    Chunk::Size { n: n.saturating_mul(16).saturating_add(d), ext }
                }
            },
            Chunk::SizeLf { n: 0 } => Chunk::Trailer { empty: true },
            Chunk::SizeLf { n } => Chunk::Data(n),
            Chunk::Data(left) => {
                let take = left.min(bytes.len() - i);
                i += take;
                *state = if left == take { Chunk::DataCr } else { Chunk::Data(left - take) };
                continue;
            }
            Chunk::DataCr => Chunk::DataLf,
            Chunk::DataLf => Chunk::Size { n: 0, ext: false },
            Chunk::Trailer { empty } => match b {
                b'\r' => Chunk::TrailerLf { empty },
                _ => Chunk::Trailer { empty: false },
            },
            Chunk::TrailerLf { empty: true } => Chunk::Done,
            Chunk::TrailerLf { empty: false } => Chunk::Trailer { empty: true },
            Chunk::Done => Chunk::Done,
        };
        i += 1;
        if matches!(state, Chunk::Done) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_in_any_split() {
        let body = b"5;x=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n";
        for cut in 0..body.len() {
            let mut s = Chunk::Size { n: 0, ext: false };
            let first = feed(&mut s, &body[..cut]);
            assert!(!first, "ended early at {cut}");
            assert!(feed(&mut s, &body[cut..]), "did not end, cut at {cut}");
        }
        let mut s = Chunk::Size { n: 0, ext: false };
        assert!(!feed(&mut s, b"3\r\nabc\r\n"), "a chunk alone is not the end");
        assert!(feed(&mut s, b"0\r\n\r\n"));
    }
}
