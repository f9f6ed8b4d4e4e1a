//! The MCP server side: one endpoint in front of every supervised server.
//!
//! `/mcp` (and `warden run --stdio`) aggregates every server's tools as `server__tool`;
//! `/servers/{name}/mcp` serves one server unprefixed. Every call goes to a routable instance
//! chosen by power of two choices on peak-EWMA latency × (calls in flight + 1); a server with
//! nothing routable falls back to its `fallback` servers, and otherwise answers at once with a
//! JSON-RPC error carrying `{server, reason, retry_after_ms}` — never a time-out.
//! This crate and `warden-upstream` are the only ones that name rmcp types.

mod handler;
mod route;

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;
use warden_supervisor::Registry;

pub use handler::Handler;
pub use route::{Routes, Unavailable};

/// JSON-RPC code for "no instance can serve this now" (in the −32000…−32019 range).
pub const UNAVAILABLE: i32 = -32001;
/// JSON-RPC code for "the instance failed while serving this call".
pub const UPSTREAM_FAILED: i32 = -32002;

/// The gateway: routes plus the MCP handlers that use them.
#[derive(Clone)]
pub struct Gateway {
    routes: Arc<Routes>,
}

impl Gateway {
    pub fn new(registry: &Registry) -> Self {
        Self { routes: Arc::new(Routes::new(registry)) }
    }

    /// Server names, for mounting `/servers/{name}/mcp`.
    pub fn server_names(&self) -> Vec<String> {
        self.routes.server_names()
    }

    /// The aggregated handler (`scope: None`) or one server's (`Some(name)`).
    pub fn handler(&self, scope: Option<String>) -> Handler {
        Handler::new(Arc::clone(&self.routes), scope)
    }

    /// Streamable HTTP for a handler. On a loopback listener rmcp's own Host check (DNS-rebinding
    /// protection) allows loopback names only; on any other listener it is off and Warden's
    /// guard (token, Origin) governs, since the operator chose to be reachable by other names.
    pub fn http_service(
        &self,
        scope: Option<String>,
        loopback: bool,
        stop: CancellationToken,
    ) -> StreamableHttpService<Handler, LocalSessionManager> {
        let handler = self.handler(scope);
        let mut config = StreamableHttpServerConfig::default()
            .with_cancellation_token(stop)
            .with_sse_keep_alive(Some(Duration::from_secs(15)));
        if !loopback {
            config = config.disable_allowed_hosts();
        }
        StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        )
    }

    /// Watches routability and catalogs, and tells connected clients when the tool list
    /// changes (a server's tools leave when nothing can serve them, and come back).
    pub fn spawn_change_watcher(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let routes = Arc::clone(&self.routes);
        tokio::spawn(async move { routes.watch_changes(stop).await })
    }

    /// Serves the aggregated endpoint on stdin/stdout until the client closes stdin.
    pub async fn serve_stdio(&self) -> Result<(), std::io::Error> {
        let running = self
            .handler(None)
            .serve((tokio::io::stdin(), tokio::io::stdout()))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let _ = running.waiting().await;
        Ok(())
    }
}
