//! The MCP client side: how Warden reaches one instance of a server.
//!
//! The supervisor sees only the small [`Connector`] / [`Session`] pair defined here, so it is
//! tested with fakes; this crate and the gateway are the only ones that name `rmcp` types.
//! Implementations: a stdio child in its own process group ([`stdio`]), a remote server over
//! Streamable HTTP, with a legacy SSE fallback ([`remote`]), and an integration that is not an MCP
//! server at all, whose probe is a check ([`check`]: HTTP, TCP, command, PostgreSQL, SQLite).

/// A `memchr::memmem::Finder` for a constant needle, built once: building one costs more than
/// searching a short message with it, and the hop searches every message it passes.
#[macro_export]
macro_rules! finder {
    ($needle:expr) => {{
        static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new($needle));
        &*FINDER
    }};
}

mod activity;
mod catalog;
mod check;
mod client;
mod error;
mod fast;
#[cfg(test)]
mod fast_tests;
pub mod home;
mod lines;
mod relay;
mod remote;
#[cfg(test)]
mod remote_tests;
mod reply;
mod sse;
#[cfg(test)]
mod sse_tests;
mod stdio;
mod stdio_lane;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use warden_config::{ProbeMethod, ServerSpec};
use warden_core::{ExitInfo, InstanceId, Reason};

pub use activity::Activity;
pub use catalog::{Catalog, CatalogDiff, Entry, ToolEntry};
pub use check::CheckConnector;
pub use error::UpstreamError;
pub use lines::read_line as read_bounded_line;
pub use relay::{Call, Downstream, Notice, Origin, Progress, Relay};
pub use remote::RemoteConnector;
pub use reply::{object, Peek, Reply};
pub use stdio::StdioConnector;
pub use stdio_lane::{share_lines, Closed, LineSender, RmcpWriter};

/// The largest message accepted from a server, on any transport: a stdio line, a JSON answer,
/// an SSE event (a large tool list is one message).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The fast paths (remote `fast/`, stdio `stdio_lane`) are on unless
/// `WARDEN_UPSTREAM_FAST_PATH=0` (a switch for comparisons and a way out should a server
/// misbehave on them).
pub(crate) fn fast_path_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WARDEN_UPSTREAM_FAST_PATH").map_or(true, |v| v != "0"))
}

/// A boxed, sendable future (keeps the traits object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the server told us about itself during the handshake.
#[derive(Clone, Debug, Default)]
pub struct PeerInfo {
    pub protocol_version: String,
    pub server_name: String,
    pub server_version: String,
    /// Whether probes use `server/discover` (protocol 2026-07-28) instead of `ping`.
    pub modern: bool,
}

/// Something that happened to a live session, pushed to its supervisor.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    /// The child process exited (stdio only).
    Exited(ExitInfo),
    /// The transport ended: stdout EOF, a broken pipe, a closed HTTP session.
    Closed(Reason),
    /// The server announced that a list changed.
    ListChanged,
}

/// A freshly connected instance.
pub struct Connected {
    pub session: Box<dyn Session>,
    pub events: mpsc::Receiver<SessionEvent>,
    pub info: PeerInfo,
}

/// Starts or connects one instance and completes the MCP handshake.
pub trait Connector: Send + Sync + 'static {
    fn connect(
        &self,
        instance: InstanceId,
        deadline: Duration,
    ) -> BoxFuture<'_, Result<Connected, UpstreamError>>;
}

/// How to stop a stdio process: close stdin, wait `grace`, SIGTERM, wait `term`, SIGKILL.
#[derive(Clone, Copy, Debug)]
pub struct StopPolicy {
    pub grace: Duration,
    pub term: Duration,
}

/// One live MCP session with an instance.
pub trait Session: Send + Sync {
    /// One liveness probe; returns its round-trip time. An error *response* from the server
    /// still proves it alive and counts as success.
    fn probe(
        &self,
        method: ProbeMethod,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Duration, UpstreamError>>;
    /// Lists tools, resources and prompts (bypassing any cache).
    fn list_catalog(&self, timeout: Duration) -> BoxFuture<'_, Result<Catalog, UpstreamError>>;
    /// Forwards one request and returns its result as the server wrote it. A JSON-RPC error
    /// answer comes back as [`UpstreamError::Server`]; a call its client cancelled as
    /// [`UpstreamError::Cancelled`].
    fn request(&self, call: Call) -> BoxFuture<'_, Result<Reply, UpstreamError>>;
    /// Byte-level liveness: when the server last sent anything, and how much.
    fn activity(&self) -> Arc<Activity>;
    /// The process id of a stdio child.
    fn pid(&self) -> Option<u32>;
    /// Ends the session gracefully; returns how the process ended (stdio).
    fn shutdown(&self, policy: StopPolicy) -> BoxFuture<'static, Option<ExitInfo>>;
    /// Kills the whole process group at once (a hung stdio child). No-op for remote servers.
    fn kill(&self);
}

/// Implements the named [`Session`] methods of a wrapper by passing them to `self.$inner`
/// unchanged, so a wrapper spells out only what it changes (`pass_through!(core: probe,
/// list_catalog, activity, request);` inside `impl Session for …`).
macro_rules! pass_through {
    ($inner:ident: probe) => {
        fn probe(
            &self,
            method: ::warden_config::ProbeMethod,
            timeout: ::std::time::Duration,
        ) -> $crate::BoxFuture<'_, Result<::std::time::Duration, $crate::UpstreamError>> {
            self.$inner.probe(method, timeout)
        }
    };
    ($inner:ident: list_catalog) => {
        fn list_catalog(
            &self,
            timeout: ::std::time::Duration,
        ) -> $crate::BoxFuture<'_, Result<$crate::Catalog, $crate::UpstreamError>> {
            self.$inner.list_catalog(timeout)
        }
    };
    ($inner:ident: activity) => {
        fn activity(&self) -> ::std::sync::Arc<$crate::Activity> {
            self.$inner.activity()
        }
    };
    ($inner:ident: request) => {
        fn request(
            &self,
            call: $crate::Call,
        ) -> $crate::BoxFuture<'_, Result<$crate::Reply, $crate::UpstreamError>> {
            self.$inner.request(call)
        }
    };
    ($inner:ident: pid) => {
        fn pid(&self) -> Option<u32> {
            self.$inner.pid()
        }
    };
    ($inner:ident: shutdown) => {
        fn shutdown(
            &self,
            policy: $crate::StopPolicy,
        ) -> $crate::BoxFuture<'static, Option<::warden_core::ExitInfo>> {
            self.$inner.shutdown(policy)
        }
    };
    ($inner:ident: kill) => {
        fn kill(&self) {
            self.$inner.kill()
        }
    };
    ($inner:ident: $($method:ident),+) => {
        $($crate::pass_through!($inner: $method);)+
    };
}
pub(crate) use pass_through;

/// Builds the right connector for a server spec; server-to-client traffic goes to `relay`.
pub fn connector_for(spec: &ServerSpec, relay: &Relay) -> Arc<dyn Connector> {
    match &spec.transport {
        warden_config::Transport::Stdio { .. } => {
            Arc::new(StdioConnector::new(spec.clone(), relay.clone()))
        }
        warden_config::Transport::Remote { .. } => {
            Arc::new(RemoteConnector::new(spec.clone(), relay.clone()))
        }
        warden_config::Transport::Check(_) => Arc::new(CheckConnector::new(spec.clone())),
    }
}
