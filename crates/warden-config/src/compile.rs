//! Loading and compiling: JSON text → validated [`Config`] with every diagnostic at once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::expand::expand;
use crate::model::*;
use crate::walk::{join, type_name, Diags, Obj};

/// One problem, with the path of the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The config could not be used. Holds every error found, not just the first.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        match &self.file {
            Some(p) => writeln!(f, "{}: {n} error{}", p.display(), if n == 1 { "" } else { "s" })?,
            None => writeln!(f, "{n} error{}", if n == 1 { "" } else { "s" })?,
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

/// A compiled config and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    pub file: Option<PathBuf>,
}

/// Reads and compiles the config file at `path`, expanding `${env:VAR}` from the process
/// environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let fail = |message: String| ConfigError {
        file: Some(path.to_owned()),
        errors: vec![Diagnostic { path: String::new(), message }],
        warnings: vec![],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let mut loaded = compile(&text, &|name| std::env::var(name).ok()).map_err(|mut e| {
        e.file = Some(path.to_owned());
        e
    })?;
    loaded.file = Some(path.to_owned());
    Ok(loaded)
}

/// Keys other MCP clients put on a server entry; accepted without a warning.
const FOREIGN_SERVER_KEYS: &[&str] = &[
    "autoApprove",
    "alwaysAllow",
    "description",
    "disabledTools",
    "dev",
    "name",
    "gallery",
    "icon",
    "version",
    "source",
    "networkTimeout",
    "envFile",
    "requires",
];

/// Compiles config text. `lookup` resolves environment variables.
pub fn compile(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut d = Diags { errors: vec![], warnings: vec![] };
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let message = format!("not valid JSON: {e}");
            return Err(ConfigError {
                file: None,
                errors: vec![Diagnostic { path: String::new(), message }],
                warnings: vec![],
            });
        }
    };
    // Every value the environment supplies is treated as a secret.
    let supplied = std::cell::RefCell::new(Vec::new());
    let recording = |name: &str| {
        let v = lookup(name);
        if let Some(v) = &v {
            supplied.borrow_mut().push(v.clone());
        }
        v
    };
    let mut config = compile_root(&root, &recording, &mut d);
    if let Some(c) = config.as_mut() {
        c.secrets = collect_secrets(c, supplied.into_inner());
    }
    if d.errors.is_empty() {
        Ok(Loaded {
            config: config.expect("no errors means a config"),
            warnings: d.warnings,
            file: None,
        })
    } else {
        Err(ConfigError { file: None, errors: d.errors, warnings: d.warnings })
    }
}

fn compile_root(
    root: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Config> {
    let mut top = Obj::new(String::new(), root, d)?;
    let warden_obj = top.obj("warden", d);
    let (warden, health_base, restart_base) = compile_warden(warden_obj, lookup, d);

    // Claude Desktop, Cursor and mcp-hub use `mcpServers`; VS Code uses `servers`.
    let key = if top.has("mcpServers") || !top.has("servers") { "mcpServers" } else { "servers" };
    let servers_path = top.path_of(key);
    let mut servers = Vec::new();
    let has_integrations = top.has("integrations");
    match top.get(if key == "mcpServers" { "mcpServers" } else { "servers" }) {
        None if has_integrations => {}
        None => d.error(&servers_path, "is missing: the config needs at least one server"),
        Some(Value::Object(map)) => {
            if map.is_empty() {
                d.warn(&servers_path, "no servers are configured");
            }
            for (name, value) in map {
                let path = join(&servers_path, name);
                if let Some(s) =
                    compile_server(name, &path, value, &health_base, &restart_base, lookup, d)
                {
                    servers.push(s);
                }
            }
        }
        Some(other) => {
            d.error(&servers_path, format!("must be an object, not {}", type_name(other)))
        }
    }
    // Integrations that are not MCP servers share the servers' namespace.
    let integrations_path = top.path_of("integrations");
    let mcp_names: HashSet<String> = servers.iter().map(|s| s.name.clone()).collect();
    if let Some(value) = top.get("integrations") {
        servers.extend(crate::integrations::compile_integrations(
            &integrations_path,
            value,
            &health_base,
            &restart_base,
            lookup,
            d,
        ));
    }
    // Claude Desktop and VS Code files carry other top-level keys; warn only about near misses.
    warn_top_level_near_misses(root, d);

    check_fallbacks(&servers, &servers_path, d);
    crate::integrations::check_names(&servers, &mcp_names, &servers_path, d);
    Some(Config { servers, warden, secrets: Vec::new() })
}

fn collect_secrets(config: &Config, mut values: Vec<String>) -> Vec<Secret> {
    for s in &config.servers {
        match &s.transport {
            Transport::Stdio { env, .. } => {
                values.extend(env.values().map(|v| v.expose().to_owned()))
            }
            Transport::Remote { headers, .. } => {
                for v in headers.values() {
                    values.push(v.expose().to_owned());
                    // `Bearer <token>`: the token alone is the secret part.
                    if let Some((_, token)) = v.expose().split_once(' ') {
                        values.push(token.trim().to_owned());
                    }
                }
            }
            Transport::Check(c) => crate::integrations::secrets(c, &mut values),
        }
    }
    if let Some(t) = &config.warden.token {
        values.push(t.expose().to_owned());
    }
    for r in &config.warden.alerts.receivers {
        if let crate::alerts::ReceiverKind::Webhook { url, headers, .. } = &r.kind {
            values.push(url.expose().to_owned());
            for v in headers.values() {
                values.push(v.expose().to_owned());
                if let Some((_, token)) = v.expose().split_once(' ') {
                    values.push(token.trim().to_owned());
                }
            }
        }
    }
    values.retain(|v| v.chars().count() >= 6);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values.into_iter().map(Secret::new).collect()
}

fn warn_top_level_near_misses(root: &Value, d: &mut Diags) {
    let Value::Object(map) = root else { return };
    for key in map.keys() {
        if ["mcpServers", "servers", "warden", "integrations"].contains(&key.as_str()) {
            continue;
        }
        for known in ["mcpServers", "warden", "integrations"] {
            if strsim::jaro_winkler(&key.to_lowercase(), &known.to_lowercase()) >= 0.85 {
                d.warn(&join("", key), format!("unknown key (did you mean {known:?}?); ignored"));
            }
        }
    }
}

fn check_fallbacks(servers: &[ServerSpec], servers_path: &str, d: &mut Diags) {
    let names: HashSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    for s in servers {
        for (i, fb) in s.fallback.iter().enumerate() {
            let path = format!("{}.fallback[{i}]", join(servers_path, &s.name));
            if fb == &s.name {
                d.error(&path, "a server cannot be its own fallback");
            } else if !names.contains(fb.as_str()) {
                d.error(&path, format!("names {fb:?}, which is not a configured server"));
            }
        }
    }
}

fn compile_warden(
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
    if let Some(db) = o.str("database", d) {
        w.database = Some(db.to_owned());
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

/// A server's or an integration's name: it becomes a tool prefix (`name__tool`), an instance
/// id (`name#0`) and a URL path segment.
/// A name is mounted as `/servers/NAME/mcp`, prefixes tools as `NAME__tool` (which clients
/// accept only in `[A-Za-z0-9_.-]`) and labels metrics, so it keeps to those characters.
pub(crate) fn check_name(name: &str, what: &str, path: &str, d: &mut Diags) {
    let charset = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || !charset || name.contains("__") || name == "." || name == ".." {
        d.error(
            path,
            format!(
                "{what} name may use only letters, digits, \"-\", \"_\" and \".\" (not \"__\", \".\" or \"..\"); {name:?} has other characters or is empty"
            ),
        );
    } else if name == "warden" {
        d.error(path, "the name \"warden\" is reserved for Warden's own tools (warden__…)");
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_server(
    name: &str,
    path: &str,
    value: &Value,
    health_base: &HealthPolicy,
    restart_base: &RestartPolicy,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<ServerSpec> {
    check_name(name, "a server", path, d);
    let mut o = Obj::new(path.to_owned(), value, d)?;
    let kind = transport_kind(&mut o, d);
    let has_command = o.has("command");
    let has_url = o.has("url") || o.has("urls") || o.has("serverUrl");

    let transport = match (has_command, has_url, kind) {
        (true, true, _) => {
            d.error(path, "has both \"command\" and \"url\"; give one");
            None
        }
        (false, false, _) => {
            d.error(path, "needs \"command\" (a local server) or \"url\" (a remote server)");
            None
        }
        (true, false, Some(k)) if k != TransportKey::Stdio => {
            d.error(
                &o.path_of("type"),
                "says a remote transport, but the server has a \"command\"",
            );
            None
        }
        (true, false, _) => compile_stdio(&mut o, lookup, d),
        (false, true, Some(TransportKey::Stdio)) => {
            d.error(&o.path_of("type"), "says \"stdio\", but the server has a \"url\"");
            None
        }
        (false, true, k) => compile_remote(&mut o, k, lookup, d),
    };

    let mut replicas = 1;
    if let Some(n) = o.uint("replicas", 1, 64, d) {
        replicas = n as u32;
        if !has_command && n > 1 {
            d.error(
                &o.path_of("replicas"),
                "applies to stdio servers; for a remote server list several URLs in \"url\"",
            );
        }
    }
    let mut fallback = Vec::new();
    let fb_path = o.path_of("fallback");
    match o.get("fallback") {
        None => {}
        Some(Value::String(s)) => fallback.push(s.clone()),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => fallback.push(s.clone()),
                    other => d.error(
                        &format!("{fb_path}[{i}]"),
                        format!("must be a server name, not {}", type_name(other)),
                    ),
                }
            }
        }
        Some(other) => d.error(
            &fb_path,
            format!("must be a server name or a list of them, not {}", type_name(other)),
        ),
    }
    let trusted = o.bool("trusted", d).unwrap_or(false);
    let mut retry_tools = Vec::new();
    let rpath = o.path_of("retry");
    match o.get("retry") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => retry_tools.push(s.clone()),
                    other => d.error(
                        &format!("{rpath}[{i}]"),
                        format!("must be a tool name, not {}", type_name(other)),
                    ),
                }
            }
        }
        Some(other) => {
            d.error(&rpath, format!("must be a list of tool names, not {}", type_name(other)))
        }
    }
    let mut cache = BTreeMap::new();
    let cpath = o.path_of("cache");
    match o.get("cache") {
        None => {}
        // Keys are tool names, values how long a result stays fresh.
        Some(Value::Object(tools)) => {
            for (tool, v) in tools {
                let path = join(&cpath, tool);
                match v {
                    Value::String(s) => match crate::duration::parse_duration(s) {
                        Ok(ttl) if ttl > Duration::ZERO && ttl <= Duration::from_secs(86_400) => {
                            cache.insert(tool.clone(), ttl);
                        }
                        Ok(_) => d.error(&path, "must be a duration from 1ms to 1d"),
                        Err(e) => d.error(&path, e),
                    },
                    other => d.error(
                        &path,
                        format!("must be a duration like \"30s\", not {}", type_name(other)),
                    ),
                }
            }
        }
        Some(other) => {
            d.error(&cpath, format!("must map tool names to durations, not {}", type_name(other)))
        }
    }
    let balance = match o.str("balance", d) {
        None => Balance::default(),
        Some("p2c" | "peak_ewma" | "least_latency") => Balance::PeakEwma,
        Some("round_robin" | "round-robin") => Balance::RoundRobin,
        Some(other) => {
            d.error(
                &o.path_of("balance"),
                format!("{other:?} is not a balancing policy (use \"p2c\" or \"round_robin\")"),
            );
            Balance::default()
        }
    };
    let disabled = o.bool("disabled", d).unwrap_or(false);
    let critical = o.bool("critical", d).unwrap_or(false);
    let timeout = o
        .duration("timeout", Duration::from_millis(100), Duration::from_secs(3600), d)
        .unwrap_or(Duration::from_secs(60));
    let health = match o.obj("health", d) {
        Some(h) => compile_health(h, health_base, d),
        None => health_base.clone(),
    };
    let restart = match o.obj("restart", d) {
        Some(r) => compile_restart(r, restart_base, d),
        None => restart_base.clone(),
    };
    let objective = compile_objective(&mut o, d);
    let memory_limit = bytes(&mut o, "memory_limit", d);
    let standby = o.bool("standby", d).unwrap_or(false);
    if standby && !has_command {
        d.error(
            &o.path_of("standby"),
            "applies to stdio servers: Warden cannot start a remote one",
        );
    }
    o.finish(FOREIGN_SERVER_KEYS, d);
    Some(ServerSpec {
        name: name.to_owned(),
        transport: transport?,
        replicas,
        fallback,
        trusted,
        retry_tools,
        cache,
        balance,
        critical,
        timeout,
        health,
        restart,
        disabled,
        objective,
        memory_limit,
        standby,
    })
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

/// A size: a number of bytes, or `"512MiB"`, `"2GiB"`, `"500MB"`, `"64k"`.
fn bytes(o: &mut Obj<'_>, key: &'static str, d: &mut Diags) -> Option<u64> {
    let path = o.path_of(key);
    let parsed = match o.get(key)? {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("{n} is not a size in bytes")),
        Value::String(s) => parse_bytes(s),
        other => Err(format!("must be a size like \"512MiB\", not {}", type_name(other))),
    };
    match parsed {
        Ok(n) if n >= 1 << 20 => Some(n),
        Ok(n) => {
            d.error(&path, format!("{n} bytes is too small (at least 1MiB)"));
            None
        }
        Err(e) => {
            d.error(&path, e);
            None
        }
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size like \"512MiB\""))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!("{other:?} is not a size unit (use B, KiB, MiB, GiB, kB, MB, GB)"))
        }
    };
    Ok((n * mult) as u64)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TransportKey {
    Stdio,
    Http,
    Sse,
}

fn transport_kind(o: &mut Obj<'_>, d: &mut Diags) -> Option<TransportKey> {
    let mut found = None;
    for key in ["type", "transportType"] {
        let Some(t) = o.str(key, d) else { continue };
        let k = match t.to_ascii_lowercase().as_str() {
            "stdio" => TransportKey::Stdio,
            "http" | "streamable-http" | "streamablehttp" | "streamable_http" => TransportKey::Http,
            "sse" => TransportKey::Sse,
            _ => {
                d.error(
                    &o.path_of(key),
                    format!("{t:?} is not a transport (stdio, http, streamable-http or sse)"),
                );
                continue;
            }
        };
        found = Some(k);
    }
    found
}

pub(crate) fn expand_field(
    path: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<(String, bool)> {
    match expand(text, lookup) {
        Ok(r) => Some(r),
        Err(msg) => {
            d.error(path, msg);
            None
        }
    }
}

pub(crate) fn string_list<'a>(
    o: &mut Obj<'a>,
    key: &'static str,
    d: &mut Diags,
) -> Vec<(String, &'a str)> {
    let path = o.path_of(key);
    match o.get(key) {
        None => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some((format!("{path}[{i}]"), s.as_str())),
                other => {
                    d.error(
                        &format!("{path}[{i}]"),
                        format!("must be a string, not {}", type_name(other)),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            d.error(&path, format!("must be a list of strings, not {}", type_name(other)));
            vec![]
        }
    }
}

pub(crate) fn secret_map(
    o: &mut Obj<'_>,
    key: &'static str,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    let Some(map) = o.obj(key, d) else { return out };
    let base = map.path.clone();
    if let Some(Value::Object(m)) = o.get(key) {
        for (k, v) in m {
            let path = join(&base, k);
            match v {
                Value::String(s) => {
                    if let Some((value, _)) = expand_field(&path, s, lookup, d) {
                        out.insert(k.clone(), Secret::new(value));
                    }
                }
                // Numbers and booleans are common in hand-written env blocks.
                Value::Number(_) | Value::Bool(_) => {
                    out.insert(k.clone(), Secret::new(v.to_string()));
                }
                other => d.error(&path, format!("must be a string, not {}", type_name(other))),
            }
        }
    }
    out
}

/// A program to run without a shell: `command`, `args`, `env`, `cwd` (a stdio server, or an
/// integration's command check).
pub(crate) struct Argv {
    pub(crate) command: String,
    pub(crate) args: Vec<String>,
    /// Args with every substituted `${…}` shown as written, never as its value.
    pub(crate) display_args: Vec<String>,
    pub(crate) env: BTreeMap<String, Secret>,
    pub(crate) cwd: Option<PathBuf>,
    /// Pass Warden's whole environment, not only the allow-list (`warden_core::child_env`).
    pub(crate) inherit_env: bool,
}

pub(crate) fn compile_argv(
    o: &mut Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Argv> {
    let cpath = o.path_of("command");
    let command = o.str("command", d)?;
    let (command, _) = expand_field(&cpath, command, lookup, d)?;
    if command.trim().is_empty() {
        d.error(&cpath, "is empty");
        return None;
    }
    let mut args = Vec::new();
    let mut display_args = Vec::new();
    for (path, raw) in string_list(o, "args", d) {
        if let Some((value, substituted)) = expand_field(&path, raw, lookup, d) {
            args.push(value);
            // Show the reference, never the value it expanded to.
            display_args.push(if substituted {
                raw.to_owned()
            } else {
                args.last().cloned().unwrap_or_default()
            });
        }
    }
    let env = secret_map(o, "env", lookup, d);
    let cwd_path = o.path_of("cwd");
    let cwd = o
        .str("cwd", d)
        .and_then(|c| expand_field(&cwd_path, c, lookup, d))
        .map(|(c, _)| PathBuf::from(c));
    let inherit_env = o.bool("inherit_env", d).unwrap_or(false);
    Some(Argv { command, args, display_args, env, cwd, inherit_env })
}

fn compile_stdio(
    o: &mut Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Transport> {
    let Argv { command, args, display_args, env, cwd, inherit_env } = compile_argv(o, lookup, d)?;
    let _ = o
        .get("headers")
        .map(|_| d.warn(&o.path_of("headers"), "applies to remote servers only; ignored"));
    Some(Transport::Stdio { command, args, display_args, env, cwd, inherit_env })
}

fn compile_remote(
    o: &mut Obj<'_>,
    kind: Option<TransportKey>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Transport> {
    let mut raw_urls: Vec<(String, String)> = Vec::new();
    for key in ["url", "urls", "serverUrl"] {
        let path = o.path_of(key);
        match o.get(key) {
            None => {}
            Some(Value::String(s)) => raw_urls.push((path, s.clone())),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => raw_urls.push((format!("{path}[{i}]"), s.clone())),
                        other => d.error(
                            &format!("{path}[{i}]"),
                            format!("must be a URL, not {}", type_name(other)),
                        ),
                    }
                }
            }
            Some(other) => {
                d.error(&path, format!("must be a URL or a list of URLs, not {}", type_name(other)))
            }
        }
    }
    let mut urls = Vec::new();
    let mut display_urls = Vec::new();
    for (path, raw) in &raw_urls {
        let Some((url, substituted)) = expand_field(path, raw, lookup, d) else { continue };
        let lower = url.to_ascii_lowercase();
        let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => {
                display_urls.push(if substituted { raw.clone() } else { hide_userinfo(&url) });
                urls.push(url);
            }
            _ => d.error(
                path,
                format!(
                    "{:?} is not an http:// or https:// URL",
                    if substituted { raw.as_str() } else { url.as_str() }
                ),
            ),
        }
    }
    let headers = secret_map(o, "headers", lookup, d);
    for key in ["args", "env", "cwd", "inherit_env"] {
        if o.has(key) {
            let _ = o.get(key);
            d.warn(&o.path_of(key), "applies to stdio servers only; ignored");
        }
    }
    if urls.is_empty() {
        return None;
    }
    let kind = match kind {
        Some(TransportKey::Sse) => RemoteKind::Sse,
        Some(TransportKey::Http) => RemoteKind::StreamableHttp,
        _ => RemoteKind::Auto,
    };
    Some(Transport::Remote { urls, display_urls, headers, kind })
}

fn hide_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find('/').unwrap_or(after.len());
    match after[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &after[at + 1..]),
        None => url.to_owned(),
    }
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
