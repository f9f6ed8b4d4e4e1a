//! What receivers get: Alertmanager's webhook payload (version 4), Alertmanager's own API body
//! (`POST /api/v2/alerts`), and a Slack incoming-webhook body.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use warden_config::Receiver;

use crate::{stamp, Alert, AlertStatus, Labels, Notification};

/// Alertmanager writes this for "no end" in its webhook payload.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The part of `n` meant for `r` (severity floor, resolved or not), or `None` if nothing is.
pub fn for_receiver(n: &Notification, r: &Receiver) -> Option<Notification> {
    let alerts: Vec<Alert> = n
        .alerts
        .iter()
        .filter(|a| a.severity >= r.min_severity)
        .filter(|a| r.send_resolved || a.status == AlertStatus::Firing)
        .cloned()
        .collect();
    if alerts.is_empty() {
        return None;
    }
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    Some(Notification { alerts, status, ..n.clone() })
}

/// Labels (or annotations) every alert has with the same value.
fn common(alerts: &[Alert], pick: fn(&Alert) -> &Labels) -> Labels {
    let Some(first) = alerts.first() else { return Labels::new() };
    pick(first)
        .iter()
        .filter(|(k, v)| alerts.iter().all(|a| pick(a).get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Alertmanager's webhook receiver payload, version 4.
pub fn webhook(n: &Notification, receiver: &str, external_url: &str) -> Value {
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": a.status.as_str(),
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": stamp(a.starts_at),
                "endsAt": a.ends_at.map(stamp).unwrap_or_else(|| ZERO_TIME.to_owned()),
                "generatorURL": generator_url(external_url, a),
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status.as_str(),
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common(&n.alerts, |a| &a.labels),
        "commonAnnotations": common(&n.alerts, |a| &a.annotations),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

/// Alertmanager's API body (`POST /api/v2/alerts`): firing alerts carry an `endsAt` a few
/// minutes ahead, so Alertmanager resolves them by itself if Warden goes quiet; the sender
/// re-posts firing alerts every minute.
pub fn alertmanager(alerts: &[Alert], external_url: &str, now: DateTime<Utc>) -> Value {
    let list: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let ends = a.ends_at.unwrap_or(now + chrono::Duration::minutes(4));
            json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": stamp(a.starts_at),
                "endsAt": stamp(ends),
                "generatorURL": generator_url(external_url, a),
            })
        })
        .collect();
    Value::Array(list)
}

/// A Slack incoming-webhook body: one line per alert.
pub fn slack(n: &Notification) -> Value {
    let firing = n.alerts.iter().filter(|a| a.status == AlertStatus::Firing).count();
    let title = match n.status {
        AlertStatus::Firing => format!("[FIRING:{firing}]"),
        AlertStatus::Resolved => "[RESOLVED]".to_owned(),
    };
    let group: Vec<&str> = n.group_labels.values().map(String::as_str).collect();
    let mut text = format!("*{title} {}*", group.join(" "));
    for a in &n.alerts {
        let mark = if a.status == AlertStatus::Firing { "🔥" } else { "✅" };
        let summary = a.annotations.get("summary").map(String::as_str).unwrap_or(&a.name);
        text.push_str(&format!("\n{mark} {} ({}): {summary}", a.name, a.severity.as_str()));
    }
    json!({ "text": text })
}

/// PagerDuty's Events API v2 event for one notification (one group): `trigger` while any alert
/// fires, else `resolve`; the group key (hashed) is the `dedup_key`, so the incident follows the
/// group as Alertmanager's own PagerDuty integration does. The routing key is added at delivery.
pub fn pagerduty(n: &Notification, external_url: &str) -> Value {
    use std::hash::{Hash, Hasher};
    let firing: Vec<&Alert> = n.alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    let top = n.alerts.iter().map(|a| a.severity).max().unwrap_or_default();
    let names: Vec<&str> = {
        let mut v: Vec<&str> = n.alerts.iter().map(|a| a.name.as_str()).collect();
        v.dedup();
        v
    };
    let summary = match firing.as_slice() {
        [one] => one.annotations.get("summary").cloned().unwrap_or_else(|| one.name.clone()),
        _ => format!("[{}] {}", n.alerts.len(), names.join(", ")),
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    n.group_key.hash(&mut h);
    let server = common(&n.alerts, |a| &a.labels).get("server").cloned();
    json!({
        "event_action": if firing.is_empty() { "resolve" } else { "trigger" },
        "dedup_key": format!("warden-{:016x}", h.finish()),
        "payload": {
            // PagerDuty caps the summary at 1024 characters.
            "summary": summary.chars().take(1024).collect::<String>(),
            "source": server.clone().unwrap_or_else(|| "warden".to_owned()),
            "severity": top.as_str(),
            "timestamp": n.alerts.iter().map(|a| a.starts_at).min(),
            "component": server,
            "group": "warden",
            "class": names.first(),
            "custom_details": {
                "alerts": n.alerts.iter().map(|a| json!({
                    "alert": a.name, "status": a.status, "severity": a.severity.as_str(),
                    "labels": a.labels, "annotations": a.annotations, "value": a.value,
                })).collect::<Vec<_>>(),
            },
        },
        "client": "Warden",
        "client_url": external_url,
        "links": firing.first().map(|a| vec![json!({ "href": generator_url(external_url, a), "text": "Warden" })]).unwrap_or_default(),
    })
}

/// An email for one notification: `{subject, text}` (no secret: the SMTP credentials are
/// added at delivery). The subject leads with the state and the worst severity, as Alertmanager's
/// email does: `[FIRING:2] SloFastBurn, ServerDown (critical)`.
pub fn email(n: &Notification, external_url: &str) -> Value {
    let firing = n.alerts.iter().filter(|a| a.status == AlertStatus::Firing).count();
    let top = n.alerts.iter().map(|a| a.severity).max().unwrap_or_default();
    let mut names: Vec<&str> = n.alerts.iter().map(|a| a.name.as_str()).collect();
    names.dedup();
    let server = common(&n.alerts, |a| &a.labels).get("server").cloned();
    let subject = format!(
        "[{}] {}{} ({})",
        if firing > 0 { format!("FIRING:{firing}") } else { "RESOLVED".to_owned() },
        names.join(", "),
        server.map(|s| format!(" on {s}")).unwrap_or_default(),
        top.as_str()
    );
    let mut text = String::new();
    for a in &n.alerts {
        text.push_str(&format!("{} — {} ({})\n", a.name, a.status.as_str(), a.severity.as_str()));
        for (k, v) in &a.annotations {
            text.push_str(&format!("  {k}: {v}\n"));
        }
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!("  labels: {}\n", labels.join(", ")));
        text.push_str(&format!("  since: {}\n", a.starts_at.to_rfc3339()));
        if let Some(end) = a.ends_at {
            text.push_str(&format!("  ended: {}\n", end.to_rfc3339()));
        }
        text.push_str(&format!("  {}\n\n", generator_url(external_url, a)));
    }
    text.push_str(&format!("Sent by Warden ({external_url}).\n"));
    json!({ "subject": subject, "text": text })
}

fn generator_url(external_url: &str, a: &Alert) -> String {
    match a.labels.get("server") {
        Some(s) => format!("{}/api/servers/{s}", external_url.trim_end_matches('/')),
        None => external_url.to_owned(),
    }
}
