//! Warden's own stdin and stdout, for `warden run --stdio` and `warden attach` (a client that
//! launched Warden speaks MCP on them).
//!
//! tokio's `stdin()`/`stdout()` hand every read and write to a blocking-pool thread: a
//! message in and its answer out each cost a thread wake-up, on the desktop path's latency.
//! When they are pipes (Python's `subprocess`, rmcp's child process) or sockets (Node's
//! `child_process`, so Electron clients, uses a socket pair) they are read and written from
//! the runtime's event loop instead, non-blocking, as Warden already does with its children's
//! pipes. Anything else (a file, a terminal, `/dev/null`) keeps tokio's blocking way: a
//! terminal is shared with the shell, whose reads `O_NONBLOCK` would break.
//!
//! The descriptors are duplicated, so 0 and 1 stay open. The non-blocking flag is on the open
//! file, which a process that outlives Warden may share (a wrapper script that inherited it):
//! [`Restore`] puts the flags back when the session ends. A stdout that is also stderr
//! (`2>&1`) stays blocking: a log line written to it must never fail with `EAGAIN`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use tokio::io::{AsyncRead, AsyncWrite};

/// Where Warden reads its client's messages.
pub(crate) type Input = Box<dyn AsyncRead + Unpin + Send>;
/// Where Warden writes its answers.
pub(crate) type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// What a standard descriptor is.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Pipe,
    Socket,
    Other,
}

/// What `fd` is open on (read through a duplicate).
fn metadata(fd: BorrowedFd<'_>) -> Option<std::fs::Metadata> {
    std::fs::File::from(fd.try_clone_to_owned().ok()?).metadata().ok()
}

fn kind(fd: BorrowedFd<'_>) -> Kind {
    match metadata(fd).map(|m| m.file_type()) {
        Some(t) if t.is_fifo() => Kind::Pipe,
        Some(t) if t.is_socket() => Kind::Socket,
        _ => Kind::Other,
    }
}

/// Puts back, when dropped, the file flags fds 0 and 1 had before [`stdio`].
pub(crate) struct Restore(Vec<(RawFd, OFlag)>);

impl Drop for Restore {
    fn drop(&mut self) {
        for &(fd, flags) in &self.0 {
            let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
        }
    }
}

/// Warden's stdin and stdout (evented where they can be; see the module's note), and what
/// puts their flags back. Must be called inside the runtime.
pub(crate) fn stdio() -> (Input, Output, Restore) {
    let was = [io::stdin().as_raw_fd(), io::stdout().as_raw_fd()]
        .into_iter()
        .filter_map(|fd| Some((fd, OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).ok()?))))
        .collect();
    let restore = Restore(was);
    (input(), output(), restore)
}

/// Whether `a` and `b` are the same file (device and inode).
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    let id = |fd| metadata(fd).map(|m| (m.dev(), m.ino()));
    matches!((id(a), id(b)), (Some(x), Some(y)) if x == y)
}

fn input() -> Input {
    let fd = io::stdin();
    let evented: io::Result<Input> = match kind(fd.as_fd()) {
        Kind::Pipe => fd
            .as_fd()
            .try_clone_to_owned()
            .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd)
            .map(|r| Box::new(r) as Input),
        Kind::Socket => socket(fd.as_fd()).map(|s| Box::new(s) as Input),
        Kind::Other => return Box::new(tokio::io::stdin()),
    };
    evented.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "stdin is read by a blocking thread");
        Box::new(tokio::io::stdin())
    })
}

fn output() -> Output {
    let fd = io::stdout();
    if same_file(fd.as_fd(), io::stderr().as_fd()) {
        return Box::new(tokio::io::stdout());
    }
    let evented: io::Result<Output> = match kind(fd.as_fd()) {
        Kind::Pipe => fd
            .as_fd()
            .try_clone_to_owned()
            .and_then(tokio::net::unix::pipe::Sender::from_owned_fd)
            .map(|s| Box::new(s) as Output),
        Kind::Socket => socket(fd.as_fd()).map(|s| Box::new(s) as Output),
        Kind::Other => return Box::new(tokio::io::stdout()),
    };
    evented.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "stdout is written by a blocking thread");
        Box::new(tokio::io::stdout())
    })
}

/// A stream socket on `fd` (a duplicate of it), non-blocking, on the event loop.
fn socket(fd: BorrowedFd<'_>) -> io::Result<tokio::net::UnixStream> {
    let owned: OwnedFd = fd.try_clone_to_owned()?;
    let std = std::os::unix::net::UnixStream::from(owned);
    std.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_sockets_and_files_are_told_apart() {
        let (r, w) = std::io::pipe().unwrap();
        assert_eq!(kind(r.as_fd()), Kind::Pipe);
        assert_eq!(kind(w.as_fd()), Kind::Pipe);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(kind(a.as_fd()), Kind::Socket);
        let file = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        assert_eq!(kind(file.as_fd()), Kind::Other);
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(kind(null.as_fd()), Kind::Other);
        assert!(same_file(r.as_fd(), w.as_fd()), "a pipe's two ends are one pipe");
        assert!(!same_file(a.as_fd(), file.as_fd()));
    }

    #[test]
    fn restore_puts_the_flags_back() {
        let (r, _w) = std::io::pipe().unwrap();
        let fd = r.as_raw_fd();
        let flags = || OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        let before = flags();
        assert!(!before.contains(OFlag::O_NONBLOCK));
        let restore = Restore(vec![(fd, before)]);
        fcntl(fd, FcntlArg::F_SETFL(before | OFlag::O_NONBLOCK)).unwrap();
        assert!(flags().contains(OFlag::O_NONBLOCK));
        drop(restore);
        assert_eq!(flags(), before);
    }
}
