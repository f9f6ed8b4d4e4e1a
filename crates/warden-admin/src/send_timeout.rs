//! A send timeout on every accepted connection: a client that takes no byte of what Warden
//! writes for [`SEND_TIMEOUT`] is disconnected (nginx's `send_timeout`, 60 s there). The
//! listener's own HTTP/1 loop (`crate::h1`) bounds its writes by the same timeout; this wrapper
//! does it for the connections it hands to hyper.
//!
//! Why at the socket: a subscriber of `/events` that stops reading fills the socket buffers,
//! after which hyper no longer polls the response body, so nothing in the stream itself can
//! notice or end it. The broadcast ring keeps Warden from ever waiting for such a client; this
//! frees its connection. Only writes that make no progress count: an idle keep-alive
//! connection, or a stream that is quiet, never times out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a write may make no progress before the connection is closed.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// An I/O object whose writes fail with `TimedOut` after making no progress for a while.
pub(crate) struct SendTimeout<T> {
    io: T,
    timeout: Duration,
    /// Armed at the first write that could not proceed; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

/// Logs that a client took nothing for `timeout`, and the error that closes its connection.
pub(crate) fn timed_out(timeout: Duration) -> io::Error {
    tracing::info!(
        timeout_s = timeout.as_secs_f64(),
        "an HTTP client took nothing of its response; connection closed"
    );
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the client took nothing for {} s", timeout.as_secs_f64()),
    )
}

impl<T> SendTimeout<T> {
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        Self { io, timeout, stalled: None }
    }

    /// After the inner write returned `Pending`: still waiting, or timed out.
    fn stall<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(timed_out(timeout))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<R>(&mut self, r: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_takes_nothing_times_out_and_one_that_reads_never_does() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = SendTimeout::new(server, Duration::from_secs(20));
        let mut client = client;
        // Progress, however slow, keeps the connection.
        for _ in 0..10 {
            server.write_all(&[1; 64]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(15)).await;
            let mut buf = [0; 64];
            client.read_exact(&mut buf).await.unwrap();
        }
        // Quiet is not stalled.
        tokio::time::sleep(Duration::from_secs(120)).await;
        server.write_all(&[2; 64]).await.unwrap();
        // Now the client reads nothing: the next write fails after the timeout.
        let started = tokio::time::Instant::now();
        let e = server.write_all(&[3; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }
}
