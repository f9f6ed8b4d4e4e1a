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

/// mimalloc instead of glibc's malloc: a proxied call allocates ~300 times, and glibc's
/// per-thread arenas spent ~250 instructions on each allocate/free pair — 30 % of the
/// gateway hop's instructions under callgrind (docs/perf/gateway-profile.md, session 14).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::Misbehave(args) = cli.command {
        // The bundled test server logs plainly to stderr and never returns on its own, with
        // Warden's filter (rmcp's per-request lines left out unless `--log-level` asks).
        tracing_subscriber::fmt()
            .with_env_filter(logging::filter(cli.log.log_level.as_deref()))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
            .init();
        let Some(rt) = runtime(None) else { return ExitCode::from(64) };
        return rt.block_on(async {
            warden_testkit::cli::run(*args).await;
            ExitCode::SUCCESS
        });
    }
    // A desktop client's one session (`run --stdio`) is served by one worker: the wake-ups
    // between Warden's own tasks on a call's way (stdin reader, call, child's stdin writer,
    // its stdout reader, stdout writer) stay on one thread, ~55 µs less per call than two
    // workers in docs/benchmarks.md, with the same throughput at 8 calls in flight.
    let desktop = matches!(&cli.command, cli::Command::Run { stdio, .. } if stdio.stdio);
    let Some(rt) = runtime(desktop.then_some(1)) else { return ExitCode::from(64) };
    // Flushes the log files (and exported spans) when main returns.
    let _logging = logging::init(&cli.log, matches!(cli.command, cli::Command::Run { .. }));
    rt.block_on(commands::dispatch(cli.command))
}

/// A thread count from the environment: `None` when unset, an error naming the variable when
/// it is not a positive number.
pub(crate) fn positive_env(name: &str) -> Result<Option<usize>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!("{name} must be a positive number, not {v:?}")),
        },
    }
}

/// The runtime: `WARDEN_WORKER_THREADS` workers if set, else `default` if given, else one per
/// core. Its threads are named `warden-worker` and `warden-blocking` (tokio starts the workers
/// first, when the runtime is built), so `top -H` tells them apart. `None` (after saying why)
/// if the variable is not a positive number.
#[allow(clippy::print_stderr)]
fn runtime(default: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let workers = match positive_env("WARDEN_WORKER_THREADS") {
        Ok(n) => n.or(default).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    let started = std::sync::atomic::AtomicUsize::new(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(move || {
            let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n < workers { "warden-worker" } else { "warden-blocking" }.to_owned()
        })
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    Some(rt)
}
