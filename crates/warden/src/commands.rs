//! What each subcommand does.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use warden_app::{App, CheckOptions, LogFilesStatus, RunOptions};
use warden_config::{Config, ConfigError, Loaded, LogDir, LogSettings};
use warden_core::ServerStatus;
use warden_store::Location;

use crate::cli::{Command, ConfigArg, LogFileArgs};

/// sysexits' EX_USAGE: the config (or the command line) is wrong.
const EX_CONFIG: u8 = 64;
/// A runtime failure (e.g. the listen address is taken).
const EX_SOFTWARE: u8 = 70;

/// How many days of log files `warden run` keeps unless told otherwise.
const LOG_RETENTION_DAYS: u32 = 7;

pub(crate) async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Run { config, demo, listen, db, token, stdio, logs } => {
            run(config, demo, listen, db, token, stdio, logs).await
        }
        Command::Check { config, json, servers, timeout } => {
            check(config, json, servers, timeout).await
        }
        Command::Validate { config } => validate(config),
        Command::Misbehave(_) => unreachable!("handled in main"),
        Command::Status { remote, json, fleet } => {
            crate::remote::status(&remote, json, fleet).await
        }
        Command::Reload { remote, json } => crate::remote::reload(&remote, json).await,
        Command::Restart(a) => crate::remote::act(&a, "restart").await,
        Command::Stop(a) => crate::remote::act(&a, "stop").await,
        Command::Start(a) => crate::remote::act(&a, "start").await,
        Command::Reset(a) => crate::remote::act(&a, "reset").await,
        Command::Failover { name, action, remote } => {
            crate::remote::failover(&remote, &name, action).await
        }
        Command::Events(args) => crate::events::run(&args).await,
        Command::Alerts { remote, json } => crate::alerting::alerts(&remote, json).await,
        Command::Silence(cmd) => crate::alerting::silence(&cmd).await,
        Command::Tune(cmd) => crate::tune::tune(&cmd).await,
        Command::Report { kind, since, server, json, remote } => {
            crate::report::run(&remote, kind, &since, server.as_deref(), json).await
        }
    }
}

fn config_path(arg: &ConfigArg) -> PathBuf {
    arg.file.clone().unwrap_or_else(warden_config::default_config_path)
}

fn print_warnings(loaded: &Loaded) {
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
}

fn print_errors(e: &ConfigError) {
    for w in &e.warnings {
        eprintln!("warning: {w}");
    }
    eprint!("{e}");
}

fn load(arg: &ConfigArg) -> Result<Loaded, ExitCode> {
    match warden_config::load(&config_path(arg)) {
        Ok(l) => {
            crate::redact::add(&l.config.secrets);
            print_warnings(&l);
            Ok(l)
        }
        Err(e) => {
            print_errors(&e);
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

fn validate(arg: ConfigArg) -> ExitCode {
    match load(&arg) {
        Ok(l) => {
            let instances: u32 = l.config.servers.iter().map(|s| s.instance_count()).sum();
            println!(
                "{}: ok ({} servers, {} instances, {} warnings)",
                config_path(&arg).display(),
                l.config.servers.len(),
                instances,
                l.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn check(
    arg: ConfigArg,
    json: bool,
    servers: Vec<String>,
    timeout: std::time::Duration,
) -> ExitCode {
    let loaded = match load(&arg) {
        Ok(l) => l,
        Err(code) => return code,
    };
    for name in &servers {
        if loaded.config.server(name).is_none() {
            eprintln!("error: --server {name:?} is not in the config");
            return ExitCode::from(EX_CONFIG);
        }
    }
    let overview =
        warden_app::check(loaded.config, CheckOptions { servers, timeout, connectors: None }).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&overview).expect("the view serializes"));
    } else {
        print!("{}", warden_app::render_table(&overview));
    }
    ExitCode::from(match overview.status {
        ServerStatus::Healthy => 0,
        ServerStatus::Degraded => 1,
        ServerStatus::Unhealthy => 2,
    })
}

fn demo() -> Result<Config, ExitCode> {
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("error: cannot find this program's path for the demo: {e}");
        ExitCode::from(EX_SOFTWARE)
    })?;
    let text = warden_app::demo_config(&exe);
    warden_config::compile(&text, &|_| None).map(|l| l.config).map_err(|e| {
        print_errors(&e);
        ExitCode::from(EX_SOFTWARE)
    })
}

/// Where `warden run` writes its log files: `--log-dir`, else `warden.logs.dir`, else
/// `$XDG_STATE_HOME/warden/logs` (the database's default directory) — except for `--demo`,
/// which writes none unless told where. `None`: no files.
fn log_dir(args: &LogFileArgs, settings: &LogSettings, demo: bool) -> Option<PathBuf> {
    match args.log_dir.as_deref().map(LogDir::parse).or_else(|| settings.dir.clone()) {
        Some(LogDir::Off) => None,
        Some(LogDir::At(dir)) => Some(dir),
        None if demo => None,
        None => Some(warden_store::default_path().with_file_name("logs")),
    }
}

/// Starts the log files; a failure to start leaves stderr as the only log.
fn start_log_files(
    args: &LogFileArgs,
    settings: &LogSettings,
    demo: bool,
) -> Option<LogFilesStatus> {
    let dir = log_dir(args, settings, demo)?;
    let days = args.log_retention_days.or(settings.retention_days).unwrap_or(LOG_RETENTION_DAYS);
    match crate::logging::start_files(dir, days, settings.format) {
        Ok(status) => Some(status),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the log files; logging to stderr only");
            None
        }
    }
}

async fn run(
    arg: ConfigArg,
    demo_mode: bool,
    listen: Option<std::net::SocketAddr>,
    db: Option<String>,
    token: Option<String>,
    stdio_args: crate::cli::StdioArgs,
    logs: LogFileArgs,
) -> ExitCode {
    let (stdio, endpoint) = (stdio_args.stdio, stdio_args.endpoint);
    let (config, file) = if demo_mode {
        match demo() {
            Ok(c) => (c, None),
            Err(code) => return code,
        }
    } else {
        match load(&arg) {
            Ok(l) => (l.config, Some(config_path(&arg))),
            Err(code) => return code,
        }
    };
    crate::logging::set_config_filter(config.warden.log_level.as_deref());
    let db_text = db.or_else(|| config.warden.database.clone());
    let database = match db_text {
        Some(t) => match Location::parse(&t) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: --db: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        None => Location::Sqlite(warden_store::default_path()),
    };
    let listen_flag = listen;
    let listen = listen.unwrap_or(config.warden.listen);
    let token = match token {
        Some(t) if t.len() < 16 => {
            eprintln!("error: --token: use at least 16 characters");
            return ExitCode::from(EX_CONFIG);
        }
        Some(t) => {
            crate::redact::add(&[warden_config::Secret::new(t.clone())]);
            Some(t)
        }
        None => config.warden.token.as_ref().map(|t| t.expose().to_owned()),
    };
    if let Some(e) = endpoint.as_deref().filter(|e| !config.warden.tools.endpoints.contains_key(*e))
    {
        let known: Vec<&str> = config.warden.tools.endpoints.keys().map(String::as_str).collect();
        eprintln!(
            "error: --endpoint: the config has no endpoint {e:?} (warden.tools.endpoints: {})",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        );
        return ExitCode::from(EX_CONFIG);
    }
    if logs.log_dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
        eprintln!("error: --log-dir: name a directory, or \"none\"");
        return ExitCode::from(EX_CONFIG);
    }
    // Under --stdio, a Warden that already answers at the address is used, not duplicated: a
    // second desktop client (or a Warden service) must not make this one fail to bind.
    if stdio && crate::attach::warden_answers(listen).await {
        tracing::info!(%listen, "a Warden already runs here: bridging stdin/stdout to its /mcp");
        return match warden_gateway::bridge_stdio(listen, token, endpoint.as_deref()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EX_SOFTWARE)
            }
        };
    }
    // Standalone under --stdio: HTTP only when --listen asks for it.
    let http = (!stdio || listen_flag.is_some()).then_some(listen);
    let log_files = start_log_files(&logs, &config.warden.logs, demo_mode);
    if token.is_none() && http.is_some_and(|l| !l.ip().is_loopback()) {
        tracing::warn!(%listen, "listening beyond loopback without a token: anyone who can reach this address can use every server");
    }
    // `WARDEN_HTTP_THREADS` serving threads if set, else as many as the runtime has workers.
    let http_threads = match crate::positive_env("WARDEN_HTTP_THREADS") {
        Ok(n) => {
            Some(n.unwrap_or_else(|| tokio::runtime::Handle::current().metrics().num_workers()))
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let options =
        RunOptions { config, database, listen: http, token, connectors: None, http_threads };
    let mut app = match App::start(options).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    if let Some(status) = log_files {
        app.set_log_files(status);
    }
    crate::logging::tap_into(app.log_tap());
    // Live reload: SIGHUP, `warden reload`, the API and the file watch read this file again.
    if let Some(file) = file {
        app.enable_reload(
            file,
            Some(Arc::new(|s: &[warden_config::Secret]| crate::redact::add(s))),
        );
    }
    // Under systemd (Type=notify): ready now, then the watchdog and status lines.
    let notifier = crate::systemd::Notifier::from_env().map(Arc::new);
    let notify_task = notifier.as_ref().map(|n| {
        let liveness = app.liveness();
        let summary = liveness.summary();
        n.ready(&summary);
        Arc::clone(n).spawn(liveness, summary)
    });
    if stdio {
        tokio::select! {
            r = app.gateway().serve_stdio(endpoint.as_deref()) => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "the stdio MCP session failed");
                }
                tracing::info!("the stdio client went away");
            }
            _ = wait_for_signal(&app) => {}
        }
    } else {
        wait_for_signal(&app).await;
    }
    tracing::info!("stopping: every child gets close-stdin → SIGTERM → SIGKILL");
    // systemd stops watching once told STOPPING=1: no more pets or status lines.
    if let Some(task) = notify_task {
        task.abort();
    }
    if let Some(n) = &notifier {
        n.stopping();
    }
    app.shutdown().await;
    ExitCode::SUCCESS
}

/// Until SIGTERM or SIGINT; SIGHUP reloads the config (as `systemctl reload` sends it).
async fn wait_for_signal(app: &App) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler installs");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                // The reload logs what it applied, or every error.
                let _ = app.reload("signal").await;
            }
        }
    }
}
