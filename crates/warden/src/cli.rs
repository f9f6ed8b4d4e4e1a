//! The command line (docs/contract.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

/// Keeps MCP servers alive: supervises them, checks their health with the protocol itself,
/// recovers them when they crash or hang, and records everything.
#[derive(Parser, Debug)]
#[command(name = "warden", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Debug)]
pub(crate) struct LogArgs {
    /// Log format: human (the default; colored on a terminal) or json.
    #[arg(long, global = true, env = "WARDEN_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
    /// Log filter, e.g. `info`, `debug`, `warden=debug,info` (default `info,rmcp=warn`, or
    /// `warden.log_level` from the config; this flag wins over the config).
    #[arg(long, global = true, env = "WARDEN_LOG")]
    pub(crate) log_level: Option<String>,
    /// Export `warden run`'s spans (gateway calls, probes) over OTLP/HTTP to this collector,
    /// e.g. http://127.0.0.1:4318 (`/v1/traces` is appended). Without it, the standard
    /// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT variables turn it on.
    #[cfg(feature = "otlp")]
    #[arg(long, global = true)]
    pub(crate) otlp_endpoint: Option<String>,
}

/// `warden run`'s log files: one per UTC day, `warden.YYYY-MM-DD.log`.
#[derive(Args, Debug, Clone)]
pub(crate) struct LogFileArgs {
    /// Where to write the daily log files (overrides `warden.logs.dir`; default
    /// $XDG_STATE_HOME/warden/logs; `none` or `off`: no files).
    #[arg(long, env = "WARDEN_LOG_DIR")]
    pub(crate) log_dir: Option<String>,
    /// Days of log files to keep, today's included (overrides `warden.logs.retention_days`;
    /// default 7).
    #[arg(long, env = "WARDEN_LOG_RETENTION_DAYS",
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) log_retention_days: Option<u32>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ConfigArg {
    /// The config file (default: $XDG_CONFIG_HOME/warden/config.json, else ./warden.json).
    #[arg(short = 'c', long = "config", env = "WARDEN_CONFIG")]
    pub(crate) file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Supervise, probe, recover and record every configured server until stopped.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Run the bundled demo (three misbehaving servers) instead of a config file.
        #[arg(long, conflicts_with = "file")]
        demo: bool,
        /// Serve the HTTP API on this address (overrides `warden.listen`; default 127.0.0.1:7420).
        #[arg(long, env = "WARDEN_LISTEN")]
        listen: Option<SocketAddr>,
        /// The database: a path, sqlite://PATH, or postgres://USER:PASSWORD@HOST:PORT/DB shared
        /// by several replicas (default: $XDG_STATE_HOME/warden/warden.db). Prefer the variable
        /// for a URL with a password: a flag is visible to every local user.
        #[arg(long, env = "WARDEN_DB")]
        db: Option<String>,
        /// Require this bearer token on every HTTP request but the health probes (overrides
        /// `warden.token`; at least 16 characters).
        #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        stdio: StdioArgs,
        #[command(flatten)]
        logs: LogFileArgs,
    },
    /// Start every server once, probe it, print a table (or JSON), and stop. Exit 0 healthy,
    /// 1 degraded, 2 unhealthy, 64 invalid config.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the server view as JSON.
        #[arg(long)]
        json: bool,
        /// Check only this server (repeatable).
        #[arg(long = "server")]
        servers: Vec<String>,
        /// Stop waiting for states to settle after this long.
        #[arg(long, value_parser = duration, default_value = "30s")]
        timeout: Duration,
    },
    /// Report every config error at once, with the path of each bad field; exit 64 on error.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// A deliberately misbehaving MCP server, for tests and the demo.
    #[command(hide = true)]
    Misbehave(Box<warden_testkit::cli::Args>),
    /// Show a running Warden's servers and instances (exit 0 healthy, 1 degraded,
    /// 2 unhealthy, 69 unreachable).
    Status {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the server view as JSON.
        #[arg(long)]
        json: bool,
        /// Every replica sharing the database (`/api/servers?scope=fleet`): each instance with
        /// its replica, and which replicas are live, gone or stopped.
        #[arg(long)]
        fleet: bool,
    },
    /// Make a running Warden read its config file again and apply what changed (only the
    /// servers that changed are touched). Exit 0 applied, 64 the config was refused (every
    /// error is printed; the running config stays), 69 unreachable.
    Reload {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart a server's instances (gracefully) on a running Warden.
    Restart(ActionArgs),
    /// Stop a server's instances on a running Warden; they stay stopped until `start`.
    Stop(ActionArgs),
    /// Start a stopped or failed server's instances on a running Warden.
    Start(ActionArgs),
    /// Clear a server's restart history (backoff, crash-loop limit) on a running Warden.
    Reset(ActionArgs),
    /// Control a server's failover to its fallback servers on a running Warden.
    Failover {
        /// The server whose failover to control.
        name: String,
        /// enable, disable, trigger (fail over now), test (probe the fallbacks), restore.
        #[arg(value_enum)]
        action: FailoverCmd,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print a running Warden's recent events, or follow them live with --follow.
    Events(EventsArgs),
    /// Show the alerts firing (and pending) on a running Warden (exit 0 none firing, 1 some).
    Alerts {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the whole alerting view (firing, pending, silences, receivers, outbox) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mute alerts for a while on a running Warden: add, list, expire.
    #[command(subcommand)]
    Silence(SilenceCmd),
    /// Tuning of a running Warden: what is in force, what the records suggest (`show`), apply
    /// it, set a value by hand, revert a change or all of them. Every change is recorded.
    #[command(subcommand)]
    Tune(TuneCmd),
    /// A report over a period from a running Warden: failures (classes, time to recover,
    /// recoveries, alerts), performance (latency, per-tool usage, suggestions), capacity
    /// (throughput trend, when to add a replica) or availability (against each objective).
    Report {
        #[arg(value_enum)]
        kind: ReportKind,
        /// The period's start: a duration before now (7d, 24h, 30m) or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Only this server.
        #[arg(long)]
        server: Option<String>,
        /// Print the API's JSON answer (`/api/reports/KIND`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ReportKind {
    Failures,
    Performance,
    Capacity,
    Availability,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TuneCmd {
    /// The values in force, the learned proposals and the recent changes.
    Show {
        /// How far back the evidence reaches (default: `warden.tuning.lookback`, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Make the learned changes (or, with --dry-run, only list them).
    Apply {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Set PARAMETER (timeout, health.interval, health.timeout, weight) of SERVER to VALUE
    /// (a duration like 30s, or a weight 0.1–1 with --instance), within its safe range.
    Set {
        server: String,
        parameter: String,
        value: String,
        /// The instance index, for a weight.
        #[arg(long)]
        instance: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Undo one change (its id from `warden tune show`).
    Revert {
        id: i64,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Undo every change in force (of one server).
    Reset {
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum SilenceCmd {
    /// Silence every alert whose labels match all MATCHERS (`server=search`,
    /// `alertname!=CrashLoop`) for DURATION.
    Add {
        /// label=value or label!=value (at least one).
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(short, long, default_value = "2h")]
        duration: String,
        /// Why (shown to whoever looks later).
        #[arg(short, long)]
        comment: Option<String>,
        /// Who (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List the active silences.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// End a silence now.
    Expire {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub(crate) struct EventsArgs {
    /// Keep printing events as they happen, until interrupted (reconnects if Warden restarts).
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// Only this server's events.
    #[arg(long)]
    pub(crate) server: Option<String>,
    /// Only events of this kind (state_changed, process_exited, failure, recovered, …).
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// How many recent events to print first (with --follow, 0 prints only new ones).
    #[arg(short = 'n', long, default_value_t = 20)]
    pub(crate) limit: u32,
    /// One JSON object per line, exactly as Warden sends them.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// How to reach a running Warden.
#[derive(Args, Debug, Clone)]
pub(crate) struct RemoteArgs {
    /// Warden's HTTP address.
    #[arg(long, env = "WARDEN_URL", default_value = "http://127.0.0.1:7420")]
    pub(crate) url: String,
    /// The bearer token, if Warden requires one.
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ActionArgs {
    /// The server to act on.
    pub(crate) name: String,
    /// Only this instance (its index: 0 for name#0).
    #[arg(long)]
    pub(crate) instance: Option<u32>,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum FailoverCmd {
    Enable,
    Disable,
    Trigger,
    Test,
    Restore,
}

/// `warden run --stdio [--endpoint NAME]`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct StdioArgs {
    /// Also serve the aggregated MCP endpoint on stdin/stdout, so a desktop client can
    /// launch Warden as its one MCP server; Warden stops when the client closes stdin.
    #[arg(long)]
    pub(crate) stdio: bool,
    /// Under --stdio: serve `warden.tools.endpoints.NAME` instead, whose session starts from
    /// that endpoint's tool exposure.
    #[arg(long, requires = "stdio", value_name = "NAME")]
    pub(crate) endpoint: Option<String>,
}
