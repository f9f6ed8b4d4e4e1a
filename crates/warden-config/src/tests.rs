use std::time::Duration;

use crate::*;

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cr3t-value".to_owned()),
        "HOME" => Some("/home/me".to_owned()),
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

#[test]
fn claude_desktop_file_loads_unchanged() {
    let text = r#"{
      "globalShortcut": "Ctrl+Space",
      "mcpServers": {
        "filesystem": {
          "command": "npx",
          "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"]
        },
        "github": {
          "command": "docker",
          "args": ["run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN", "ghcr.io/github/github-mcp-server"],
          "env": { "GITHUB_PERSONAL_ACCESS_TOKEN": "<YOUR_TOKEN>" }
        }
      }
    }"#;
    let l = ok(text);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.config.servers.len(), 2);
    let fs = &l.config.servers[0];
    assert_eq!(fs.name, "filesystem");
    assert_eq!(fs.instance_count(), 1);
    assert_eq!(fs.health, HealthPolicy::default());
    assert_eq!(fs.restart, RestartPolicy::default());
    match &fs.transport {
        Transport::Stdio { command, args, .. } => {
            assert_eq!(command, "npx");
            assert_eq!(args.len(), 3);
        }
        other => panic!("expected stdio, got {other:?}"),
    }
}

#[test]
fn cursor_and_mcp_hub_files_load_unchanged() {
    let text = r#"{
      "mcpServers": {
        "remote": { "url": "https://example.com/mcp", "headers": { "Authorization": "Bearer ${env:TOKEN}" } },
        "legacy": { "url": "http://localhost:8080/sse", "type": "sse" },
        "hub": { "command": "uvx", "args": ["mcp-server-fetch"], "cwd": "${HOME}/work", "disabled": true,
                 "autoApprove": ["fetch"], "dev": { "enabled": false } }
      }
    }"#;
    let l = ok(text);
    // Loaded unchanged; what means nothing here is named once, not silently dropped.
    let warnings: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "mcpServers.hub.autoApprove: ignored: approving tool calls is the client's job; \
             Warden passes every call on",
            "mcpServers.hub.dev: ignored: a client's development-mode setting",
        ]
    );
    let remote = l.config.server("remote").unwrap();
    match &remote.transport {
        Transport::Remote { headers, kind, .. } => {
            assert_eq!(headers["Authorization"].expose(), "Bearer s3cr3t-value");
            assert_eq!(*kind, RemoteKind::Auto);
        }
        other => panic!("{other:?}"),
    }
    let legacy = l.config.server("legacy").unwrap();
    assert!(matches!(legacy.transport, Transport::Remote { kind: RemoteKind::Sse, .. }));
    let hub = l.config.server("hub").unwrap();
    assert!(hub.disabled);
    match &hub.transport {
        Transport::Stdio { cwd, .. } => {
            assert_eq!(cwd.as_deref(), Some(std::path::Path::new("/home/me/work")))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vscode_servers_key_is_accepted() {
    let l = ok(r#"{ "inputs": [], "servers": { "a": { "type": "stdio", "command": "x" } } }"#);
    assert_eq!(l.config.servers[0].name, "a");
}

#[test]
fn bad_duration_names_the_field() {
    let errs = errors(
        r#"{ "mcpServers": { "x": { "command": "c", "health": { "interval": "5 parsecs" } } } }"#,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("mcpServers.x.health.interval: \"5 parsecs\" is not a duration"),
        "{}",
        errs[0]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = errors(
        r#"{ "mcpServers": {
            "a": { "command": "c", "replicas": 0, "health": { "unhealthy_threshold": "three" } },
            "b": { "url": "ftp://nope" },
            "c": { "command": "c", "url": "http://x" },
            "d": { "command": "c", "fallback": ["missing", "d"], "restart": { "policy": "sometimes", "backoff": { "initial": "1m", "max": "1s" } } },
            "e": {},
            "f": { "command": "c", "env": { "K": "${env:NOT_SET_ANYWHERE}" } }
        },
        "warden": { "listen": "everywhere" } }"#,
    );
    let want = [
        "mcpServers.a.replicas: 0 is out of range",
        "mcpServers.a.health.unhealthy_threshold: must be a whole number",
        "mcpServers.b.url: \"ftp://nope\" is not an http:// or https:// URL",
        "mcpServers.c: has both",
        "mcpServers.d.fallback[0]: names \"missing\"",
        "mcpServers.d.fallback[1]: a server cannot be its own fallback",
        "mcpServers.d.restart.policy: \"sometimes\" is not a restart policy",
        "mcpServers.d.restart.backoff.initial: is longer than backoff.max",
        "mcpServers.e: needs \"command\"",
        "mcpServers.f.env.K: environment variable NOT_SET_ANYWHERE is not set",
        "warden.listen: \"everywhere\" is not an address",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn unknown_keys_warn_with_the_nearest_known_key() {
    let l = ok(
        r#"{ "mcpServers": { "x": { "command": "c", "replicass": 2, "helth": {}, "health": { "intervall": "1s" } } },
                   "wardn": {} }"#,
    );
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter()
            .any(|m| m
                == "mcpServers.x.replicass: unknown key (did you mean \"replicas\"?); ignored"),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|m| m == "mcpServers.x.helth: unknown key (did you mean \"health\"?); ignored"),
        "{w:#?}"
    );
    assert!(
        w.iter().any(|m| m
            == "mcpServers.x.health.intervall: unknown key (did you mean \"interval\"?); ignored"),
        "{w:#?}"
    );
    assert!(
        w.iter().any(|m| m.starts_with("wardn: unknown key (did you mean \"warden\"?)")),
        "{w:#?}"
    );
}

#[test]
fn secrets_never_show_in_debug_or_display_args() {
    let l = ok(
        r#"{ "mcpServers": { "x": { "command": "c", "args": ["--key=${env:TOKEN}", "plain"], "env": { "API_KEY": "${TOKEN}" } } } }"#,
    );
    let debug = format!("{:?}", l.config);
    assert!(!debug.contains("s3cr3t"), "a secret leaked into Debug: {debug}");
    match &l.config.servers[0].transport {
        Transport::Stdio { args, display_args, env, .. } => {
            assert_eq!(args[0], "--key=s3cr3t-value");
            assert_eq!(display_args, &["--key=${env:TOKEN}", "plain"]);
            assert_eq!(env["API_KEY"].expose(), "s3cr3t-value");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn policies_compile_with_defaults_layered() {
    let l = ok(r#"{
      "mcpServers": {
        "search": { "command": "uvx", "args": ["mcp-server-fetch"], "replicas": 2, "fallback": ["backup"], "trusted": true,
          "health": { "interval": "5s", "timeout": "2s", "unhealthy_threshold": 3, "healthy_threshold": 2 },
          "restart": { "policy": "on-failure", "backoff": { "initial": "500ms", "max": "30s" }, "max_restarts": 5, "window": "60s" } },
        "backup": { "command": "b", "timeout": 30 }
      },
      "warden": { "listen": "127.0.0.1:9000", "retention": "7d", "defaults": { "health": { "interval": "10s" } } }
    }"#);
    let c = &l.config;
    assert_eq!(c.warden.listen.port(), 9000);
    assert_eq!(c.warden.retention, Duration::from_secs(7 * 86_400));
    let search = c.server("search").unwrap();
    assert_eq!(search.instance_count(), 2);
    assert!(search.trusted);
    assert_eq!(search.fallback, vec!["backup".to_owned()]);
    assert_eq!(search.health.interval, Duration::from_secs(5));
    let backup = c.server("backup").unwrap();
    assert_eq!(backup.health.interval, Duration::from_secs(10), "warden.defaults applies");
    assert_eq!(backup.timeout, Duration::from_secs(30), "a bare number is seconds");
}

#[test]
fn json_syntax_errors_are_reported() {
    let errs = errors("{ \"mcpServers\": { ");
    assert!(errs[0].starts_with("not valid JSON"), "{errs:?}");
}

#[test]
fn durations_parse_and_format() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert!(parse_duration("5 parsecs").is_err());
    assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(format_duration(Duration::from_secs(120)), "2m");
}

#[test]
fn gateway_settings_compile_and_name_bad_fields() {
    let l = ok(r#"{ "mcpServers": { "s": { "command": "c", "retry": ["search"],
            "cache": { "lookup": "30s" }, "balance": "round_robin" } },
        "warden": { "sessions": { "max": 5, "idle_timeout": "2m" }, "max_request_body": 65536 } }"#);
    let s = &l.config.servers[0];
    assert_eq!(s.retry_tools, vec!["search".to_owned()]);
    assert_eq!(s.cache.get("lookup"), Some(&Duration::from_secs(30)));
    assert_eq!(s.balance, Balance::RoundRobin);
    assert_eq!(l.config.warden.max_sessions, 5);
    assert_eq!(l.config.warden.session_idle_timeout, Duration::from_secs(120));
    assert_eq!(l.config.warden.max_request_body, 65536);
    let errs = errors(
        r#"{ "mcpServers": { "s": { "command": "c", "retry": "search",
            "cache": { "lookup": "soon", "other": 5 }, "balance": "random" } },
        "warden": { "sessions": { "max": 0 }, "max_request_body": 10 } }"#,
    );
    let want = [
        "mcpServers.s.retry: must be a list of tool names",
        "mcpServers.s.cache.lookup: \"soon\" is not a duration",
        "mcpServers.s.cache.other: must be a duration",
        "mcpServers.s.balance: \"random\" is not a balancing policy",
        "warden.sessions.max: 0 is out of range",
        "warden.max_request_body: 10 is out of range",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn log_settings_compile_and_name_bad_fields() {
    let l = ok(r#"{ "mcpServers": { "s": { "command": "c" } },
        "warden": { "logs": { "dir": "/var/log/warden", "retention_days": 14, "format": "json" } } }"#);
    let logs = &l.config.warden.logs;
    assert_eq!(logs.dir, Some(LogDir::At("/var/log/warden".into())));
    assert_eq!(logs.retention_days, Some(14));
    assert_eq!(logs.format, Some(LogFormat::Json));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(ok(r#"{ "mcpServers": {} }"#).config.warden.logs, LogSettings::default());
    let off = ok(r#"{ "mcpServers": {}, "warden": { "logs": { "dir": "OFF" } } }"#);
    assert_eq!(off.config.warden.logs.dir, Some(LogDir::Off));
    assert_eq!(LogDir::parse("none"), LogDir::Off);
    assert_eq!(LogDir::parse("logs"), LogDir::At("logs".into()));

    let errs = errors(
        r#"{ "mcpServers": {},
        "warden": { "logs": { "dir": "", "retention_days": 0, "format": "xml" } } }"#,
    );
    let want = [
        "warden.logs.dir: is empty",
        "warden.logs.retention_days: 0 is out of range",
        "warden.logs.format: \"xml\" is not a log format",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    let warned = ok(r#"{ "mcpServers": {}, "warden": { "logs": { "retention": 3 } } }"#);
    assert!(
        warned.warnings.iter().any(|w| w
            .to_string()
            .starts_with("warden.logs.retention: unknown key (did you mean \"retention_days\"?)")),
        "{:?}",
        warned.warnings
    );
}

#[test]
fn tuning_settings_default_off_and_validate_their_fields() {
    let l = ok(r#"{ "mcpServers": {} }"#);
    assert_eq!(l.config.warden.tuning, TuningSettings::default());
    assert!(!l.config.warden.tuning.auto);
    let l = ok(
        r#"{ "mcpServers": {}, "warden": { "tuning": { "auto": true, "interval": "30m", "lookback": "1d" } } }"#,
    );
    let t = &l.config.warden.tuning;
    assert_eq!(
        (t.auto, t.interval, t.lookback),
        (true, Duration::from_secs(1800), Duration::from_secs(86_400))
    );
    let e = errors(
        r#"{ "mcpServers": {}, "warden": { "tuning": { "auto": "yes", "interval": "1s" } } }"#,
    );
    assert!(e.iter().any(|m| m.starts_with("warden.tuning.auto")), "{e:?}");
    assert!(e.iter().any(|m| m.starts_with("warden.tuning.interval")), "{e:?}");
}

#[test]
fn inherit_env_is_a_validated_switch_for_every_child_process() {
    let l = ok(r#"{
      "mcpServers": {
        "a": { "command": "npx", "args": ["x"] },
        "b": { "command": "npx", "args": ["y"], "inherit_env": true },
        "r": { "url": "http://127.0.0.1:1/mcp", "inherit_env": true }
      },
      "integrations": { "c": { "command": "true", "inherit_env": true } },
      "warden": { "alerts": { "commands": [ { "command": "/bin/page", "inherit_env": true } ] } }
    }"#);
    let inherit = |i: usize| match &l.config.servers[i].transport {
        Transport::Stdio { inherit_env, .. } => *inherit_env,
        Transport::Check(CheckSpec::Command(c)) => c.inherit_env,
        other => panic!("{other:?}"),
    };
    assert!(!inherit(0), "off by default: children get the allow-list only");
    assert!(inherit(1));
    assert!(inherit(3));
    assert!(matches!(
        l.config.warden.alerts.receivers[0].kind,
        crate::alerts::ReceiverKind::Command { inherit_env: true, .. }
    ));
    assert_eq!(
        l.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["mcpServers.r.inherit_env: applies to stdio servers only; ignored"]
    );
    let errs = errors(r#"{ "mcpServers": { "a": { "command": "npx", "inherit_env": "yes" } } }"#);
    assert_eq!(errs, ["mcpServers.a.inherit_env: must be true or false, not a string"]);
}

#[test]
fn server_names_are_what_the_router_can_mount() {
    // Each of these once passed `validate` and then panicked axum when `/servers/NAME/mcp` was
    // mounted, or made `server__tool` names clients refuse.
    for bad in [
        "a:b",
        "a*",
        "{id}",
        "a{",
        "b}",
        "two words",
        "what?",
        "100%",
        "tab\there",
        "é",
        ".",
        "..",
        "a/b",
        "a#1",
        "x__y",
        "",
    ] {
        let text = serde_json::json!({ "mcpServers": { bad: { "command": "x" } } }).to_string();
        let err = compile(&text, &env).expect_err(bad);
        let shown = err.to_string();
        assert!(shown.contains("name"), "{bad:?}: {shown}");
        let text = serde_json::json!({ "integrations": { bad: { "tcp": "127.0.0.1:1" } } });
        assert!(compile(&text.to_string(), &env).is_err(), "integration {bad:?}");
    }
    for good in ["a", "A-b_c.d", "files-v2", "x1", "github.com", "_x", "-y"] {
        let text = serde_json::json!({ "mcpServers": { good: { "command": "x" } } }).to_string();
        assert!(compile(&text, &env).is_ok(), "{good:?} is a good name");
    }
}

/// A misspelt key the entry lacks altogether (`comand` with no `command`) is still matched to
/// the key it was meant to be, beside the error that the server needs one.
#[test]
fn a_misspelt_command_or_url_gets_its_suggestion() {
    let e = crate::compile(
        r#"{ "mcpServers": { "x": { "comand": "c" }, "y": { "ulr": "u" } } }"#,
        &|_| None,
    )
    .expect_err("neither server has a command or a url");
    let w: Vec<String> = e.warnings.iter().map(ToString::to_string).collect();
    for want in [
        "mcpServers.x.comand: unknown key (did you mean \"command\"?); ignored",
        "mcpServers.y.ulr: unknown key (did you mean \"url\"?); ignored",
    ] {
        assert!(w.iter().any(|m| m == want), "{want} missing: {w:#?}");
    }
}

#[test]
fn keys_with_no_meaning_here_warn_once_for_the_whole_file() {
    let l = ok(r#"{ "mcpServers": {
        "a": { "command": "x", "autoApprove": ["t"] },
        "b": { "command": "x", "autoApprove": [], "description": "b" },
        "c": { "command": "x", "autoApprove": ["u"] } } }"#);
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("mcpServers.a.autoApprove: ignored: ")
            && w[0].ends_with("(also in 2 other servers)"),
        "{w:?}"
    );
    assert!(w[1].starts_with("mcpServers.b.description: ignored: "), "{w:?}");
}

#[test]
fn other_clients_timeouts_map_to_warden_s() {
    let l = ok(r#"{ "mcpServers": {
        "cline": { "command": "x", "timeout": 90 },
        "net": { "command": "x", "networkTimeout": 45000 },
        "both": { "command": "x", "timeout": "5s", "networkTimeout": 1000 } } }"#);
    let c = &l.config;
    assert_eq!(c.server("cline").unwrap().timeout, Duration::from_secs(90), "seconds");
    assert_eq!(c.server("net").unwrap().timeout, Duration::from_secs(45), "milliseconds");
    assert_eq!(c.server("both").unwrap().timeout, Duration::from_secs(5), "timeout wins");
    assert!(l.warnings.iter().any(|w| w.path == "mcpServers.both.networkTimeout"));
    let errs = errors(r#"{ "mcpServers": { "x": { "command": "c", "networkTimeout": "soon" } } }"#);
    assert!(errs[0].starts_with("mcpServers.x.networkTimeout: "), "{errs:?}");
}

#[test]
fn env_file_variables_reach_the_server_under_its_own_env() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("srv.env"),
        "# a comment\nexport API_KEY=\"k-12345\"\nREGION=eu # trailing comment\nKEEP='from file'\n\n",
    )
    .unwrap();
    let text = r#"{ "mcpServers": { "s": { "command": "x", "envFile": "srv.env", "env": { "KEEP": "from env" } } } }"#;
    let l = crate::compile_as(text, crate::Format::Json, &env, Some(dir.path())).unwrap();
    match &l.config.server("s").unwrap().transport {
        Transport::Stdio { env, .. } => {
            assert_eq!(env["API_KEY"].expose(), "k-12345");
            assert_eq!(env["REGION"].expose(), "eu");
            assert_eq!(env["KEEP"].expose(), "from env", "env wins over envFile");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        l.config.secrets.iter().any(|s| s.expose() == "k-12345"),
        "env file values are secrets"
    );
    let missing = r#"{ "mcpServers": { "s": { "command": "x", "envFile": "nope.env" } } }"#;
    let e = crate::compile_as(missing, crate::Format::Json, &env, Some(dir.path())).unwrap_err();
    assert!(e.errors[0].to_string().starts_with("mcpServers.s.envFile: cannot read "), "{e}");
}

#[test]
fn jsonc_and_json5_files_load() {
    // VS Code's mcp.json: comments and trailing commas.
    let l = ok(r#"{
      // the servers
      "servers": {
        "a": { "type": "stdio", "command": "x", /* inline */ "args": ["--y",], },
      },
    }"#);
    assert_eq!(l.config.servers[0].name, "a");
    // A real syntax error still says where, in both readings.
    let errs = errors("{ \"mcpServers\": { \"a\": { \"command\": } } }");
    assert!(errs[0].starts_with("not valid JSON: ") && errs[0].contains("JSON5"), "{errs:?}");
}

#[test]
fn yaml_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.yaml");
    std::fs::write(
        &path,
        "mcpServers:\n  a:\n    command: x\n    args: [\"--y\"]\n    replicas: 2\nwarden:\n  retention: 7d\n",
    )
    .unwrap();
    let l = crate::load(&path).unwrap();
    assert_eq!(l.config.server("a").unwrap().instance_count(), 2);
    assert_eq!(l.config.warden.retention, Duration::from_secs(7 * 86_400));
    std::fs::write(&path, "mcpServers:\n  a: [unclosed\n").unwrap();
    let e = crate::load(&path).unwrap_err();
    assert!(e.errors[0].message.starts_with("not valid YAML: "), "{e}");
}

#[test]
fn a_deeply_nested_file_is_an_error_in_every_format() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let errs = errors(&deep);
    assert!(errs[0].contains("recursion limit"), "{errs:?}");
    let yaml = crate::compile_as(&deep, crate::Format::Yaml, &env, None).unwrap_err();
    assert!(yaml.errors[0].message.starts_with("not valid YAML"), "{yaml}");
}

#[test]
fn tags_strategies_smoke_tests_and_the_tool_prefix() {
    let l = ok(r#"{ "mcpServers": {
            "a": { "command": "c", "tags": ["search", "prod", "search"], "fallback_strategy": "offline_mode",
                   "smoke_test": { "tool": "echo", "arguments": { "text": "hi" } } },
            "b": { "command": "c", "smoke_test": "ping" } },
        "integrations": { "db": { "tcp": "h:1", "tags": ["prod"] } },
        "warden": { "tools": { "prefix": "orchestrator_" } } }"#);
    let a = l.config.servers.iter().find(|s| s.name == "a").unwrap();
    assert_eq!(a.tags, ["search", "prod"], "duplicates dropped");
    assert_eq!(a.fallback_strategy, crate::FallbackStrategy::OfflineMode);
    let smoke = a.smoke_test.as_ref().unwrap();
    assert_eq!((smoke.tool.as_str(), smoke.arguments["text"].as_str()), ("echo", Some("hi")));
    let b = l.config.servers.iter().find(|s| s.name == "b").unwrap();
    assert_eq!(b.fallback_strategy, crate::FallbackStrategy::GracefulDegradation);
    assert_eq!(b.smoke_test.as_ref().unwrap().tool, "ping");
    let db = l.config.servers.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(db.tags, ["prod"]);
    assert_eq!(l.config.warden.tools.prefix, "orchestrator_");

    let errs = errors(
        r#"{ "mcpServers": {
            "a": { "command": "c", "fallback_strategy": "sometimes", "tags": "prod" },
            "b": { "command": "c", "smoke_test": { "arguments": {} } },
            "c": { "command": "c", "smoke_test": 3 } },
        "integrations": { "db": { "tcp": "h:1", "fallback_strategy": "fail_fast" } },
        "warden": { "tools": { "prefix": "has space" } } }"#,
    );
    let want = [
        "mcpServers.a.fallback_strategy: \"sometimes\" is not a fallback strategy (use one of graceful_degradation, fail_fast, offline_mode, manual)",
        "mcpServers.a.tags: must be a list of strings",
        "mcpServers.b.smoke_test.tool: must name the tool to call",
        "mcpServers.c.smoke_test: must be a tool name or",
        "integrations.db.fallback_strategy: applies to MCP servers only",
        "warden.tools.prefix: \"has space\" is not a tool-name prefix",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
    }
}

#[test]
fn the_tool_choosing_model_is_configured_checked_and_supervised() {
    let l = ok(r#"{ "mcpServers": { "a": { "command": "c" } },
        "warden": { "tools": { "exposure": ["files", "web"], "categories": { "weather": "forecast rain" },
            "llm": { "provider": "gemini", "model": "gemini-2.0-flash", "api_key": "AIza-secret-key-0123" } } } }"#);
    let t = &l.config.warden.tools;
    assert_eq!(t.exposure, crate::ExposureSetting::Categories(vec!["files".into(), "web".into()]));
    assert_eq!(t.categories["weather"], "forecast rain");
    let llm = t.llm.as_ref().unwrap();
    assert_eq!(
        (llm.provider, llm.url.as_str()),
        (crate::LlmProvider::Gemini, "https://generativelanguage.googleapis.com/v1beta")
    );
    assert!(l.config.secrets.iter().any(|s| s.expose() == "AIza-secret-key-0123"));
    let check = l.config.servers.iter().find(|s| s.name == "llm").expect("supervised");
    assert_eq!(check.kind(), "llm");
    assert!(!check.target().contains("secret"));

    let errs = errors(
        r#"{ "mcpServers": { "llm": { "command": "c" } },
            "warden": { "tools": { "exposure": "some", "llm": { "provider": "claude" } } } }"#,
    );
    assert!(
        errs.iter().any(|e| e.starts_with("warden.tools.exposure: \"some\" is not an exposure")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("warden.tools.llm.provider: \"claude\" is not a provider")),
        "{errs:#?}"
    );
    let errs = errors(
        r#"{ "mcpServers": { "llm": { "command": "c" } },
            "warden": { "tools": { "llm": { "model": "m" } } } }"#,
    );
    assert!(errs.iter().any(|e| e.contains("already named \"llm\"")), "{errs:#?}");
    let errs = errors(
        r#"{ "mcpServers": { "a": { "command": "c" } }, "warden": { "tools": { "llm": {} } } }"#,
    );
    assert!(errs.iter().any(|e| e.starts_with("warden.tools.llm.model: is missing")), "{errs:#?}");
}

#[test]
fn the_database_url_takes_its_password_from_the_environment() {
    let server = r#""mcpServers": { "a": { "command": "a" } }"#;
    let l = ok(&format!(
        r#"{{ {server}, "warden": {{ "database": "postgres://warden:${{env:TOKEN}}@db:5432/warden" }} }}"#
    ));
    let db = l.config.warden.database.unwrap();
    assert_eq!(db, format!("postgres://warden:{}@db:5432/warden", env("TOKEN").unwrap()));
    let e = errors(&format!(
        r#"{{ {server}, "warden": {{ "database": "postgres://w:${{env:NOT_SET_ANYWHERE}}@db/w" }} }}"#
    ));
    assert!(
        e.iter().any(|e| e.contains("warden.database") && e.contains("NOT_SET_ANYWHERE")),
        "{e:?}"
    );
}
