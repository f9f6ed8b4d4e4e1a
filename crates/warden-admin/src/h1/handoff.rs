//! A connection handed to hyper (what the loop does not serve, [`super`]): hyper reads the
//! bytes the loop had already read, then the socket, and serves the rest of the connection as
//! `axum::serve` did — HTTP/1 with upgrades, graceful shutdown at `stop`, the send timeout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use bytes::{Buf, Bytes};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::data_plane::Counted;
use crate::send_timeout::{SendTimeout, SEND_TIMEOUT};

pub(super) async fn serve(io: Counted, read: Bytes, router: Router, stop: CancellationToken) {
    let io = TokioIo::new(SendTimeout::new(Rewind { read, io }, SEND_TIMEOUT));
    let service = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn.with_upgrades());
    tokio::select! {
        r = conn.as_mut() => return log(r),
        () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    log(conn.await);
}

fn log(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "an HTTP connection ended");
    }
}

/// A connection whose first bytes were already read (into `read`); it stays counted among its
/// thread's open ones until dropped.
struct Rewind {
    read: Bytes,
    io: Counted,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.has_remaining() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io.io).poll_shutdown(cx)
    }
}
