//! The availability report: downtime from the incidents' own record, per server the time all
//! its instances were down, over the time Warden watched.

use serde_json::{json, Value};
use warden_core::Timestamp;
use warden_store::ReportRange;

use super::*;

type Spans = Vec<(Timestamp, Timestamp)>;

/// Spans merged where they overlap or touch, in order.
pub(super) fn union(mut spans: Spans) -> Spans {
    spans.sort();
    let mut out: Spans = Vec::new();
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The time in both (each merged and in order).
pub(super) fn intersect(a: &Spans, b: &Spans) -> Spans {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (start, end) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if start < end {
            out.push((start, end));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

pub(super) fn total(spans: &Spans) -> f64 {
    spans.iter().map(|(start, end)| seconds(*end - *start)).sum()
}

impl Reports {
    pub(super) async fn availability(&self, r: &ReportRange) -> Result<Value, Refusal> {
        let slots = self.store.server_slots(r, self.metrics_interval).await.map_err(database)?;
        let samples = self.store.instance_samples(r).await.map_err(database)?;
        let spans = self.store.incident_spans(r).await.map_err(database)?;
        let interval = self.metrics_interval.as_secs().max(1) as f64;
        let period = seconds(r.until - r.since);
        let names = self.server_names(r, slots.iter().map(|s| s.server.as_str()));
        let down_of = |instance: &str| {
            union(
                spans.iter().filter(|s| s.instance == instance).map(|s| (s.start, s.end)).collect(),
            )
        };
        let servers: Vec<Value> = names
            .iter()
            .map(|name| {
                let observed =
                    slots.iter().find(|s| &s.server == name).map_or(0.0, |s| s.slots as f64 * interval);
                // Every instance the server has (configured, else seen), down together.
                let mut ids: Vec<String> = match self.spec(name) {
                    Some(spec) => (0..spec.instance_count()).map(|i| format!("{name}#{i}")).collect(),
                    None => Vec::new(),
                };
                for id in samples.iter().filter(|s| &s.server == name).map(|s| &s.instance) {
                    if !ids.contains(id) {
                        ids.push(id.clone());
                    }
                }
                let down = ids
                    .iter()
                    .map(|id| down_of(id))
                    .reduce(|a, b| intersect(&a, &b))
                    .unwrap_or_default();
                let downtime = total(&down).min(observed);
                let availability = (observed > 0.0).then(|| 1.0 - downtime / observed);
                let objective = self.spec(name).and_then(|s| s.objective);
                let budget = objective.zip(availability).map(|(o, _)| {
                    let allowed = (1.0 - o) * observed;
                    json!({
                        "allowed_seconds": allowed,
                        "consumed_seconds": downtime,
                        "remaining_seconds": allowed - downtime,
                        "remaining": (allowed > 0.0).then(|| 1.0 - downtime / allowed),
                    })
                });
                let instances: Vec<Value> = samples
                    .iter()
                    .filter(|s| &s.server == name)
                    .map(|s| {
                        let down = down_of(&s.instance);
                        let observed = s.samples as f64 * interval;
                        let downtime = total(&down).min(observed);
                        json!({
                            "instance": s.instance,
                            "availability": (observed > 0.0).then(|| 1.0 - downtime / observed),
                            "observed_seconds": observed,
                            "downtime_seconds": downtime,
                            "incidents": spans.iter().filter(|x| x.instance == s.instance).count(),
                            "samples_by_status": s.by_status,
                        })
                    })
                    .collect();
                json!({
                    "server": name,
                    "objective": objective,
                    "availability": availability,
                    "met": objective.zip(availability).map(|(o, a)| a >= o),
                    "observed_seconds": observed,
                    "coverage": if period > 0.0 { (observed / period).min(1.0) } else { 0.0 },
                    "downtime_seconds": downtime,
                    "error_budget": budget,
                    "instances": instances,
                    "note": (observed == 0.0).then_some("not enough data: no samples in the period"),
                })
            })
            .collect();
        Ok(json!({
            "method": format!(
                "downtime: the incidents' recorded downtime (every instance down at once, for a \
                 server), over the time Warden observed it ({interval:.0} s sample slots)"
            ),
            "servers": servers,
        }))
    }
}
