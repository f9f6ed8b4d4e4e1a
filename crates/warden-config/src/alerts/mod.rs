//! The `warden.alerts` block: rules, receivers and the notification timing (research §10.7;
//! Alertmanager's defaults for grouping).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::Secret;

/// How bad an alert is. `Critical` pages; `Warning` is a ticket.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, never paging (a receiver takes it only with `min_severity: "info"`).
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Self::Info),
            "warning" | "ticket" => Some(Self::Warning),
            "critical" | "page" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// The names of the built-in rules (each can be turned off in `warden.alerts.builtin`).
pub const BUILTIN_RULES: &[&str] = &[
    "InstanceCritical",
    "ServerGroupUnavailable",
    "RestartIntensityExceeded",
    "CrashLoop",
    "PredictedFailure",
    "Drift",
    "SloFastBurn",
    "SloSlowBurn",
    "SloDrift",
];

/// Everything about alerting.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSettings {
    /// How often every rule is evaluated.
    pub evaluation_interval: Duration,
    /// Labels whose values put alerts into one notification.
    pub group_by: Vec<String>,
    /// A new group waits this long before its first notification.
    pub group_wait: Duration,
    /// A notified group that changed waits this long before the next notification.
    pub group_interval: Duration,
    /// An unchanged, still-firing group is notified again after this long.
    pub repeat_interval: Duration,
    /// An undelivered notification is retried for this long, then marked expired (kept).
    pub max_delivery_age: Duration,
    /// Built-in rules turned off.
    pub disabled_builtin: Vec<String>,
    /// Built-in rules with their own `for`, `keep_firing_for` or severity.
    pub builtin_overrides: BTreeMap<String, BuiltinOverride>,
    pub receivers: Vec<Receiver>,
    pub rules: Vec<AlertRule>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            evaluation_interval: Duration::from_secs(5),
            group_by: vec!["alertname".into(), "server".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            max_delivery_age: Duration::from_secs(86_400),
            disabled_builtin: Vec::new(),
            builtin_overrides: BTreeMap::new(),
            receivers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

impl AlertSettings {
    pub fn builtin_enabled(&self, name: &str) -> bool {
        !self.disabled_builtin.iter().any(|d| d == name)
    }
}

/// A built-in rule's timings or severity changed in `warden.alerts.builtin`
/// (`{"InstanceCritical": {"for": "2m", "keep_firing_for": "5m", "severity": "critical"}}`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuiltinOverride {
    pub for_: Option<Duration>,
    pub keep_firing_for: Option<Duration>,
    pub severity: Option<Severity>,
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq)]
pub struct Receiver {
    /// `webhook-0`, `command-1`, or the `name` the config gives.
    pub name: String,
    pub kind: ReceiverKind,
    /// Whether resolved alerts are sent too.
    pub send_resolved: bool,
    /// Alerts below this severity are not sent here.
    pub min_severity: Severity,
    /// One delivery attempt may take this long.
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReceiverKind {
    Webhook {
        url: Secret,
        /// The URL with credentials and substituted values hidden.
        display_url: String,
        headers: BTreeMap<String, Secret>,
        format: WebhookFormat,
    },
    /// Mail over SMTP: one message per notification.
    Email {
        host: String,
        port: u16,
        tls: SmtpTls,
        from: String,
        to: Vec<String>,
        username: Option<String>,
        password: Option<Secret>,
    },
    /// A program run without a shell; the payload (Alertmanager webhook JSON) on stdin.
    Command {
        command: String,
        args: Vec<String>,
        /// Pass Warden's whole environment, not only the allow-list (`warden_core::child_env`).
        inherit_env: bool,
    },
}

/// How an email receiver talks to its SMTP server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP, upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on this machine or a test.
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartTls => "starttls",
            Self::Tls => "tls",
            Self::None => "none",
        }
    }

    /// The port when the config names only `host`: submission (587) for STARTTLS, submissions
    /// (465) for TLS, 25 for plain SMTP.
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// The body a webhook receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Alertmanager's webhook receiver payload (version 4): what Alertmanager itself sends.
    AlertmanagerWebhook,
    /// Alertmanager's own API (`POST /api/v2/alerts`): a list of alerts; the URL is the
    /// Alertmanager base URL.
    Alertmanager,
    /// A Slack incoming-webhook body (`{"text": …}`).
    Slack,
    /// PagerDuty's Events API v2 (`trigger`/`resolve`, one event per group, its key as the
    /// `dedup_key`); the routing key is added at delivery, never stored.
    PagerDuty { routing_key: Secret },
}

/// How a rule compares the metric with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CompareOp {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
            Self::Eq => value == threshold,
            Self::Ne => value != threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }
}

/// A user rule: `metric op threshold` for every series that matches, held for `for`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRule {
    pub name: String,
    /// A per-instance signal (`latency_p95_ms`, `error_rate`, …) or any series name of
    /// `/metrics` (`warden_instance_up`, …).
    pub metric: String,
    pub op: CompareOp,
    pub threshold: f64,
    /// Only series whose labels equal these.
    pub matchers: BTreeMap<String, String>,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
}

mod compile;
mod email;

pub(crate) use compile::compile_alerts;

#[cfg(test)]
mod tests;
