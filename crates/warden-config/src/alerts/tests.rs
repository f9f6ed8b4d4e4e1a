//! The alerts block: every receiver and rule shape, and the errors for bad ones.

use std::time::Duration;

use crate::*;

fn env(name: &str) -> Option<String> {
    (name == "HOOK").then(|| "T0/B0/abcdefsecret".to_owned())
}

fn with_alerts(alerts: &str, server_extra: &str) -> Result<Loaded, ConfigError> {
    let text = format!(
        r#"{{ "mcpServers": {{ "s": {{ "command": "x" {server_extra} }} }},
             "warden": {{ "alerts": {alerts} }} }}"#
    );
    compile(&text, &env)
}

fn errors(alerts: &str) -> Vec<String> {
    match with_alerts(alerts, "") {
        Ok(_) => panic!("expected errors for {alerts}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn builtin_rules_take_their_own_timings_and_severity() {
    let a = with_alerts(
        r#"{ "builtin": { "InstanceCritical": { "for": "2m", "keep_firing_for": "5m", "severity": "critical" },
                          "Drift": { "enabled": false }, "CrashLoop": true } }"#,
        "",
    )
    .unwrap()
    .config
    .warden
    .alerts;
    let o = &a.builtin_overrides["InstanceCritical"];
    assert_eq!(o.for_, Some(Duration::from_secs(120)));
    assert_eq!(o.keep_firing_for, Some(Duration::from_secs(300)));
    assert_eq!(o.severity, Some(Severity::Critical));
    assert!(!a.builtin_enabled("Drift") && a.builtin_enabled("CrashLoop"));
    let e = errors(
        r#"{ "builtin": { "CrashLoop": "off", "Drift": { "for": "soon", "sevrity": "x" } } }"#,
    );
    assert!(
        e.iter().any(|m| m.starts_with("warden.alerts.builtin.CrashLoop: must be true, false or")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.starts_with("warden.alerts.builtin.Drift.for")), "{e:?}");
}

#[test]
fn defaults_follow_alertmanager_and_the_research() {
    let a = with_alerts("{}", "").unwrap().config.warden.alerts;
    assert_eq!(a.evaluation_interval, Duration::from_secs(5));
    assert_eq!(a.group_by, vec!["alertname", "server"]);
    assert_eq!(a.group_wait, Duration::from_secs(30));
    assert_eq!(a.group_interval, Duration::from_secs(300));
    assert_eq!(a.repeat_interval, Duration::from_secs(4 * 3600));
    assert!(a.receivers.is_empty() && a.rules.is_empty());
    assert!(BUILTIN_RULES.iter().all(|r| a.builtin_enabled(r)));
}

#[test]
fn a_full_alerts_block_compiles_and_its_secrets_are_known() {
    let l = with_alerts(
        r#"{ "group_wait": "10s", "repeat_interval": "1h", "builtin": { "CrashLoop": false },
             "webhooks": [ { "url": "https://hooks.slack.com/services/${env:HOOK}", "format": "slack" },
                           { "url": "http://127.0.0.1:9093", "format": "alertmanager", "min_severity": "critical",
                             "headers": { "Authorization": "Bearer ${env:HOOK}" } } ],
             "commands": [ { "command": "/usr/local/bin/page", "args": ["--urgent"], "send_resolved": false } ],
             "rules": [ { "alert": "SlowSearch", "metric": "latency_p95_ms", "op": ">=", "threshold": 500,
                          "match": { "server": "s" }, "for": "1m", "keep_firing_for": "2m",
                          "severity": "critical", "labels": { "team": "search" }, "summary": "slow" } ] }"#,
        r#", "objective": { "availability": 99.9 }"#,
    )
    .unwrap();
    let a = &l.config.warden.alerts;
    assert_eq!(a.group_wait, Duration::from_secs(10));
    assert!(!a.builtin_enabled("CrashLoop") && a.builtin_enabled("InstanceCritical"));
    assert_eq!(a.receivers.len(), 3);
    assert_eq!(a.receivers[0].name, "webhook-0");
    let ReceiverKind::Webhook { display_url, format, .. } = &a.receivers[0].kind else { panic!() };
    assert_eq!(
        (display_url.as_str(), format.clone()),
        ("https://hooks.slack.com/…", WebhookFormat::Slack)
    );
    assert_eq!(a.receivers[1].min_severity, Severity::Critical);
    assert!(!a.receivers[2].send_resolved);
    let r = &a.rules[0];
    assert_eq!((r.name.as_str(), r.op, r.threshold), ("SlowSearch", CompareOp::Ge, 500.0));
    assert_eq!(r.for_, Duration::from_secs(60));
    assert_eq!(r.matchers["server"], "s");
    assert!((l.config.servers[0].objective.unwrap() - 0.999).abs() < 1e-12);
    // The webhook URL and the header carry a secret: logs are scrubbed of both.
    let secrets: Vec<&str> = l.config.secrets.iter().map(|s| s.expose()).collect();
    assert!(
        secrets.contains(&"https://hooks.slack.com/services/T0/B0/abcdefsecret"),
        "{secrets:?}"
    );
    assert!(secrets.contains(&"T0/B0/abcdefsecret"), "{secrets:?}");
}

#[test]
fn every_bad_field_is_named() {
    let e = errors(
        r#"{ "group_wait": "soon", "webhooks": [ { "format": "teams" }, { "url": "ftp://x" } ],
             "commands": [ {} ], "builtin": { "Nope": false },
             "rules": [ { "alert": "Bad name", "op": "~", "threshold": "high", "severity": "page!" },
                        { "alert": "CrashLoop", "metric": "up", "threshold": 1 } ] }"#,
    );
    let has = |p: &str| e.iter().any(|x| x.starts_with(p));
    for path in [
        "warden.alerts.group_wait",
        "warden.alerts.webhooks[0].url",
        "warden.alerts.webhooks[0].format",
        "warden.alerts.webhooks[1].url",
        "warden.alerts.commands[0].command",
        "warden.alerts.rules[0].alert",
        "warden.alerts.rules[0].metric",
        "warden.alerts.rules[0].op",
        "warden.alerts.rules[0].threshold",
        "warden.alerts.rules[0].severity",
        "warden.alerts.rules[1].alert",
    ] {
        assert!(has(path), "no error for {path}: {e:#?}");
    }
    let e = match with_alerts("{}", r#", "objective": { "availability": 100 }"#) {
        Err(e) => e.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        Ok(_) => panic!("100 % is not an objective"),
    };
    assert!(e[0].starts_with("mcpServers.s.objective.availability"), "{e:?}");
}

#[test]
fn a_receivers_url_is_shown_without_path_or_credentials() {
    assert_eq!(
        crate::fields::origin_display("https://hooks.slack.com/services/T0/B0/secret"),
        "https://hooks.slack.com/…"
    );
    assert_eq!(
        crate::fields::origin_display("http://u:p@127.0.0.1:9/x?k=v"),
        "http://127.0.0.1:9/…"
    );
    assert_eq!(crate::fields::origin_display("http://127.0.0.1:9"), "http://127.0.0.1:9");
}

#[test]
fn a_pagerduty_receiver_keeps_its_routing_key_secret_and_needs_one() {
    let l = with_alerts(
        r#"{ "pagerduty": [ { "name": "pd", "routing_key": "${HOOK}", "min_severity": "info" } ] }"#,
        "",
    )
    .unwrap();
    let r = &l.config.warden.alerts.receivers[0];
    assert_eq!(r.min_severity, Severity::Info);
    match &r.kind {
        ReceiverKind::Webhook { url, format: WebhookFormat::PagerDuty { routing_key }, .. } => {
            assert_eq!(url.expose(), "https://events.pagerduty.com/v2/enqueue");
            assert_eq!(routing_key.expose(), "T0/B0/abcdefsecret");
        }
        other => panic!("{other:?}"),
    }
    assert!(l.config.secrets.iter().any(|s| s.expose() == "T0/B0/abcdefsecret"));
    let e = errors(r#"{ "pagerduty": [ { "name": "pd" } ] }"#);
    assert!(e[0].contains("pagerduty[0].routing_key: is missing"), "{e:?}");
    let e = errors(r#"{ "webhooks": [ { "url": "http://x/", "min_severity": "loud" } ] }"#);
    assert!(e[0].contains(r#"use "info", "warning" or "critical""#), "{e:?}");
}

#[test]
fn an_email_receiver_checks_its_addresses_and_keeps_its_password_secret() {
    let l = with_alerts(
        r#"{ "emails": [ { "name": "ops", "smtp": "mail.example.org:587", "from": "warden@example.org",
                           "to": "oncall@example.org", "username": "warden", "password": "${HOOK}" } ] }"#,
        "",
    )
    .unwrap();
    let r = &l.config.warden.alerts.receivers[0];
    match &r.kind {
        ReceiverKind::Email { host, port, tls, to, password, .. } => {
            assert_eq!((host.as_str(), *port, *tls), ("mail.example.org", 587, SmtpTls::StartTls));
            assert_eq!(to, &["oncall@example.org"]);
            assert_eq!(password.as_ref().unwrap().expose(), "T0/B0/abcdefsecret");
        }
        other => panic!("{other:?}"),
    }
    assert!(l.config.secrets.iter().any(|s| s.expose() == "T0/B0/abcdefsecret"));
    let e = errors(
        r#"{ "emails": [ { "smtp": "mail", "from": "nobody", "to": ["a@b.c", "not an address"], "tls": "ssl" },
                         { "smtp": "h:25", "from": "a@b.c", "to": [], "password": "x" } ] }"#,
    );
    for want in [
        "emails[0].tls: \"ssl\" is not a TLS mode",
        "emails[0].from: \"nobody\" is not an email address",
        "emails[0].to[1]: \"not an address\" is not an email address",
        "emails[0].smtp: must be \"host:port\"",
        "emails[1].to: is empty",
    ] {
        assert!(e.iter().any(|x| x.contains(want)), "missing {want:?} in {e:#?}");
    }
}

#[test]
fn an_email_receiver_takes_host_and_port_and_refuses_what_lettre_cannot_send_to() {
    let l = with_alerts(
        r#"{ "emails": [ { "host": "mail.example.org", "from": "a@example.org", "to": "b@example.org" },
                         { "host": "relay.example.org", "tls": "tls", "from": "a@example.org", "to": "b@example.org" },
                         { "host": "127.0.0.1", "port": 2525, "tls": "none", "from": "a@example.org", "to": "b@example.org" },
                         { "host": "[::1]", "tls": "none", "from": "a@example.org", "to": "b@example.org" } ] }"#,
        "",
    )
    .unwrap();
    let servers: Vec<(String, u16)> = l
        .config
        .warden
        .alerts
        .receivers
        .iter()
        .map(|r| match &r.kind {
            ReceiverKind::Email { host, port, .. } => (host.clone(), *port),
            other => panic!("{other:?}"),
        })
        .collect();
    let want =
        [("mail.example.org", 587), ("relay.example.org", 465), ("127.0.0.1", 2525), ("::1", 25)];
    assert_eq!(servers, want.map(|(h, p)| (h.to_owned(), p)));
    let e = errors(
        r#"{ "emails": [ { "smtp": "m.example.org:25", "host": "m.example.org", "from": "a@example.org", "to": "b@example.org" },
                         { "host": "m.example.org:25", "from": "a@example.org", "to": "b@example.org" },
                         { "smtp": "m.example.org:25", "port": 26, "from": "a@example.org", "to": "b@example.org" },
                         { "host": "m.example.org", "port": 0, "from": "a@example.org", "to": "b@example.org" },
                         { "from": "Doe, J <j@example.org>", "to": ["a..b@example.org", "ops@mailhost"] } ] }"#,
    );
    for want in [
        "emails[0].smtp: give `smtp` (\"host:port\") or `host` + `port`, not both",
        "emails[1].host: \"m.example.org:25\" is not a host name (the port goes in `port`)",
        "emails[2].port: goes with `host`",
        "emails[3].port: 0 is out of range (1 to 65535)",
        "emails[4].smtp: is missing",
        "emails[4].from: \"Doe, J <j@example.org>\" is not an email address: a name with `,`",
        "emails[4].to[0]: \"a..b@example.org\" is not an email address: invalid email user",
        "emails[4].to[1]: \"ops@mailhost\" is not an email address: the domain \"mailhost\" has no dot",
    ] {
        assert!(e.iter().any(|x| x.contains(want)), "missing {want:?} in {e:#?}");
    }
}

#[test]
fn an_email_password_sent_in_clear_off_this_machine_is_warned_about() {
    let warnings = |host: &str| {
        let alerts = format!(
            r#"{{ "emails": [ {{ "host": "{host}", "tls": "none", "from": "a@example.org",
                                "to": "b@example.org", "username": "u", "password": "${{HOOK}}" }} ] }}"#
        );
        let l = with_alerts(&alerts, "").unwrap();
        l.warnings.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let w = warnings("mail.example.org");
    assert!(
        w.iter().any(|w| w.contains("emails[0].password: is sent to mail.example.org unencrypted")),
        "{w:?}"
    );
    assert!(w.iter().all(|w| !w.contains("abcdefsecret")), "{w:?}");
    for local in ["127.0.0.1", "localhost", "::1"] {
        assert!(warnings(local).iter().all(|w| !w.contains("unencrypted")), "{local}");
    }
}
