//! One `mcpServers` entry: its transport (a command, or one or more URLs), replicas, fallbacks,
//! retries, caching and balancing, on top of the keys every entry shares (`policy.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::fields::{expand_field, secret_map, string_list};
use crate::model::*;
use crate::walk::{join, type_name, Diags, Obj};

use crate::compile::IGNORED_SERVER_KEYS;
use crate::policy::{compile_common, open_entry, Bases, Common};

pub(crate) fn compile_server(
    name: &str,
    path: &str,
    value: &Value,
    bases: &Bases<'_>,
    d: &mut Diags,
) -> Option<ServerSpec> {
    let lookup = bases.lookup;
    let mut o = open_entry(name, "a server", path, value, d)?;
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
    let Common { disabled, critical, health, restart, objective, tags } =
        compile_common(&mut o, bases, d);
    let fallback_strategy = match o.str("fallback_strategy", d) {
        None => FallbackStrategy::default(),
        Some(s) => FallbackStrategy::parse(s).unwrap_or_else(|| {
            let names: Vec<&str> = FallbackStrategy::ALL.iter().map(|f| f.as_str()).collect();
            d.error(
                &o.path_of("fallback_strategy"),
                format!("{s:?} is not a fallback strategy (use one of {})", names.join(", ")),
            );
            FallbackStrategy::default()
        }),
    };
    let smoke_test = compile_smoke_test(&mut o, d);
    let categories = compile_categories(&mut o, d);
    let timeout =
        match o.duration("timeout", Duration::from_millis(100), Duration::from_secs(3600), d) {
            Some(t) => {
                if o.get("networkTimeout").is_some() {
                    d.warn(&o.path_of("networkTimeout"), "ignored: `timeout` is set");
                }
                t
            }
            None => network_timeout(&mut o, d).unwrap_or(Duration::from_secs(60)),
        };
    let memory_limit = bytes(&mut o, "memory_limit", d);
    let standby = o.bool("standby", d).unwrap_or(false);
    let disabled_tools: Vec<String> =
        string_list(&mut o, "disabledTools", d).into_iter().map(|(_, t)| t.to_owned()).collect();
    if standby && !has_command {
        d.error(
            &o.path_of("standby"),
            "applies to stdio servers: Warden cannot start a remote one",
        );
    }
    let mut ignored = Vec::new();
    for (key, _) in IGNORED_SERVER_KEYS {
        if o.get(key).is_some() {
            ignored.push((*key, o.path_of(key)));
        }
    }
    for (key, path) in ignored {
        d.ignored.entry(key).or_default().push(path);
    }
    o.finish(&[], d);
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
        disabled_tools,
        tags,
        categories,
        fallback_strategy,
        smoke_test,
    })
}

/// A category name: lower-case letters, digits, `-` and `_`.
pub(crate) fn category_name(path: &str, name: &str, d: &mut Diags) -> bool {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        d.error(
            path,
            format!("{name:?} is not a category name (lower-case letters, digits, - and _)"),
        );
    }
    ok
}

fn category_list(path: &str, v: &Value, d: &mut Diags) -> Vec<String> {
    match v {
        Value::String(s) if category_name(path, s, d) => vec![s.clone()],
        Value::String(_) => vec![],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let p = format!("{path}[{i}]");
                match item {
                    Value::String(s) => category_name(&p, s, d).then(|| s.clone()),
                    other => {
                        d.error(&p, format!("must be a category name, not {}", type_name(other)));
                        None
                    }
                }
            })
            .collect(),
        other => {
            d.error(path, format!("must be a list of category names, not {}", type_name(other)));
            vec![]
        }
    }
}

/// `categories`: a list for every tool, or `{tool: [..], "*": [..]}`.
fn compile_categories(o: &mut Obj<'_>, d: &mut Diags) -> ToolCategories {
    let path = o.path_of("categories");
    let mut out = ToolCategories::default();
    match o.get("categories") {
        None => {}
        Some(Value::Object(per)) => {
            for (tool, v) in per {
                let list = category_list(&join(&path, tool), v, d);
                if tool == "*" {
                    out.all = list;
                } else {
                    out.per_tool.insert(tool.clone(), list);
                }
            }
        }
        Some(v) => out.all = category_list(&path, v, d),
    }
    out
}

/// `smoke_test`: a tool name, or `{ "tool": …, "arguments": {…} }`.
fn compile_smoke_test(o: &mut Obj<'_>, d: &mut Diags) -> Option<SmokeTest> {
    let path = o.path_of("smoke_test");
    match o.get("smoke_test")? {
        Value::String(tool) if !tool.is_empty() => {
            Some(SmokeTest { tool: tool.clone(), arguments: Default::default() })
        }
        Value::Object(m) => {
            let tool = match m.get("tool") {
                Some(Value::String(t)) if !t.is_empty() => t.clone(),
                _ => {
                    d.error(&join(&path, "tool"), "must name the tool to call");
                    return None;
                }
            };
            let arguments = match m.get("arguments") {
                None => Default::default(),
                Some(Value::Object(a)) => a.clone(),
                Some(other) => {
                    d.error(
                        &join(&path, "arguments"),
                        format!("must be an object, not {}", type_name(other)),
                    );
                    return None;
                }
            };
            if let Some(k) = m.keys().find(|k| *k != "tool" && *k != "arguments") {
                d.error(&join(&path, k), "unknown key (use \"tool\" and \"arguments\")");
            }
            Some(SmokeTest { tool, arguments })
        }
        other => {
            d.error(
                &path,
                format!(
                    "must be a tool name or {{\"tool\", \"arguments\"}}, not {}",
                    type_name(other)
                ),
            );
            None
        }
    }
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

/// `networkTimeout` (other clients' call timeout): milliseconds, or a duration string.
fn network_timeout(o: &mut Obj<'_>, d: &mut Diags) -> Option<Duration> {
    let path = o.path_of("networkTimeout");
    let t = match o.get("networkTimeout")? {
        Value::Number(n) => match n.as_u64() {
            Some(ms) => Duration::from_millis(ms),
            None => {
                d.error(&path, format!("{n} is not a number of milliseconds"));
                return None;
            }
        },
        Value::String(s) => match crate::duration::parse_duration(s) {
            Ok(t) => t,
            Err(e) => {
                d.error(&path, e);
                return None;
            }
        },
        other => {
            d.error(&path, format!("must be milliseconds or a duration, not {}", type_name(other)));
            return None;
        }
    };
    if t < Duration::from_millis(100) || t > Duration::from_secs(3600) {
        d.error(&path, "is out of range (100ms to 1h)");
        return None;
    }
    Some(t)
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
    let mut env = secret_map(o, "env", lookup, d);
    // `envFile` (VS Code): its variables, under what `env` sets.
    let fpath = o.path_of("envFile");
    if let Some(file) = o.str("envFile", d) {
        if let Some((file, _)) = expand_field(&fpath, file, lookup, d) {
            for (k, v) in env_file(&fpath, &file, d) {
                env.entry(k).or_insert_with(|| Secret::new(v));
            }
        }
    }
    let cwd_path = o.path_of("cwd");
    let cwd = o
        .str("cwd", d)
        .and_then(|c| expand_field(&cwd_path, c, lookup, d))
        .map(|(c, _)| PathBuf::from(c));
    let inherit_env = o.bool("inherit_env", d).unwrap_or(false);
    Some(Argv { command, args, display_args, env, cwd, inherit_env })
}

/// Reads a dotenv file: `KEY=VALUE` lines, `#` comments, an optional `export `, values
/// optionally in single or double quotes. A relative path is from the config file's directory.
fn env_file(path: &str, file: &str, d: &mut Diags) -> Vec<(String, String)> {
    let mut full = PathBuf::from(file);
    if full.is_relative() {
        if let Some(base) = &d.base_dir {
            full = base.join(full);
        }
    }
    let text = match std::fs::read_to_string(&full) {
        Ok(t) => t,
        Err(e) => {
            d.error(path, format!("cannot read {}: {e}", full.display()));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            d.error(path, format!("{} line {}: not KEY=VALUE", full.display(), n + 1));
            continue;
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            d.error(
                path,
                format!("{} line {}: {key:?} is not a variable name", full.display(), n + 1),
            );
            continue;
        }
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| value.strip_prefix(*a).and_then(|v| v.strip_suffix(*b)))
            .unwrap_or_else(|| value.split(" #").next().unwrap_or(value).trim_end());
        out.push((key.to_owned(), unquoted.to_owned()));
    }
    out
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
