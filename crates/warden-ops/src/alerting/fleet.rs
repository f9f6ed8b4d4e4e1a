//! Alerts across a fleet of replicas sharing one PostgreSQL database. Every replica evaluates
//! its own instances and records what fires (with its id); the dispatcher of every replica is
//! fed the fleet's firing set — its own alerts and those still open on the other live replicas —
//! so every replica takes the same grouping decisions, and only the leader's notifications are
//! queued. When the leader changes, the new one has already seen every group notified and
//! sends nothing again; an alert open only on a replica that died or stopped resolves.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use warden_alerts::{Alert, AlertStatus};
use warden_config::Severity;
use warden_store::{AlertRow, Store};

/// A replica silent this long is gone (as the fleet view says).
const LIVE_FOR: f64 = crate::fleet::GONE_AFTER;

/// What the other replicas had firing at the last evaluation.
#[derive(Default)]
pub(super) struct FleetAlerts {
    remote: BTreeMap<String, Alert>,
}

impl FleetAlerts {
    /// The fleet's firing alerts and those resolved since the last call: `firing` and
    /// `resolved` are this replica's. With a database that is not shared (or unreadable this
    /// time) they are returned as they are (the last remote set is kept).
    pub(super) async fn merge(
        &mut self,
        store: &Store,
        firing: &[Alert],
        resolved: &[Alert],
        now: DateTime<Utc>,
    ) -> (Vec<Alert>, Vec<Alert>) {
        if !store.is_shared() {
            return (firing.to_vec(), resolved.to_vec());
        }
        // Alerts open on a replica that left (or resolved there) since the last call.
        let mut gone = Vec::new();
        match store.fleet_firing(LIVE_FOR).await {
            Ok(rows) => {
                let mut now_remote = BTreeMap::new();
                for r in &rows {
                    if let Some(a) = alert_of(r) {
                        now_remote.entry(a.fingerprint.clone()).or_insert(a);
                    }
                }
                gone = self
                    .remote
                    .iter()
                    .filter(|(fp, _)| !now_remote.contains_key(*fp))
                    .map(|(_, a)| Alert {
                        status: AlertStatus::Resolved,
                        ends_at: Some(now),
                        ..a.clone()
                    })
                    .collect();
                self.remote = now_remote;
            }
            // Unreadable this time: the last remote set stands.
            Err(e) => tracing::debug!(error = %e, "the fleet's alerts could not be read"),
        }
        let mut all = firing.to_vec();
        all.extend(
            self.remote
                .values()
                .filter(|a| !firing.iter().any(|f| f.fingerprint == a.fingerprint))
                .cloned(),
        );
        // Resolved here or elsewhere, unless it still fires somewhere.
        let ended = resolved
            .iter()
            .chain(&gone)
            .filter(|a| !all.iter().any(|f| f.fingerprint == a.fingerprint))
            .cloned()
            .collect();
        (all, ended)
    }
}

/// An alert another replica recorded, as the dispatcher takes it.
fn alert_of(r: &AlertRow) -> Option<Alert> {
    let labels = serde_json::from_value(r.labels.clone()).ok()?;
    let annotations = serde_json::from_value(r.annotations.clone()).unwrap_or_default();
    let severity = match r.severity.as_str() {
        "critical" => Severity::Critical,
        "info" => Severity::Info,
        _ => Severity::Warning,
    };
    Some(Alert {
        name: r.name.clone(),
        status: AlertStatus::Firing,
        severity,
        labels,
        annotations,
        value: r.value.unwrap_or(f64::NAN),
        starts_at: DateTime::parse_from_rfc3339(&r.starts_at).ok()?.with_timezone(&Utc),
        ends_at: None,
        fingerprint: r.fingerprint.clone(),
    })
}
