//! The `integrations` block: things that are not MCP servers (an HTTP endpoint, a TCP port, a
//! command, a PostgreSQL or SQLite database), watched by the same engine. Each entry compiles to a
//! [`ServerSpec`] with [`Transport::Check`], so supervision, views, store, alerts and reports
//! work on it unchanged; the gateway leaves it out.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde_json::Value;

use crate::fields::{expand_field, origin_display, secret_map};
use crate::model::*;
use crate::policy::{compile_common, open_entry, Bases, Common};
use crate::server::{compile_argv, Argv};
use crate::walk::{join, type_name, Diags, Obj};

/// The check kinds; an entry has exactly one.
const KINDS: [&str; 5] = ["http", "tcp", "command", "postgres", "sqlite"];

/// Keys of an MCP server entry that mean nothing for an integration.
const MCP_ONLY: [&str; 15] = [
    "url",
    "urls",
    "serverUrl",
    "type",
    "transportType",
    "replicas",
    "fallback",
    "trusted",
    "retry",
    "cache",
    "balance",
    "standby",
    "fallback_strategy",
    "smoke_test",
    "categories",
];

/// Keys that belong to a command check, given beside the `command`.
const COMMAND_KEYS: [&str; 5] = ["args", "env", "cwd", "expect_exit", "inherit_env"];

pub(crate) fn compile_integrations(
    path: &str,
    value: &Value,
    bases: &Bases<'_>,
    d: &mut Diags,
) -> Vec<ServerSpec> {
    let Value::Object(map) = value else {
        d.error(path, format!("must be an object, not {}", type_name(value)));
        return vec![];
    };
    let mut out = Vec::new();
    for (name, entry) in map {
        let epath = join(path, name);
        if let Some(s) = compile_one(name, &epath, entry, bases, d) {
            out.push(s);
        }
    }
    out
}

/// Names are one namespace: an integration may not take an MCP server's name, and no MCP
/// server falls back to an integration (it cannot take calls).
pub(crate) fn check_names(
    servers: &[ServerSpec],
    mcp_names: &HashSet<String>,
    servers_path: &str,
    d: &mut Diags,
) {
    for s in servers.iter().filter(|s| s.is_check()) {
        if mcp_names.contains(&s.name) {
            d.error(
                &join("integrations", &s.name),
                format!(
                    "the name {:?} is already used by an MCP server ({}); names are shared",
                    s.name,
                    join(servers_path, &s.name)
                ),
            );
        }
    }
    let checks: HashSet<&str> =
        servers.iter().filter(|s| s.is_check()).map(|s| s.name.as_str()).collect();
    for s in servers.iter().filter(|s| !s.is_check()) {
        for (i, fb) in s.fallback.iter().enumerate() {
            if checks.contains(fb.as_str()) && !mcp_names.contains(fb) {
                d.error(
                    &format!("{}.fallback[{i}]", join(servers_path, &s.name)),
                    format!("names {fb:?}, an integration: only MCP servers can take calls"),
                );
            }
        }
    }
}

/// Every secret value of a check, for log scrubbing.
pub(crate) fn secrets(c: &CheckSpec, values: &mut Vec<String>) {
    match c {
        CheckSpec::Http(h) | CheckSpec::Llm(h) => {
            values.push(h.url.expose().to_owned());
            for v in h.headers.values() {
                values.push(v.expose().to_owned());
                if let Some((_, token)) = v.expose().split_once(' ') {
                    values.push(token.trim().to_owned());
                }
            }
        }
        CheckSpec::Command(c) => values.extend(c.env.values().map(|v| v.expose().to_owned())),
        CheckSpec::Postgres { url, .. } => {
            values.push(url.expose().to_owned());
            if let Some(p) = postgres_parts(url.expose()).and_then(|p| p.password) {
                values.push(p);
            }
        }
        CheckSpec::Tcp { .. } | CheckSpec::Sqlite { .. } => {}
    }
}

fn compile_one(
    name: &str,
    path: &str,
    value: &Value,
    bases: &Bases<'_>,
    d: &mut Diags,
) -> Option<ServerSpec> {
    let lookup = bases.lookup;
    let mut o = open_entry(name, "an integration", path, value, d)?;
    let given: Vec<&str> = KINDS.iter().copied().filter(|k| o.has(k)).collect();
    let check = match given.as_slice() {
        [] => {
            d.error(
                path,
                "needs one check: \"http\", \"tcp\", \"command\", \"postgres\" or \"sqlite\"",
            );
            None
        }
        [one] => match *one {
            "http" => compile_http(&mut o, lookup, d),
            "tcp" => compile_tcp(&mut o, lookup, d),
            "command" => compile_command(&mut o, lookup, d),
            "postgres" => compile_postgres(&mut o, lookup, d),
            _ => compile_sqlite(&mut o, lookup, d),
        },
        [a, b, ..] => {
            d.error(path, format!("has both {a:?} and {b:?}; give one check per integration"));
            for k in KINDS {
                let _ = o.get(k);
            }
            None
        }
    };
    if given != ["command"] {
        for key in COMMAND_KEYS {
            if o.has(key) {
                let _ = o.get(key);
                d.warn(&o.path_of(key), "applies to command checks only; ignored");
            }
        }
    }
    for key in MCP_ONLY {
        if o.has(key) {
            let _ = o.get(key);
            d.error(
                &o.path_of(key),
                "applies to MCP servers only (mcpServers), not to integrations",
            );
        }
    }
    let common = compile_common(&mut o, bases, d);
    o.finish(&["description"], d);
    Some(check_server(name, check?, common))
}

/// An integration as the supervisor takes it: a server with one instance, its check as
/// transport, and none of an MCP server's routing keys.
fn check_server(name: &str, check: CheckSpec, c: Common) -> ServerSpec {
    let Common { disabled, critical, health, restart, objective, tags } = c;
    ServerSpec {
        name: name.to_owned(),
        transport: Transport::Check(check),
        replicas: 1,
        fallback: vec![],
        trusted: false,
        retry_tools: vec![],
        cache: BTreeMap::new(),
        balance: Balance::default(),
        critical,
        // What the predictor measures latency against: the check's own timeout.
        timeout: health.timeout,
        health,
        restart,
        disabled,
        objective,
        memory_limit: None,
        standby: false,
        disabled_tools: vec![],
        tags,
        categories: ToolCategories::default(),
        fallback_strategy: FallbackStrategy::default(),
        smoke_test: None,
    }
}

fn compile_http(
    o: &mut Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<CheckSpec> {
    let hpath = o.path_of("http");
    // `"http": "http://…"` is short for `{"url": "http://…"}`.
    if let Some(Value::String(raw)) = o.get("http") {
        let (url, display_url) = http_url(&hpath, raw, lookup, d)?;
        return Some(CheckSpec::Http(HttpCheck {
            url,
            display_url,
            method: HttpMethod::Get,
            expect_status: vec![],
            headers: BTreeMap::new(),
            json_field: None,
            json_equals: None,
        }));
    }
    let mut h = o.obj("http", d)?;
    let upath = h.path_of("url");
    let url = match h.str("url", d) {
        Some(raw) => http_url(&upath, raw, lookup, d),
        None => {
            if !h.has("url") {
                d.error(&upath, "is missing: an http check needs a URL");
            }
            None
        }
    };
    let method = match h.str("method", d) {
        None => Some(HttpMethod::Get),
        Some(m) if m.eq_ignore_ascii_case("get") => Some(HttpMethod::Get),
        Some(m) if m.eq_ignore_ascii_case("head") => Some(HttpMethod::Head),
        Some(m) => {
            d.error(&h.path_of("method"), format!("{m:?} is not a check method (GET or HEAD)"));
            None
        }
    };
    let spath = h.path_of("expect_status");
    let mut expect_status = Vec::new();
    let mut status_ok = true;
    let mut one_status = |path: &str, v: &Value, d: &mut Diags| match v.as_u64() {
        Some(n) if (100..=599).contains(&n) => expect_status.push(n as u16),
        Some(n) => {
            d.error(path, format!("{n} is out of range (100 to 599)"));
            status_ok = false;
        }
        None => {
            d.error(path, format!("must be an HTTP status like 200, not {v}"));
            status_ok = false;
        }
    };
    match h.get("expect_status") {
        None => {}
        Some(Value::Array(items)) if items.is_empty() => {
            d.error(&spath, "is empty; give at least one status, or leave it out for any 2xx");
            status_ok = false;
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                one_status(&format!("{spath}[{i}]"), item, d);
            }
        }
        Some(v) => one_status(&spath, v, d),
    }
    let headers = secret_map(&mut h, "headers", lookup, d);
    let fpath = h.path_of("json_field");
    let json_field = match h.str("json_field", d) {
        None => None,
        Some(f) => match json_pointer(f) {
            Ok(pointer) => Some(JsonField { shown: f.to_owned(), pointer }),
            Err(e) => {
                d.error(&fpath, e);
                return None;
            }
        },
    };
    let json_equals = h.get("json_equals").cloned();
    if json_equals.is_some() && json_field.is_none() {
        d.error(&h.path_of("json_equals"), "needs \"json_field\": the field to compare");
    }
    if json_field.is_some() && method == Some(HttpMethod::Head) {
        d.error(&fpath, "needs a body: use method GET");
    }
    h.finish(&[], d);
    let (url, display_url) = url?;
    if !status_ok {
        return None;
    }
    Some(CheckSpec::Http(HttpCheck {
        url,
        display_url,
        method: method?,
        expect_status,
        headers,
        json_field,
        json_equals,
    }))
}

/// An http(s) URL and its display form `scheme://host:port/…` (no credentials, path or query).
fn http_url(
    path: &str,
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<(Secret, String)> {
    let (url, substituted) = expand_field(path, raw, lookup, d)?;
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => {
            // The display form comes from what the operator wrote: references, never values.
            let shown = origin_display(if substituted { raw } else { &url });
            Some((Secret::new(url), shown))
        }
        _ => {
            let shown = origin_display(raw);
            d.error(path, format!("{shown:?} is not an http:// or https:// URL"));
            None
        }
    }
}

/// A dot path (`data.state`, `items.0.ok`) or a JSON pointer (`/data/state`) as a pointer.
fn json_pointer(field: &str) -> Result<String, String> {
    if field.is_empty() {
        return Err("is empty; name a field like \"status\" or \"/data/state\"".into());
    }
    if field.starts_with('/') {
        return Ok(field.to_owned());
    }
    let mut out = String::new();
    for part in field.split('.') {
        if part.is_empty() {
            return Err(format!("{field:?} has an empty part; use a path like \"data.state\""));
        }
        out.push('/');
        out.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    Ok(out)
}

fn compile_tcp(
    o: &mut Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<CheckSpec> {
    let path = o.path_of("tcp");
    let raw = o.str("tcp", d)?;
    let (address, _) = expand_field(&path, raw, lookup, d)?;
    let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !valid {
        d.error(&path, format!("{raw:?} is not an address like \"127.0.0.1:6379\" (host:port)"));
        return None;
    }
    Some(CheckSpec::Tcp { address })
}

fn compile_command(
    o: &mut Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<CheckSpec> {
    let Argv { command, args, display_args, env, cwd, inherit_env } = compile_argv(o, lookup, d)?;
    let epath = o.path_of("expect_exit");
    let expect_exit = match o.get("expect_exit") {
        None => 0,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 255 => n as i32,
            Some(n) => {
                d.error(&epath, format!("{n} is out of range (0 to 255)"));
                return None;
            }
            None => {
                d.error(&epath, format!("must be an exit code from 0 to 255, not {v}"));
                return None;
            }
        },
    };
    Some(CheckSpec::Command(CommandCheck {
        command,
        args,
        display_args,
        env,
        cwd,
        expect_exit,
        inherit_env,
    }))
}

fn compile_postgres(
    o: &mut Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<CheckSpec> {
    let path = o.path_of("postgres");
    let raw = o.str("postgres", d)?;
    let (url, _) = expand_field(&path, raw, lookup, d)?;
    // The display form is built from what the operator wrote: no user, password or parameters.
    let shown = postgres_parts(raw).map(|p| p.display);
    match (postgres_parts(&url), shown) {
        (Some(p), shown) => {
            Some(CheckSpec::Postgres { url: Secret::new(url), display: shown.unwrap_or(p.display) })
        }
        (None, _) => {
            d.error(
                &path,
                "is not a URL like \"postgres://user:password@host:5432/db\" (postgres:// or postgresql://)",
            );
            None
        }
    }
}

pub(crate) struct PostgresParts {
    pub(crate) display: String,
    pub(crate) password: Option<String>,
}

/// Splits a `postgres://` URL into its display form and its password.
pub(crate) fn postgres_parts(url: &str) -> Option<PostgresParts> {
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let password = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p.to_owned());
    let hostport = if hostport.is_empty() { "localhost" } else { hostport };
    let has_port = hostport.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    let hostport = if has_port { hostport.to_owned() } else { format!("{hostport}:5432") };
    let after = &rest[end..];
    let db = after
        .strip_prefix('/')
        .map(|p| p.split('?').next().unwrap_or(""))
        .filter(|db| !db.is_empty());
    let display = match db {
        Some(db) => format!("postgres://{hostport}/{db}"),
        None => format!("postgres://{hostport}"),
    };
    Some(PostgresParts { display, password })
}

fn compile_sqlite(
    o: &mut Obj<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<CheckSpec> {
    let path = o.path_of("sqlite");
    let raw = o.str("sqlite", d)?;
    let (file, _) = expand_field(&path, raw, lookup, d)?;
    let file =
        file.strip_prefix("sqlite://").or_else(|| file.strip_prefix("sqlite:")).unwrap_or(&file);
    let file = file.split('?').next().unwrap_or("");
    if file.trim().is_empty() || file == ":memory:" {
        d.error(&path, "must name a database file");
        return None;
    }
    Some(CheckSpec::Sqlite { path: PathBuf::from(file) })
}

#[cfg(test)]
#[path = "integrations_tests.rs"]
mod tests;

/// The supervision of the tool-choosing model (`warden.tools.llm`): an integration named `llm`
/// of kind `llm` that lists the API's models with the configured key — reachable, the key
/// accepted — on the default health and restart policy.
pub(crate) fn llm_check(llm: &LlmSettings, bases: &Bases<'_>) -> ServerSpec {
    let mut headers = BTreeMap::new();
    if let Some(k) = &llm.api_key {
        let (name, value) = match llm.provider {
            LlmProvider::OpenAi => ("Authorization", format!("Bearer {}", k.expose())),
            LlmProvider::Gemini => ("x-goog-api-key", k.expose().to_owned()),
        };
        headers.insert(name.to_owned(), Secret::new(value));
    }
    let url = format!("{}/models", llm.url);
    let check = HttpCheck {
        display_url: crate::fields::origin_display(&url),
        url: Secret::new(url),
        method: HttpMethod::Get,
        expect_status: vec![],
        headers,
        json_field: None,
        json_equals: None,
    };
    let mut health = bases.health.clone();
    health.timeout = health.timeout.max(llm.timeout.min(std::time::Duration::from_secs(10)));
    let common = Common {
        disabled: false,
        critical: false,
        health,
        restart: bases.restart.clone(),
        objective: None,
        tags: vec!["llm".to_owned()],
    };
    check_server("llm", CheckSpec::Llm(check), common)
}
