//! Where log lines go. Every command logs to stderr (human or JSON, `--log-format`), scrubbed
//! of secrets (`redact.rs`). `warden run` also writes daily files (`logfile.rs`) in the format
//! of `--log-format` if given, else `warden.logs.format`, else human — never with colors — and
//! through the same scrubbing. With the `otlp` feature, `warden run` can export its spans
//! (one per gateway call and per probe, target `warden::trace`) to an OpenTelemetry collector.
//!
//! The subscriber is installed once, before the config is read; the file layers stay silent
//! (and cost nothing but a flag check) until `run` calls [`start_files`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};
use warden_app::LogFilesStatus;

use crate::cli::{LogArgs, LogFormat};
use crate::logfile::Sink;

/// Which file layer writes: none until `start_files`.
const FILES_OFF: u8 = 0;
const FILES_HUMAN: u8 = 1;
const FILES_JSON: u8 = 2;
static FILES: AtomicU8 = AtomicU8::new(FILES_OFF);
static SINK: OnceLock<Sink> = OnceLock::new();
/// `--log-format` / `WARDEN_LOG_FORMAT`, if given.
static FORMAT_FLAG: OnceLock<Option<LogFormat>> = OnceLock::new();

/// Flushes the log files and the span exporter when `main` returns.
pub(crate) struct Guard {
    #[cfg(feature = "otlp")]
    otlp: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(sink) = SINK.get() {
            sink.flush(Duration::from_secs(2));
        }
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.otlp.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The log filter when neither `--log-level`, `WARDEN_LOG` nor `warden.log_level` names one.
const DEFAULT_FILTER: &str = "info,rmcp=warn";

/// The filters of the stderr and file layers, changed together by [`set_config_filter`].
static FILTERS: OnceLock<Vec<reload::Handle<EnvFilter, Registry>>> = OnceLock::new();
/// `--log-level` / `WARDEN_LOG` was given: it wins over the config.
static FILTER_FLAG: OnceLock<bool> = OnceLock::new();

fn env_filter(text: &str) -> EnvFilter {
    EnvFilter::try_new(text).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The filter `level` names (`--log-level` / `WARDEN_LOG`), or the default.
pub(crate) fn filter(level: Option<&str>) -> EnvFilter {
    env_filter(level.unwrap_or(DEFAULT_FILTER))
}

/// Applies the config's `warden.log_level` (at start and after every reload) unless the flag
/// or `WARDEN_LOG` named a filter; `None` goes back to the default.
pub(crate) fn set_config_filter(level: Option<&str>) {
    if FILTER_FLAG.get().copied().unwrap_or(false) {
        return;
    }
    let text = level.unwrap_or(DEFAULT_FILTER);
    for h in FILTERS.get().into_iter().flatten() {
        if let Err(e) = h.reload(env_filter(text)) {
            tracing::warn!(error = %e, "the log filter could not be changed");
        }
    }
}

/// Installs the subscriber. `run`: the command is `warden run` (file layers, OTLP).
pub(crate) fn init(log: &LogArgs, run: bool) -> Guard {
    let _ = FORMAT_FLAG.set(log.log_format);
    let _ = FILTER_FLAG.set(log.log_level.is_some());
    let mut handles = Vec::new();
    let mut filter = || {
        let (layer, handle) = reload::Layer::new(self::filter(log.log_level.as_deref()));
        handles.push(handle);
        layer
    };
    let stderr = || crate::redact::Stderr;
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![match log.log_format.unwrap_or(LogFormat::Human) {
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(stderr)
                .with_filter(filter())
                .boxed(),
            LogFormat::Human => tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(stderr)
                .with_filter(filter())
                .boxed(),
        }];
    if run {
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| FileLine)
                .with_filter(filter().and(FilesAre(FILES_HUMAN)))
                .boxed(),
        );
        layers.push(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(|| FileLine)
                .with_filter(filter().and(FilesAre(FILES_JSON)))
                .boxed(),
        );
    }
    #[cfg(feature = "otlp")]
    let otlp = if run {
        crate::otlp::provider(log.otlp_endpoint.as_deref())
            .inspect(|provider| layers.push(crate::otlp::layer(provider)))
    } else {
        None
    };
    if run {
        // `GET /logs`: JSON lines, formatted only while someone listens.
        layers.push(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(|| TapLine)
                .with_filter(filter().and(TapOn))
                .boxed(),
        );
    }
    let _ = FILTERS.set(handles);
    tracing_subscriber::registry().with(layers).init();
    Guard {
        #[cfg(feature = "otlp")]
        otlp,
    }
}

/// Starts writing the log files under `dir`, keeping `retention_days` days, in `--log-format`
/// if given, else `config_format`, else human.
pub(crate) fn start_files(
    dir: PathBuf,
    retention_days: u32,
    config_format: Option<warden_config::LogFormat>,
) -> std::io::Result<LogFilesStatus> {
    let json = match FORMAT_FLAG.get().copied().flatten() {
        Some(f) => f == LogFormat::Json,
        None => config_format == Some(warden_config::LogFormat::Json),
    };
    let status = LogFilesStatus::new(dir.clone());
    let sink = Sink::start(dir.clone(), retention_days, status.clone())?;
    if SINK.set(sink).is_err() {
        return Err(std::io::Error::other("the log files are already being written"));
    }
    FILES.store(if json { FILES_JSON } else { FILES_HUMAN }, Ordering::Relaxed);
    // Say at once if the directory cannot be made; the writer keeps trying.
    if let Err(e) = std::fs::create_dir_all(&dir) {
        status.failed(0, &e);
    }
    tracing::info!(
        dir = %dir.display(),
        retention_days,
        format = if json { "json" } else { "human" },
        "writing log files (warden.YYYY-MM-DD.log, UTC days)"
    );
    Ok(status)
}

/// Where `GET /logs` takes Warden's log lines from (set once `run` has started the app).
static TAP: OnceLock<warden_app::LogTap> = OnceLock::new();

/// Sends every log line, scrubbed, to `tap` from now on (for `GET /logs`).
pub(crate) fn tap_into(tap: warden_app::LogTap) {
    let _ = TAP.set(tap);
}

/// Enables the `/logs` layer while a subscriber listens.
struct TapOn;

impl<S> Filter<S> for TapOn {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        TAP.get().is_some_and(warden_app::LogTap::listened)
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
}

/// One formatted JSON line for `/logs`: scrubbed, then handed to the tap.
struct TapLine;

impl Write for TapLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(tap) = TAP.get() {
            tap.send(&String::from_utf8_lossy(&crate::redact::clean(buf)));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Enables a file layer while the files are written in its format. Never cached: the answer
/// changes once, when `run` starts the files.
struct FilesAre(u8);

impl<S> Filter<S> for FilesAre {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        FILES.load(Ordering::Relaxed) == self.0
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
}

/// One formatted line for the files: scrubbed, then queued for the writer thread.
struct FileLine;

impl Write for FileLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(sink) = SINK.get() {
            sink.send(crate::redact::clean(buf).into_owned());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
