//! Compiling the `warden.alerts` block: receivers (webhooks, commands), rules, overrides of
//! the built-in rules, grouping and delivery settings.

use crate::fields::{expand_field, origin_display, secret_map};
use crate::model::Secret;
use crate::walk::{join, type_name, Diags, Obj};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

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
        let list = crate::fields::string_list(&mut o, "group_by", d);
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
    let ppath = o.path_of("pagerduty");
    for (i, item) in array(&mut o, "pagerduty", d).iter().enumerate() {
        let path = format!("{ppath}[{i}]");
        if let Some(p) = Obj::new(path, item, d) {
            if let Some(r) = compile_pagerduty(p, a.receivers.len(), lookup, d) {
                a.receivers.push(r);
            }
        }
    }
    let epath = o.path_of("emails");
    for (i, item) in array(&mut o, "emails", d).iter().enumerate() {
        let path = format!("{epath}[{i}]");
        if let Some(e) = Obj::new(path, item, d) {
            if let Some(r) = super::email::compile_email(e, a.receivers.len(), lookup, d) {
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

pub(super) fn receiver_common(o: &mut Obj<'_>, d: &mut Diags) -> (bool, Severity, Duration) {
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
            format!("{s:?} is not a severity (use \"info\", \"warning\" or \"critical\")"),
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
    let display_url = origin_display(&url);
    Some(Receiver {
        name,
        kind: ReceiverKind::Webhook { url: Secret::new(url), display_url, headers, format },
        send_resolved: common.0,
        min_severity: common.1,
        timeout: common.2,
    })
}

/// PagerDuty's Events API v2: `{name, routing_key, url?, min_severity, send_resolved, timeout}`.
fn compile_pagerduty(
    mut o: Obj<'_>,
    index: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Receiver> {
    let kpath = o.path_of("routing_key");
    let key = o.str("routing_key", d);
    if key.is_none() && !o.has("routing_key") {
        d.error(&kpath, "is missing: PagerDuty needs the integration's routing key");
    }
    let upath = o.path_of("url");
    let url = o.str("url", d).unwrap_or("https://events.pagerduty.com/v2/enqueue").to_owned();
    let name = o.str("name", d).map(str::to_owned).unwrap_or_else(|| format!("pagerduty-{index}"));
    let common = receiver_common(&mut o, d);
    o.finish(&[], d);
    let (key, _) = expand_field(&kpath, key?, lookup, d)?;
    let (url, _) = expand_field(&upath, &url, lookup, d)?;
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        d.error(&upath, format!("{url:?} is not an http:// or https:// URL"));
        return None;
    }
    Some(Receiver {
        name,
        kind: ReceiverKind::Webhook {
            display_url: origin_display(&url),
            url: Secret::new(url),
            headers: Default::default(),
            format: WebhookFormat::PagerDuty { routing_key: Secret::new(key) },
        },
        send_resolved: common.0,
        min_severity: common.1,
        timeout: common.2,
    })
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
    for (path, a) in crate::fields::string_list(&mut o, "args", d) {
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
