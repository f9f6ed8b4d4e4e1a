//! End to end, in process: Warden's supervisor against real child processes and real servers,
//! with a real SQLite database. Each test has a hard time limit so a hang fails instead of
//! stalling CI.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use warden_core::{EventKind, FailureClass, InstanceState, RecoveryAction};

const LIMIT: Duration = Duration::from_secs(90);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_is_probed_healthy_with_its_tool_count() {
    limited(async {
        let entry = format!(
            r#"{{ "command": "node", "args": [{}, "stdio"], {FAST_HEALTH} }}"#,
            json_str(&everything_js())
        );
        let mut w = start(config(&[("everything", entry)])).await;
        let v =
            w.wait_state("everything", 0, InstanceState::Healthy, Duration::from_secs(30)).await;
        assert!(v.tools >= 10, "server-everything offers its tools, saw {}", v.tools);
        assert!(v.prompts > 0 && v.resources > 0, "and lists prompts and resources: {v:?}");
        assert!(v.pid.is_some());
        assert!(v.latency_ms.is_some_and(|l| l > 0.0 && l < 1000.0), "{:?}", v.latency_ms);
        assert_eq!(
            v.protocol_version.as_deref(),
            Some("2025-11-25"),
            "a legacy server is spoken to with initialize"
        );
        let (store, _dir) = w.stop().await;
        let kinds: Vec<String> =
            store.events(None, 100).await.unwrap().into_iter().map(|e| e.kind).collect();
        for k in ["process_started", "connected", "catalog_listed", "state_changed"] {
            assert!(kinds.iter().any(|x| x == k), "{k} not recorded: {kinds:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_replaced_and_its_tools_relisted() {
    limited(async {
        let entry = format!(
            r#"{{ "command": "node", "args": [{}, "stdio"], {FAST_HEALTH} }}"#,
            json_str(&everything_js())
        );
        let mut w = start(config(&[("everything", entry)])).await;
        let before =
            w.wait_state("everything", 0, InstanceState::Healthy, Duration::from_secs(30)).await;
        let old_pid = before.pid.unwrap();
        signal(old_pid, Signal::SIGKILL);
        let down = w
            .wait("everything", 0, Duration::from_secs(2), "offline", |v| {
                v.state == InstanceState::Offline
            })
            .await;
        assert_eq!(down.reason.as_ref().unwrap().class, FailureClass::Crash);
        assert_eq!(down.last_exit.as_ref().unwrap().signal, Some(9), "{:?}", down.last_exit);
        let after =
            w.wait_state("everything", 0, InstanceState::Healthy, Duration::from_secs(30)).await;
        assert_ne!(after.pid, Some(old_pid), "a new process");
        assert_eq!(after.restarts, 1);
        assert_eq!(after.tools, before.tools, "the same tools, listed again");
        // server-everything announces list_changed while it is first listed, which earns a
        // second listing; so at least two per session.
        let listings = w.events_named("everything#0", "catalog_listed");
        assert!(
            listings.len() >= 2,
            "listed at start and again after the restart: {}",
            listings.len()
        );
        for l in &listings {
            match &l.kind {
                EventKind::CatalogListed { changed, .. } => {
                    assert!(!changed, "an identical server: no change recorded")
                }
                other => panic!("{other:?}"),
            }
        }
        let (store, _dir) = w.stop().await;
        let failures = store.failures(Some("everything"), 10).await.unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        let f = &failures[0];
        assert_eq!(f.failure_type, "crash");
        assert!(f.resolved);
        assert_eq!(f.recovery_action.as_deref(), Some("restart"));
        assert!(f.resolution_time_seconds.is_some_and(|t| t > 0.0 && t < 30.0), "{f:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_child_is_detected_as_hung_killed_and_replaced() {
    limited(async {
        let mut w = start(config(&[("stuck", misbehave(&[], &format!(", {FAST_HEALTH}")))])).await;
        let before =
            w.wait_state("stuck", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let pid = before.pid.unwrap();
        signal(pid, Signal::SIGSTOP);
        let crit = w.wait_state("stuck", 0, InstanceState::Critical, Duration::from_secs(10)).await;
        assert_eq!(crit.reason.as_ref().unwrap().class, FailureClass::Timeout);
        assert!(alive(pid), "not killed before the hang timeout");
        let down = w.wait_state("stuck", 0, InstanceState::Offline, Duration::from_secs(10)).await;
        assert_eq!(down.reason.as_ref().unwrap().class, FailureClass::Hang);
        assert_eq!(
            down.last_exit.as_ref().and_then(|e| e.signal),
            Some(9),
            "killed with SIGKILL: {:?}",
            down.last_exit
        );
        assert!(!alive(pid), "the hung process is gone");
        let after = w.wait_state("stuck", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        assert_ne!(after.pid, Some(pid));
        assert_eq!(w.events_named("stuck#0", "hang_killed").len(), 1);
        let (store, _dir) = w.stop().await;
        let failures = store.failures(Some("stuck"), 10).await.unwrap();
        let classes: Vec<&str> = failures.iter().map(|f| f.failure_type.as_str()).collect();
        assert!(classes.contains(&"timeout") && classes.contains(&"hang"), "{classes:?}");
        assert!(
            failures
                .iter()
                .all(|f| f.resolved && f.recovery_action.as_deref() == Some("kill_and_restart")),
            "{failures:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_exits_at_once_reaches_failed_within_the_intensity_limit() {
    limited(async {
        let entry =
            misbehave(&["--exit-on-start", "--exit-code", "7"], &format!(", {FAST_RESTART}"));
        let mut w = start(config(&[("broken", entry)])).await;
        let v = w.wait_state("broken", 0, InstanceState::Failed, Duration::from_secs(20)).await;
        assert_eq!(v.restarts, 5, "6 starts: the first and 5 restarts");
        assert_eq!(v.reason.as_ref().unwrap().class, FailureClass::Crash);
        assert!(v.reason.as_ref().unwrap().message.contains("code 7"), "{:?}", v.reason);
        assert!(v.next_retry_at.is_some(), "a probation restart is scheduled");
        assert_eq!(w.events_named("broken#0", "restart_intensity_exceeded").len(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(w.view("broken", 0).state, InstanceState::Failed, "failed is sticky");
        let (store, _dir) = w.stop().await;
        let failures = store.failures(Some("broken"), 10).await.unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            failures[0].recovery_action.as_deref(),
            Some("abandoned"),
            "never recovered: closed as abandoned when Warden stopped"
        );
        assert_eq!(store.events(Some("restart_intensity_exceeded"), 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_server_that_goes_away_and_comes_back_is_reconnected() {
    limited(async {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let spawn = || misbehave_process(&["--http", &addr]);
        let mut server = spawn();
        let entry = format!(r#"{{ "url": "http://{addr}/mcp", {FAST_HEALTH}, {FAST_RESTART} }}"#);
        let mut w = start(config(&[("remote", entry)])).await;
        let v = w.wait_state("remote", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        assert_eq!(v.tools, 5);
        assert_eq!(v.pid, None, "no process of ours");
        server.kill().unwrap();
        server.wait().unwrap();
        let down = w
            .wait("remote", 0, Duration::from_secs(10), "unroutable", |v| !v.state.is_routable())
            .await;
        assert!(
            matches!(
                down.reason.as_ref().map(|r| r.class),
                Some(FailureClass::ConnectionError | FailureClass::Timeout | FailureClass::Crash)
            ),
            "{:?}",
            down.reason
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut server = spawn();
        let back = w.wait_state("remote", 0, InstanceState::Healthy, Duration::from_secs(30)).await;
        assert!(back.restarts >= 1, "reconnected: {back:?}");
        server.kill().unwrap();
        server.wait().unwrap();
        let (store, _dir) = w.stop().await;
        let failures = store.failures(Some("remote"), 10).await.unwrap();
        assert!(!failures.is_empty());
        assert!(
            failures
                .iter()
                .all(|f| f.resolved && f.recovery_action.as_deref() == Some("reconnect")),
            "{failures:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_during_a_slow_start_leaves_no_child() {
    limited(async {
        // A marker no other test uses, to find the child in /proc.
        let entry = misbehave(&["--startup-delay", "47s", "--spawn-child"], "");
        let w = start(config(&[("slow", entry)])).await;
        let find = || -> Vec<u32> {
            descendants(std::process::id())
                .into_iter()
                .filter(|p| {
                    std::fs::read(format!("/proc/{p}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains("47s"))
                        .unwrap_or(false)
                })
                .collect()
        };
        let start = std::time::Instant::now();
        while find().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "the slow child never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pids = find();
        assert_eq!(w.view("slow", 0).state, InstanceState::Starting);
        w.stop().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let alive_now: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
        assert!(alive_now.is_empty(), "a half-started child outlived shutdown: {alive_now:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_stdout_is_dropped_without_harming_the_session() {
    limited(async {
        let entry = misbehave(&["--garbage-every", "100ms"], &format!(", {FAST_HEALTH}"));
        let mut w = start(config(&[
            ("noisy", entry),
            ("quiet", misbehave(&[], &format!(", {FAST_HEALTH}"))),
        ]))
        .await;
        w.wait_state("noisy", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        w.wait_state("quiet", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let v = w.view("noisy", 0);
        assert_eq!(v.state, InstanceState::Healthy, "{v:?}");
        assert_eq!(v.restarts, 0);
        assert_eq!(w.view("quiet", 0).state, InstanceState::Healthy);
        w.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_list_changes_at_run_time_are_relisted_and_recorded() {
    limited(async {
        let entry = misbehave(&["--tools-change-every", "1s"], &format!(", {FAST_HEALTH}"));
        let mut w = start(config(&[("shifty", entry)])).await;
        w.wait("shifty", 0, Duration::from_secs(20), "showing 6 tools", |v| v.tools == 6).await;
        w.wait("shifty", 0, Duration::from_secs(20), "back to 5 tools", |v| v.tools == 5).await;
        let changed: Vec<_> = w
            .events_named("shifty#0", "catalog_listed")
            .into_iter()
            .filter_map(|e| match &e.kind {
                EventKind::CatalogListed { changed: true, added, removed, .. } => {
                    Some((added.clone(), removed.clone()))
                }
                _ => None,
            })
            .collect();
        assert!(changed.iter().any(|(a, _)| a == &["dynamic".to_owned()]), "{changed:?}");
        assert!(changed.iter().any(|(_, r)| r == &["dynamic".to_owned()]), "{changed:?}");
        w.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_supervised_independently() {
    limited(async {
        let entry = misbehave(&[], &format!(r#", "replicas": 2, {FAST_HEALTH}, {FAST_RESTART}"#));
        let mut w = start(config(&[("pair", entry)])).await;
        let a = w.wait_state("pair", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let b = w.wait_state("pair", 1, InstanceState::Healthy, Duration::from_secs(20)).await;
        assert_ne!(a.pid, b.pid);
        signal(a.pid.unwrap(), Signal::SIGKILL);
        w.wait("pair", 0, Duration::from_secs(2), "offline", |v| v.state == InstanceState::Offline)
            .await;
        let overview = w.app.registry().overview();
        assert_eq!(overview.servers[0].status, warden_core::ServerStatus::Degraded);
        assert_eq!(w.view("pair", 1).pid, b.pid, "the other replica is untouched");
        w.wait_state("pair", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let recovered = w.wait_event("pair#0", "recovered", Duration::from_secs(2)).await;
        assert!(matches!(
            recovered[0].kind,
            EventKind::Recovered { action: RecoveryAction::Restart, .. }
        ));
        w.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_server_is_reached_by_fallback_and_reconnected() {
    limited(async {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let spawn = || misbehave_process(&["--sse", &addr]);
        let mut server = spawn();
        // No "type": Warden tries Streamable HTTP, is refused (405), and falls back to SSE.
        let auto = format!(r#"{{ "url": "http://{addr}/sse", {FAST_HEALTH}, {FAST_RESTART} }}"#);
        let explicit = format!(
            r#"{{ "url": "http://{addr}/sse", "type": "sse", {FAST_HEALTH}, {FAST_RESTART} }}"#
        );
        let mut w = start(config(&[("auto", auto), ("explicit", explicit)])).await;
        for name in ["auto", "explicit"] {
            let v = w.wait_state(name, 0, InstanceState::Healthy, Duration::from_secs(20)).await;
            assert_eq!(v.tools, 5, "{name}: {v:?}");
        }
        server.kill().unwrap();
        server.wait().unwrap();
        for name in ["auto", "explicit"] {
            w.wait(name, 0, Duration::from_secs(10), "unroutable", |v| !v.state.is_routable())
                .await;
        }
        let mut server = spawn();
        for name in ["auto", "explicit"] {
            let v = w.wait_state(name, 0, InstanceState::Healthy, Duration::from_secs(30)).await;
            assert!(v.restarts >= 1, "{name} reconnected: {v:?}");
        }
        server.kill().unwrap();
        server.wait().unwrap();
        w.stop().await;
    })
    .await;
}

/// The memory of a stdio server is its whole process group's — the grandchild a wrapper starts
/// counts — sampled off the runtime every metrics interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_memory_counts_its_whole_process_group() {
    limited(async {
        let entry = misbehave(&["--spawn-child"], &format!(", {FAST_HEALTH}"));
        let text = format!(
            r#"{{ "mcpServers": {{ "s": {entry} }}, "warden": {{ "metrics_interval": "1s" }} }}"#
        );
        let mut w = start(warden_config::compile(&text, &|_| None).unwrap().config).await;
        let v = w.wait_state("s", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let leader = v.pid.unwrap();
        let own_kb = std::fs::read_to_string(format!("/proc/{leader}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap();
        let v = w
            .wait("s", 0, Duration::from_secs(10), "an RSS sample above the leader's own", |v| {
                v.rss_bytes.is_some_and(|b| b > own_kb * 1024)
            })
            .await;
        assert!(v.rss_bytes.unwrap() < 4 << 30, "{v:?}");
        w.stop().await;
    })
    .await;
}

/// A graceful stop closes the child's stdin and a server that exits on end of input is let go:
/// no SIGTERM, and no wait for the grace. (The test server used to linger 5 s after end of
/// input — rmcp 3.9 keeps a service up that long while a peer handle lives — so every stop of
/// it ended in SIGTERM and took the whole grace.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_closes_stdin_and_needs_no_signal() {
    limited(async {
        let entry =
            misbehave(&[], &format!(r#", {FAST_HEALTH}, "restart": {{ "stop_grace": "5s" }}"#));
        let mut w = start(config(&[("a", entry)])).await;
        w.wait_state("a", 0, InstanceState::Healthy, Duration::from_secs(30)).await;
        let started = std::time::Instant::now();
        w.app.registry().server("a").unwrap().command(warden_app::Command::Stop, None).await;
        let exited = w.wait_event("a#0", "process_exited", Duration::from_secs(20)).await;
        let took = started.elapsed();
        let EventKind::ProcessExited { exit } = &exited[0].kind else { unreachable!() };
        assert_eq!(exit.signal, None, "it ended by itself on end of input: {exit:?}");
        assert!(took < Duration::from_secs(1), "stopped in {took:?}, not after the 5 s grace");
        w.stop().await;
    })
    .await;
}
