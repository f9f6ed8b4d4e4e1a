//! The `warden.alerts` block: rules, receivers and the notification timing (research §10.7;
//! Alertmanager's defaults for grouping).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::compile::{expand_field, secret_map};
use crate::model::Secret;
use crate::walk::{join, type_name, Diags, Obj};

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
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
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
#[derive(Clone, Debug)]
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
#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
pub enum ReceiverKind {
    Webhook {
        url: Secret,
        /// The URL with credentials and substituted values hidden.
        display_url: String,
        headers: BTreeMap<String, Secret>,
        format: WebhookFormat,
    },
    /// A program run without a shell; the payload (Alertmanager webhook JSON) on stdin.
    Command {
        command: String,
        args: Vec<String>,
        /// Pass Warden's whole environment, not only the allow-list (`warden_core::child_env`).
        inherit_env: bool,
    },
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Alertmanager's webhook receiver payload (version 4): what Alertmanager itself sends.
    AlertmanagerWebhook,
    /// Alertmanager's own API (`POST /api/v2/alerts`): a list of alerts; the URL is the
    /// Alertmanager base URL.
    Alertmanager,
    /// A Slack incoming-webhook body (`{"text": …}`).
    Slack,
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
#[derive(Clone, Debug)]
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

const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

pub(crate) fn compile_alerts(
    mut o: Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> AlertSettings {
    let mut a = AlertSettings::default();
    let one_s = Duration::from_secs(1);
    if let Some(v) = o.duration("evaluation_interval", one_s, Duration::from_secs(300), d) {
        a.evaluation_interval = v;
    }
    if o.has("group_by") {
        let list = crate::compile::string_list(&mut o, "group_by", d);
        a.group_by = list.into_iter().map(|(_, s)| s.to_owned()).collect();
    }
    if let Some(v) = o.duration("group_wait", Duration::ZERO, Duration::from_secs(3600), d) {
        a.group_wait = v;
    }
    if let Some(v) = o.duration("group_interval", one_s, Duration::from_secs(86_400), d) {
        a.group_interval = v;
    }
    if let Some(v) = o.duration("repeat_interval", Duration::from_secs(60), MAX_DURATION, d) {
        a.repeat_interval = v;
    }
    if let Some(v) = o.duration("max_delivery_age", Duration::from_secs(60), MAX_DURATION, d) {
        a.max_delivery_age = v;
    }
    if let Some(mut b) = o.obj("builtin", d) {
        for name in BUILTIN_RULES {
            let path = b.path_of(name);
            match b.get(name) {
                None | Some(Value::Bool(true)) => {}
                Some(Value::Bool(false)) => a.disabled_builtin.push((*name).to_owned()),
                Some(v @ Value::Object(_)) => {
                    let Some(mut r) = Obj::new(path, v, d) else { continue };
                    let over = BuiltinOverride {
                        for_: r.duration("for", Duration::ZERO, MAX_DURATION, d),
                        keep_firing_for: r.duration("keep_firing_for", Duration::ZERO, MAX_DURATION, d),
                        severity: severity(&mut r, "severity", d),
                    };
                    if r.bool("enabled", d) == Some(false) {
                        a.disabled_builtin.push((*name).to_owned());
                    }
                    r.finish(&[], d);
                    a.builtin_overrides.insert((*name).to_owned(), over);
                }
                Some(other) => d.error(
                    &path,
                    format!(
                        "must be true, false or {{\"for\", \"keep_firing_for\", \"severity\"}}, not {}",
                        type_name(other)
                    ),
                ),
            }
        }
        b.finish(&[], d);
    }
    let wpath = o.path_of("webhooks");
    for (i, item) in array(&mut o, "webhooks", d).iter().enumerate() {
        let path = format!("{wpath}[{i}]");
        if let Some(w) = Obj::new(path, item, d) {
            if let Some(r) = compile_webhook(w, a.receivers.len(), lookup, d) {
                a.receivers.push(r);
            }
        }
    }
    let cpath = o.path_of("commands");
    for (i, item) in array(&mut o, "commands", d).iter().enumerate() {
        let path = format!("{cpath}[{i}]");
        if let Some(c) = Obj::new(path, item, d) {
            if let Some(r) = compile_command(c, a.receivers.len(), lookup, d) {
                a.receivers.push(r);
            }
        }
    }
    let rpath = o.path_of("rules");
    let mut names = Vec::new();
    for (i, item) in array(&mut o, "rules", d).iter().enumerate() {
        let path = format!("{rpath}[{i}]");
        if let Some(r) = Obj::new(path.clone(), item, d).and_then(|r| compile_rule(r, d)) {
            if BUILTIN_RULES.contains(&r.name.as_str()) || names.contains(&r.name) {
                d.error(&join(&path, "alert"), format!("{:?} is already a rule's name", r.name));
            }
            names.push(r.name.clone());
            a.rules.push(r);
        }
    }
    o.finish(&[], d);
    a
}

fn array<'a>(o: &mut Obj<'a>, key: &'static str, d: &mut Diags) -> &'a [Value] {
    let path = o.path_of(key);
    match o.get(key) {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(other) => {
            d.error(&path, format!("must be a list, not {}", type_name(other)));
            &[]
        }
    }
}

fn receiver_common(o: &mut Obj<'_>, d: &mut Diags) -> (bool, Severity, Duration) {
    let send_resolved = o.bool("send_resolved", d).unwrap_or(true);
    let min_severity = severity(o, "min_severity", d).unwrap_or(Severity::Warning);
    let timeout = o
        .duration("timeout", Duration::from_millis(100), Duration::from_secs(300), d)
        .unwrap_or(Duration::from_secs(10));
    (send_resolved, min_severity, timeout)
}

fn severity(o: &mut Obj<'_>, key: &'static str, d: &mut Diags) -> Option<Severity> {
    let s = o.str(key, d)?;
    let parsed = Severity::parse(s);
    if parsed.is_none() {
        d.error(
            &o.path_of(key),
            format!("{s:?} is not a severity (use \"warning\" or \"critical\")"),
        );
    }
    parsed
}

fn compile_webhook(
    mut o: Obj<'_>,
    index: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Receiver> {
    let upath = o.path_of("url");
    let raw = o.str("url", d);
    if raw.is_none() && !o.has("url") {
        d.error(&upath, "is missing: a webhook needs a URL");
    }
    let format = match o.str("format", d) {
        None | Some("alertmanager_webhook" | "webhook") => WebhookFormat::AlertmanagerWebhook,
        Some("alertmanager") => WebhookFormat::Alertmanager,
        Some("slack") => WebhookFormat::Slack,
        Some(other) => {
            d.error(
                &o.path_of("format"),
                format!(
                    "{other:?} is not a webhook format (use \"alertmanager_webhook\", \"alertmanager\" or \"slack\")"
                ),
            );
            WebhookFormat::AlertmanagerWebhook
        }
    };
    let headers = secret_map(&mut o, "headers", lookup, d);
    let name = o.str("name", d).map(str::to_owned).unwrap_or_else(|| format!("webhook-{index}"));
    let common = receiver_common(&mut o, d);
    o.finish(&[], d);
    let raw = raw?;
    let (url, substituted) = expand_field(&upath, raw, lookup, d)?;
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        let shown = if substituted { raw } else { url.as_str() };
        d.error(&upath, format!("{shown:?} is not an http:// or https:// URL"));
        return None;
    }
    // Slack and many receivers put the credential in the path: show scheme and host only.
    let display_url = display_url(&url);
    Some(Receiver {
        name,
        kind: ReceiverKind::Webhook { url: Secret::new(url), display_url, headers, format },
        send_resolved: common.0,
        min_severity: common.1,
        timeout: common.2,
    })
}

/// `scheme://host[:port]/…` with the path, query and any credentials hidden.
fn display_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return "***".to_owned() };
    let after = &url[scheme_end + 3..];
    let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let rest = if authority.len() < after.len() { "/…" } else { "" };
    format!("{}://{host}{rest}", &url[..scheme_end])
}

fn compile_command(
    mut o: Obj<'_>,
    index: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Receiver> {
    let cpath = o.path_of("command");
    let command = o.str("command", d);
    if command.is_none() && !o.has("command") {
        d.error(&cpath, "is missing: a command hook needs a program");
    }
    let mut args = Vec::new();
    for (path, a) in crate::compile::string_list(&mut o, "args", d) {
        if let Some((v, _)) = expand_field(&path, a, lookup, d) {
            args.push(v);
        }
    }
    let name = o.str("name", d).map(str::to_owned).unwrap_or_else(|| format!("command-{index}"));
    let inherit_env = o.bool("inherit_env", d).unwrap_or(false);
    let common = receiver_common(&mut o, d);
    o.finish(&[], d);
    let (command, _) = expand_field(&cpath, command?, lookup, d)?;
    if command.trim().is_empty() {
        d.error(&cpath, "is empty");
        return None;
    }
    Some(Receiver {
        name,
        kind: ReceiverKind::Command { command, args, inherit_env },
        send_resolved: common.0,
        min_severity: common.1,
        timeout: common.2,
    })
}

fn compile_rule(mut o: Obj<'_>, d: &mut Diags) -> Option<AlertRule> {
    let name_path = o.path_of("alert");
    let name = o.str("alert", d).map(str::to_owned);
    match &name {
        None if !o.has("alert") => d.error(&name_path, "is missing: a rule needs a name"),
        Some(n) if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            d.error(&name_path, format!("{n:?} must be letters, digits and _ only"))
        }
        _ => {}
    }
    let mpath = o.path_of("metric");
    let metric = o.str("metric", d).map(str::to_owned);
    if metric.is_none() && !o.has("metric") {
        d.error(&mpath, "is missing: a rule needs the metric it watches");
    }
    let op = match o.str("op", d) {
        None | Some(">") => CompareOp::Gt,
        Some(">=") => CompareOp::Ge,
        Some("<") => CompareOp::Lt,
        Some("<=") => CompareOp::Le,
        Some("==") => CompareOp::Eq,
        Some("!=") => CompareOp::Ne,
        Some(other) => {
            d.error(
                &o.path_of("op"),
                format!("{other:?} is not a comparison (use >, >=, <, <=, == or !=)"),
            );
            CompareOp::Gt
        }
    };
    let tpath = o.path_of("threshold");
    let threshold = match o.get("threshold") {
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                d.error(&tpath, format!("must be a number, not {v}"));
                None
            }
        },
        None => {
            d.error(&tpath, "is missing: a rule needs a threshold");
            None
        }
    };
    let matchers = string_map(&mut o, "match", d);
    let for_ = o.duration("for", Duration::ZERO, MAX_DURATION, d).unwrap_or_default();
    let keep_firing_for =
        o.duration("keep_firing_for", Duration::ZERO, MAX_DURATION, d).unwrap_or_default();
    let severity = severity(&mut o, "severity", d).unwrap_or(Severity::Warning);
    let labels = string_map(&mut o, "labels", d);
    for reserved in ["alertname", "severity"] {
        if labels.contains_key(reserved) {
            d.error(&join(&o.path_of("labels"), reserved), "is set by Warden; remove it");
        }
    }
    let summary = o.str("summary", d).map(str::to_owned);
    o.finish(&["annotations"], d);
    Some(AlertRule {
        name: name?,
        metric: metric?,
        op,
        threshold: threshold?,
        matchers,
        for_,
        keep_firing_for,
        severity,
        labels,
        summary,
    })
}

fn string_map(o: &mut Obj<'_>, key: &'static str, d: &mut Diags) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let path = o.path_of(key);
    match o.get(key) {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    Value::Number(_) | Value::Bool(_) => {
                        out.insert(k.clone(), v.to_string());
                    }
                    other => d.error(
                        &join(&path, k),
                        format!("must be a string, not {}", type_name(other)),
                    ),
                }
            }
        }
        Some(other) => {
            d.error(&path, format!("must map label names to values, not {}", type_name(other)))
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOOK").then(|| "T0/B0/abcdefsecret".to_owned())
    }

    fn with_alerts(alerts: &str, server_extra: &str) -> Result<Loaded, ConfigError> {
        let text = format!(
            r#"{{ "mcpServers": {{ "s": {{ "command": "x" {server_extra} }} }},
                 "warden": {{ "alerts": {alerts} }} }}"#
        );
        compile(&text, &env)
    }

    fn errors(alerts: &str) -> Vec<String> {
        match with_alerts(alerts, "") {
            Ok(_) => panic!("expected errors for {alerts}"),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn builtin_rules_take_their_own_timings_and_severity() {
        let a = with_alerts(
            r#"{ "builtin": { "InstanceCritical": { "for": "2m", "keep_firing_for": "5m", "severity": "critical" },
                              "Drift": { "enabled": false }, "CrashLoop": true } }"#,
            "",
        )
        .unwrap()
        .config
        .warden
        .alerts;
        let o = &a.builtin_overrides["InstanceCritical"];
        assert_eq!(o.for_, Some(Duration::from_secs(120)));
        assert_eq!(o.keep_firing_for, Some(Duration::from_secs(300)));
        assert_eq!(o.severity, Some(Severity::Critical));
        assert!(!a.builtin_enabled("Drift") && a.builtin_enabled("CrashLoop"));
        let e = errors(
            r#"{ "builtin": { "CrashLoop": "off", "Drift": { "for": "soon", "sevrity": "x" } } }"#,
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("warden.alerts.builtin.CrashLoop: must be true, false or")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.starts_with("warden.alerts.builtin.Drift.for")), "{e:?}");
    }

    #[test]
    fn defaults_follow_alertmanager_and_the_research() {
        let a = with_alerts("{}", "").unwrap().config.warden.alerts;
        assert_eq!(a.evaluation_interval, Duration::from_secs(5));
        assert_eq!(a.group_by, vec!["alertname", "server"]);
        assert_eq!(a.group_wait, Duration::from_secs(30));
        assert_eq!(a.group_interval, Duration::from_secs(300));
        assert_eq!(a.repeat_interval, Duration::from_secs(4 * 3600));
        assert!(a.receivers.is_empty() && a.rules.is_empty());
        assert!(BUILTIN_RULES.iter().all(|r| a.builtin_enabled(r)));
    }

    #[test]
    fn a_full_alerts_block_compiles_and_its_secrets_are_known() {
        let l = with_alerts(
            r#"{ "group_wait": "10s", "repeat_interval": "1h", "builtin": { "CrashLoop": false },
                 "webhooks": [ { "url": "https://hooks.slack.com/services/${env:HOOK}", "format": "slack" },
                               { "url": "http://127.0.0.1:9093", "format": "alertmanager", "min_severity": "critical",
                                 "headers": { "Authorization": "Bearer ${env:HOOK}" } } ],
                 "commands": [ { "command": "/usr/local/bin/page", "args": ["--urgent"], "send_resolved": false } ],
                 "rules": [ { "alert": "SlowSearch", "metric": "latency_p95_ms", "op": ">=", "threshold": 500,
                              "match": { "server": "s" }, "for": "1m", "keep_firing_for": "2m",
                              "severity": "critical", "labels": { "team": "search" }, "summary": "slow" } ] }"#,
            r#", "objective": { "availability": 99.9 }"#,
        )
        .unwrap();
        let a = &l.config.warden.alerts;
        assert_eq!(a.group_wait, Duration::from_secs(10));
        assert!(!a.builtin_enabled("CrashLoop") && a.builtin_enabled("InstanceCritical"));
        assert_eq!(a.receivers.len(), 3);
        assert_eq!(a.receivers[0].name, "webhook-0");
        let ReceiverKind::Webhook { display_url, format, .. } = &a.receivers[0].kind else {
            panic!()
        };
        assert_eq!(
            (display_url.as_str(), *format),
            ("https://hooks.slack.com/…", WebhookFormat::Slack)
        );
        assert_eq!(a.receivers[1].min_severity, Severity::Critical);
        assert!(!a.receivers[2].send_resolved);
        let r = &a.rules[0];
        assert_eq!((r.name.as_str(), r.op, r.threshold), ("SlowSearch", CompareOp::Ge, 500.0));
        assert_eq!(r.for_, Duration::from_secs(60));
        assert_eq!(r.matchers["server"], "s");
        assert!((l.config.servers[0].objective.unwrap() - 0.999).abs() < 1e-12);
        // The webhook URL and the header carry a secret: logs are scrubbed of both.
        let secrets: Vec<&str> = l.config.secrets.iter().map(|s| s.expose()).collect();
        assert!(
            secrets.contains(&"https://hooks.slack.com/services/T0/B0/abcdefsecret"),
            "{secrets:?}"
        );
        assert!(secrets.contains(&"T0/B0/abcdefsecret"), "{secrets:?}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = errors(
            r#"{ "group_wait": "soon", "webhooks": [ { "format": "teams" }, { "url": "ftp://x" } ],
                 "commands": [ {} ], "builtin": { "Nope": false },
                 "rules": [ { "alert": "Bad name", "op": "~", "threshold": "high", "severity": "page!" },
                            { "alert": "CrashLoop", "metric": "up", "threshold": 1 } ] }"#,
        );
        let has = |p: &str| e.iter().any(|x| x.starts_with(p));
        for path in [
            "warden.alerts.group_wait",
            "warden.alerts.webhooks[0].url",
            "warden.alerts.webhooks[0].format",
            "warden.alerts.webhooks[1].url",
            "warden.alerts.commands[0].command",
            "warden.alerts.rules[0].alert",
            "warden.alerts.rules[0].metric",
            "warden.alerts.rules[0].op",
            "warden.alerts.rules[0].threshold",
            "warden.alerts.rules[0].severity",
            "warden.alerts.rules[1].alert",
        ] {
            assert!(has(path), "no error for {path}: {e:#?}");
        }
        let e = match with_alerts("{}", r#", "objective": { "availability": 100 }"#) {
            Err(e) => e.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            Ok(_) => panic!("100 % is not an objective"),
        };
        assert!(e[0].starts_with("mcpServers.s.objective.availability"), "{e:?}");
    }

    #[test]
    fn display_url_hides_path_and_credentials() {
        assert_eq!(
            super::display_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(super::display_url("http://u:p@127.0.0.1:9/x?k=v"), "http://127.0.0.1:9/…");
        assert_eq!(super::display_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
