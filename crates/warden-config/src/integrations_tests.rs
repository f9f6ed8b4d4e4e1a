use std::time::Duration;

use crate::*;

fn env(name: &str) -> Option<String> {
    match name {
        "T" => Some("tok-123456789".to_owned()),
        "PW" => Some("pg-pass-987654".to_owned()),
        "KEY" => Some("cmd-secret-value".to_owned()),
        _ => None,
    }
}

fn ok(text: &str) -> Loaded {
    match compile(text, &env) {
        Ok(l) => l,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match compile(text, &env) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

const EXAMPLE: &str = r#"{
  "integrations": {
    "api":   { "http": { "url": "http://127.0.0.1:8080/healthz?key=${env:T}", "method": "GET", "expect_status": 200,
                         "headers": {"Authorization": "Bearer ${env:T}"}, "json_field": "status", "json_equals": "ok" },
               "health": { "interval": "10s" }, "restart": { "backoff": { "initial": "1s" } },
               "critical": true, "objective": { "availability": 99.9 } },
    "cache": { "tcp": "127.0.0.1:6379" },
    "job":   { "command": "pg_isready", "args": ["-h", "127.0.0.1", "--key=${env:KEY}"], "env": { "K": "${env:KEY}" },
               "cwd": null, "expect_exit": 0 },
    "db":    { "postgres": "postgres://user:${env:PW}@127.0.0.1:5432/app?sslmode=disable" },
    "local": { "sqlite": "/var/lib/app/app.db", "disabled": true }
  }
}"#;

#[test]
fn the_documented_example_compiles_to_one_check_each() {
    let l = ok(EXAMPLE);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let kinds: Vec<(&str, &str)> =
        l.config.servers.iter().map(|s| (s.name.as_str(), s.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("api", "http"),
            ("cache", "tcp"),
            ("db", "postgres"),
            ("job", "command"),
            ("local", "sqlite")
        ]
    );
    for s in &l.config.servers {
        assert!(s.is_check() && !s.is_stdio());
        assert_eq!(s.instance_count(), 1);
        assert_eq!(s.slot_count(), 1);
        assert!(s.fallback.is_empty());
    }
    let api = l.config.server("api").unwrap();
    assert_eq!(api.health.interval, Duration::from_secs(10));
    assert_eq!(api.restart.backoff.initial, Duration::from_secs(1));
    assert!(api.critical);
    assert!((api.objective.unwrap() - 0.999).abs() < 1e-9);
    assert_eq!(api.timeout, api.health.timeout);
    let Transport::Check(CheckSpec::Http(h)) = &api.transport else { panic!("{api:?}") };
    assert_eq!(h.url.expose(), "http://127.0.0.1:8080/healthz?key=tok-123456789");
    assert_eq!(h.method, HttpMethod::Get);
    assert_eq!(h.expect_status, [200]);
    assert_eq!(h.json_field, Some(JsonField { shown: "status".into(), pointer: "/status".into() }));
    assert_eq!(h.json_equals, Some(serde_json::json!("ok")));
    assert!(l.config.server("local").unwrap().disabled);
    let Transport::Check(CheckSpec::Command(c)) = &l.config.server("job").unwrap().transport else {
        panic!()
    };
    assert_eq!(c.args[2], "--key=cmd-secret-value");
    assert_eq!(c.display_args[2], "--key=${env:KEY}");
    assert_eq!(c.expect_exit, 0);
    assert!(c.cwd.is_none());
}

#[test]
fn targets_are_secret_free() {
    let l = ok(EXAMPLE);
    let target = |n: &str| l.config.server(n).unwrap().target();
    assert_eq!(target("api"), "http://127.0.0.1:8080/…");
    assert_eq!(target("cache"), "127.0.0.1:6379");
    assert_eq!(target("job"), "pg_isready");
    assert_eq!(target("db"), "postgres://127.0.0.1:5432/app");
    assert_eq!(target("local"), "/var/lib/app/app.db");
    // A literal password (no env reference) is hidden just the same.
    let l = ok(
        r#"{ "integrations": { "db": { "postgres": "postgresql://u:literal-pw@db.internal/app" } } }"#,
    );
    assert_eq!(l.config.servers[0].target(), "postgres://db.internal:5432/app");
    assert!(l.config.secrets.iter().any(|s| s.expose() == "literal-pw"));
}

#[test]
fn secrets_never_show_in_debug_or_display_forms() {
    let l = ok(EXAMPLE);
    let shown = format!("{:?} {:?}", l.config, l.config.servers);
    let targets: Vec<String> = l.config.servers.iter().map(|s| s.target()).collect();
    for secret in ["tok-123456789", "pg-pass-987654", "cmd-secret-value", "user:"] {
        assert!(!shown.contains(secret), "{secret} leaked into Debug: {shown}");
        assert!(!targets.iter().any(|t| t.contains(secret)), "{secret} leaked into a target");
    }
    // And every one of them is scrubbed from log lines.
    for secret in ["tok-123456789", "pg-pass-987654", "cmd-secret-value"] {
        assert!(l.config.secrets.iter().any(|s| s.expose() == secret), "{secret} not collected");
    }
    assert!(l.config.secrets.iter().any(|s| s.expose().starts_with("postgres://user:")));
}

#[test]
fn expect_status_takes_a_number_or_a_list_and_defaults_to_any_2xx() {
    let l = ok(r#"{ "integrations": {
        "a": { "http": { "url": "https://example.com/" } },
        "b": { "http": { "url": "https://example.com/", "expect_status": [200, 204], "method": "head" } },
        "c": { "http": "http://example.com:81" } } }"#);
    let http = |n: &str| match &l.config.server(n).unwrap().transport {
        Transport::Check(CheckSpec::Http(h)) => h.clone(),
        other => panic!("{other:?}"),
    };
    assert!(http("a").expect_status.is_empty());
    assert_eq!(http("b").expect_status, [200, 204]);
    assert_eq!(http("b").method, HttpMethod::Head);
    assert_eq!(http("c").display_url, "http://example.com:81");
    assert_eq!(http("c").url.expose(), "http://example.com:81");
}

#[test]
fn json_field_is_a_dot_path_or_a_pointer() {
    let l = ok(r#"{ "integrations": {
        "a": { "http": { "url": "http://h/", "json_field": "data.items.0.state" } },
        "b": { "http": { "url": "http://h/", "json_field": "/data/state", "json_equals": 3 } } } }"#);
    let field = |n: &str| match &l.config.server(n).unwrap().transport {
        Transport::Check(CheckSpec::Http(h)) => h.json_field.clone().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(field("a").pointer, "/data/items/0/state");
    assert_eq!(field("b").pointer, "/data/state");
    assert_eq!(field("b").shown, "/data/state");
}

#[test]
fn every_bad_http_field_is_reported_at_once_with_its_path() {
    let e = errors(
        r#"{ "integrations": { "api": { "http": {
            "url": "ftp://127.0.0.1/x", "method": "POST", "expect_status": 999,
            "headers": { "X": 5, "Y": [] }, "json_field": "a..b" } } } }"#,
    );
    let want = [
        "integrations.api.http.url: \"ftp://127.0.0.1/…\" is not an http:// or https:// URL",
        "integrations.api.http.method: \"POST\" is not a check method (GET or HEAD)",
        "integrations.api.http.expect_status: 999 is out of range (100 to 599)",
        "integrations.api.http.headers.Y: must be a string, not an array",
        "integrations.api.http.json_field: \"a..b\" has an empty part; use a path like \"data.state\"",
    ];
    for w in want {
        assert!(e.iter().any(|x| x == w), "missing {w:?} in {e:#?}");
    }
    let e = errors(
        r#"{ "integrations": {
            "a": { "http": { "url": "http://h/", "expect_status": [200, "ok", 42] } },
            "b": { "http": { "url": "http://h/", "json_equals": "ok" } },
            "c": { "http": { "url": "http://h/", "method": "HEAD", "json_field": "status" } },
            "d": { "http": { "method": "GET" } },
            "e": { "http": { "url": "http://h/", "expect_status": [] } },
            "f": { "http": { "url": "http://h/", "json_field": "" } } } }"#,
    );
    let want = [
        "integrations.a.http.expect_status[1]: must be an HTTP status like 200, not \"ok\"",
        "integrations.a.http.expect_status[2]: 42 is out of range (100 to 599)",
        "integrations.b.http.json_equals: needs \"json_field\": the field to compare",
        "integrations.c.http.json_field: needs a body: use method GET",
        "integrations.d.http.url: is missing: an http check needs a URL",
        "integrations.e.http.expect_status: is empty; give at least one status, or leave it out for any 2xx",
        "integrations.f.http.json_field: is empty; name a field like \"status\" or \"/data/state\"",
    ];
    for w in want {
        assert!(e.iter().any(|x| x == w), "missing {w:?} in {e:#?}");
    }
}

#[test]
fn a_bad_url_is_reported_without_its_secret() {
    let e =
        errors(r#"{ "integrations": { "api": { "http": { "url": "gopher://x/?k=${env:T}" } } } }"#);
    assert!(e.iter().all(|x| !x.contains("tok-123456789")), "{e:?}");
    assert!(e.iter().any(|x| x.starts_with("integrations.api.http.url:")), "{e:?}");
}

#[test]
fn other_check_kinds_validate_their_fields() {
    let e = errors(
        r#"{ "integrations": {
            "t1": { "tcp": "127.0.0.1" },
            "t2": { "tcp": "127.0.0.1:99999" },
            "t3": { "tcp": 6379 },
            "c1": { "command": "" },
            "c2": { "command": "true", "expect_exit": 300 },
            "c3": { "command": "true", "args": "-x", "expect_exit": -1 },
            "p1": { "postgres": "mysql://h/db" },
            "s1": { "sqlite": "" },
            "s2": { "sqlite": ":memory:" },
            "v1": { "postgres": "postgres://u:${env:MISSING}@h/db" } } }"#,
    );
    let want = [
        "integrations.t1.tcp: \"127.0.0.1\" is not an address like \"127.0.0.1:6379\" (host:port)",
        "integrations.t2.tcp: \"127.0.0.1:99999\" is not an address like \"127.0.0.1:6379\" (host:port)",
        "integrations.t3.tcp: must be a string, not a number",
        "integrations.c1.command: is empty",
        "integrations.c2.expect_exit: 300 is out of range (0 to 255)",
        "integrations.c3.args: must be a list of strings, not a string",
        "integrations.c3.expect_exit: must be an exit code from 0 to 255, not -1",
        "integrations.p1.postgres: is not a URL like \"postgres://user:password@host:5432/db\" (postgres:// or postgresql://)",
        "integrations.s1.sqlite: must name a database file",
        "integrations.s2.sqlite: must name a database file",
        "integrations.v1.postgres: environment variable MISSING is not set",
    ];
    for w in want {
        assert!(e.iter().any(|x| x == w), "missing {w:?} in {e:#?}");
    }
    assert_eq!(e.len(), want.len(), "{e:#?}");
}

#[test]
fn an_entry_needs_exactly_one_check() {
    let e = errors(
        r#"{ "integrations": {
            "none": { "health": { "interval": "5s" } },
            "two": { "tcp": "h:1", "sqlite": "/x.db" },
            "odd": 5 } }"#,
    );
    let want = [
        "integrations.none: needs one check: \"http\", \"tcp\", \"command\", \"postgres\" or \"sqlite\"",
        "integrations.two: has both \"tcp\" and \"sqlite\"; give one check per integration",
        "integrations.odd: must be an object, not a number",
    ];
    for w in want {
        assert!(e.iter().any(|x| x == w), "missing {w:?} in {e:#?}");
    }
    let e = errors(r#"{ "integrations": [] }"#);
    assert_eq!(e, ["integrations: must be an object, not an array"]);
}

#[test]
fn mcp_server_keys_are_rejected_on_integrations() {
    let e = errors(
        r#"{ "integrations": { "x": { "tcp": "h:1", "replicas": 2, "fallback": ["y"], "cache": {},
             "standby": true, "url": "http://h/" } } }"#,
    );
    for key in ["replicas", "fallback", "cache", "standby", "url"] {
        let w = format!(
            "integrations.x.{key}: applies to MCP servers only (mcpServers), not to integrations"
        );
        assert!(e.contains(&w), "missing {w:?} in {e:#?}");
    }
}

#[test]
fn names_are_shared_with_mcp_servers() {
    let e = errors(
        r#"{ "mcpServers": { "db": { "command": "x" }, "m": { "command": "y", "fallback": "cache" } },
             "integrations": { "db": { "tcp": "h:1" }, "cache": { "tcp": "h:2" }, "a__b": { "tcp": "h:3" },
                               "warden": { "tcp": "h:4" } } }"#,
    );
    let want = [
        "integrations.db: the name \"db\" is already used by an MCP server (mcpServers.db); names are shared",
        "mcpServers.m.fallback[0]: names \"cache\", an integration: only MCP servers can take calls",
        "integrations.a__b: an integration name may use only letters, digits, \"-\", \"_\" and \".\" (not \"__\", \".\" or \"..\"); \"a__b\" has other characters or is empty",
        "integrations.warden: the name \"warden\" is reserved for Warden's own tools (warden__…)",
    ];
    for w in want {
        assert!(e.iter().any(|x| x == w), "missing {w:?} in {e:#?}");
    }
}

#[test]
fn integrations_alone_make_a_config_and_unknown_keys_warn() {
    let l = ok(r#"{ "integrations": { "c": { "tcp": "h:1", "args": ["x"], "helth": {} } },
                   "integration": {} }"#);
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert!(w.contains(&"integrations.c.args: applies to command checks only; ignored".to_owned()));
    assert!(w
        .iter()
        .any(|x| x.starts_with("integrations.c.helth: unknown key (did you mean \"health\"")));
    assert!(w
        .iter()
        .any(|x| x.starts_with("integration: unknown key (did you mean \"integrations\"")));
    // Neither block: still an error.
    let e = errors(r#"{ "warden": {} }"#);
    assert!(e[0].starts_with("mcpServers: is missing"), "{e:?}");
}

#[test]
fn integrations_take_the_warden_defaults() {
    let l = ok(r#"{ "integrations": { "c": { "tcp": "h:1" } },
                   "warden": { "defaults": { "health": { "interval": "7s" } } } }"#);
    assert_eq!(l.config.servers[0].health.interval, Duration::from_secs(7));
}
