//! What `/metrics` shows of alerting.

use super::Alerts;

pub(super) struct Counts {
    /// (alert name, severity) → how many fire.
    pub(super) firing: std::collections::BTreeMap<(String, String), i64>,
    pub(super) undelivered: i64,
    pub(super) delivered: u64,
    pub(super) failed: u64,
    pub(super) expired: u64,
}

/// `warden_alerts_firing` and the notification counters, read at scrape time.
pub struct AlertMetrics(pub Alerts);

impl std::fmt::Debug for AlertMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertMetrics")
    }
}

impl warden_metrics::scrape::Collector for AlertMetrics {
    fn encode(&self, mut e: warden_metrics::scrape::DescriptorEncoder) -> std::fmt::Result {
        use warden_metrics::scrape;
        let Counts { firing, undelivered, delivered, failed, expired } = self.0.counts();
        scrape::gauge(
            &mut e,
            "alerts_firing",
            "Alerts firing now, by rule and severity (muted ones included)",
            None,
            firing.into_iter().map(|((n, s), c)| (vec![("alertname", n), ("severity", s)], c)),
        )?;
        scrape::single(
            &mut e,
            "alert_notifications_undelivered",
            "Notifications waiting for delivery (retried with backoff)",
            None,
            undelivered,
        )?;
        scrape::counter(
            &mut e,
            "alert_notifications_delivered",
            "Notifications a receiver accepted",
            [(vec![], delivered)],
        )?;
        scrape::counter(
            &mut e,
            "alert_notification_failures",
            "Delivery attempts that failed (each is retried until max_delivery_age)",
            [(vec![], failed)],
        )?;
        scrape::counter(
            &mut e,
            "alert_notifications_expired",
            "Notifications given up on after max_delivery_age (kept in the store)",
            [(vec![], expired)],
        )
    }
}
