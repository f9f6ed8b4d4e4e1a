//! The `warden` block: Warden's own settings, and the policy defaults every entry starts from.

use std::time::Duration;

use crate::fields::expand_field;
use crate::model::*;
use crate::walk::{Diags, Obj};

use crate::policy::{compile_health, compile_restart};

pub(crate) fn compile_warden(
    obj: Option<Obj<'_>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> (WardenSettings, HealthPolicy, RestartPolicy) {
    let mut w = WardenSettings::default();
    let mut health = HealthPolicy::default();
    let mut restart = RestartPolicy::default();
    let Some(mut o) = obj else { return (w, health, restart) };
    if let Some(listen) = o.str("listen", d) {
        match listen.parse() {
            Ok(addr) => w.listen = addr,
            Err(_) => d.error(
                &o.path_of("listen"),
                format!("{listen:?} is not an address like \"127.0.0.1:7420\""),
            ),
        }
    }
    // A PostgreSQL URL holds a password: `${env:…}` keeps it out of the file.
    if let Some(db) = o.str("database", d) {
        if let Some((db, _)) = expand_field(&o.path_of("database"), db, lookup, d) {
            w.database = Some(db);
        }
    }
    if let Some(r) =
        o.duration("retention", Duration::from_secs(3600), Duration::from_secs(3650 * 86_400), d)
    {
        w.retention = r;
    }
    if let Some(m) =
        o.duration("metrics_interval", Duration::from_secs(1), Duration::from_secs(3600), d)
    {
        w.metrics_interval = m;
    }
    if let Some(mut s) = o.obj("sessions", d) {
        if let Some(n) = s.uint("max", 1, 1_000_000, d) {
            w.max_sessions = n as usize;
        }
        if let Some(t) =
            s.duration("idle_timeout", Duration::from_secs(1), Duration::from_secs(7 * 86_400), d)
        {
            w.session_idle_timeout = t;
        }
        s.finish(&[], d);
    }
    if let Some(n) = o.uint("max_request_body", 1024, 1 << 30, d) {
        w.max_request_body = n as usize;
    }
    match o.str("readiness", d) {
        None => {}
        Some("critical") => w.readiness = Readiness::Critical,
        Some("all") => w.readiness = Readiness::All,
        Some("any") => w.readiness = Readiness::Any,
        Some("none") => w.readiness = Readiness::None,
        Some(other) => d.error(
            &o.path_of("readiness"),
            format!("{other:?} is not a readiness policy (use \"critical\", \"all\", \"any\" or \"none\")"),
        ),
    }
    if let Some(mut defaults) = o.obj("defaults", d) {
        if let Some(h) = defaults.obj("health", d) {
            health = compile_health(h, &health, d);
        }
        if let Some(r) = defaults.obj("restart", d) {
            restart = compile_restart(r, &restart, d);
        }
        defaults.finish(&[], d);
    }
    if let Some(a) = o.obj("alerts", d) {
        w.alerts = crate::alerts::compile_alerts(a, lookup, d);
    }
    if let Some(mut p) = o.obj("prediction", d) {
        if let Some(e) = p.bool("enabled", d) {
            w.prediction.enabled = e;
        }
        if let Some(t) =
            p.duration("warmup", Duration::from_secs(10), Duration::from_secs(86_400), d)
        {
            w.prediction.warmup = t;
        }
        p.finish(&[], d);
    }
    if let Some(mut t) = o.obj("tuning", d) {
        if let Some(a) = t.bool("auto", d) {
            w.tuning.auto = a;
        }
        if let Some(i) =
            t.duration("interval", Duration::from_secs(60), Duration::from_secs(7 * 86_400), d)
        {
            w.tuning.interval = i;
        }
        if let Some(l) =
            t.duration("lookback", Duration::from_secs(600), Duration::from_secs(90 * 86_400), d)
        {
            w.tuning.lookback = l;
        }
        t.finish(&[], d);
    }
    if let Some(mut r) = o.obj("reload", d) {
        if let Some(w_) = r.bool("watch", d) {
            w.reload.watch = w_;
        }
        if let Some(g) = r.duration("grace", Duration::ZERO, Duration::from_secs(3600), d) {
            w.reload.grace = g;
        }
        r.finish(&[], d);
    }
    if let Some(level) = o.str("log_level", d) {
        match check_log_filter(level) {
            Ok(()) => w.log_level = Some(level.to_owned()),
            Err(e) => d.error(&o.path_of("log_level"), e),
        }
    }
    if let Some(mut t) = o.obj("health_thresholds", d) {
        let h = &mut w.health_thresholds;
        for (key, field) in [
            ("pool_degraded", &mut h.pool_degraded),
            ("pool_unhealthy", &mut h.pool_unhealthy),
            ("memory_degraded", &mut h.memory_degraded),
            ("memory_unhealthy", &mut h.memory_unhealthy),
        ] {
            if let Some(v) = t.ratio(key, 0.0, 1.0, d) {
                *field = v;
            }
        }
        if let Some(l) = t.duration(
            "database_latency_degraded",
            Duration::from_millis(1),
            Duration::from_secs(60),
            d,
        ) {
            h.database_latency_degraded = l;
        }
        if h.pool_degraded > h.pool_unhealthy || h.memory_degraded > h.memory_unhealthy {
            d.error(&t.path, "a `_degraded` threshold must not be above its `_unhealthy` one");
        }
        t.finish(&[], d);
    }
    if let Some(mut t) = o.obj("tools", d) {
        if let Some(p) = t.str("prefix", d) {
            let ok = !p.is_empty()
                && p.len() <= 32
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && p.ends_with('_');
            if ok {
                w.tools.prefix = p.to_owned();
            } else {
                d.error(
                    &t.path_of("prefix"),
                    format!("{p:?} is not a tool-name prefix (letters, digits, - and _, ending in _, at most 32: \"warden__\", \"orchestrator_\")"),
                );
            }
        }
        let epath = t.path_of("exposure");
        if let Some(v) = t.get("exposure") {
            if let Some(e) = exposure(&epath, v, d) {
                w.tools.exposure = e;
            }
        }
        let npath = t.path_of("endpoints");
        match t.get("endpoints") {
            None => {}
            Some(serde_json::Value::Object(map)) => {
                for (name, v) in map {
                    let p = crate::walk::join(&npath, name);
                    if crate::server::category_name(&p, name, d) {
                        if let Some(e) = exposure(&p, v, d) {
                            w.tools.endpoints.insert(name.clone(), e);
                        }
                    }
                }
            }
            Some(other) => d.error(
                &npath,
                format!(
                    "must map endpoint names to exposures, not {}",
                    crate::walk::type_name(other)
                ),
            ),
        }
        if let Some(l) = t.obj("llm", d) {
            w.tools.llm = compile_llm(l, lookup, d);
        }
        let cpath = t.path_of("categories");
        match t.get("categories") {
            None => {}
            Some(serde_json::Value::Object(map)) => {
                for (name, v) in map {
                    let p = crate::walk::join(&cpath, name);
                    match v.as_str() {
                        Some(desc) if crate::server::category_name(&p, name, d) => {
                            w.tools.categories.insert(name.clone(), desc.to_owned());
                        }
                        Some(_) => {}
                        None => d.error(&p, "must describe the category's tools in words"),
                    }
                }
            }
            Some(other) => d.error(
                &cpath,
                format!(
                    "must map category names to descriptions, not {}",
                    crate::walk::type_name(other)
                ),
            ),
        }
        t.finish(&[], d);
    }
    if let Some(m) = o.obj("metadata", d) {
        let base = m.path.clone();
        if let Some(serde_json::Value::Object(map)) = o.get("metadata") {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) => {
                        w.metadata.insert(k.clone(), s.clone());
                    }
                    other => d.error(
                        &crate::walk::join(&base, k),
                        format!("must be a string, not {}", crate::walk::type_name(other)),
                    ),
                }
            }
        }
    }
    let tpath = o.path_of("token");
    if let Some(t) = o.str("token", d) {
        if let Some((token, _)) = expand_field(&tpath, t, lookup, d) {
            if token.len() < 16 {
                d.error(&tpath, "is shorter than 16 characters; use a long random token");
            } else {
                w.token = Some(Secret::new(token));
            }
        }
    }
    if let Some(l) = o.obj("logs", d) {
        w.logs = compile_logs(l, d);
    }
    let _ = o.get("log");
    o.finish(&[], d);
    (w, health, restart)
}

/// A log filter as `tracing`'s `EnvFilter` reads it: comma-separated `level` or
/// `target=level` directives.
fn check_log_filter(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for part in text.split(',').map(str::trim) {
        let level = part.rsplit_once('=').map_or(
            part,
            |(target, level)| {
                if target.is_empty() {
                    ""
                } else {
                    level
                }
            },
        );
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{part:?} is not a log filter directive (use a level — trace, debug, info, warn, \
                 error, off — or target=level, comma-separated)"
            ));
        }
    }
    Ok(())
}

fn compile_logs(mut o: Obj<'_>, d: &mut Diags) -> LogSettings {
    let mut logs = LogSettings::default();
    match o.str("dir", d) {
        Some("") => d.error(&o.path_of("dir"), "is empty; name a directory, or \"none\""),
        Some(dir) => logs.dir = Some(LogDir::parse(dir)),
        None => {}
    }
    if let Some(n) = o.uint("retention_days", 1, 3650, d) {
        logs.retention_days = Some(n as u32);
    }
    match o.str("format", d) {
        None => {}
        Some("human") => logs.format = Some(LogFormat::Human),
        Some("json") => logs.format = Some(LogFormat::Json),
        Some(other) => d.error(
            &o.path_of("format"),
            format!("{other:?} is not a log format (use \"human\" or \"json\")"),
        ),
    }
    o.finish(&[], d);
    logs
}

/// `warden.tools.llm`: `{provider: openai|gemini, url, model, api_key, timeout}`.
fn compile_llm(
    mut o: Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<LlmSettings> {
    let provider = match o.str("provider", d) {
        None | Some("openai") => LlmProvider::OpenAi,
        Some("gemini") => LlmProvider::Gemini,
        Some(other) => {
            d.error(&o.path_of("provider"), format!("{other:?} is not a provider (use \"openai\" — any OpenAI-compatible chat-completions API — or \"gemini\")"));
            return None;
        }
    };
    let upath = o.path_of("url");
    let url = match (o.str("url", d), provider) {
        (Some(u), _) => u.to_owned(),
        (None, LlmProvider::OpenAi) => "https://api.openai.com/v1".to_owned(),
        (None, LlmProvider::Gemini) => {
            "https://generativelanguage.googleapis.com/v1beta".to_owned()
        }
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        d.error(&upath, format!("{url:?} is not an http:// or https:// URL"));
    }
    let mpath = o.path_of("model");
    let model = o.str("model", d).map(str::to_owned);
    if model.is_none() {
        d.error(&mpath, "is missing: the model to ask (\"gpt-4o-mini\", \"gemini-2.0-flash\", …)");
    }
    let kpath = o.path_of("api_key");
    let api_key = match o.str("api_key", d) {
        Some(k) => Some(Secret::new(expand_field(&kpath, k, lookup, d)?.0)),
        None => None,
    };
    let timeout = o
        .duration("timeout", Duration::from_millis(100), Duration::from_secs(120), d)
        .unwrap_or(Duration::from_secs(6));
    o.finish(&[], d);
    Some(LlmSettings {
        provider,
        url: url.trim_end_matches('/').to_owned(),
        model: model?,
        api_key,
        timeout,
    })
}

/// An exposure: `"all"`, `"meta"` or a list of categories.
fn exposure(path: &str, v: &serde_json::Value, d: &mut Diags) -> Option<ExposureSetting> {
    match v {
        serde_json::Value::String(s) if s == "all" => Some(ExposureSetting::All),
        serde_json::Value::String(s) if s == "meta" => Some(ExposureSetting::Meta),
        serde_json::Value::Array(items) => {
            let mut cats = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match item.as_str() {
                    Some(c) if crate::server::category_name(&p, c, d) => cats.push(c.to_owned()),
                    Some(_) => {}
                    None => d.error(&p, "must be a category name"),
                }
            }
            Some(ExposureSetting::Categories(cats))
        }
        other => {
            d.error(
                path,
                format!("{other} is not an exposure (\"all\", \"meta\" or a list of categories)"),
            );
            None
        }
    }
}
