//! `mcp-misbehave`: a deliberately misbehaving MCP server. See `--help`.

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = warden_testkit::cli::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
    warden_testkit::cli::run(args).await;
}
