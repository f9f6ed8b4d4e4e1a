//! Property tests: config compilation and duration parsing take any input and answer with a
//! config or diagnostics, never a panic.
//!
//! Two generators feed `compile`: arbitrary JSON documents whose keys come mostly from the config's
//! own vocabulary (so the generator reaches deep into server, health, restart, alert and
//! integration blocks instead of stopping at "unknown key"), and mutations of a full, valid config
//! in which random leaves are replaced by hostile values (huge and negative numbers, durations that
//! overflow, names with router metacharacters, `${env:…}` references, wrong types). Case counts
//! are bounded so the suite stays fast in CI; `PROPTEST_CASES` raises them for a longer hunt.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use warden_config::{compile, format_duration, parse_duration};

/// Keys the compiler knows, at every level (a generator that picked random strings would only
/// ever exercise the unknown-key warning).
const KEYS: &[&str] = &[
    "mcpServers",
    "servers",
    "integrations",
    "warden",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "urls",
    "serverUrl",
    "headers",
    "type",
    "transportType",
    "replicas",
    "fallback",
    "trusted",
    "timeout",
    "retry",
    "cache",
    "balance",
    "health",
    "interval",
    "unhealthy_threshold",
    "healthy_threshold",
    "hang_timeout",
    "busy_window",
    "catalog_interval",
    "startup_timeout",
    "method",
    "restart",
    "policy",
    "backoff",
    "initial",
    "max",
    "jitter",
    "max_restarts",
    "window",
    "reset_after",
    "probation",
    "stop_grace",
    "term_timeout",
    "disabled",
    "critical",
    "objective",
    "availability",
    "standby",
    "memory_limit",
    "listen",
    "database",
    "retention",
    "metrics_interval",
    "sessions",
    "idle_timeout",
    "max_request_body",
    "defaults",
    "token",
    "alerts",
    "webhooks",
    "commands",
    "rules",
    "alert",
    "metric",
    "op",
    "threshold",
    "match",
    "for",
    "keep_firing_for",
    "severity",
    "labels",
    "builtin",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "group_by",
    "format",
    "min_severity",
    "send_resolved",
    "name",
    "http",
    "tcp",
    "postgres",
    "sqlite",
    "expect_status",
    "expect_exit",
    "json_field",
    "json_equals",
    "prediction",
    "warmup",
    "enabled",
    "tuning",
    "auto",
    "lookback",
    "logs",
    "dir",
    "retention_days",
    "readiness",
    "weight",
    "inherit_env",
    "autoApprove",
    "s",
    "a b",
    "x:y",
    "{id}",
    "*",
    "%",
    "__",
    "warden",
];

/// Leaf values chosen to hit edges: durations that overflow or are negative, numbers beyond
/// every integer type, names with characters a router treats specially, env references.
fn hostile_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e300f64..1.0e300).prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(18446744073709551615u64)),
        prop::sample::select(vec![
            "",
            "0",
            "0s",
            "5s",
            "500ms",
            "-1s",
            "1ns",
            "300000y",
            "18446744073709551615s",
            "99999999999999999999d",
            "1m30s",
            "5 parsecs",
            "NaN",
            "inf",
            "${env:HOME}",
            "${UNSET_VARIABLE_X}",
            "${X:-fallback}",
            "${",
            "${env:}",
            "http://127.0.0.1:1/mcp",
            "sse",
            "http",
            "stdio",
            "p2c",
            "round_robin",
            "on-failure",
            "always",
            "never",
            "server=search",
            "alertname!=X",
            "a:b",
            "{x}",
            "*",
            "?",
            "%",
            "a b",
            "x__y",
            "warden",
            "512MiB",
            "99999999999TiB",
            "127.0.0.1:0",
            "[::1]:7420",
            "not an addr",
            "sqlite::memory:",
            "postgres://u:p@127.0.0.1:1/db",
            ">",
            "==",
            "critical",
            "all",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

/// Arbitrary JSON, keys drawn mostly from [`KEYS`].
fn config_like_json() -> impl Strategy<Value = Value> {
    let key =
        prop_oneof![9 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,8}"];
    hostile_leaf().prop_recursive(6, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A config using every block the compiler knows, valid as it stands.
fn full_config() -> Value {
    json!({
        "mcpServers": {
            "files": { "command": "npx", "args": ["-y", "pkg", "/srv"], "env": { "K": "${env:HOME}" } },
            "remote": { "url": "http://127.0.0.1:9/mcp", "headers": { "Authorization": "Bearer abcdefgh" } },
            "search": {
                "command": "uvx", "args": ["mcp-server-fetch"], "replicas": 2, "fallback": ["files"],
                "trusted": true, "timeout": "60s", "retry": ["search"], "cache": { "search": "30s" },
                "balance": "p2c", "standby": true, "memory_limit": "512MiB",
                "objective": { "availability": 99.9 },
                "health": { "interval": "5s", "timeout": "2s", "unhealthy_threshold": 3,
                            "healthy_threshold": 2, "hang_timeout": "30s", "busy_window": "10s",
                            "catalog_interval": "60s", "startup_timeout": "60s", "method": "auto" },
                "restart": { "policy": "on-failure",
                             "backoff": { "initial": "500ms", "max": "30s", "jitter": 0.2 },
                             "max_restarts": 5, "window": "60s", "reset_after": "60s",
                             "probation": "5m", "stop_grace": "2s", "term_timeout": "5s" }
            }
        },
        "integrations": {
            "api": { "http": { "url": "http://127.0.0.1:8080/healthz", "expect_status": 200,
                               "json_field": "status", "json_equals": "ok" } },
            "cache": { "tcp": "127.0.0.1:6379" },
            "job": { "command": "/bin/true", "args": [], "expect_exit": 0 },
            "db": { "postgres": "postgres://u:secretpw@127.0.0.1:5432/app" },
            "local": { "sqlite": "/tmp/x.db", "health": { "interval": "30s" } }
        },
        "warden": {
            "listen": "127.0.0.1:7420", "database": "sqlite::memory:", "retention": "30d",
            "metrics_interval": "10s", "sessions": { "max": 1000, "idle_timeout": "30m" },
            "max_request_body": 4194304, "defaults": { "health": { "interval": "10s" } },
            "prediction": { "warmup": "60s", "enabled": true },
            "tuning": { "auto": false, "interval": "1h", "lookback": "7d" },
            "logs": { "dir": "none", "retention_days": 7, "format": "json" },
            "readiness": "critical",
            "alerts": {
                "webhooks": [ { "url": "http://127.0.0.1:9093", "format": "alertmanager" } ],
                "commands": [ { "command": "/bin/cat", "args": ["-"] } ],
                "rules": [ { "alert": "Slow", "metric": "latency_p95_ms", "op": ">",
                             "threshold": 800, "match": { "server": "search" }, "for": "2m",
                             "keep_firing_for": "5m", "severity": "warning" } ],
                "builtin": { "CrashLoop": false, "InstanceCritical": { "for": "2m" } },
                "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"
            }
        }
    })
}

/// Every leaf of `v` (and every object or array, so whole blocks get replaced too), as paths.
fn paths(v: &Value, here: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(PathStep::Key(k.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(PathStep::Index(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn replace_at(v: &mut Value, path: &[PathStep], with: Value) {
    let Some((first, rest)) = path.split_first() else {
        *v = with;
        return;
    };
    let child = match (first, v) {
        (PathStep::Key(k), Value::Object(m)) => m.get_mut(k),
        (PathStep::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    };
    if let Some(c) = child {
        replace_at(c, rest, with);
    }
}

fn all_paths() -> Vec<Vec<PathStep>> {
    let mut out = Vec::new();
    paths(&full_config(), &mut Vec::new(), &mut out);
    out
}

fn lookup(name: &str) -> Option<String> {
    (name == "HOME").then(|| "/home/someone".to_owned())
}

/// Compiles and checks the answer's shape: a config, or at least one error, each with a message.
fn compile_checked(text: &str) {
    match compile(text, &lookup) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                assert!(!w.message.is_empty(), "a warning without a message at {:?}", w.path);
            }
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "an error with no diagnostics");
            for d in &e.errors {
                assert!(!d.message.is_empty(), "a diagnostic without a message at {:?}", d.path);
            }
            // Rendering the error for `warden validate` must not panic either.
            let _ = e.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_config_like_json_compiles_or_gets_diagnostics(doc in config_like_json()) {
        compile_checked(&doc.to_string());
        // The same document under each top-level key the compiler reads.
        for top in ["mcpServers", "integrations", "warden"] {
            compile_checked(&json!({ top: doc.clone() }).to_string());
        }
    }

    #[test]
    fn a_full_config_with_hostile_leaves_compiles_or_gets_diagnostics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), hostile_leaf()), 1..5)
    ) {
        let targets = all_paths();
        let mut doc = full_config();
        for (at, with) in edits {
            replace_at(&mut doc, &targets[at.index(targets.len())], with);
        }
        compile_checked(&doc.to_string());
    }

    #[test]
    fn any_text_is_json_or_a_single_clear_error(text in "\\PC{0,64}") {
        compile_checked(&text);
    }

    #[test]
    fn any_duration_text_parses_or_errs(text in "\\PC{0,24}|[0-9]{1,25}(ns|us|ms|s|m|h|d|w|M|y)( [0-9]{1,6}(ms|s|m))?") {
        match parse_duration(&text) {
            Ok(_) => {}
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn formatted_durations_parse_back(ms in 0u64..(400 * 86_400_000)) {
        let d = Duration::from_millis(ms);
        let text = format_duration(d);
        let back = parse_duration(&text).expect("format_duration writes what parse_duration reads");
        // Whole seconds and sub-second values come back exactly; other values are shown to a
        // tenth of a second.
        let diff = back.abs_diff(d);
        prop_assert!(diff <= Duration::from_millis(50), "{d:?} -> {text:?} -> {back:?}");
    }
}

#[test]
fn the_full_config_used_by_the_mutation_test_is_valid() {
    // Mutating an invalid document would only exercise the first error; this pins the base.
    let loaded = compile(&full_config().to_string(), &lookup);
    assert!(loaded.is_ok(), "{}", loaded.err().map(|e| e.to_string()).unwrap_or_default());
}

#[test]
fn a_number_of_seconds_too_large_for_a_duration_is_an_error_not_a_panic() {
    // Found by `any_config_like_json_compiles_or_gets_diagnostics`: `Duration::from_secs_f64`
    // panicked on 1e308.
    let text = r#"{"mcpServers": {"a": {"command": "x", "timeout": 1e308}},
                   "warden": {"retention": 1.7976931348623157e308}}"#;
    let err = compile(text, &lookup).expect_err("an error");
    let rendered = err.to_string();
    assert!(rendered.contains("mcpServers.a.timeout"), "{rendered}");
    assert!(rendered.contains("warden.retention"), "{rendered}");
    assert!(rendered.contains("too long to be a duration"), "{rendered}");
}
