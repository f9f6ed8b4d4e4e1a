//! The pure parts on constructed time: rule states, built-in rules, SLO windows, dispatching,
#![allow(clippy::cloned_ref_to_slice_refs)] // `&[a.clone()]` reads better in tests
//! payloads.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::Value;
use warden_config::{AlertRule, AlertSettings, CompareOp, Receiver, ReceiverKind, Secret};
use warden_core::InstanceState;

use crate::*;

fn t0() -> Now {
    Now { at: Instant::now(), wall: Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap() }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn rule(for_: u64, keep: u64) -> RuleDef {
    RuleDef {
        name: "R".into(),
        for_: secs(for_),
        keep_firing_for: secs(keep),
        severity: Severity::Warning,
        labels: labels(&[("team", "a")]),
    }
}

fn active(server: &str) -> Active {
    Active { labels: labels(&[("server", server)]), value: 1.0, summary: "s".into() }
}

/// Runs `steps` evaluations 5 s apart from `start`, with `holds(step)` deciding the condition.
fn run(
    e: &mut Evaluator,
    start: Now,
    steps: u64,
    holds: impl Fn(u64) -> bool,
) -> Vec<(u64, Transition)> {
    let mut out = Vec::new();
    for i in 0..steps {
        let now = start.after(secs(5 * i));
        let a = if holds(i) { vec![active("s")] } else { vec![] };
        out.extend(e.evaluate(now, &[a]).into_iter().map(|t| (i * 5, t)));
    }
    out
}

#[test]
fn fingerprint_is_alertmanagers() {
    assert_eq!(fingerprint(&Labels::new()), "cbf29ce484222325");
    // prometheus/common's LabelsToSignature test vector (the same FNV-1a over name, 0xff, value, 0xff).
    let l = labels(&[("name", "garland, briggs"), ("fear", "love is not enough")]);
    assert_eq!(fingerprint(&l), "507a62d79ee76c9a");
}

#[test]
fn a_rule_fires_after_for_and_resolves_after_keep_firing_for() {
    let mut e = Evaluator::new(vec![rule(60, 120)]);
    let start = t0();
    // Holds from 0 s to 95 s, then stops.
    let got = run(&mut e, start, 60, |i| i * 5 < 100);
    let times: Vec<(u64, &str)> = got
        .iter()
        .map(|(t, tr)| match tr {
            Transition::Firing(_) => (*t, "firing"),
            Transition::Resolved(_) => (*t, "resolved"),
        })
        .collect();
    // Fires at 60 s (held for `for`); last held at 95 s; resolves at 95 + 120 = 215 s.
    assert_eq!(times, vec![(60, "firing"), (215, "resolved")]);
    let Transition::Resolved(a) = &got[1].1 else { unreachable!() };
    assert_eq!(a.starts_at, start.wall, "starts_at is when the condition first held");
    assert_eq!(a.ends_at, Some(start.wall + chrono::Duration::seconds(215)));
    assert_eq!(a.labels.get("alertname").map(String::as_str), Some("R"));
    assert_eq!(a.labels.get("severity").map(String::as_str), Some("warning"));
    assert_eq!(a.labels.get("team").map(String::as_str), Some("a"));
}

#[test]
fn a_flap_inside_keep_firing_for_does_not_resolve_and_a_short_blip_never_fires() {
    let mut e = Evaluator::new(vec![rule(30, 60)]);
    // Holds 0–55 s, off 60–95 s (shorter than keep 60 s), holds again 100–150 s, then off.
    let got = run(&mut e, t0(), 80, |i| {
        let t = i * 5;
        t < 60 || (100..=150).contains(&t)
    });
    let kinds: Vec<_> =
        got.iter().map(|(t, tr)| (*t, matches!(tr, Transition::Firing(_)))).collect();
    assert_eq!(kinds, vec![(30, true), (210, false)], "one firing, one resolve: {kinds:?}");

    let mut e = Evaluator::new(vec![rule(30, 60)]);
    // Holds for 25 s only: pending, forgotten, never notified.
    let got = run(&mut e, t0(), 40, |i| i * 5 < 25);
    assert!(got.is_empty(), "{got:?}");
    assert!(e.pending().is_empty() && e.firing().is_empty());
}

fn settings() -> AlertSettings {
    AlertSettings::default()
}

fn instance(id: &str, state: InstanceState, restarts: u32) -> InstanceFacts {
    InstanceFacts {
        id: id.into(),
        state,
        reason: Some("exited with signal 9".into()),
        restarts,
        requests_total: 0,
        errors_total: 0,
        prediction: None,
        drift: None,
    }
}

fn server(name: &str, routable: bool, instances: Vec<InstanceFacts>) -> ServerFacts {
    ServerFacts { name: name.into(), routable, paused: false, objective: None, instances }
}

fn names(ts: &[Transition]) -> Vec<String> {
    ts.iter()
        .map(|t| match t {
            Transition::Firing(a) => format!(
                "+{} {}",
                a.name,
                a.labels.get("server_instance").or(a.labels.get("server")).unwrap()
            ),
            Transition::Resolved(a) => format!(
                "-{} {}",
                a.name,
                a.labels.get("server_instance").or(a.labels.get("server")).unwrap()
            ),
        })
        .collect()
}

#[test]
fn builtin_rules_fire_on_the_supervisors_facts() {
    let mut rules = RuleSet::new(&settings(), Instant::now());
    let start = t0();
    let mut log = Vec::new();
    for i in 0..40u64 {
        let t = i * 5;
        // s#0 offline from 0 s; s#1 failed from 0 s; group unavailable from 0 s to 60 s inclusive.
        let restarts = (t / 20) as u32; // a restart every 20 s: crash loop after 3
        let s = server(
            "s",
            t > 60,
            vec![
                instance("s#0", InstanceState::Offline, restarts),
                instance("s#1", InstanceState::Failed, 6),
            ],
        );
        for x in names(&rules.evaluate(start.after(secs(t)), &[s], &[])) {
            log.push(format!("{t} {x}"));
        }
    }
    assert_eq!(
        log,
        vec![
            "0 +RestartIntensityExceeded s#1",
            "30 +ServerGroupUnavailable s",
            "60 +InstanceCritical s#0",
            "60 +CrashLoop s#0",
            // last unroutable at 60 s: resolved keep_firing_for (2 min) later.
            "180 -ServerGroupUnavailable s",
        ]
    );
}

#[test]
fn paused_servers_and_healthy_ones_raise_nothing() {
    let mut rules = RuleSet::new(&settings(), Instant::now());
    let mut stopped = server("a", false, vec![instance("a#0", InstanceState::Stopped, 0)]);
    stopped.paused = true;
    let healthy = server("b", true, vec![instance("b#0", InstanceState::Healthy, 0)]);
    for i in 0..100u64 {
        let got = rules.evaluate(t0().after(secs(5 * i)), &[stopped.clone(), healthy.clone()], &[]);
        assert!(got.is_empty(), "{got:?}");
    }
}

#[test]
fn predicted_failure_and_drift_come_from_the_predictor_facts() {
    let mut rules = RuleSet::new(&settings(), Instant::now());
    let mut i0 = instance("s#0", InstanceState::Healthy, 0);
    i0.prediction =
        Some(Prediction { signal: "latency".into(), eta_seconds: 90.0, limit: 2.0, level: 0.5 });
    i0.drift = Some(Drift { signal: "latency".into(), score: 9.0, baseline: 0.05, current: 0.2 });
    let s = server("s", true, vec![i0]);
    let mut log = Vec::new();
    for i in 0..8u64 {
        for x in names(&rules.evaluate(t0().after(secs(5 * i)), &[s.clone()], &[])) {
            log.push(format!("{} {x}", 5 * i));
        }
    }
    assert_eq!(log, vec!["0 +PredictedFailure s#0", "0 +Drift s#0"]);
    let firing = rules.firing();
    let p = firing.iter().find(|a| a.name == "PredictedFailure").unwrap();
    assert!(p.annotations["summary"].contains("in 90 s"), "{:?}", p.annotations);
    assert_eq!(p.labels["signal"], "latency");
}

#[test]
fn a_builtin_rule_can_be_turned_off() {
    let mut a = settings();
    a.disabled_builtin.push("RestartIntensityExceeded".into());
    let mut rules = RuleSet::new(&a, Instant::now());
    let s = server("s", true, vec![instance("s#0", InstanceState::Failed, 9)]);
    assert!(rules.evaluate(t0(), &[s], &[]).is_empty());
    assert!(!rules.rules().iter().any(|r| r.name == "RestartIntensityExceeded"));
}

#[test]
fn slo_burn_needs_both_windows_and_enough_traffic() {
    let origin = Instant::now();
    let mut w = SloWindows::new(origin);
    // 10 requests, 5 failed: a 500× burn for 99.9 %, but under 20 requests: nothing.
    w.record(origin, 10, 5);
    assert!(w.check(origin, &SLO_WINDOWS[0], 0.999).is_none());
    // 1 h at 2 % errors, then 10 clean minutes: the long window still burns 20×·50/60, the
    // 5-minute window is clean: the fast burn does not hold.
    let mut w = SloWindows::new(origin);
    for m in 0..70u64 {
        let errors = if m < 60 { 2 } else { 0 };
        w.record(origin + secs(60 * m), 100, errors);
    }
    let now = origin + secs(60 * 69);
    let long = w.burn(now, SLO_WINDOWS[0].long, 0.999).unwrap();
    assert!(long > 14.4, "{long}");
    assert_eq!(w.burn(now, SLO_WINDOWS[0].short, 0.999), Some(0.0));
    assert!(w.check(now, &SLO_WINDOWS[0], 0.999).is_none());
    // Errors come back: both windows burn.
    for m in 70..75u64 {
        w.record(origin + secs(60 * m), 100, 3);
    }
    let (l, s) = w.check(origin + secs(60 * 74), &SLO_WINDOWS[0], 0.999).unwrap();
    assert!(l >= 14.4 && (s - 30.0).abs() < 1e-9, "{l} {s}");
}

#[test]
fn slo_fast_burn_fires_from_request_totals() {
    let mut rules = RuleSet::new(&settings(), Instant::now());
    let start = t0();
    let mut fired = None;
    for i in 0..40u64 {
        let mut inst = instance("s#0", InstanceState::Healthy, 0);
        // 20 requests per 5 s, 1 in 20 failing: 5 % errors = 50× burn of a 99.9 % objective.
        inst.requests_total = 20 * (i + 1);
        inst.errors_total = i + 1;
        let mut s = server("s", true, vec![inst]);
        s.objective = Some(0.999);
        let got = rules.evaluate(start.after(secs(5 * i)), &[s], &[]);
        if let Some(Transition::Firing(a)) =
            got.iter().find(|t| matches!(t, Transition::Firing(a) if a.name == "SloFastBurn"))
        {
            fired = Some((i * 5, a.clone()));
            break;
        }
    }
    let (t, a) = fired.expect("SloFastBurn fires");
    assert_eq!(t, 0, "20 requests at the first evaluation are enough");
    assert_eq!(a.severity, Severity::Critical);
    assert!(a.annotations["summary"].contains("50.0×"), "{:?}", a.annotations);
}

#[test]
fn user_rules_watch_any_series_of_the_exposition() {
    let text = "# HELP warden_instance_up x\n# TYPE warden_instance_up gauge\n\
        warden_instance_up{server=\"s\",server_instance=\"s#0\"} 0\n\
        warden_instance_up{server=\"s\",server_instance=\"s#1\"} 1\n\
        warden_instance_up{server=\"t\",server_instance=\"t#0\"} 0\n\
        weird{a=\"x\\\"y\\\\z\"} 2.5e0\n\
        warden_uptime_seconds 12\n";
    let series = parse_exposition(text, |_| true);
    assert_eq!(series.len(), 5);
    assert_eq!(series[3].labels["a"], "x\"y\\z");
    assert_eq!(series[4].value, 12.0);

    let mut a = settings();
    a.rules.push(AlertRule {
        name: "Down".into(),
        metric: "warden_instance_up".into(),
        op: CompareOp::Lt,
        threshold: 1.0,
        matchers: [("server".to_owned(), "s".to_owned())].into(),
        for_: secs(10),
        keep_firing_for: Duration::ZERO,
        severity: Severity::Critical,
        labels: [("team".to_owned(), "db".to_owned())].into(),
        summary: None,
    });
    let mut rules = RuleSet::new(&a, Instant::now());
    let mut log = Vec::new();
    for i in 0..4u64 {
        for x in names(&rules.evaluate(t0().after(secs(5 * i)), &[], &series)) {
            log.push(format!("{} {x}", 5 * i));
        }
    }
    assert_eq!(log, vec!["10 +Down s#0"]);
    let f = &rules.firing()[0];
    assert_eq!(f.labels["team"], "db");
    assert_eq!(f.labels["severity"], "critical");
    assert_eq!(
        f.annotations["summary"],
        "warden_instance_up{server=\"s\",server_instance=\"s#0\"} = 0 < 1"
    );

    // Only the watched metrics' samples are read, whole.
    assert!(rules.watches_series());
    assert!(rules.watches("warden_instance_up") && !rules.watches("weird"));
    let watched = parse_exposition(text, |n| rules.watches(n));
    assert_eq!(watched, series[..3].to_vec());
    assert!(!RuleSet::new(&settings(), Instant::now()).watches_series(), "no user rule");
}

fn alert(name: &str, server: &str, instance: Option<&str>, severity: Severity, at: Now) -> Alert {
    let mut l = labels(&[("alertname", name), ("server", server), ("severity", severity.as_str())]);
    if let Some(i) = instance {
        l.insert("server_instance".into(), i.into());
    }
    Alert {
        name: name.into(),
        status: AlertStatus::Firing,
        severity,
        fingerprint: fingerprint(&l),
        labels: l,
        annotations: labels(&[("summary", "x")]),
        value: 1.0,
        starts_at: at.wall,
        ends_at: None,
    }
}

fn resolved(a: &Alert, at: Now) -> Alert {
    Alert { status: AlertStatus::Resolved, ends_at: Some(at.wall), ..a.clone() }
}

fn dispatcher() -> Dispatcher {
    Dispatcher::new(DispatchConfig::from(&AlertSettings::default()))
}

#[test]
fn groups_wait_then_batch_then_repeat_then_resolve_once() {
    let mut d = dispatcher();
    let s = t0();
    let a = alert("InstanceCritical", "s", Some("s#0"), Severity::Warning, s);
    let b = alert("InstanceCritical", "s", Some("s#1"), Severity::Warning, s);
    let other = alert("InstanceCritical", "t", Some("t#0"), Severity::Warning, s);
    // a at 0 s, b at 10 s (same group), other group at 10 s.
    assert!(d.tick(s, &[a.clone()], &[]).is_empty());
    assert!(d.tick(s.after(secs(10)), &[a.clone(), b.clone(), other.clone()], &[]).is_empty());
    let n = d.tick(s.after(secs(30)), &[a.clone(), b.clone(), other.clone()], &[]);
    assert_eq!(n.len(), 1, "only the first group's wait is over: {n:?}");
    assert_eq!(n[0].alerts.len(), 2);
    assert_eq!(n[0].group_labels, labels(&[("alertname", "InstanceCritical"), ("server", "s")]));
    let n = d.tick(s.after(secs(40)), &[a.clone(), b.clone(), other.clone()], &[]);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].group_labels["server"], "t");
    // Nothing changes: nothing until repeat_interval (4 h) after the first send.
    for m in 1..240u64 {
        assert!(
            d.tick(s.after(secs(30 + 60 * m)), &[a.clone(), b.clone(), other.clone()], &[])
                .is_empty(),
            "minute {m}"
        );
    }
    let n = d.tick(s.after(secs(30 + 4 * 3600)), &[a.clone(), b.clone(), other.clone()], &[]);
    assert_eq!(n.len(), 1, "repeat of group s");
    // b resolves: sent at the next group_interval tick, once, as part of the group.
    let later = s.after(secs(30 + 4 * 3600 + 300));
    let rb = resolved(&b, later);
    let n = d.tick(later, &[a.clone(), other.clone()], &[rb.clone()]);
    let g: Vec<_> = n.iter().filter(|n| n.group_labels["server"] == "s").collect();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].status, AlertStatus::Firing);
    let statuses: Vec<_> =
        g[0].alerts.iter().map(|x| (x.labels["server_instance"].clone(), x.status)).collect();
    assert_eq!(
        statuses,
        vec![("s#0".into(), AlertStatus::Firing), ("s#1".into(), AlertStatus::Resolved)]
    );
    let n = d.tick(later.after(secs(300)), &[a.clone(), other.clone()], &[]);
    assert!(n.iter().all(|n| n.group_labels["server"] != "s"), "resolved is sent once: {n:?}");
    // a resolves too: the group's last notification says resolved, and the group is gone.
    let end = later.after(secs(600));
    let n = d.tick(end, &[other.clone()], &[resolved(&a, end)]);
    let g: Vec<_> = n.iter().filter(|n| n.group_labels["server"] == "s").collect();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].status, AlertStatus::Resolved);
}

#[test]
fn an_alert_resolved_before_group_wait_is_never_sent() {
    let mut d = dispatcher();
    let s = t0();
    let a = alert("CrashLoop", "s", Some("s#0"), Severity::Warning, s);
    assert!(d.tick(s, &[a.clone()], &[]).is_empty());
    assert!(d.tick(s.after(secs(10)), &[], &[resolved(&a, s.after(secs(10)))]).is_empty());
    assert!(d.tick(s.after(secs(60)), &[], &[]).is_empty());
}

#[test]
fn silences_mute_until_they_expire_and_inhibition_mutes_instances_of_a_down_group() {
    let mut d = dispatcher();
    let s = t0();
    let a = alert("InstanceCritical", "s", Some("s#0"), Severity::Warning, s);
    d.set_silences(vec![Silence {
        id: "sil-1".into(),
        matchers: vec![
            Matcher::parse("server=s").unwrap(),
            Matcher::parse("alertname!=Other").unwrap(),
        ],
        starts_at: s.wall,
        ends_at: s.wall + chrono::Duration::minutes(10),
        created_by: "op".into(),
        comment: "maintenance".into(),
    }]);
    assert_eq!(d.muted(&a, &[a.clone()], s.wall).as_deref(), Some("silenced by sil-1"));
    for m in 0..10u64 {
        assert!(d.tick(s.after(secs(60 * m)), &[a.clone()], &[]).is_empty());
    }
    // The silence expired at 10 min: group_wait later, the alert is sent.
    assert!(d.tick(s.after(secs(600)), &[a.clone()], &[]).is_empty());
    assert_eq!(d.tick(s.after(secs(630)), &[a.clone()], &[]).len(), 1);

    let mut d = dispatcher();
    let group = alert("ServerGroupUnavailable", "s", None, Severity::Critical, s);
    let elsewhere = alert("InstanceCritical", "t", Some("t#0"), Severity::Warning, s);
    let all = [a.clone(), group.clone(), elsewhere.clone()];
    assert_eq!(d.muted(&a, &all, s.wall).as_deref(), Some("inhibited by ServerGroupUnavailable"));
    assert_eq!(d.muted(&group, &all, s.wall), None);
    assert_eq!(d.muted(&elsewhere, &all, s.wall), None);
    d.tick(s, &all, &[]);
    let n = d.tick(s.after(secs(30)), &all, &[]);
    let sent: Vec<&str> = n
        .iter()
        .flat_map(|n| n.alerts.iter())
        .map(|a| a.labels.get("server_instance").map_or("group", |s| s.as_str()))
        .collect();
    let mut sent = sent;
    sent.sort();
    assert_eq!(sent, vec!["group", "t#0"]);
}

#[test]
fn matchers_parse_and_reject() {
    assert_eq!(
        Matcher::parse("server=search").unwrap(),
        Matcher { name: "server".into(), value: "search".into(), equal: true }
    );
    assert!(!Matcher::parse("severity!=critical").unwrap().equal);
    assert!(Matcher::parse("server").is_err());
    assert!(Matcher::parse("=x").is_err());
}

fn receiver(min: Severity, send_resolved: bool) -> Receiver {
    Receiver {
        name: "hook".into(),
        kind: ReceiverKind::Webhook {
            url: Secret::new("http://127.0.0.1:9/x"),
            display_url: "http://127.0.0.1:9/…".into(),
            headers: Default::default(),
            format: warden_config::WebhookFormat::AlertmanagerWebhook,
        },
        send_resolved,
        min_severity: min,
        timeout: secs(10),
    }
}

#[test]
fn the_webhook_payload_is_alertmanagers_version_4() {
    let s = t0();
    let a = alert("InstanceCritical", "s", Some("s#0"), Severity::Warning, s);
    let b = resolved(
        &alert("InstanceCritical", "s", Some("s#1"), Severity::Warning, s),
        s.after(secs(60)),
    );
    let n = Notification {
        group_key: "{}:{alertname=\"InstanceCritical\",server=\"s\"}".into(),
        group_labels: labels(&[("alertname", "InstanceCritical"), ("server", "s")]),
        status: AlertStatus::Firing,
        alerts: vec![a.clone(), b],
    };
    let v = payload::webhook(&n, "hook", "http://127.0.0.1:7420");
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "hook");
    assert_eq!(v["truncatedAlerts"], 0);
    assert_eq!(v["groupLabels"]["server"], "s");
    assert_eq!(
        v["commonLabels"],
        serde_json::json!({"alertname": "InstanceCritical", "server": "s", "severity": "warning"})
    );
    assert_eq!(v["commonAnnotations"]["summary"], "x");
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["startsAt"], "2026-11-21T10:00:00.000Z");
    assert_eq!(alerts[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alerts[0]["fingerprint"], Value::String(a.fingerprint.clone()));
    assert_eq!(alerts[0]["generatorURL"], "http://127.0.0.1:7420/api/servers/s");
    assert_eq!(alerts[1]["status"], "resolved");
    assert_eq!(alerts[1]["endsAt"], "2026-11-21T10:01:00.000Z");

    // Per receiver: a critical-only receiver gets nothing; one without resolved gets a.
    assert!(payload::for_receiver(&n, &receiver(Severity::Critical, true)).is_none());
    let only = payload::for_receiver(&n, &receiver(Severity::Warning, false)).unwrap();
    assert_eq!(only.alerts, vec![a.clone()]);

    let am = payload::alertmanager(&[a], "http://127.0.0.1:7420", s.wall);
    assert_eq!(am[0]["endsAt"], "2026-11-21T10:04:00.000Z", "firing alerts end 4 min ahead");
    assert_eq!(am[0]["labels"]["alertname"], "InstanceCritical");
    let slack = payload::slack(&n);
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with("*[FIRING:1] InstanceCritical s*"), "{text}");
}

#[test]
fn a_builtin_rule_takes_the_timings_and_severity_the_config_gives() {
    let mut s = settings();
    s.builtin_overrides.insert(
        "InstanceCritical".into(),
        warden_config::BuiltinOverride {
            for_: Some(Duration::from_secs(5)),
            keep_firing_for: None,
            severity: Some(Severity::Critical),
        },
    );
    let rules = RuleSet::new(&s, Instant::now());
    let r = rules.rules().iter().find(|r| r.name == "InstanceCritical").unwrap();
    assert_eq!((r.for_, r.keep_firing_for), (Duration::from_secs(5), Duration::from_secs(120)));
    assert_eq!(r.severity, Severity::Critical);
    let untouched = rules.rules().iter().find(|r| r.name == "CrashLoop").unwrap();
    assert_eq!(untouched.severity, Severity::Warning);
}

#[test]
fn slo_counts_seeded_from_an_earlier_run_count_in_the_windows() {
    let origin = Instant::now();
    let mut w = SloWindows::new(origin);
    // The previous run: 50 minutes at 2 % errors, ending 5 minutes before this origin; given
    // out of order, as rows may come.
    for m in (-55..-5i64).rev() {
        w.seed(m, 100, 2);
    }
    w.seed(-30, 0, 0);
    // This run: 5 minutes at 3 %.
    for m in 0..5u64 {
        w.record(origin + secs(60 * m), 100, 3);
    }
    let now = origin + secs(60 * 4);
    assert_eq!(w.counts(now, SLO_WINDOWS[0].long), (5_500, 115));
    let (long, short) = w.check(now, &SLO_WINDOWS[0], 0.999).expect("the fast burn holds");
    assert!(long > 14.4 && short > 14.4, "{long} {short}");
    let minutes: Vec<i64> = w.buckets().map(|b| b.0).collect();
    assert!(minutes.windows(2).all(|p| p[0] < p[1]), "kept in order: {minutes:?}");

    // Through a rule set: what one run hands out, the next takes back.
    let mut first = RuleSet::new(&settings(), origin);
    first.seed_slo("s", &[(-3, 40, 1), (-2, 40, 1)]);
    let kept = first.slo_minutes(-2);
    assert_eq!(kept, vec![("s".to_owned(), -2, 40, 1)]);
}

#[test]
fn a_reload_keeps_the_alerts_of_kept_rules_and_resolves_those_of_rules_gone() {
    let mut rules = RuleSet::new(&settings(), Instant::now());
    let start = t0();
    let down =
        |t: u64| server("s", false, vec![instance("s#0", InstanceState::Offline, (t / 20) as u32)]);
    let mut fired = Vec::new();
    for i in 0..20u64 {
        fired.extend(names(&rules.evaluate(start.after(secs(i * 5)), &[down(i * 5)], &[])));
    }
    assert!(fired.contains(&"+ServerGroupUnavailable s".to_owned()), "{fired:?}");
    assert!(fired.contains(&"+CrashLoop s#0".to_owned()), "{fired:?}");

    // The same settings: nothing resolves, nothing fires again.
    let at = start.after(secs(100));
    assert!(rules.reconfigure(&settings(), at.wall).is_empty());
    assert!(names(&rules.evaluate(at, &[down(100)], &[])).is_empty(), "no second notification");

    // CrashLoop turned off: its alert resolves at once; the others stay firing.
    let mut off = settings();
    off.disabled_builtin.push("CrashLoop".to_owned());
    let gone = names(&rules.reconfigure(&off, at.wall));
    assert_eq!(gone, ["-CrashLoop s#0"]);
    let firing: Vec<String> = rules.firing().iter().map(|a| a.name.clone()).collect();
    assert!(firing.contains(&"ServerGroupUnavailable".to_owned()), "{firing:?}");
    assert!(names(&rules.evaluate(start.after(secs(105)), &[down(105)], &[])).is_empty());
}
