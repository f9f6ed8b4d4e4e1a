//! The configuration: an `mcpServers` JSON file (Claude Desktop, Cursor, VS Code and mcp-hub files
//! load unchanged) plus Warden's own keys and `integrations` (things that are not MCP servers,
//! compiled to servers with [`Transport::Check`]), compiled in one pass into a validated [`Config`].
//!
//! Compilation never stops at the first problem: every error is collected with the path of the
//! field (`mcpServers.x.health.interval: "5 parsecs" is not a duration`), and every unknown key
//! becomes a warning that names the nearest known key.

mod alerts;
mod compile;
mod diff;
mod duration;
mod expand;
mod fields;
mod integrations;
mod model;
mod policy;
mod server;
mod settings;
mod walk;

pub use alerts::{
    AlertRule, AlertSettings, BuiltinOverride, CompareOp, Receiver, ReceiverKind, Severity,
    SmtpTls, WebhookFormat, BUILTIN_RULES,
};
pub use compile::{compile, compile_as, load, ConfigError, Diagnostic, Format, Loaded};
pub use diff::{ConfigDiff, InPlace, Resized};
pub use duration::{format_duration, parse_duration};
pub use model::{
    BackoffPolicy, Balance, CheckSpec, CommandCheck, Config, ExposureSetting, FallbackStrategy,
    HealthPolicy, HealthThresholds, HttpCheck, HttpMethod, JsonField, LlmProvider, LlmSettings,
    LogDir, LogFormat, LogSettings, PredictionSettings, ProbeMethod, Readiness, ReloadSettings,
    RemoteKind, RestartMode, RestartPolicy, Secret, ServerSpec, SmokeTest, ToolCategories,
    ToolSettings, Transport, TuningSettings, WardenSettings,
};

/// Where Warden looks for its config when none is named: `$XDG_CONFIG_HOME/warden/config.json`
/// (or `~/.config/warden/config.json`) if it exists, else `./warden.json`.
pub fn default_config_path() -> std::path::PathBuf {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")));
    if let Some(dir) = xdg {
        let candidate = dir.join("warden").join("config.json");
        if candidate.exists() {
            return candidate;
        }
    }
    std::path::PathBuf::from("warden.json")
}

#[cfg(test)]
mod tests;
