//! The `mcp-misbehave` command line, shared by the standalone binary and `warden misbehave`.
#![allow(clippy::print_stderr)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;

use crate::{GarbageWriter, Knobs, Misbehave};

fn dur(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// A deliberately misbehaving MCP server, for testing MCP supervisors and gateways.
#[derive(Parser, Debug, Clone)]
#[command(name = "mcp-misbehave", version)]
pub struct Args {
    /// Serve Streamable HTTP at this address (path /mcp) instead of stdio. Port 0 picks one;
    /// the address is printed to stderr as `listening on http://ADDR/mcp`.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Serve the legacy HTTP+SSE transport (2024-11-05) at this address (`/sse`, `/messages`).
    #[arg(long, conflicts_with = "http")]
    pub sse: Option<SocketAddr>,
    /// Write the bound HTTP address to this file once listening.
    #[arg(long)]
    pub port_file: Option<std::path::PathBuf>,
    /// Wait this long before serving (a slow start-up).
    #[arg(long, value_parser = dur)]
    pub startup_delay: Option<Duration>,
    /// Exit at once with --exit-code (a crash loop).
    #[arg(long)]
    pub exit_on_start: bool,
    /// Answer the first `tools/list` this late (a server that connects at once but is slow to
    /// list its tools).
    #[arg(long, value_parser = dur)]
    pub first_list_delay: Option<Duration>,
    /// Latency added to every request.
    #[arg(long, value_parser = dur, default_value = "0s")]
    pub latency: Duration,
    /// Up to this much more latency, uniformly at random.
    #[arg(long, value_parser = dur, default_value = "0s")]
    pub latency_jitter: Duration,
    /// Start a latency ramp after this long…
    #[arg(long, value_parser = dur)]
    pub ramp_after: Option<Duration>,
    /// …growing by this many milliseconds every second.
    #[arg(long, default_value_t = 0.0)]
    pub ramp_ms_per_s: f64,
    /// Share of tool calls answered with a JSON-RPC internal error (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Exit on the N-th tool call.
    #[arg(long)]
    pub crash_after_calls: Option<u64>,
    /// Exit this long after start.
    #[arg(long, value_parser = dur)]
    pub crash_after: Option<Duration>,
    /// The exit code for crashes.
    #[arg(long, default_value_t = 1)]
    pub exit_code: i32,
    /// Stop answering everything after this long.
    #[arg(long, value_parser = dur)]
    pub hang_after: Option<Duration>,
    /// Stop answering everything from the N-th tool call on.
    #[arg(long)]
    pub hang_after_calls: Option<u64>,
    /// Write a non-JSON line to stdout this often (stdio only).
    #[arg(long, value_parser = dur)]
    pub garbage_every: Option<Duration>,
    /// Write a log line to stderr this often.
    #[arg(long, value_parser = dur)]
    pub stderr_every: Option<Duration>,
    /// Add or remove a tool, and announce it, this often.
    #[arg(long, value_parser = dur)]
    pub tools_change_every: Option<Duration>,
    /// Start a grandchild process (`sleep`) in the same process group.
    #[arg(long)]
    pub spawn_child: bool,
    /// Leave probes (`ping`, `server/discover`) unanswered while a tool call runs (busy, not
    /// hung).
    #[arg(long)]
    pub busy_ignores_probes: bool,
    /// Also serve the tools, resources, prompts, completion and logging that the official MCP
    /// conformance suite (`@modelcontextprotocol/conformance`) calls.
    #[arg(long)]
    pub conformance: bool,
    /// Also serve the tools in this file (a `tools/list` answer's `tools` array), as if they
    /// were this server's (benchmarks of tool search over many real catalogs).
    #[arg(long)]
    pub catalog: Option<std::path::PathBuf>,
}

/// The tools of a `tools/list` answer saved as a JSON array; exits on a bad file.
fn read_catalog(path: &std::path::Path) -> Vec<rmcp::model::Tool> {
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
    match parsed {
        Ok(tools) => tools,
        Err(e) => {
            eprintln!("mcp-misbehave: --catalog {}: {e}", path.display());
            std::process::exit(2);
        }
    }
}

/// Runs the server until it is killed, crashes as asked, or its client goes away.
pub async fn run(args: Args) {
    if args.exit_on_start {
        eprintln!("mcp-misbehave: exiting at once with code {}", args.exit_code);
        std::process::exit(args.exit_code);
    }
    if let Some(d) = args.startup_delay {
        tokio::time::sleep(d).await;
    }
    let _child = args
        .spawn_child
        .then(|| std::process::Command::new("sleep").arg("3600").spawn().expect("sleep starts"));
    let knobs = Knobs {
        latency: args.latency,
        latency_jitter: args.latency_jitter,
        ramp_after: args.ramp_after,
        ramp_ms_per_s: args.ramp_ms_per_s,
        error_rate: args.error_rate,
        crash_after_calls: args.crash_after_calls,
        crash_after: args.crash_after,
        exit_code: args.exit_code,
        hang_after: args.hang_after,
        hang_after_calls: args.hang_after_calls,
        tools_change_every: args.tools_change_every,
        conformance: args.conformance,
        busy_ignores_probes: args.busy_ignores_probes,
        catalog: args.catalog.as_deref().map(read_catalog).unwrap_or_default(),
        first_list_delay: args.first_list_delay,
    };
    let server = Misbehave::new(knobs.clone());
    if let Some(after) = knobs.crash_after {
        let code = knobs.exit_code;
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            tracing::warn!(code, "crashing as asked");
            std::process::exit(code);
        });
    }
    if let Some(every) = knobs.tools_change_every {
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                s.change_tools().await;
            }
        });
    }
    if let Some(every) = args.stderr_every {
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(every).await;
                n += 1;
                tracing::info!(n, "still here");
            }
        });
    }
    match (args.http, args.sse) {
        (Some(addr), _) => serve_http(server, addr, args.port_file).await,
        (None, Some(addr)) => {
            let listener = bind(addr, "sse", args.port_file).await;
            crate::sse::serve_legacy_sse(server, listener).await;
        }
        (None, None) => serve_stdio(server, args.garbage_every).await,
    }
}

async fn serve_stdio(server: Misbehave, garbage_every: Option<Duration>) {
    let due = Arc::new(AtomicBool::new(false));
    if let Some(every) = garbage_every {
        let due = Arc::clone(&due);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                due.store(true, Ordering::Relaxed);
            }
        });
    }
    let stdout = GarbageWriter::new(tokio::io::stdout(), due);
    let eof = Arc::new(tokio::sync::Notify::new());
    let stdin = EofNotice { inner: tokio::io::stdin(), eof: Arc::clone(&eof) };
    match server.serve((stdin, stdout)).await {
        Ok(running) => {
            // A server exits when its input ends (the MCP stdio shutdown). rmcp 3.9 keeps its
            // service up to 5 s after end of input while a peer handle lives; do not wait.
            tokio::select! {
                _ = running.waiting() => {}
                () = eof.notified() => std::process::exit(0),
            }
        }
        Err(e) => {
            eprintln!("mcp-misbehave: handshake failed: {e}");
            std::process::exit(2);
        }
    }
}

/// Stdin that says when it reached end of input.
struct EofNotice {
    inner: tokio::io::Stdin,
    eof: Arc<tokio::sync::Notify>,
}

impl tokio::io::AsyncRead for EofNotice {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.eof.notify_one();
        }
        r
    }
}

async fn serve_http(server: Misbehave, addr: SocketAddr, port_file: Option<std::path::PathBuf>) {
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = bind(addr, "mcp", port_file).await;
    axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        app,
    )
    .await
    .expect("serve HTTP");
}

/// Binds, says where (stderr and the port file), and returns the listener.
async fn bind(
    addr: SocketAddr,
    path: &str,
    port_file: Option<std::path::PathBuf>,
) -> tokio::net::TcpListener {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the HTTP address");
    let bound = listener.local_addr().expect("a bound address");
    eprintln!("listening on http://{bound}/{path}");
    if let Some(p) = port_file {
        std::fs::write(&p, bound.to_string()).expect("write the port file");
    }
    listener
}
