//! Which notifications go out, with Alertmanager's semantics (research §6.2, §10.7): silences
//! and inhibition mute alerts; the rest are grouped by `group_by`; a new group is sent after
//! `group_wait`, a changed one at most every `group_interval`, an unchanged firing one again
//! after `repeat_interval`; a resolved alert is sent once, and only if its firing was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warden_config::AlertSettings;

use crate::{Alert, AlertStatus, Labels, Now};

/// Grouping and timing.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
}

impl From<&AlertSettings> for DispatchConfig {
    fn from(a: &AlertSettings) -> Self {
        Self {
            group_by: a.group_by.clone(),
            group_wait: a.group_wait,
            group_interval: a.group_interval,
            repeat_interval: a.repeat_interval,
        }
    }
}

/// `name=value` (or `name!=value` with `equal: false`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default = "yes")]
    pub equal: bool,
}

fn yes() -> bool {
    true
}

impl Matcher {
    /// Parses `name=value` or `name!=value`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, value, equal) = match (s.split_once("!="), s.split_once('=')) {
            (Some((n, v)), _) => (n, v, false),
            (None, Some((n, v))) => (n, v, true),
            _ => {
                return Err(format!("{s:?} is not a matcher like server=search or server!=search"))
            }
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{name:?} is not a label name"));
        }
        let value = value.trim().trim_matches('"');
        Ok(Self { name: name.to_owned(), value: value.to_owned(), equal })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        (v == self.value) == self.equal
    }
}

/// A time-bounded mute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn active(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }

    pub fn mutes(&self, labels: &Labels, at: DateTime<Utc>) -> bool {
        self.active(at)
            && !self.matchers.is_empty()
            && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// One message about one group, to every receiver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    pub group_key: String,
    pub group_labels: Labels,
    /// `firing` when any alert in it fires.
    pub status: AlertStatus,
    pub alerts: Vec<Alert>,
}

#[derive(Debug)]
struct Group {
    labels: Labels,
    /// Firing alerts, and resolved ones not yet sent.
    alerts: BTreeMap<String, Alert>,
    /// Fingerprints the last notification said were firing.
    notified: Vec<String>,
    next_flush: Instant,
    last_sent: Option<Instant>,
}

/// The grouping state and the silences.
#[derive(Debug)]
pub struct Dispatcher {
    cfg: DispatchConfig,
    groups: BTreeMap<String, Group>,
    silences: Vec<Silence>,
}

/// While this fires for a server, the server's instance alerts are muted.
pub const INHIBITING_RULE: &str = "ServerGroupUnavailable";

impl Dispatcher {
    pub fn new(cfg: DispatchConfig) -> Self {
        Self { cfg, groups: BTreeMap::new(), silences: Vec::new() }
    }

    /// New grouping and repeat settings (a live reload); the groups and what they have
    /// notified stay, so nothing is sent again because of the reload.
    pub fn set_config(&mut self, cfg: DispatchConfig) {
        self.cfg = cfg;
    }

    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    /// Why `alert` is muted now, if it is: `silenced by ID` or `inhibited by RULE`.
    pub fn muted(&self, alert: &Alert, firing: &[Alert], at: DateTime<Utc>) -> Option<String> {
        if let Some(s) = self.silences.iter().find(|s| s.mutes(&alert.labels, at)) {
            return Some(format!("silenced by {}", s.id));
        }
        let server = alert.labels.get("server")?;
        let inhibited = alert.labels.contains_key("server_instance")
            && firing
                .iter()
                .any(|src| src.name == INHIBITING_RULE && src.labels.get("server") == Some(server));
        inhibited.then(|| format!("inhibited by {INHIBITING_RULE}"))
    }

    fn group_of(&self, alert: &Alert) -> (String, Labels) {
        let labels: Labels = self
            .cfg
            .group_by
            .iter()
            .filter_map(|k| alert.labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        let key = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(",");
        (format!("{{}}:{{{key}}}"), labels)
    }

    /// One step: `firing` is every alert firing now, `resolved` those that resolved at this
    /// evaluation. Returns the notifications due now.
    pub fn tick(&mut self, now: Now, firing: &[Alert], resolved: &[Alert]) -> Vec<Notification> {
        let loud: Vec<&Alert> =
            firing.iter().filter(|a| self.muted(a, firing, now.wall).is_none()).collect();
        for a in &loud {
            let (key, labels) = self.group_of(a);
            let wait = self.cfg.group_wait;
            let g = self.groups.entry(key).or_insert_with(|| Group {
                labels,
                alerts: BTreeMap::new(),
                notified: Vec::new(),
                next_flush: now.at + wait,
                last_sent: None,
            });
            g.alerts.insert(a.fingerprint.clone(), (*a).clone());
        }
        for g in self.groups.values_mut() {
            g.alerts.retain(|fp, alert| {
                if alert.status == AlertStatus::Resolved
                    || loud.iter().any(|a| &a.fingerprint == fp)
                {
                    return true;
                }
                match resolved.iter().find(|r| &r.fingerprint == fp) {
                    // Resolved: sent once, if its firing was.
                    Some(r) if g.notified.contains(fp) => {
                        *alert = r.clone();
                        true
                    }
                    // Resolved before anyone heard of it, muted, or gone: dropped quietly.
                    _ => {
                        g.notified.retain(|n| n != fp);
                        false
                    }
                }
            });
        }
        let mut out = Vec::new();
        for (key, g) in &mut self.groups {
            if now.at < g.next_flush {
                continue;
            }
            g.next_flush = now.at + self.cfg.group_interval;
            let firing: Vec<&String> = g
                .alerts
                .iter()
                .filter(|(_, a)| a.status == AlertStatus::Firing)
                .map(|(fp, _)| fp)
                .collect();
            let changed = firing.len() != g.notified.len()
                || firing.iter().any(|fp| !g.notified.contains(fp))
                || g.alerts.values().any(|a| a.status == AlertStatus::Resolved);
            let repeat = !firing.is_empty()
                && g.last_sent
                    .is_some_and(|t| now.at.duration_since(t) >= self.cfg.repeat_interval);
            if !changed && !repeat {
                continue;
            }
            let status =
                if firing.is_empty() { AlertStatus::Resolved } else { AlertStatus::Firing };
            out.push(Notification {
                group_key: key.clone(),
                group_labels: g.labels.clone(),
                status,
                alerts: g.alerts.values().cloned().collect(),
            });
            g.notified = firing.into_iter().cloned().collect();
            g.last_sent = Some(now.at);
            g.alerts.retain(|_, a| a.status == AlertStatus::Firing);
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        out
    }
}
