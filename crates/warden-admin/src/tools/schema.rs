//! The input schemas of Warden's tools, and the check every call's arguments pass before
//! anything is done: an unknown parameter or a value outside its list is refused with the
//! accepted ones named (a client need not validate against the schema; many do not).

use serde_json::{json, Map, Value};

pub(super) const MONITOR_ACTIONS: [&str; 4] =
    ["health_check", "performance_scan", "failure_analysis", "optimization_report"];
pub(super) const FAILOVER_ACTIONS: [&str; 6] = [
    "enable_failover",
    "disable_failover",
    "trigger_failover",
    "trigger_recovery",
    "test_fallback",
    "restore_primary",
];
pub(super) const OPTIMIZER_ACTIONS: [&str; 5] = [
    "analyze_patterns",
    "suggest_optimizations",
    "apply_tuning",
    "revert_tuning",
    "benchmark_performance",
];
pub(super) const DEPTHS: [&str; 3] = ["basic", "deep", "comprehensive"];
pub(super) const PRIORITIES: [&str; 3] = ["immediate", "scheduled", "background"];
pub(super) const SCOPES: [&str; 5] =
    ["response_times", "error_rates", "throughput", "resource_usage", "all"];
pub(super) const RECOVERY_STRATEGIES: [&str; 5] =
    ["auto", "restart", "reconnect", "failover", "none"];

fn strings(xs: &[&str]) -> Value {
    json!(xs)
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

const SINCE: &str =
    "The period's start: a duration before now (7d, 24h) or an RFC 3339 time; default 7d";

pub(super) fn monitor() -> Value {
    object(
        json!({
            "action": { "type": "string", "enum": strings(&MONITOR_ACTIONS) },
            "server_types": { "type": "array", "items": { "type": "string" },
                "description": "Only these servers: each entry a server name, a kind (mcp, http, tcp, command, postgres, sqlite) or a tag from the config; default every server" },
            "server": { "type": "string", "description": "One server by name (same as server_types: [name])" },
            "check_depth": { "type": "string", "enum": strings(&DEPTHS), "default": "basic",
                "description": "health_check: basic answers from current state; deep probes each instance now and lists its tools afresh; comprehensive also calls the server's smoke_test tool" },
            "auto_recovery": { "type": "boolean", "default": false,
                "description": "health_check: restart (stdio) or reconnect (remote) what the check finds down, and reset what gave up (failed); the answer says what was done" },
            "since": { "type": "string", "description": SINCE },
        }),
        &["action"],
    )
}

pub(super) fn failover() -> Value {
    object(
        json!({
            "action": { "type": "string", "enum": strings(&FAILOVER_ACTIONS) },
            "integration_type": { "type": "string",
                "description": "The servers acted on: a server name, a kind (mcp, http, …) or a tag" },
            "server": { "type": "string", "description": "One server by name (same as integration_type)" },
            "fallback_strategy": { "type": "string", "enum": strings(&warden_config::FallbackStrategy::ALL.map(|f| f.as_str())),
                "description": "Set what happens to the servers' calls while they are down (until a reload changes it in the config): graceful_degradation (fallbacks serve, then the primary again), fail_fast (no fallback tier), offline_mode (read-only tools answered from their last good result, marked stale), manual (the operator fails over and back)" },
            "recovery_priority": { "type": "string", "enum": strings(&PRIORITIES), "default": "immediate",
                "description": "trigger_recovery: immediate (now, the answer waits for the result), background (now, the answer does not wait), scheduled (leave it to the supervisor's own next retry; only report it)" },
        }),
        &["action"],
    )
}

pub(super) fn optimizer() -> Value {
    object(
        json!({
            "action": { "type": "string", "enum": strings(&OPTIMIZER_ACTIONS) },
            "optimization_scope": { "type": "string", "enum": strings(&SCOPES), "default": "all",
                "description": "Which part of the analysis and suggestions: response_times, error_rates, throughput, resource_usage or all" },
            "learning_period": { "type": "string",
                "description": "The history learnt from: session (since Warden started), hour, day, week, or a duration (36h, 14d); default week" },
            "server": { "type": "string", "description": "One server by name" },
            "server_types": { "type": "array", "items": { "type": "string" },
                "description": "benchmark_performance: only these servers (names, kinds or tags)" },
            "since": { "type": "string", "description": SINCE },
            "dry_run": { "type": "boolean", "description": "apply_tuning: list the changes without making them" },
            "change_id": { "type": "integer", "description": "revert_tuning: the change to undo (without it: every change in force)" },
        }),
        &["action"],
    )
}

pub(super) fn coordinator() -> Value {
    let classes: Vec<&str> = warden_core::FailureClass::ALL.iter().map(|c| c.as_str()).collect();
    object(
        json!({
            "server_type": { "type": "string", "description": "The servers: a server name, a kind (mcp, http, …) or a tag" },
            "failure_type": { "type": "string", "enum": classes },
            "recovery_strategy": { "type": "string", "enum": strings(&RECOVERY_STRATEGIES), "default": "auto",
                "description": "auto: what Warden's policy does for this failure; restart / reconnect / failover: that; none: only report" },
            "apply": { "type": "boolean", "default": false, "description": "Take the recovery now (default: only say what it would be)" },
        }),
        &["server_type", "failure_type"],
    )
}

pub(super) const EXPOSE_MODES: [&str; 3] = ["add", "replace", "reset"];

pub(super) fn analyze_prompt() -> Value {
    object(
        json!({
            "prompt": { "type": "string", "description": "The task, in the user's words" },
            "max_tools": { "type": "integer", "minimum": 1, "maximum": 200, "default": 15,
                "description": "At most this many of the servers' tools are shown afterwards" },
        }),
        &["prompt"],
    )
}

pub(super) fn search_tools() -> Value {
    object(
        json!({
            "query": { "type": "string", "description": "What the tool should do" },
            "limit": { "type": "integer", "minimum": 1, "maximum": 100, "default": 10 },
        }),
        &["query"],
    )
}

pub(super) fn expose_tools() -> Value {
    object(
        json!({
            "mode": { "type": "string", "enum": strings(&EXPOSE_MODES),
                "description": "add to what this session is shown, replace it, or reset it to the default" },
            "tools": { "type": "array", "items": { "type": "string" },
                "description": "Tools by the names this endpoint lists (server__tool)" },
            "categories": { "type": "array", "items": { "type": "string" },
                "description": "Categories (search_tools shows each tool's)" },
        }),
        &["mode"],
    )
}

/// Checks `args` against `schema` (the subset the schemas above use: required, types,
/// enums, string-array items, no additional properties).
pub(super) fn validate(tool: &str, schema: &Value, args: &Value) -> Result<(), String> {
    let empty = Map::new();
    let args = match args {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err(format!("{tool}: the arguments must be an object")),
    };
    let props = schema["properties"].as_object().cloned().unwrap_or_default();
    let accepted = || props.keys().cloned().collect::<Vec<_>>().join(", ");
    for key in args.keys() {
        if !props.contains_key(key) {
            return Err(format!("{tool} has no parameter {key:?}; it accepts: {}", accepted()));
        }
    }
    for req in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if args.get(req).is_none_or(Value::is_null) {
            return Err(format!("{tool} needs {req:?}"));
        }
    }
    for (key, v) in args {
        let p = &props[key];
        let ty = p["type"].as_str().unwrap_or("string");
        let fits = match ty {
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "array" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            _ => true,
        };
        if !fits {
            let what = if ty == "array" { "a list of strings" } else { ty };
            return Err(format!("{tool}: {key:?} must be {what}, not {v}"));
        }
        if let (Some(n), Some(lo), Some(hi)) =
            (v.as_i64(), p["minimum"].as_i64(), p["maximum"].as_i64())
        {
            if !(lo..=hi).contains(&n) {
                return Err(format!("{tool}: {key:?} must be from {lo} to {hi}, not {n}"));
            }
        }
        if let (Some(allowed), Some(s)) = (p["enum"].as_array(), v.as_str()) {
            if !allowed.iter().any(|a| a == s) {
                let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                return Err(format!(
                    "{tool}: {s:?} is not a valid {key}; accepted: {}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_and_values_are_refused_with_the_accepted_ones() {
        let s = monitor();
        assert!(validate("m", &s, &json!({ "action": "health_check" })).is_ok());
        let e =
            validate("m", &s, &json!({ "action": "health_check", "depth": "deep" })).unwrap_err();
        assert!(e.contains("no parameter \"depth\"") && e.contains("check_depth"), "{e}");
        let e = validate("m", &s, &json!({ "action": "health_check", "check_depth": "full" }))
            .unwrap_err();
        assert!(e.contains("\"full\"") && e.contains("basic, deep, comprehensive"), "{e}");
        let e = validate("m", &s, &json!({ "action": "scan" })).unwrap_err();
        assert!(e.contains("health_check, performance_scan"), "{e}");
        let e = validate("m", &s, &json!({})).unwrap_err();
        assert!(e.contains("needs \"action\""), "{e}");
        let e = validate("m", &s, &json!({ "action": "health_check", "server_types": "mcp" }))
            .unwrap_err();
        assert!(e.contains("a list of strings"), "{e}");
        let e = validate("m", &s, &json!({ "action": "health_check", "auto_recovery": "yes" }))
            .unwrap_err();
        assert!(e.contains("must be boolean"), "{e}");
        let e =
            validate("c", &coordinator(), &json!({ "server_type": "x", "failure_type": "oom" }))
                .unwrap_err();
        assert!(e.contains("timeout, connection_error"), "{e}");
    }
}
