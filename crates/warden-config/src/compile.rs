//! Loading and compiling: JSON text → validated [`Config`] with every diagnostic at once.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::*;
use crate::policy::Bases;
use crate::server::compile_server;
use crate::settings::compile_warden;
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
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let format = if yaml { Format::Yaml } else { Format::Json };
    let base = path.parent().filter(|p| !p.as_os_str().is_empty());
    let lookup = |name: &str| std::env::var(name).ok();
    let mut loaded = compile_as(&text, format, &lookup, base).map_err(|mut e| {
        e.file = Some(path.to_owned());
        e
    })?;
    loaded.file = Some(path.to_owned());
    Ok(loaded)
}

/// Keys other MCP clients put on a server entry that mean nothing to Warden: each is
/// accepted, with one warning for the whole file saying it is ignored, and why.
pub(crate) const IGNORED_SERVER_KEYS: &[(&str, &str)] = &[
    ("autoApprove", "approving tool calls is the client's job; Warden passes every call on"),
    ("alwaysAllow", "approving tool calls is the client's job; Warden passes every call on"),
    ("description", "a description for the client's UI"),
    ("dev", "a client's development-mode setting"),
    ("name", "a display name for the client's UI (Warden names a server by its key)"),
    ("gallery", "a client's catalog setting"),
    ("icon", "an icon for the client's UI"),
    ("version", "a client's catalog setting"),
    ("source", "a client's catalog setting"),
    ("requires", "a client's catalog setting"),
];

/// How a config file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON, or JSON with comments and trailing commas (JSONC, JSON5: VS Code's `mcp.json`,
    /// mcp-hub).
    Json,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

/// Compiles config text (JSON, JSONC or JSON5). `lookup` resolves environment variables.
pub fn compile(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    compile_as(text, Format::Json, lookup, None)
}

/// Parses the text: plain JSON first (its errors are the most exact), then JSON5, which also
/// reads comments and trailing commas.
fn parse(text: &str, format: Format) -> Result<Value, String> {
    match format {
        Format::Yaml => {
            serde_norway::from_str::<Value>(text).map_err(|e| format!("not valid YAML: {e}"))
        }
        Format::Json => serde_json::from_str(text).or_else(|json| {
            // Too deeply nested for serde_json is too deep for the recursive JSON5 reader too.
            if json.to_string().contains("recursion limit") {
                return Err(format!("not valid JSON: {json}"));
            }
            json5::from_str::<Value>(text).map_err(|json5| {
                format!("not valid JSON: {json} (nor JSON5: {})", one_line(&json5.to_string()))
            })
        }),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Compiles config text written as `format`; relative paths in it (`envFile`) are taken from
/// `base_dir` (the file's directory), else from the working directory.
pub fn compile_as(
    text: &str,
    format: Format,
    lookup: &dyn Fn(&str) -> Option<String>,
    base_dir: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    let mut d = Diags { base_dir: base_dir.map(Path::to_owned), ..Diags::default() };
    let root: Value = match parse(text, format) {
        Ok(v) => v,
        Err(message) => {
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
    d.flush_ignored();
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
    let bases = Bases { health: &health_base, restart: &restart_base, lookup };

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
                if let Some(s) = compile_server(name, &path, value, &bases, d) {
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
            &bases,
            d,
        ));
    }
    // The tool-choosing model is supervised like an integration, as kind `llm`.
    if let Some(llm) = &warden.tools.llm {
        if servers.iter().any(|s| s.name == "llm") {
            d.error(
                "warden.tools.llm",
                "a server or integration is already named \"llm\", the name its supervision takes",
            );
        } else {
            servers.push(crate::integrations::llm_check(llm, &bases));
        }
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
    if let Some(k) = config.warden.tools.llm.as_ref().and_then(|l| l.api_key.as_ref()) {
        values.push(k.expose().to_owned());
    }
    for r in &config.warden.alerts.receivers {
        if let crate::alerts::ReceiverKind::Email { password: Some(p), .. } = &r.kind {
            values.push(p.expose().to_owned());
        }
        if let crate::alerts::ReceiverKind::Webhook { url, headers, format, .. } = &r.kind {
            values.push(url.expose().to_owned());
            if let crate::alerts::WebhookFormat::PagerDuty { routing_key } = format {
                values.push(routing_key.expose().to_owned());
            }
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
