//! End to end: how Warden reaches its servers. A remote server busy with a long call is not
//! taken for a hung one (while a silent one still is); children start with a cleared
//! environment.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use warden_core::{FailureClass, InstanceState};
use warden_upstream::Call;

const LIMIT: Duration = Duration::from_secs(90);

async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("the test finished within its time limit");
}

/// Probes every 500 ms; a probe that times out while calls run counts as "busy" only if the
/// server sent something in the last second; hung after 3 s of silence.
const HEALTH: &str = r#""health": { "interval": "500ms", "timeout": "400ms", "edge_interval": "200ms", "busy_window": "1s", "hang_timeout": "3s" }"#;

/// A misbehaving server over Streamable HTTP, killed when dropped.
struct Remote(std::process::Child);

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn remote(args: &[&str]) -> (Remote, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut all = vec!["--http", &addr];
    all.extend_from_slice(args);
    let child = Remote(misbehave_process(&all));
    (child, format!(r#"{{ "url": "http://{addr}/mcp", {HEALTH}, {FAST_RESTART} }}"#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_streaming_progress_for_a_long_call_is_busy_not_hung() {
    limited(async {
        let (_server, entry) = remote(&["--busy-ignores-probes"]);
        let mut w = start(config(&[("busy", entry)])).await;
        w.wait_state("busy", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let link = w.app.registry().server("busy").unwrap().link(0).unwrap();
        let session = link.session().expect("connected");
        // As the gateway does: the call is in flight on the instance while it runs. 8 s with
        // progress every 100 ms; no ping is answered meanwhile.
        let _in_flight = link.begin_call();
        let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel();
        let mut call = Call::new(
            "tools/call",
            Some(json!({ "name": "sleep", "arguments": { "ms": 8000 } })),
            Duration::from_secs(5),
        );
        call.progress = Some(progress);
        let answer = session.request(call).await.expect("the call completes");
        assert_eq!(answer["content"][0]["text"], "slept 8000 ms", "{answer}");
        assert!(updates.try_recv().is_ok(), "progress was relayed");
        let v = w.view("busy", 0);
        assert_eq!(v.restarts, 0, "never reconnected: {v:?}");
        assert!(w.events_named("busy#0", "hang_killed").is_empty());
        let went_bad: Vec<_> = w
            .events_named("busy#0", "state_changed")
            .into_iter()
            .filter(|e| matches!(&e.kind, warden_core::EventKind::StateChanged { to, .. } if !to.is_routable()))
            .collect();
        assert!(went_bad.is_empty(), "{went_bad:?}");
        w.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_that_answers_nothing_is_still_detected_as_hung() {
    limited(async {
        let (_server, entry) = remote(&["--hang-after", "3s"]);
        let mut w = start(config(&[("silent", entry)])).await;
        w.wait_state("silent", 0, InstanceState::Healthy, Duration::from_secs(20)).await;
        let v = w
            .wait("silent", 0, Duration::from_secs(20), "offline as hung", |v| {
                v.reason.as_ref().is_some_and(|r| r.class == FailureClass::Hang)
            })
            .await;
        assert!(!v.state.is_routable(), "{v:?}");
        w.wait_event("silent#0", "hang_killed", Duration::from_secs(5)).await;
        w.stop().await;
    })
    .await;
}
