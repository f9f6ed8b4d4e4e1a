//! The keys every entry shares, MCP server or integration: `disabled`, `critical`, the health
//! and restart policies (each starting from `warden`'s defaults) and the availability objective.

use std::time::Duration;

use serde_json::Value;

use crate::model::*;
use crate::walk::{Diags, Obj};

/// What every entry's compilation starts from: the policies `warden` sets as defaults, and how
/// `${env:…}` and `${secret:…}` are looked up.
pub(crate) struct Bases<'a> {
    pub(crate) health: &'a HealthPolicy,
    pub(crate) restart: &'a RestartPolicy,
    pub(crate) lookup: &'a dyn Fn(&str) -> Option<String>,
}

/// The keys every entry has.
pub(crate) struct Common {
    pub(crate) disabled: bool,
    pub(crate) critical: bool,
    pub(crate) health: HealthPolicy,
    pub(crate) restart: RestartPolicy,
    pub(crate) objective: Option<f64>,
    pub(crate) tags: Vec<String>,
}

/// An entry's object, its name checked (`what`: "a server", "an integration").
pub(crate) fn open_entry<'a>(
    name: &str,
    what: &str,
    path: &str,
    value: &'a Value,
    d: &mut Diags,
) -> Option<Obj<'a>> {
    crate::compile::check_name(name, what, path, d);
    Obj::new(path.to_owned(), value, d)
}

/// Reads [`Common`]'s keys from an entry.
pub(crate) fn compile_common(o: &mut Obj<'_>, bases: &Bases<'_>, d: &mut Diags) -> Common {
    let disabled = o.bool("disabled", d).unwrap_or(false);
    let critical = o.bool("critical", d).unwrap_or(false);
    let health = match o.obj("health", d) {
        Some(h) => compile_health(h, bases.health, d),
        None => bases.health.clone(),
    };
    let restart = match o.obj("restart", d) {
        Some(r) => compile_restart(r, bases.restart, d),
        None => bases.restart.clone(),
    };
    let objective = compile_objective(o, d);
    let mut tags: Vec<String> = Vec::new();
    for (path, t) in crate::fields::string_list(o, "tags", d) {
        if t.is_empty() {
            d.error(&path, "must not be empty");
        } else if !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    Common { disabled, critical, health, restart, objective, tags }
}

/// `objective.availability`: a percentage (99.9) or a ratio (0.999).
pub(crate) fn compile_objective(o: &mut Obj<'_>, d: &mut Diags) -> Option<f64> {
    let mut objective = None;
    if let Some(mut obj) = o.obj("objective", d) {
        let apath = obj.path_of("availability");
        match obj.get("availability").map(|v| (v, v.as_f64())) {
            None => {}
            Some((_, Some(x))) if (50.0..100.0).contains(&x) => objective = Some(x / 100.0),
            Some((_, Some(x))) if (0.5..1.0).contains(&x) => objective = Some(x),
            Some((v, _)) => d.error(
                &apath,
                format!("{v} is not an availability objective (a percentage like 99.9, below 100)"),
            ),
        }
        obj.finish(&[], d);
    }
    objective
}

pub(crate) fn compile_health(mut o: Obj<'_>, base: &HealthPolicy, d: &mut Diags) -> HealthPolicy {
    let mut h = base.clone();
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    if let Some(v) = o.duration("interval", ms(100), s(3600), d) {
        h.interval = v;
    }
    if let Some(v) = o.fraction("jitter", 1.0, d) {
        h.jitter = v;
    }
    if let Some(v) = o.duration("timeout", ms(10), s(600), d) {
        h.timeout = v;
    }
    if let Some(v) = o.duration("edge_interval", ms(10), s(3600), d) {
        h.edge_interval = v;
    }
    if let Some(v) = o.uint("unhealthy_threshold", 1, 100, d) {
        h.unhealthy_threshold = v as u32;
    }
    if let Some(v) = o.uint("healthy_threshold", 1, 100, d) {
        h.healthy_threshold = v as u32;
    }
    if let Some(v) = o.duration("busy_window", ms(0), s(3600), d) {
        h.busy_window = v;
    }
    if let Some(v) = o.duration("hang_timeout", ms(100), s(86_400), d) {
        h.hang_timeout = v;
    }
    if let Some(v) = o.duration("catalog_interval", s(1), s(86_400), d) {
        h.catalog_interval = v;
    }
    if let Some(v) = o.duration("startup_timeout", ms(100), s(3600), d) {
        h.startup_timeout = v;
    }
    if let Some(m) = o.str("method", d) {
        h.method = match m {
            "auto" => ProbeMethod::Auto,
            "ping" => ProbeMethod::Ping,
            "tools/list" | "tools_list" => ProbeMethod::ToolsList,
            other => {
                d.error(
                    &o.path_of("method"),
                    format!("{other:?} is not a probe method (auto, ping or tools/list)"),
                );
                h.method
            }
        };
    }
    if h.timeout > h.interval {
        d.warn(
            &o.path_of("timeout"),
            "is longer than the interval; probes will overlap their schedule",
        );
    }
    if h.hang_timeout <= h.timeout {
        d.error(&o.path_of("hang_timeout"), "must be longer than the probe timeout");
    }
    o.finish(&[], d);
    h
}

pub(crate) fn compile_restart(
    mut o: Obj<'_>,
    base: &RestartPolicy,
    d: &mut Diags,
) -> RestartPolicy {
    let mut r = base.clone();
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    if let Some(p) = o.str("policy", d) {
        r.mode = match p {
            "no" | "never" => RestartMode::Never,
            "on-failure" | "on_failure" => RestartMode::OnFailure,
            "always" => RestartMode::Always,
            other => {
                d.error(
                    &o.path_of("policy"),
                    format!("{other:?} is not a restart policy (no, on-failure or always)"),
                );
                r.mode
            }
        };
    }
    if let Some(mut b) = o.obj("backoff", d) {
        if let Some(v) = b.duration("initial", ms(1), s(3600), d) {
            r.backoff.initial = v;
        }
        if let Some(v) = b.duration("max", ms(1), s(86_400), d) {
            r.backoff.max = v;
        }
        if let Some(v) = b.get("multiplier") {
            match v.as_f64() {
                Some(m) if (1.0..=10.0).contains(&m) => r.backoff.multiplier = m,
                _ => d.error(
                    &b.path_of("multiplier"),
                    format!("must be a number from 1 to 10, not {v}"),
                ),
            }
        }
        if let Some(v) = b.fraction("jitter", 1.0, d) {
            r.backoff.jitter = v;
        }
        if r.backoff.initial > r.backoff.max {
            d.error(&b.path_of("initial"), "is longer than backoff.max");
        }
        b.finish(&[], d);
    }
    if let Some(v) = o.uint("max_restarts", 0, 10_000, d) {
        r.max_restarts = v as u32;
    }
    if let Some(v) = o.duration("window", s(1), s(86_400), d) {
        r.window = v;
    }
    if let Some(v) = o.duration("reset_after", s(1), s(86_400), d) {
        r.reset_after = v;
    }
    let ppath = o.path_of("probation");
    match o.get("probation") {
        None => {}
        Some(Value::Bool(false)) => r.probation = None,
        Some(Value::String(t)) if t == "off" || t == "never" => r.probation = None,
        Some(_) => {
            // Re-read through the duration parser for its messages and bounds.
            r.probation = o.duration("probation", s(1), s(86_400), d).or(r.probation);
            let _ = ppath;
        }
    }
    if let Some(v) = o.duration("stop_grace", ms(0), s(600), d) {
        r.stop_grace = v;
    }
    if let Some(v) = o.duration("term_timeout", ms(0), s(600), d) {
        r.term_timeout = v;
    }
    o.finish(&[], d);
    r
}
