//! The built-in rules (research §10.7) and user rules, turned into "what holds now" for the
//! [`Evaluator`]: [`RuleSet`] owns both and the evaluator.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use warden_config::{AlertRule, AlertSettings};
use warden_core::InstanceState;

use crate::eval::{Active, Evaluator, RuleDef, Transition};
use crate::slo::{SloWindows, SLO_WINDOWS};
use crate::{Alert, Labels, Now, Series, Severity};

/// A forecast that an instance will reach a hard limit soon (from warden-predict).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// `latency`, `error_rate` or `rss`.
    pub signal: String,
    /// Seconds until the forecast crosses the limit.
    pub eta_seconds: f64,
    pub limit: f64,
    pub level: f64,
}

/// A sustained upward shift of a signal (CUSUM).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Drift {
    pub signal: String,
    /// The CUSUM statistic in standard deviations.
    pub score: f64,
    pub baseline: f64,
    pub current: f64,
}

/// What the rules need to know about one instance.
#[derive(Clone, Debug)]
pub struct InstanceFacts {
    /// `server#index`.
    pub id: String,
    pub state: InstanceState,
    /// The last error, for people.
    pub reason: Option<String>,
    pub restarts: u32,
    /// Requests (probes and calls) and failed ones since Warden started watching.
    pub requests_total: u64,
    pub errors_total: u64,
    pub prediction: Option<Prediction>,
    pub drift: Option<Drift>,
}

/// What the rules need to know about one server.
#[derive(Clone, Debug)]
pub struct ServerFacts {
    pub name: String,
    /// Something (an instance or a fallback) can serve its calls.
    pub routable: bool,
    /// Disabled, or every instance stopped by an operator: nothing to alert about.
    pub paused: bool,
    /// Availability objective (0.999), for the burn-rate rules.
    pub objective: Option<f64>,
    pub instances: Vec<InstanceFacts>,
}

/// Predicted failures this close or closer fire `PredictedFailure`.
pub const PREDICTION_HORIZON: Duration = Duration::from_secs(120);
/// `CrashLoop`: this many restarts inside [`CRASH_LOOP_WINDOW`].
pub const CRASH_LOOP_RESTARTS: usize = 3;
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    InstanceCritical,
    ServerGroupUnavailable,
    RestartIntensityExceeded,
    CrashLoop,
    PredictedFailure,
    Drift,
    Slo(usize),
    User(usize),
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn builtin_defs() -> Vec<(Kind, RuleDef)> {
    let def = |name: &str, for_: u64, keep: u64, severity| RuleDef {
        name: name.into(),
        for_: secs(for_),
        keep_firing_for: secs(keep),
        severity,
        labels: Labels::new(),
    };
    let mut v = vec![
        (Kind::InstanceCritical, def("InstanceCritical", 60, 120, Severity::Warning)),
        (Kind::ServerGroupUnavailable, def("ServerGroupUnavailable", 30, 120, Severity::Critical)),
        (
            Kind::RestartIntensityExceeded,
            def("RestartIntensityExceeded", 0, 600, Severity::Critical),
        ),
        (Kind::CrashLoop, def("CrashLoop", 0, 600, Severity::Warning)),
        // The predictor holds its own forecast 5 s before it says anything; a further 30 s
        // here (research §10.7) would eat most of the lead on fast ramps (27 s on 60 s ramps).
        (Kind::PredictedFailure, def("PredictedFailure", 0, 300, Severity::Warning)),
        (Kind::Drift, def("Drift", 0, 300, Severity::Warning)),
    ];
    for (i, w) in SLO_WINDOWS.iter().enumerate() {
        v.push((Kind::Slo(i), def(w.rule, 0, 0, w.severity)));
    }
    v
}

#[derive(Debug, Default)]
struct RestartHistory {
    last: Option<u32>,
    at: VecDeque<Instant>,
}

#[derive(Debug)]
struct ServerSlo {
    windows: SloWindows,
    /// Per instance: the totals seen at the last evaluation.
    last: HashMap<String, (u64, u64)>,
}

/// Every rule — built-in and the user's — and their state.
#[derive(Debug)]
pub struct RuleSet {
    kinds: Vec<Kind>,
    user: Vec<AlertRule>,
    evaluator: Evaluator,
    restarts: HashMap<String, RestartHistory>,
    slo: HashMap<String, ServerSlo>,
    origin: Instant,
}

impl RuleSet {
    pub fn new(settings: &AlertSettings, origin: Instant) -> Self {
        let mut kinds = Vec::new();
        let mut defs = Vec::new();
        for (kind, mut def) in builtin_defs() {
            if let Some(o) = settings.builtin_overrides.get(&def.name) {
                def.for_ = o.for_.unwrap_or(def.for_);
                def.keep_firing_for = o.keep_firing_for.unwrap_or(def.keep_firing_for);
                def.severity = o.severity.unwrap_or(def.severity);
            }
            if settings.builtin_enabled(&def.name) {
                kinds.push(kind);
                defs.push(def);
            }
        }
        for (i, r) in settings.rules.iter().enumerate() {
            kinds.push(Kind::User(i));
            defs.push(RuleDef {
                name: r.name.clone(),
                for_: r.for_,
                keep_firing_for: r.keep_firing_for,
                severity: r.severity,
                labels: r.labels.clone().into_iter().collect(),
            });
        }
        Self {
            kinds,
            user: settings.rules.clone(),
            evaluator: Evaluator::new(defs),
            restarts: HashMap::new(),
            slo: HashMap::new(),
            origin,
        }
    }

    pub fn rules(&self) -> &[RuleDef] {
        self.evaluator.rules()
    }

    /// Whether a user rule watches series `metric` (only user rules read series).
    pub fn watches(&self, metric: &str) -> bool {
        self.user.iter().any(|r| r.metric == metric)
    }

    /// Whether any rule reads series at all.
    pub fn watches_series(&self) -> bool {
        !self.user.is_empty()
    }

    /// New settings (a live reload): rules kept keep their pending and firing alerts, restart
    /// histories and SLO counts stay; the firing alerts of rules that are gone resolve now.
    pub fn reconfigure(
        &mut self,
        settings: &AlertSettings,
        wall: DateTime<Utc>,
    ) -> Vec<Transition> {
        let mut new = Self::new(settings, self.origin);
        new.restarts = std::mem::take(&mut self.restarts);
        new.slo = std::mem::take(&mut self.slo);
        let old = std::mem::replace(self, new);
        self.evaluator.adopt(old.evaluator, wall)
    }

    /// Puts back a server's SLO counts from an earlier run: `(minute, requests, errors)` with
    /// minutes counted from this rule set's origin (negative before it). Call before the first
    /// evaluation.
    pub fn seed_slo(&mut self, server: &str, minutes: &[(i64, u64, u64)]) {
        let slo = self.slo.entry(server.to_owned()).or_insert_with(|| ServerSlo {
            windows: SloWindows::new(self.origin),
            last: HashMap::new(),
        });
        for (m, r, e) in minutes {
            slo.windows.seed(*m, *r, *e);
        }
    }

    /// Every server's SLO counts per minute since `from` (minutes from the origin), to be kept
    /// across a restart: `(server, minute, requests, errors)`.
    pub fn slo_minutes(&self, from: i64) -> Vec<(String, i64, u64, u64)> {
        let mut out = Vec::new();
        for (server, slo) in &self.slo {
            out.extend(
                slo.windows
                    .buckets()
                    .filter(|b| b.0 >= from)
                    .map(|(m, r, e)| (server.clone(), m, r, e)),
            );
        }
        out
    }

    /// The minute `at` falls in, counted from the origin (as [`RuleSet::slo_minutes`] counts).
    pub fn minute(&self, at: Instant) -> i64 {
        (at.saturating_duration_since(self.origin).as_secs() / 60) as i64
    }

    pub fn firing(&self) -> Vec<Alert> {
        self.evaluator.firing()
    }

    pub fn pending(&self) -> Vec<Alert> {
        self.evaluator.pending()
    }

    /// One evaluation over the servers' facts and the metric series.
    pub fn evaluate(
        &mut self,
        now: Now,
        servers: &[ServerFacts],
        series: &[Series],
    ) -> Vec<Transition> {
        self.observe(now.at, servers);
        let active: Vec<Vec<Active>> =
            self.kinds.iter().map(|k| self.holding(*k, now.at, servers, series)).collect();
        self.evaluator.evaluate(now, &active)
    }

    /// Updates the restart histories and the SLO buckets.
    fn observe(&mut self, now: Instant, servers: &[ServerFacts]) {
        for s in servers {
            let slo = self.slo.entry(s.name.clone()).or_insert_with(|| ServerSlo {
                windows: SloWindows::new(self.origin),
                last: HashMap::new(),
            });
            let (mut requests, mut errors) = (0, 0);
            for i in &s.instances {
                let h = self.restarts.entry(i.id.clone()).or_default();
                if let Some(last) = h.last {
                    for _ in last..i.restarts {
                        h.at.push_back(now);
                    }
                }
                h.last = Some(i.restarts);
                while h.at.front().is_some_and(|t| now.duration_since(*t) > CRASH_LOOP_WINDOW) {
                    h.at.pop_front();
                }
                let (r0, e0) = slo.last.get(&i.id).copied().unwrap_or((0, 0));
                // Totals only grow; a smaller one means the counter started over.
                let dr =
                    if i.requests_total >= r0 { i.requests_total - r0 } else { i.requests_total };
                let de = if i.errors_total >= e0 { i.errors_total - e0 } else { i.errors_total };
                slo.last.insert(i.id.clone(), (i.requests_total, i.errors_total));
                requests += dr;
                errors += de.min(dr);
            }
            slo.windows.record(now, requests, errors);
        }
    }

    fn holding(
        &self,
        kind: Kind,
        now: Instant,
        servers: &[ServerFacts],
        series: &[Series],
    ) -> Vec<Active> {
        let live = servers.iter().filter(|s| !s.paused);
        let instances = || live.clone().flat_map(|s| s.instances.iter().map(move |i| (s, i)));
        match kind {
            Kind::InstanceCritical => instances()
                .filter(|(_, i)| {
                    matches!(i.state, InstanceState::Critical | InstanceState::Offline)
                })
                .map(|(s, i)| Active {
                    labels: instance_labels(s, i),
                    value: 1.0,
                    summary: format!("{} is {}{}", i.id, i.state, because(i)),
                })
                .collect(),
            Kind::ServerGroupUnavailable => live
                .clone()
                .filter(|s| !s.routable)
                .map(|s| Active {
                    labels: server_labels(s),
                    value: 1.0,
                    summary: format!(
                        "{} has nothing routable: no instance and no fallback can serve its calls",
                        s.name
                    ),
                })
                .collect(),
            Kind::RestartIntensityExceeded => instances()
                .filter(|(_, i)| i.state == InstanceState::Failed)
                .map(|(s, i)| Active {
                    labels: instance_labels(s, i),
                    value: f64::from(i.restarts),
                    summary: format!(
                        "{} restarts too often and was given up on (failed){}",
                        i.id,
                        because(i)
                    ),
                })
                .collect(),
            Kind::CrashLoop => instances()
                .filter_map(|(s, i)| {
                    let n = self.restarts.get(&i.id).map_or(0, |h| h.at.len());
                    (n >= CRASH_LOOP_RESTARTS).then(|| Active {
                        labels: instance_labels(s, i),
                        value: n as f64,
                        summary: format!("{} restarted {n} times in the last 10 minutes", i.id),
                    })
                })
                .collect(),
            Kind::PredictedFailure => instances()
                .filter_map(|(s, i)| {
                    let p = i.prediction.as_ref()?;
                    (p.eta_seconds <= PREDICTION_HORIZON.as_secs_f64()).then(|| {
                        let mut labels = instance_labels(s, i);
                        labels.insert("signal".into(), p.signal.clone());
                        Active {
                            labels,
                            value: p.eta_seconds,
                            summary: format!(
                                "{}: {} is forecast to reach its limit ({}) in {:.0} s (now {})",
                                i.id,
                                p.signal,
                                shown(&p.signal, p.limit),
                                p.eta_seconds,
                                shown(&p.signal, p.level)
                            ),
                        }
                    })
                })
                .collect(),
            Kind::Drift => instances()
                .filter_map(|(s, i)| {
                    let d = i.drift.as_ref()?;
                    let mut labels = instance_labels(s, i);
                    labels.insert("signal".into(), d.signal.clone());
                    Some(Active {
                        labels,
                        value: d.score,
                        summary: format!(
                            "{}: {} drifted up from {} to {} (CUSUM {:.1}σ)",
                            i.id,
                            d.signal,
                            shown(&d.signal, d.baseline),
                            shown(&d.signal, d.current),
                            d.score
                        ),
                    })
                })
                .collect(),
            Kind::Slo(w) => {
                let win = &SLO_WINDOWS[w];
                live.clone()
                    .filter_map(|s| {
                        let objective = s.objective?;
                        let (long, short) =
                            self.slo.get(&s.name)?.windows.check(now, win, objective)?;
                        Some(Active {
                            labels: server_labels(s),
                            value: long,
                            summary: format!(
                                "{} burns its {}% error budget {long:.1}× over {} and {short:.1}× over {} (alert at {}×)",
                                s.name,
                                objective * 100.0,
                                human(win.long),
                                human(win.short),
                                win.factor
                            ),
                        })
                    })
                    .collect()
            }
            Kind::User(r) => {
                let rule = &self.user[r];
                let matchers: Labels = rule.matchers.clone().into_iter().collect();
                series
                    .iter()
                    .filter(|x| x.name == rule.metric && x.matches(&matchers))
                    .filter(|x| rule.op.holds(x.value, rule.threshold))
                    .map(|x| Active {
                        labels: x.labels.clone(),
                        value: x.value,
                        summary: rule.summary.clone().unwrap_or_else(|| {
                            format!(
                                "{}{} = {} {} {}",
                                x.name,
                                series_labels(&x.labels),
                                x.value,
                                rule.op.as_str(),
                                rule.threshold
                            )
                        }),
                    })
                    .collect()
            }
        }
    }
}

fn server_labels(s: &ServerFacts) -> Labels {
    Labels::from([("server".to_owned(), s.name.clone())])
}

fn instance_labels(s: &ServerFacts, i: &InstanceFacts) -> Labels {
    let mut l = server_labels(s);
    l.insert("server_instance".into(), i.id.clone());
    l
}

fn because(i: &InstanceFacts) -> String {
    i.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
}

fn shown(signal: &str, v: f64) -> String {
    match signal {
        "latency" => format!("{:.0} ms", v * 1000.0),
        "error_rate" | "error_ratio" => format!("{:.0} %", v * 100.0),
        "rss" => format!("{:.0} MiB", v / (1024.0 * 1024.0)),
        _ => format!("{v}"),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 && s >= 3600 => format!("{} h", s / 3600),
        s => format!("{} min", s / 60),
    }
}

fn series_labels(l: &Labels) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}
