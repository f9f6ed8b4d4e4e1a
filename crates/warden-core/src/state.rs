//! Instance identity, lifecycle states and the classification of failures (docs/contract.md).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// One running copy of a configured server: `name#index`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    server: Arc<str>,
    index: u32,
}

impl InstanceId {
    pub fn new(server: impl Into<Arc<str>>, index: u32) -> Self {
        Self { server: server.into(), index }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn index(&self) -> u32 {
        self.index
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.server, self.index)
    }
}

impl Serialize for InstanceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The lifecycle state of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Spawned or connecting; the MCP handshake has not finished.
    Starting,
    /// Answering probes and calls.
    Healthy,
    /// Still routable, but something is off (a failed probe, errors, slowness).
    Warning,
    /// Not routable: probes or calls keep failing. The process may still be alive.
    Critical,
    /// No live session: the process exited, was killed, or a reconnect is pending.
    Offline,
    /// Restart intensity exceeded: no automatic restart until reset or probation.
    Failed,
    /// Disabled in the config or stopped by an operator.
    Stopped,
}

impl InstanceState {
    /// Every state, in lifecycle order (for one-hot exports such as `warden_instance_state`).
    pub const ALL: [Self; 7] = [
        Self::Starting,
        Self::Healthy,
        Self::Warning,
        Self::Critical,
        Self::Offline,
        Self::Failed,
        Self::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Offline => "offline",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    /// Whether calls may be routed to an instance in this state.
    pub fn is_routable(self) -> bool {
        matches!(self, Self::Healthy | Self::Warning)
    }

    /// The `status` column value of `integration_health_metrics` for this state.
    pub fn metric_status(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Warning | Self::Starting => "warning",
            Self::Critical => "critical",
            Self::Offline | Self::Failed | Self::Stopped => "offline",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server's status, derived from its instances (and fallbacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// Why something failed, by cause (never by parsing error text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    Timeout,
    ConnectionError,
    Authentication,
    RateLimit,
    ServerError,
    Crash,
    Hang,
    ProtocolError,
}

impl FailureClass {
    /// Every class (for counters that export a zero for each class from the start).
    pub const ALL: [Self; 8] = [
        Self::Timeout,
        Self::ConnectionError,
        Self::Authentication,
        Self::RateLimit,
        Self::ServerError,
        Self::Crash,
        Self::Hang,
        Self::ProtocolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectionError => "connection_error",
            Self::Authentication => "authentication",
            Self::RateLimit => "rate_limit",
            Self::ServerError => "server_error",
            Self::Crash => "crash",
            Self::Hang => "hang",
            Self::ProtocolError => "protocol_error",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last error of an instance, classified, with a human message (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub class: FailureClass,
    pub message: String,
}

impl Reason {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self { class, message: message.into() }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// How a child process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: Timestamp,
    pub pid: Option<u32>,
}

impl ExitInfo {
    /// A clean exit: code 0 and no signal.
    pub fn is_success(&self) -> bool {
        self.code == Some(0) && self.signal.is_none()
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (_, Some(sig)) => format!("exited with signal {sig}"),
            (Some(code), None) => format!("exited with code {code}"),
            (None, None) => "exited".to_owned(),
        }
    }
}
