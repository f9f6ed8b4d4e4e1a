//! The learning rules and the bounds, on hand-made records.

use std::collections::BTreeMap;

use warden_store::{Durations, FailureStats, InstanceSamples, OffenderStats, ToolStats};

use super::*;

fn specs(text: &str) -> Vec<ServerSpec> {
    warden_config::compile(text, &|_| None).expect("a valid test config").config.servers
}

fn failures(by_instance: &[(&str, &str, u64)]) -> FailureStats {
    FailureStats {
        total: by_instance.iter().map(|o| o.2).sum(),
        resolved: 0,
        open: 0,
        time_to_recover: Durations::default(),
        by_class: vec![],
        by_instance: by_instance
            .iter()
            .map(|(server, instance, count)| OffenderStats {
                server: (*server).into(),
                instance: Some((*instance).into()),
                count: *count,
                open: 0,
                downtime_seconds: 0.0,
                by_class: BTreeMap::new(),
            })
            .collect(),
        recoveries: vec![],
        open_incidents: vec![],
    }
}

fn sample(server: &str, instance: &str, samples: u64, p50: f64, p95: f64) -> InstanceSamples {
    InstanceSamples {
        server: server.into(),
        instance: instance.into(),
        samples,
        first_at: None,
        last_at: None,
        up_samples: samples,
        by_status: BTreeMap::new(),
        p50_ms_avg: Some(p50),
        p50_ms_max: Some(p50),
        p95_ms_avg: Some(p95),
        p95_ms_max: Some(p95),
        error_rate_avg: Some(0.0),
        error_rate_max: Some(0.0),
        throughput_avg: Some(1.0),
        throughput_max: Some(1.0),
    }
}

fn tool(server: &str, calls: u64, max_ms: f64) -> ToolStats {
    ToolStats {
        server: server.into(),
        tool: "t".into(),
        calls,
        errors: 0,
        error_rate: 0.0,
        mean_ms: Some(max_ms / 2.0),
        max_ms: Some(max_ms),
        repeats: 0,
    }
}

fn usage(tools: Vec<ToolStats>) -> UsageStats {
    UsageStats { tools, by_hour_of_day: vec![] }
}

fn run(
    specs: &[ServerSpec],
    tuned: &[Tuned],
    samples: &[InstanceSamples],
    usage: &UsageStats,
    failures: &FailureStats,
    probe_timeouts: &[ProbeTimeouts],
) -> Vec<Proposal> {
    learn(&Evidence {
        servers: specs.iter().zip(tuned.iter().cloned()).collect(),
        samples,
        usage,
        failures,
        probe_timeouts,
    })
}

const ONE: &str = r#"{ "mcpServers": { "s": { "command": "x", "timeout": "10s" } } }"#;
const TWO: &str = r#"{ "mcpServers": { "s": { "command": "x", "replicas": 2 } } }"#;

#[test]
fn nothing_is_proposed_for_a_quiet_healthy_server() {
    let s = specs(TWO);
    let samples = [sample("s", "s#0", 100, 5.0, 9.0), sample("s", "s#1", 100, 6.0, 10.0)];
    let p = run(
        &s,
        &[Tuned::default()],
        &samples,
        &usage(vec![tool("s", 50, 200.0)]),
        &failures(&[]),
        &[],
    );
    assert_eq!(p, vec![]);
}

#[test]
fn slow_calls_raise_the_call_timeout_to_twice_the_slowest_within_bounds() {
    let s = specs(ONE);
    // The slowest call took 8.5 s of a 10 s timeout: raise to 17 s.
    let p =
        run(&s, &[Tuned::default()], &[], &usage(vec![tool("s", 5, 8_500.0)]), &failures(&[]), &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].param, p[0].from, p[0].to), (Param::CallTimeout, 10_000.0, 17_000.0));
    // Too few calls to say anything.
    let p =
        run(&s, &[Tuned::default()], &[], &usage(vec![tool("s", 4, 9_900.0)]), &failures(&[]), &[]);
    assert_eq!(p, vec![]);
    // A 30 s call: 2 × is 60 s, capped at 4 × the configured 10 s.
    let p = run(
        &s,
        &[Tuned::default()],
        &[],
        &usage(vec![tool("s", 9, 30_000.0)]),
        &failures(&[]),
        &[],
    );
    assert_eq!(p[0].to, 40_000.0);
    // Already raised to the cap: nothing more.
    let at_cap = Tuned { call_timeout: Some(Duration::from_secs(40)), ..Tuned::default() };
    let p = run(&s, &[at_cap], &[], &usage(vec![tool("s", 9, 39_000.0)]), &failures(&[]), &[]);
    assert_eq!(p, vec![]);
}

#[test]
fn probe_timeouts_double_the_probe_timeout_and_incidents_halve_the_interval() {
    let s = specs(ONE);
    let timeouts = [ProbeTimeouts { server: "s".into(), instance: "s#0".into(), count: 3 }];
    let p =
        run(&s, &[Tuned::default()], &[], &usage(vec![]), &failures(&[("s", "s#0", 3)]), &timeouts);
    let by: BTreeMap<Param, (f64, f64)> = p.iter().map(|p| (p.param, (p.from, p.to))).collect();
    assert_eq!(by[&Param::ProbeTimeout], (2_000.0, 4_000.0));
    assert_eq!(by[&Param::ProbeInterval], (5_000.0, 2_500.0));
    // Two probe timeouts and two incidents: below both thresholds.
    let two = [ProbeTimeouts { server: "s".into(), instance: "s#0".into(), count: 2 }];
    let p = run(&s, &[Tuned::default()], &[], &usage(vec![]), &failures(&[("s", "s#0", 2)]), &two);
    assert_eq!(p, vec![]);
    // The interval stops at a quarter of the configured 5 s.
    let low = Tuned { probe_interval: Some(Duration::from_millis(1_250)), ..Tuned::default() };
    let p = run(&s, &[low], &[], &usage(vec![]), &failures(&[("s", "s#0", 9)]), &[]);
    assert_eq!(p, vec![]);
}

#[test]
fn a_slow_replica_gets_a_lower_weight_and_it_comes_back_when_the_evidence_goes() {
    let s = specs(TWO);
    let slow = [sample("s", "s#0", 100, 10.0, 20.0), sample("s", "s#1", 100, 40.0, 80.0)];
    let p = run(&s, &[Tuned::default()], &slow, &usage(vec![]), &failures(&[]), &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].param, p[0].instance, p[0].to), (Param::Weight, Some(1), 0.25));
    // Too few samples: nothing.
    let few = [sample("s", "s#0", 10, 10.0, 20.0), sample("s", "s#1", 10, 40.0, 80.0)];
    assert_eq!(run(&s, &[Tuned::default()], &few, &usage(vec![]), &failures(&[]), &[]), vec![]);
    // An instance failing while its sibling does not: halved.
    let even = [sample("s", "s#0", 100, 10.0, 20.0), sample("s", "s#1", 100, 11.0, 20.0)];
    let p = run(&s, &[Tuned::default()], &even, &usage(vec![]), &failures(&[("s", "s#1", 2)]), &[]);
    assert_eq!((p[0].instance, p[0].to), (Some(1), 0.5));
    // Weighted down earlier, now as fast as its sibling: back to 1.
    let lowered = Tuned { weights: [(1, 0.25)].into(), ..Tuned::default() };
    let p = run(&s, &[lowered], &even, &usage(vec![]), &failures(&[]), &[]);
    assert_eq!((p[0].instance, p[0].from, p[0].to), (Some(1), 0.25, 1.0));
}

#[test]
fn bounds_hold_the_configured_value_and_stay_safe() {
    let s = &specs(ONE)[0];
    assert_eq!(bounds(Param::CallTimeout, s), (5_000.0, 40_000.0));
    assert_eq!(bounds(Param::ProbeInterval, s), (1_250.0, 20_000.0));
    assert_eq!(bounds(Param::ProbeTimeout, s), (1_000.0, 8_000.0));
    assert_eq!(bounds(Param::Weight, s), (0.1, 1.0));
    // A configured value outside the usual range is itself allowed.
    let odd = &specs(
        r#"{ "mcpServers": { "s": { "command": "x", "health": { "timeout": "30s", "interval": "60s", "hang_timeout": "90s" } } } }"#,
    )[0];
    let (lo, hi) = bounds(Param::ProbeTimeout, odd);
    assert!(lo <= 30_000.0 && hi == 30_000.0, "{lo} {hi}");
}

#[test]
fn setting_the_configured_value_clears_the_override() {
    let s = &specs(ONE)[0];
    let mut t = Tuned::default();
    Param::CallTimeout.set(s, &mut t, None, 20_000.0);
    Param::Weight.set(s, &mut t, Some(1), 0.5);
    assert_eq!(t.call_timeout, Some(Duration::from_secs(20)));
    assert_eq!(t.weight(1), 0.5);
    assert_eq!(Param::CallTimeout.current(s, &t, None), 20_000.0);
    Param::CallTimeout.set(s, &mut t, None, 10_000.0);
    Param::Weight.set(s, &mut t, Some(1), 1.0);
    assert!(t.is_empty(), "{t:?}");
}

#[test]
fn an_integration_is_never_given_a_call_timeout_or_a_weight() {
    let s = specs(r#"{ "integrations": { "db": { "tcp": "127.0.0.1:5432" } } }"#);
    assert!(s[0].is_check());
    let timeouts = [ProbeTimeouts { server: "db".into(), instance: "db#0".into(), count: 5 }];
    let p = run(
        &s,
        &[Tuned::default()],
        &[sample("db", "db#0", 100, 900.0, 1_900.0)],
        &usage(vec![]),
        &failures(&[]),
        &timeouts,
    );
    assert_eq!(p.iter().map(|p| p.param).collect::<Vec<_>>(), vec![Param::ProbeTimeout], "{p:?}");
}
