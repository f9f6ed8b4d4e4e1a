//! Rule evaluation with Prometheus semantics: a condition that holds becomes `pending`, fires
//! once it has held for `for`, and resolves once it has not held for `keep_firing_for`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::{fingerprint, Alert, AlertStatus, Labels, Now, Severity};

/// What the evaluator needs to know about a rule.
#[derive(Clone, Debug)]
pub struct RuleDef {
    pub name: String,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub severity: Severity,
    /// Added to every alert of the rule.
    pub labels: Labels,
}

/// One label set for which a rule's condition holds now.
#[derive(Clone, Debug, PartialEq)]
pub struct Active {
    /// The series' labels (`server`, `server_instance`, …).
    pub labels: Labels,
    pub value: f64,
    /// One line for people: what is wrong, with the numbers.
    pub summary: String,
}

/// A change worth telling someone about.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Firing(Alert),
    Resolved(Alert),
}

#[derive(Debug)]
struct SeriesState {
    alert: Alert,
    active_since: Instant,
    firing: bool,
    last_true: Instant,
}

/// Every rule's state, per label set.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<RuleDef>,
    /// Per rule: fingerprint → state.
    states: Vec<BTreeMap<String, SeriesState>>,
}

impl Evaluator {
    pub fn new(rules: Vec<RuleDef>) -> Self {
        let states = rules.iter().map(|_| BTreeMap::new()).collect();
        Self { rules, states }
    }

    pub fn rules(&self) -> &[RuleDef] {
        &self.rules
    }

    /// Takes over `old`'s state (a live reload changed the rules): a rule kept by name, with
    /// the same severity and labels, keeps its pending and firing alerts; a firing alert of a
    /// rule that is gone (or changed its labels) resolves now.
    pub fn adopt(&mut self, old: Evaluator, wall: DateTime<Utc>) -> Vec<Transition> {
        let mut out = Vec::new();
        for (rule, states) in old.rules.into_iter().zip(old.states) {
            let kept = self.rules.iter().position(|r| {
                r.name == rule.name && r.severity == rule.severity && r.labels == rule.labels
            });
            match kept {
                Some(i) => self.states[i] = states,
                None => {
                    for state in states.into_values().filter(|s| s.firing) {
                        let mut alert = state.alert;
                        alert.status = AlertStatus::Resolved;
                        alert.ends_at = Some(wall);
                        out.push(Transition::Resolved(alert));
                    }
                }
            }
        }
        out
    }

    /// Applies one evaluation: `active[i]` lists the label sets for which rule `i` holds now
    /// (a missing entry counts as none). Returns what started firing and what resolved.
    pub fn evaluate(&mut self, now: Now, active: &[Vec<Active>]) -> Vec<Transition> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let states = &mut self.states[i];
            let holding = active.get(i).map(Vec::as_slice).unwrap_or_default();
            let mut seen = Vec::with_capacity(holding.len());
            for a in holding {
                let labels = full_labels(rule, &a.labels);
                let fp = fingerprint(&labels);
                seen.push(fp.clone());
                let state = states.entry(fp.clone()).or_insert_with(|| SeriesState {
                    alert: new_alert(rule, labels, fp, now.wall),
                    active_since: now.at,
                    firing: false,
                    last_true: now.at,
                });
                state.last_true = now.at;
                state.alert.value = a.value;
                state.alert.annotations.insert("summary".into(), a.summary.clone());
                if !state.firing && now.at.duration_since(state.active_since) >= rule.for_ {
                    state.firing = true;
                    out.push(Transition::Firing(state.alert.clone()));
                }
            }
            states.retain(|fp, state| {
                if seen.contains(fp) {
                    return true;
                }
                if !state.firing {
                    // Pending that stopped holding: forgotten, never notified.
                    return false;
                }
                if now.at.duration_since(state.last_true) < rule.keep_firing_for {
                    return true;
                }
                let mut alert = state.alert.clone();
                alert.status = AlertStatus::Resolved;
                alert.ends_at = Some(now.wall);
                out.push(Transition::Resolved(alert));
                false
            });
        }
        out
    }

    /// Every alert firing now.
    pub fn firing(&self) -> Vec<Alert> {
        self.collect(true)
    }

    /// Every alert whose condition holds but has not held for `for` yet.
    pub fn pending(&self) -> Vec<Alert> {
        self.collect(false)
    }

    fn collect(&self, firing: bool) -> Vec<Alert> {
        self.states
            .iter()
            .flat_map(|m| m.values())
            .filter(|s| s.firing == firing)
            .map(|s| s.alert.clone())
            .collect()
    }
}

fn full_labels(rule: &RuleDef, series: &Labels) -> Labels {
    let mut labels = series.clone();
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    labels
}

fn new_alert(rule: &RuleDef, labels: Labels, fp: String, wall: DateTime<Utc>) -> Alert {
    Alert {
        name: rule.name.clone(),
        status: AlertStatus::Firing,
        severity: rule.severity,
        labels,
        annotations: Labels::new(),
        value: 0.0,
        starts_at: wall,
        ends_at: None,
        fingerprint: fp,
    }
}
