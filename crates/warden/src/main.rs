//! `warden`: keeps MCP servers alive. See `warden --help` and the README.

mod alerting;
mod attach;
mod cli;
mod commands;
mod events;
mod logfile;
mod logging;
#[cfg(feature = "otlp")]
mod otlp;
mod redact;
mod remote;
mod report;
mod systemd;
mod tune;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::Misbehave(args) = cli.command {
        // The bundled test server logs plainly to stderr and never returns on its own.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
            .init();
        return runtime().block_on(async {
            warden_testkit::cli::run(*args).await;
            ExitCode::SUCCESS
        });
    }
    // Flushes the log files (and exported spans) when main returns.
    let _logging = logging::init(&cli.log, matches!(cli.command, cli::Command::Run { .. }));
    runtime().block_on(commands::dispatch(cli.command))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}
