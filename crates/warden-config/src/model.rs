//! The validated configuration model. Every value here has passed validation; defaults follow
//! docs/contract.md.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A value that must never appear in a log, an API answer or the database.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for handing to a child process or an HTTP header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Servers in the order the file lists them.
    pub servers: Vec<ServerSpec>,
    pub warden: WardenSettings,
    /// Every value that came from the environment, and every env and header value, longest
    /// first (6 characters or more): log output is scrubbed of these.
    pub secrets: Vec<Secret>,
}

impl Config {
    pub fn server(&self, name: &str) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// Warden's own settings (the top-level `warden` block).
#[derive(Clone, Debug)]
pub struct WardenSettings {
    pub listen: SocketAddr,
    /// `sqlite://…` URL or a path; `None` means the XDG default path.
    pub database: Option<String>,
    /// How long raw samples and events are kept.
    pub retention: Duration,
    /// How often each instance's metrics are sampled into the store.
    pub metrics_interval: Duration,
    /// Bearer token required on every HTTP request but the health probes.
    pub token: Option<Secret>,
    /// Most client sessions open at once on the HTTP endpoints; more are refused (503).
    pub max_sessions: usize,
    /// A client session with no request for this long is closed, open GET stream or not.
    pub session_idle_timeout: Duration,
    /// Largest MCP request body accepted (413 beyond).
    pub max_request_body: usize,
    /// When `/readyz` says ready.
    pub readiness: Readiness,
    /// Warden's own log files (`warden.logs`).
    pub logs: LogSettings,
    pub alerts: crate::alerts::AlertSettings,
    pub prediction: PredictionSettings,
    pub tuning: TuningSettings,
    pub reload: ReloadSettings,
    /// Warden's log filter (`warden.log_level`: `info`, `debug`, `warden=debug,info`); the
    /// `--log-level` flag or `WARDEN_LOG` wins over it.
    pub log_level: Option<String>,
    /// When Warden's own health is degraded or unhealthy (`warden.health_thresholds`).
    pub health_thresholds: HealthThresholds,
    /// Free labels shown in `/health/status` `metadata` (`environment`, `region`, …).
    pub metadata: std::collections::BTreeMap<String, String>,
    /// How Warden's own MCP tools are named (`warden.tools`).
    pub tools: ToolSettings,
}

/// Warden's own health rules (the seed's `HealthCheckResponse` status rules): the database
/// pool's utilization and Warden's memory (a share of its limit) degrade it, then make it
/// unhealthy; a slow database round trip degrades it.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthThresholds {
    pub pool_degraded: f64,
    pub pool_unhealthy: f64,
    pub memory_degraded: f64,
    pub memory_unhealthy: f64,
    pub database_latency_degraded: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            pool_degraded: 0.8,
            pool_unhealthy: 0.95,
            memory_degraded: 0.8,
            memory_unhealthy: 0.95,
            database_latency_degraded: Duration::from_millis(100),
        }
    }
}

/// Live reload (`warden.reload`).
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadSettings {
    /// Reload when the config file changes on disk (SIGHUP and the API work either way).
    pub watch: bool,
    /// How long a removed (or replaced) instance's calls in flight may take before it is
    /// stopped.
    pub grace: Duration,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self { watch: true, grace: Duration::from_secs(30) }
    }
}

/// Learned tuning (`warden.tuning`): off unless `auto`; `apply_tuning` works either way.
#[derive(Clone, Debug, PartialEq)]
pub struct TuningSettings {
    /// Apply what was learned every `interval` without being asked.
    pub auto: bool,
    pub interval: Duration,
    /// How far back the evidence reaches.
    pub lookback: Duration,
}

impl Default for TuningSettings {
    fn default() -> Self {
        Self {
            auto: false,
            interval: Duration::from_secs(3600),
            lookback: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Failure prediction (`warden.prediction`).
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionSettings {
    pub enabled: bool,
    /// Nothing is predicted before an instance has been watched this long (its baseline).
    pub warmup: Duration,
}

impl Default for PredictionSettings {
    fn default() -> Self {
        // A minute: long enough for a first baseline (3 batches of 10 s), short enough that a
        // server that leaks or slows right after Warden starts is watched.
        Self { enabled: true, warmup: Duration::from_secs(60) }
    }
}

/// The readiness policy of `/readyz`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Readiness {
    /// Every server marked `critical` is routable; with none marked, no server is still
    /// starting (the default).
    #[default]
    Critical,
    /// Every enabled server is routable.
    All,
    /// At least one server is routable.
    Any,
    /// Always, once Warden serves HTTP.
    None,
}

/// Warden's own log files (`warden.logs`). Each field is optional: `--log-dir`,
/// `--log-retention-days` and `--log-format` (and their `WARDEN_*` variables) win over these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Where the daily files go (`"none"` or `"off"`: no files).
    pub dir: Option<LogDir>,
    /// How many days of files to keep, today's included.
    pub retention_days: Option<u32>,
    /// The files' format.
    pub format: Option<LogFormat>,
}

/// Where Warden writes its log files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDir {
    /// No log files.
    Off,
    At(PathBuf),
}

impl LogDir {
    /// `none` and `off` (any case) turn the files off; anything else is a directory.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            t if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("off") => Self::Off,
            t => Self::At(PathBuf::from(t)),
        }
    }
}

/// The format of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl Default for WardenSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            database: None,
            retention: Duration::from_secs(30 * 86_400),
            metrics_interval: Duration::from_secs(10),
            token: None,
            max_sessions: 1000,
            session_idle_timeout: Duration::from_secs(30 * 60),
            max_request_body: 4 * 1024 * 1024,
            readiness: Readiness::default(),
            logs: LogSettings::default(),
            alerts: crate::alerts::AlertSettings::default(),
            prediction: PredictionSettings::default(),
            tuning: TuningSettings::default(),
            reload: ReloadSettings::default(),
            log_level: None,
            health_thresholds: HealthThresholds::default(),
            metadata: Default::default(),
            tools: ToolSettings::default(),
        }
    }
}

/// Warden's own MCP tools and what each client session is shown (`warden.tools`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSettings {
    /// Put before each tool's name: `warden__` by default; `orchestrator_` gives the seeds'
    /// `orchestrator_integration_monitor`, …
    pub prefix: String,
    /// What a new client session on the aggregated endpoint is shown.
    pub exposure: ExposureSetting,
    /// Categories added to (or replacing the description of) the built-in ones: name → what
    /// its tools do, in words the static classifier matches tools against.
    pub categories: BTreeMap<String, String>,
    /// The model that chooses tools for a prompt (`analyze_prompt`); static when absent or
    /// failing.
    pub llm: Option<LlmSettings>,
    /// More aggregated endpoints, `/endpoints/{name}/mcp`, each starting its sessions from its
    /// own exposure.
    pub endpoints: BTreeMap<String, ExposureSetting>,
}

/// Which API the tool-choosing model speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmProvider {
    /// OpenAI's chat completions (OpenAI, llama.cpp's server, Ollama, vLLM, …).
    OpenAi,
    /// Google's Gemini `generateContent`.
    Gemini,
}

impl LlmProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Gemini => "gemini",
        }
    }
}

/// `warden.tools.llm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmSettings {
    pub provider: LlmProvider,
    /// The API's base: `https://api.openai.com/v1`, `http://127.0.0.1:8080/v1`,
    /// `https://generativelanguage.googleapis.com/v1beta`.
    pub url: String,
    pub model: String,
    pub api_key: Option<Secret>,
    pub timeout: Duration,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            prefix: "warden__".to_owned(),
            exposure: ExposureSetting::All,
            categories: BTreeMap::new(),
            llm: None,
            endpoints: BTreeMap::new(),
        }
    }
}

/// `warden.tools.exposure`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExposureSetting {
    /// Every tool of every server (and Warden's own).
    #[default]
    All,
    /// Only Warden's meta-tools until the client picks (`analyze_prompt`, `expose_tools`).
    Meta,
    /// The tools of these categories, and Warden's meta-tools.
    Categories(Vec<String>),
}

/// What happens to a server's calls when it has nothing routable (`fallback_strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FallbackStrategy {
    /// Its fallbacks take its calls while it is down, and it takes them back when it is up.
    #[default]
    GracefulDegradation,
    /// No fallback tier: a call fails at once while it is down.
    FailFast,
    /// When nothing (itself or a fallback) is routable, read-only tools are answered from the
    /// last good result kept for the same arguments, marked stale.
    OfflineMode,
    /// No automatic fail-over or fail-back: only the operator moves its calls.
    Manual,
}

impl FallbackStrategy {
    pub const ALL: [FallbackStrategy; 4] =
        [Self::GracefulDegradation, Self::FailFast, Self::OfflineMode, Self::Manual];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GracefulDegradation => "graceful_degradation",
            Self::FailFast => "fail_fast",
            Self::OfflineMode => "offline_mode",
            Self::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// `categories` of a server: a list for all its tools, or `{tool: [..], "*": [..]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCategories {
    pub all: Vec<String>,
    pub per_tool: BTreeMap<String, Vec<String>>,
}

impl ToolCategories {
    /// What the config says of `tool` (its own list, else the server's), if anything.
    pub fn of(&self, tool: &str) -> Option<&[String]> {
        match self.per_tool.get(tool) {
            Some(c) => Some(c),
            None if !self.all.is_empty() => Some(&self.all),
            None => None,
        }
    }
}

/// A read-only tool call that shows a server really works (`smoke_test`), made by the
/// comprehensive health check.
#[derive(Clone, Debug, PartialEq)]
pub struct SmokeTest {
    pub tool: String,
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// One configured MCP server.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSpec {
    pub name: String,
    pub transport: Transport,
    /// Stdio: copies of the process. Remote: one instance per URL.
    pub replicas: u32,
    pub fallback: Vec<String>,
    /// Whether tool annotations (read-only, idempotent) are believed.
    pub trusted: bool,
    /// Tools the operator declares safe to retry and to coalesce, whatever their annotations.
    pub retry_tools: Vec<String>,
    /// Tools whose results may be served from a cache, with how long a result stays fresh.
    pub cache: BTreeMap<String, Duration>,
    /// How calls are spread over instances.
    pub balance: Balance,
    /// Whether Warden is not ready (`/readyz`) while this server has nothing routable.
    pub critical: bool,
    /// Default deadline for a call to this server.
    pub timeout: Duration,
    pub health: HealthPolicy,
    pub restart: RestartPolicy,
    pub disabled: bool,
    /// The availability objective (0.999 for 99.9 %) the SLO burn-rate alerts measure against.
    pub objective: Option<f64>,
    /// The child's memory limit: the RSS forecast warns before it is reached.
    pub memory_limit: Option<u64>,
    /// Keep one more (stdio) instance stopped in reserve: started while another instance is
    /// predicted to fail, stopped again once none has been for 5 minutes.
    pub standby: bool,
    /// Tools never listed nor callable through Warden (`disabledTools`, as mcp-hub and Cline
    /// write it).
    pub disabled_tools: Vec<String>,
    /// Labels the operator groups servers by (`integration_monitor`'s `server_types`).
    pub tags: Vec<String>,
    /// Categories the operator gives its tools (`categories`): for every tool, and per tool.
    pub categories: ToolCategories,
    pub fallback_strategy: FallbackStrategy,
    pub smoke_test: Option<SmokeTest>,
}

impl ServerSpec {
    pub fn is_stdio(&self) -> bool {
        matches!(self.transport, Transport::Stdio { .. })
    }

    /// Whether this is an integration (`integrations`), not an MCP server: it is supervised and
    /// reported like one, but the gateway never routes to it.
    pub fn is_check(&self) -> bool {
        matches!(self.transport, Transport::Check(_))
    }

    /// What kind of thing is watched: `mcp`, or the integration's check kind.
    pub fn kind(&self) -> &'static str {
        match &self.transport {
            Transport::Check(c) => c.kind(),
            _ => "mcp",
        }
    }

    /// What is watched, secret-free: the command, the URL's display form, the address, the path.
    pub fn target(&self) -> String {
        match &self.transport {
            Transport::Stdio { command, .. } => command.clone(),
            Transport::Remote { display_urls, .. } => display_urls.join(", "),
            Transport::Check(c) => c.target(),
        }
    }

    /// The number of instances this server runs (its standby not counted).
    pub fn instance_count(&self) -> u32 {
        match &self.transport {
            Transport::Stdio { .. } => self.replicas,
            Transport::Remote { urls, .. } => urls.len() as u32,
            Transport::Check(_) => 1,
        }
    }

    /// Instances plus the standby, if the server has one (its index is `instance_count()`).
    pub fn slot_count(&self) -> u32 {
        self.instance_count() + u32::from(self.standby && self.is_stdio())
    }

    /// Whether instance `index` is the standby.
    pub fn is_standby(&self, index: u32) -> bool {
        self.standby && self.is_stdio() && index == self.instance_count()
    }
}

/// How calls are spread over a server's instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Power of two choices on peak-EWMA latency × (calls in flight + 1) (the default).
    #[default]
    PeakEwma,
    /// In turn, ignoring latency (for comparison, or for servers with per-call state).
    RoundRobin,
}

/// How Warden reaches a server. Its `Debug` shows only the display forms of args and URLs.
#[derive(Clone, PartialEq)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        /// Args with every substituted `${…}` value replaced by `***`, for logs and APIs.
        display_args: Vec<String>,
        env: BTreeMap<String, Secret>,
        cwd: Option<PathBuf>,
        /// Pass Warden's whole environment, not only the allow-list (`warden_core::child_env`).
        inherit_env: bool,
    },
    Remote {
        urls: Vec<String>,
        /// URLs with credentials and substituted values hidden, for logs and APIs.
        display_urls: Vec<String>,
        headers: BTreeMap<String, Secret>,
        kind: RemoteKind,
    },
    /// An integration that is not an MCP server: one check per probe.
    Check(CheckSpec),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdio { command, display_args, env, cwd, inherit_env, .. } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", display_args)
                .field("env", env)
                .field("cwd", cwd)
                .field("inherit_env", inherit_env)
                .finish(),
            Self::Remote { display_urls, headers, kind, .. } => f
                .debug_struct("Remote")
                .field("urls", display_urls)
                .field("headers", headers)
                .field("kind", kind)
                .finish(),
            Self::Check(c) => f.debug_tuple("Check").field(c).finish(),
        }
    }
}

/// One integration's check (the `integrations` block). Its `Debug` shows display forms only.
#[derive(Clone, PartialEq)]
pub enum CheckSpec {
    Http(HttpCheck),
    /// The tool-choosing model's API (`warden.tools.llm`), checked as an HTTP endpoint (its model
    /// list) but reported as kind `llm`.
    Llm(HttpCheck),
    /// `host:port`; host names are resolved at every check.
    Tcp {
        address: String,
    },
    Command(CommandCheck),
    /// A fresh connection and `SELECT 1` per check.
    Postgres {
        url: Secret,
        /// `postgres://host:port/db`, without user, password or parameters.
        display: String,
    },
    /// Opened read-only (never created); `SELECT count(*) FROM sqlite_master` per check.
    Sqlite {
        path: PathBuf,
    },
}

impl CheckSpec {
    /// `http`, `tcp`, `command`, `postgres` or `sqlite`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Llm(_) => "llm",
            Self::Tcp { .. } => "tcp",
            Self::Command(_) => "command",
            Self::Postgres { .. } => "postgres",
            Self::Sqlite { .. } => "sqlite",
        }
    }

    /// What is checked, secret-free.
    pub fn target(&self) -> String {
        match self {
            Self::Http(h) | Self::Llm(h) => h.display_url.clone(),
            Self::Tcp { address } => address.clone(),
            Self::Command(c) => c.command.clone(),
            Self::Postgres { display, .. } => display.clone(),
            Self::Sqlite { path } => path.display().to_string(),
        }
    }
}

impl fmt::Debug for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(h) | Self::Llm(h) => f
                .debug_struct("Http")
                .field("url", &h.display_url)
                .field("method", &h.method)
                .field("expect_status", &h.expect_status)
                .field("headers", &h.headers)
                .field("json_field", &h.json_field)
                .field("json_equals", &h.json_equals)
                .finish(),
            Self::Tcp { address } => f.debug_struct("Tcp").field("address", address).finish(),
            Self::Command(c) => f
                .debug_struct("Command")
                .field("command", &c.command)
                .field("args", &c.display_args)
                .field("env", &c.env)
                .field("cwd", &c.cwd)
                .field("expect_exit", &c.expect_exit)
                .field("inherit_env", &c.inherit_env)
                .finish(),
            Self::Postgres { display, .. } => {
                f.debug_struct("Postgres").field("url", display).finish()
            }
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
        }
    }
}

/// An HTTP check: the answer's status, and optionally one field of its JSON body.
#[derive(Clone, PartialEq)]
pub struct HttpCheck {
    pub url: Secret,
    /// `scheme://host:port/…`: no credentials, path or query.
    pub display_url: String,
    pub method: HttpMethod,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub headers: BTreeMap<String, Secret>,
    /// The body field to look at, as the operator wrote it and as a JSON pointer.
    pub json_field: Option<JsonField>,
    /// The value the field must have; without it, the field must exist and not be false/null.
    pub json_equals: Option<serde_json::Value>,
}

/// A field of a JSON body: `data.state` or `/data/state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonField {
    /// As written in the config (for messages).
    pub shown: String,
    /// As a JSON pointer (RFC 6901).
    pub pointer: String,
}

/// The request method of an HTTP check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
}

/// A command check: no shell, its own process group; passes on the expected exit code.
#[derive(Clone, PartialEq)]
pub struct CommandCheck {
    pub command: String,
    pub args: Vec<String>,
    /// Args with every substituted `${…}` value replaced by its reference, for logs and APIs.
    pub display_args: Vec<String>,
    pub env: BTreeMap<String, Secret>,
    pub cwd: Option<PathBuf>,
    pub expect_exit: i32,
    /// Pass Warden's whole environment, not only the allow-list (`warden_core::child_env`).
    pub inherit_env: bool,
}

/// Which HTTP protocol a remote server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteKind {
    /// Streamable HTTP, falling back to legacy SSE when the server does not speak it.
    Auto,
    StreamableHttp,
    Sse,
}

/// Which request is the liveness probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMethod {
    /// `server/discover` on servers speaking 2026-07-28, `ping` on older ones.
    Auto,
    Ping,
    ToolsList,
}

/// The health-check policy of one server (docs/contract.md).
#[derive(Clone, Debug, PartialEq)]
pub struct HealthPolicy {
    pub interval: Duration,
    /// Extra random delay added to each interval, as a fraction (0.1 = up to +10 %).
    pub jitter: f64,
    pub timeout: Duration,
    /// Re-probe this soon after a first failure.
    pub edge_interval: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    /// Bytes from the server within this window count as alive (busy is not hung).
    pub busy_window: Duration,
    /// Kill as hung after this long with no byte from the server while probes are outstanding.
    pub hang_timeout: Duration,
    /// How often tools/resources/prompts are listed again.
    pub catalog_interval: Duration,
    /// The MCP handshake must finish within this.
    pub startup_timeout: Duration,
    pub method: ProbeMethod,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            jitter: 0.1,
            timeout: Duration::from_secs(2),
            edge_interval: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            busy_window: Duration::from_secs(10),
            hang_timeout: Duration::from_secs(30),
            catalog_interval: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(60),
            method: ProbeMethod::Auto,
        }
    }
}

/// When a stopped process is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartMode {
    /// Never restart automatically.
    Never,
    /// Restart after a crash, a non-zero exit, stdout EOF, a hang kill or a failed start.
    OnFailure,
    /// Restart after any exit, even a clean one.
    Always,
}

/// Exponential backoff with jitter.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// ± this fraction of each delay is random (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// The restart policy of one server (docs/contract.md).
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    pub backoff: BackoffPolicy,
    /// More than this many restarts inside `window` ⇒ `failed`.
    pub max_restarts: u32,
    pub window: Duration,
    /// The backoff starts over after this long healthy.
    pub reset_after: Duration,
    /// A `failed` instance is tried again this often (`None`: only on operator reset).
    pub probation: Option<Duration>,
    /// Stop: close stdin, wait this long, then SIGTERM.
    pub stop_grace: Duration,
    /// Then wait this long after SIGTERM before SIGKILL.
    pub term_timeout: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::OnFailure,
            backoff: BackoffPolicy::default(),
            max_restarts: 5,
            window: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
            probation: Some(Duration::from_secs(300)),
            stop_grace: Duration::from_secs(2),
            term_timeout: Duration::from_secs(5),
        }
    }
}
