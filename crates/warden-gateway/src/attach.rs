//! A desktop client's stdin/stdout bridged to a running Warden's `/mcp` (`warden run --stdio`
//! when a Warden already answers at the configured address).
//!
//! Both ends are rmcp transports — the stdio one the desktop client speaks to, and a Streamable
//! HTTP client that keeps the session id, the protocol version header and the standalone event
//! stream — so the bridge only moves JSON-RPC messages between them and never interprets them
//! (a request neither can read is answered under its id by `stdio_lane::screen`).

use std::net::SocketAddr;

use rmcp::service::RoleServer;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{IntoTransport, StreamableHttpClientTransport, Transport};

enum Moved<D, U> {
    FromClient(Option<D>),
    FromWarden(Option<U>),
}

/// Bridges stdin/stdout to the MCP endpoint of the Warden at `addr` until the client closes
/// stdin (Ok) or the running Warden goes away (Err, said on stderr by the caller).
/// `endpoint`: one of `warden.tools.endpoints` (`/endpoints/{name}/mcp`) instead of `/mcp`.
pub async fn bridge_stdio(
    addr: SocketAddr,
    token: Option<String>,
    endpoint: Option<&str>,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let path = endpoint.map_or("/mcp".to_owned(), |e| format!("/endpoints/{e}/mcp"));
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    let mut up = StreamableHttpClientTransport::with_client(http, config);
    let (input, output, _restore) = crate::own_stdio::stdio();
    // The client's lines reach rmcp's transport through a screen that answers a request rmcp
    // cannot read under its id, as standalone `run --stdio` does.
    let (rmcp_in, mut tap) = tokio::io::duplex(1024 * 1024);
    let (rmcp_out, lines_out) = warden_upstream::share_lines(output);
    let (rmcp_read, _unused) = tokio::io::split(rmcp_in);
    let screen = tokio::spawn(async move {
        crate::stdio_lane::screen(input, &mut tap, &lines_out, |_| false).await;
    });
    let mut down =
        IntoTransport::<RoleServer, std::io::Error, _>::into_transport((rmcp_read, rmcp_out));
    let result = loop {
        // Both receives are plain channel or framed reads: safe to drop the one that lost.
        let moved = tokio::select! {
            m = down.receive() => Moved::FromClient(m),
            m = up.receive() => Moved::FromWarden(m),
        };
        match moved {
            Moved::FromClient(None) => break Ok(()),
            Moved::FromClient(Some(m)) => {
                if let Err(e) = up.send(m).await {
                    break Err(format!("the running Warden at {addr} refused a message: {e}"));
                }
            }
            Moved::FromWarden(None) => {
                break Err(format!("the running Warden at {addr} closed the session"))
            }
            Moved::FromWarden(Some(m)) => {
                if down.send(m).await.is_err() {
                    // The client is gone.
                    break Ok(());
                }
            }
        }
    };
    let _ = up.close().await;
    screen.abort();
    result
}
