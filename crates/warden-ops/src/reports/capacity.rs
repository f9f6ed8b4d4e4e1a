//! The capacity report: hourly throughput against planned capacity, its least-squares trend,
//! and when that trend reaches a replica's worth.

use serde_json::{json, Value};
use warden_core::Timestamp;
use warden_store::ReportRange;

use super::*;

/// One server's throughput and planned capacity over the period.
pub(super) struct Capacity {
    pub(super) server: String,
    pub(super) instances: u32,
    /// Hourly server throughput (calls/s), oldest first, `x` in days since the period began.
    pub(super) hourly: Vec<(f64, f64)>,
    pub(super) avg: Option<f64>,
    pub(super) peak: Option<(Timestamp, f64)>,
    /// Mean of the instances' sampled p50 latency.
    pub(super) p50_ms: Option<f64>,
}

impl Capacity {
    pub(super) fn planned(&self) -> f64 {
        f64::from(self.instances.max(1)) * CAPACITY_PER_INSTANCE
    }

    pub(super) fn peak_utilization(&self) -> Option<f64> {
        self.peak.map(|(_, p)| p / self.planned())
    }

    /// `(intercept, slope per day)` of the hourly points, if there are enough.
    pub(super) fn trend(&self) -> Option<(f64, f64)> {
        (self.hourly.len() >= MIN_TREND_POINTS).then(|| least_squares(&self.hourly)).flatten()
    }
}

/// Least-squares line through `(x, y)`: `(intercept, slope)`; `None` without spread in `x`.
pub(super) fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| {
        let slope = sxy / sxx;
        (my - slope * mx, slope)
    })
}

/// `since` + `x_days`, or `None` when that is not a time within [`MAX_PROJECTION_DAYS`] after
/// `until` (a nearly flat trend puts `x` beyond any date chrono can hold, or makes it NaN).
pub(super) fn projected_at(
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    x_days: f64,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let period_days = seconds(until - since) / 86_400.0;
    if !x_days.is_finite() || x_days - period_days > MAX_PROJECTION_DAYS {
        return None;
    }
    // Bounded now: at most the period plus MAX_PROJECTION_DAYS, in milliseconds.
    let ms = (x_days * 86_400_000.0).round();
    since.checked_add_signed(chrono::Duration::try_milliseconds(ms as i64)?)
}

impl Reports {
    /// Hourly throughput per server (sum of its instances' hourly means), from the stored
    /// samples through the metric-range query.
    pub(super) async fn capacity_of(
        &self,
        r: &ReportRange,
        samples: &[InstanceSamples],
    ) -> Result<Vec<Capacity>, Refusal> {
        let range = self
            .store
            .metric_range(&MetricQuery {
                since: r.since,
                until: r.until,
                server: r.server.clone(),
                instance: None,
                metric: Some("throughput".into()),
                step: Some(Duration::from_secs(3600)),
                limit: 100_000,
            })
            .await
            .map_err(database)?;
        let mut hours: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
        for s in &range.series {
            for p in &s.points {
                *hours.entry(&s.server).or_default().entry(&p.at).or_default() += p.avg;
            }
        }
        let names = self.server_names(r, samples.iter().map(|s| s.server.as_str()));
        Ok(names
            .into_iter()
            .map(|server| {
                let mine: Vec<&InstanceSamples> =
                    samples.iter().filter(|s| s.server == server).collect();
                let instances =
                    self.spec(&server).map_or(mine.len() as u32, |s| s.instance_count());
                let points: Vec<(Timestamp, f64)> = hours
                    .get(server.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|(at, v)| Some((at.parse::<Timestamp>().ok()?, *v)))
                    .collect();
                let hourly: Vec<(f64, f64)> =
                    points.iter().map(|(t, v)| (seconds(*t - r.since) / 86_400.0, *v)).collect();
                let avg = (!hourly.is_empty())
                    .then(|| hourly.iter().map(|p| p.1).sum::<f64>() / hourly.len() as f64);
                let peak = points.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
                let p50s: Vec<f64> = mine.iter().filter_map(|s| s.p50_ms_avg).collect();
                let p50_ms =
                    (!p50s.is_empty()).then(|| p50s.iter().sum::<f64>() / p50s.len() as f64);
                Capacity { server, instances, hourly, avg, peak, p50_ms }
            })
            .collect())
    }

    pub(super) async fn capacity(&self, r: &ReportRange) -> Result<Value, Refusal> {
        let samples = self.store.instance_samples(r).await.map_err(database)?;
        let rows = self.capacity_of(r, &samples).await?;
        let servers: Vec<Value> = rows.iter().map(|c| self.capacity_json(c, r)).collect();
        Ok(json!({
            "method": format!(
                "planned capacity: {CAPACITY_PER_INSTANCE} calls/s per instance (probes included); \
                 trend: least squares through hourly throughput; add a replica when the peak hour \
                 reaches {:.0} % of capacity, projected linearly (trend × peak/mean ratio)",
                ADD_REPLICA_AT * 100.0
            ),
            "capacity_per_instance": CAPACITY_PER_INSTANCE,
            "add_replica_at_utilization": ADD_REPLICA_AT,
            "servers": servers,
        }))
    }

    pub(super) fn capacity_json(&self, c: &Capacity, r: &ReportRange) -> Value {
        let handle = self.servers.handle(&c.server);
        let views = handle.as_ref().map(|h| h.views()).unwrap_or_default();
        let in_flight: usize = handle
            .map_or(0, |h| (0..views.len()).filter_map(|i| h.link(i)).map(|l| l.in_flight()).sum());
        let planned = c.planned();
        let per_instance = c.avg.map(|a| a / f64::from(c.instances.max(1)));
        let trend = c.trend();
        let threshold = ADD_REPLICA_AT * planned;
        let (now, projected, note) = match (c.peak, c.avg, trend) {
            (Some((_, peak)), _, _) if peak >= threshold => {
                (true, None, format!("the peak hour ({peak:.2}/s) is past {threshold:.2}/s"))
            }
            (None, _, _) => (false, None, "not enough data: no samples in the period".to_owned()),
            (_, _, None) => (
                false,
                None,
                format!(
                    "not enough data for a trend: {} hourly points, {MIN_TREND_POINTS} needed",
                    c.hourly.len()
                ),
            ),
            (_, _, Some((_, slope))) if slope <= 0.0 => {
                (false, None, "throughput is not rising".to_owned())
            }
            (Some((_, peak)), Some(avg), Some((a, b))) if avg > 0.0 => {
                // When (a + b·x) × peak/avg reaches the threshold, x in days since `since`.
                let x = (threshold * avg / peak - a) / b;
                match projected_at(r.since, r.until, x) {
                    None => (
                        false,
                        None,
                        format!("not within {MAX_PROJECTION_DAYS} days at this trend"),
                    ),
                    Some(at) => {
                        let days = seconds(at - r.until) / 86_400.0;
                        let note = format!("linear projection, {days:.1} days after the period");
                        (false, Some(at), note)
                    }
                }
            }
            _ => (false, None, "no throughput in the period".to_owned()),
        };
        json!({
            "server": c.server,
            "instances": c.instances,
            "routable_now": views.iter().filter(|v| v.state.is_routable()).count(),
            "in_flight_now": in_flight,
            "throughput": {
                "avg": c.avg,
                "per_instance_avg": per_instance,
                "peak_hour": c.peak.map(|p| p.1),
                "peak_hour_at": c.peak.map(|p| p.0),
                "hours": c.hourly.len(),
            },
            "planned_capacity": planned,
            "utilization": { "avg": c.avg.map(|a| a / planned), "peak_hour": c.peak_utilization() },
            // Little's law: mean calls in flight per instance ≈ throughput × latency.
            "busy_per_instance": per_instance.zip(c.p50_ms).map(|(t, ms)| t * ms / 1000.0),
            "trend": trend.map(|(a, b)| json!({
                "throughput_per_day": b,
                "utilization_per_day": b / planned,
                "fitted_now": a + b * seconds(r.until - r.since) / 86_400.0,
            })),
            "add_replica": { "now": now, "projected_at": projected, "note": note },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::availability::{intersect, total, union};
    use super::*;

    pub(super) fn t(s: i64) -> Timestamp {
        Timestamp::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    pub(super) fn downtime_spans_merge_per_instance_and_intersect_across_instances() {
        let a = union(vec![(t(10), t(20)), (t(0), t(5)), (t(15), t(30)), (t(30), t(31))]);
        assert_eq!(a, [(t(0), t(5)), (t(10), t(31))], "overlapping and touching spans merge");
        let b = union(vec![(t(3), t(12)), (t(25), t(40))]);
        assert_eq!(intersect(&a, &b), [(t(3), t(5)), (t(10), t(12)), (t(25), t(31))]);
        assert_eq!(total(&intersect(&a, &b)), 10.0);
        assert!(intersect(&a, &Vec::new()).is_empty(), "an instance never down keeps it up");
    }

    #[test]
    pub(super) fn least_squares_finds_the_line_and_needs_spread() {
        let (a, b) = least_squares(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
        assert_eq!(least_squares(&[(1.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(least_squares(&[(1.0, 1.0)]), None);
    }
}

#[cfg(test)]
mod projection_tests {
    use super::*;

    #[test]
    pub(super) fn a_projection_beyond_any_date_is_none_not_a_panic() {
        let until = chrono::Utc::now();
        let since = until - chrono::Duration::days(7);
        // A nearly flat trend: `x` in the 1e300s of days, beyond every i64 of milliseconds.
        for x in [1e300, f64::INFINITY, f64::NAN, 1e18, 7.0 + 366.0, -1e300] {
            assert_eq!(projected_at(since, until, x), None, "{x}");
        }
        let at = projected_at(since, until, 10.0).expect("3 days after the period");
        assert_eq!((at - since).num_days(), 10);
    }
}
