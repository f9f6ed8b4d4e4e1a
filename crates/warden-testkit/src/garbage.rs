//! Writes a line of garbage to stdout between JSON-RPC messages when asked to.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// Wraps a writer; whenever `due` is set, the next message boundary gets a non-JSON line first.
pub struct GarbageWriter<W> {
    inner: W,
    due: Arc<AtomicBool>,
    pending: Vec<u8>,
    at_boundary: bool,
}

impl<W> GarbageWriter<W> {
    pub fn new(inner: W, due: Arc<AtomicBool>) -> Self {
        Self { inner, due, pending: Vec::new(), at_boundary: true }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for GarbageWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.at_boundary && this.pending.is_empty() && this.due.swap(false, Ordering::Relaxed) {
            this.pending.extend_from_slice(b"this is not JSON-RPC: misbehave garbage\n");
        }
        while !this.pending.is_empty() {
            match Pin::new(&mut this.inner).poll_write(cx, &this.pending) {
                Poll::Ready(Ok(n)) => {
                    this.pending.drain(..n);
                }
                other => return other.map(|r| r.map(|_| 0)),
            }
        }
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &res {
            this.at_boundary = data[..*n].ends_with(b"\n");
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
