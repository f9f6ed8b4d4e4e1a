//! What changed between two compiled configs, server by server, and what each change needs:
//! the plan a live reload applies (ARCHITECTURE.md, "Live reload"). Pure: the composition root
//! applies it.
//!
//! - A server whose transport changed (command, args, env, cwd, `inherit_env`, URLs, headers,
//!   remote kind) needs new processes: **restarted**, one instance at a time.
//! - A server whose only process-level change is how many slots it runs (replicas, the
//!   standby) is **resized**: the difference is started or stopped, the rest untouched.
//! - Every other field is policy and changes **in place** (the names are listed).
//! - In `warden`, retention, alerts, tuning, the log level and the reload settings apply
//!   **live**; the rest (the listen address, the database, the token, session limits, …) is
//!   read at start and **needs a restart** of Warden.

use crate::model::{Config, ServerSpec, WardenSettings};

/// One server's policy fields that changed, by their config names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InPlace {
    pub server: String,
    pub fields: Vec<&'static str>,
}

/// A server whose number of slots changed (`from` → `to`), its transport the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resized {
    pub server: String,
    pub from: u32,
    pub to: u32,
}

/// The plan from one config to the next. Names are in the new config's order (removed ones
/// in the old's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// New processes: the transport changed.
    pub restarted: Vec<String>,
    pub resized: Vec<Resized>,
    /// Policy only (a server may also be resized).
    pub in_place: Vec<InPlace>,
    /// `warden` settings that apply live (`warden.alerts`, …).
    pub live: Vec<&'static str>,
    /// `warden` settings that take effect only when Warden restarts.
    pub needs_restart: Vec<&'static str>,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut d = Self::default();
        for n in &new.servers {
            let Some(o) = old.servers.iter().find(|o| o.name == n.name) else {
                d.added.push(n.name.clone());
                continue;
            };
            if o.transport != n.transport {
                d.restarted.push(n.name.clone());
                continue;
            }
            if o.slot_count() != n.slot_count() {
                let (from, to) = (o.slot_count(), n.slot_count());
                d.resized.push(Resized { server: n.name.clone(), from, to });
            }
            let fields = policy_changes(o, n);
            if !fields.is_empty() {
                d.in_place.push(InPlace { server: n.name.clone(), fields });
            }
        }
        d.removed = old
            .servers
            .iter()
            .filter(|o| !new.servers.iter().any(|n| n.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        (d.live, d.needs_restart) = settings_changes(&old.warden, &new.warden);
        d
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// One line for logs and events: `added a, b; removed c; restarted d; …`.
    pub fn summary(&self) -> String {
        let names = |v: &[String]| v.join(", ");
        let mut parts = Vec::new();
        for (what, list) in
            [("added", &self.added), ("removed", &self.removed), ("restarted", &self.restarted)]
        {
            if !list.is_empty() {
                parts.push(format!("{what} {}", names(list)));
            }
        }
        if !self.resized.is_empty() {
            let r: Vec<String> =
                self.resized.iter().map(|r| format!("{} {}→{}", r.server, r.from, r.to)).collect();
            parts.push(format!("resized {}", r.join(", ")));
        }
        if !self.in_place.is_empty() {
            let c: Vec<String> = self
                .in_place
                .iter()
                .map(|c| format!("{} ({})", c.server, c.fields.join(", ")))
                .collect();
            parts.push(format!("changed in place {}", c.join(", ")));
        }
        if !self.live.is_empty() {
            parts.push(format!("applied live {}", self.live.join(", ")));
        }
        if !self.needs_restart.is_empty() {
            parts.push(format!("needs a restart of Warden: {}", self.needs_restart.join(", ")));
        }
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// The policy fields of a server that differ (the transport is compared by the caller, the
/// slot count is a resize).
fn policy_changes(o: &ServerSpec, n: &ServerSpec) -> Vec<&'static str> {
    let mut f = Vec::new();
    let mut check = |name: &'static str, changed: bool| {
        if changed {
            f.push(name);
        }
    };
    check("fallback", o.fallback != n.fallback);
    check("trusted", o.trusted != n.trusted);
    check("retry", o.retry_tools != n.retry_tools);
    check("cache", o.cache != n.cache);
    check("balance", o.balance != n.balance);
    check("critical", o.critical != n.critical);
    check("timeout", o.timeout != n.timeout);
    check("health", o.health != n.health);
    check("restart", o.restart != n.restart);
    check("disabled", o.disabled != n.disabled);
    check("objective", o.objective != n.objective);
    check("memory_limit", o.memory_limit != n.memory_limit);
    check("disabledTools", o.disabled_tools != n.disabled_tools);
    check("tags", o.tags != n.tags);
    check("categories", o.categories != n.categories);
    check("fallback_strategy", o.fallback_strategy != n.fallback_strategy);
    check("smoke_test", o.smoke_test != n.smoke_test);
    f
}

/// `(live, needs restart)` among the `warden` settings that differ.
fn settings_changes(
    o: &WardenSettings,
    n: &WardenSettings,
) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut live, mut restart) = (Vec::new(), Vec::new());
    // Live: followed by the services (warden-app's settings channel) or read at each use.
    for (name, changed, is_live) in [
        ("warden.listen", o.listen != n.listen, false),
        ("warden.database", o.database != n.database, false),
        ("warden.retention", o.retention != n.retention, true),
        ("warden.metrics_interval", o.metrics_interval != n.metrics_interval, false),
        ("warden.token", o.token != n.token, false),
        ("warden.sessions", o.max_sessions != n.max_sessions, false),
        ("warden.session_idle_timeout", o.session_idle_timeout != n.session_idle_timeout, false),
        ("warden.max_request_body", o.max_request_body != n.max_request_body, false),
        ("warden.readiness", o.readiness != n.readiness, false),
        ("warden.logs", o.logs != n.logs, false),
        ("warden.log_level", o.log_level != n.log_level, true),
        ("warden.alerts", o.alerts != n.alerts, true),
        ("warden.prediction", o.prediction != n.prediction, false),
        ("warden.tuning", o.tuning != n.tuning, true),
        ("warden.reload", o.reload != n.reload, true),
        ("warden.health_thresholds", o.health_thresholds != n.health_thresholds, false),
        ("warden.metadata", o.metadata != n.metadata, false),
        ("warden.tools", o.tools != n.tools, false),
    ] {
        match (changed, is_live) {
            (true, true) => live.push(name),
            (true, false) => restart.push(name),
            _ => {}
        }
    }
    (live, restart)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::compile(text, &|_| None).expect("a valid test config").config
    }

    const BASE: &str = r#"{ "mcpServers": {
        "a": { "command": "srv", "args": ["--x"] },
        "b": { "command": "srv", "replicas": 2 },
        "c": { "url": "http://127.0.0.1:9/mcp" },
        "d": { "command": "srv" } } }"#;

    #[test]
    fn the_same_config_is_no_change() {
        let d = ConfigDiff::between(&config(BASE), &config(BASE));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.summary(), "no change");
    }

    #[test]
    fn each_server_is_classified_by_what_changed() {
        let new = r#"{ "mcpServers": {
            "a": { "command": "srv", "args": ["--y"] },
            "b": { "command": "srv", "replicas": 3, "timeout": "5s" },
            "c": { "url": "http://127.0.0.1:9/mcp", "health": { "interval": "2s" }, "retry": ["t"] },
            "e": { "command": "new" } },
            "warden": { "listen": "127.0.0.1:7999", "retention": "7d" } }"#;
        let d = ConfigDiff::between(&config(BASE), &config(new));
        assert_eq!(d.added, ["e"]);
        assert_eq!(d.removed, ["d"]);
        assert_eq!(d.restarted, ["a"], "args need a new process");
        assert_eq!(d.resized, [Resized { server: "b".into(), from: 2, to: 3 }]);
        assert_eq!(
            d.in_place,
            [
                InPlace { server: "b".into(), fields: vec!["timeout"] },
                InPlace { server: "c".into(), fields: vec!["retry", "health"] },
            ]
        );
        assert_eq!(d.live, ["warden.retention"]);
        assert_eq!(d.needs_restart, ["warden.listen"]);
        assert_eq!(
            d.summary(),
            "added e; removed d; restarted a; resized b 2→3; changed in place b (timeout), \
             c (retry, health); applied live warden.retention; needs a restart of Warden: \
             warden.listen"
        );
    }

    #[test]
    fn env_headers_and_urls_restart_but_a_standby_resizes() {
        let old = r#"{ "mcpServers": {
            "s": { "command": "srv", "env": { "K": "1" } },
            "r": { "url": "http://127.0.0.1:9/mcp", "headers": { "X-Key": "1" } },
            "u": { "url": "http://127.0.0.1:9/mcp" },
            "t": { "command": "srv" } } }"#;
        let new = r#"{ "mcpServers": {
            "s": { "command": "srv", "env": { "K": "2" } },
            "r": { "url": "http://127.0.0.1:9/mcp", "headers": { "X-Key": "2" } },
            "u": { "url": ["http://127.0.0.1:9/mcp", "http://127.0.0.1:10/mcp"] },
            "t": { "command": "srv", "standby": true } } }"#;
        let d = ConfigDiff::between(&config(old), &config(new));
        assert_eq!(d.restarted, ["r", "s", "u"]);
        assert_eq!(d.resized, [Resized { server: "t".into(), from: 1, to: 2 }]);
        assert!(d.in_place.is_empty() && d.added.is_empty() && d.removed.is_empty(), "{d:?}");
    }
}
