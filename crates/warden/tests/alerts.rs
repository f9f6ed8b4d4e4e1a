//! Alerting end to end over real loopback sockets: a SIGKILLed child makes a rule fire; a real
//! webhook receiver gets the firing and then the resolved notification in Alertmanager's
//! webhook format, a command hook gets the same payload on stdin, an unreachable receiver's
//! notification stays in the outbox (store) with its error; silences made through the API mute
//! a firing alert until they are expired.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_app::App;

/// A loopback HTTP server that answers 200 to every POST and keeps (path, JSON body).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    /// Answer 500 to this many requests first (and keep nothing of them).
    fail_first: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        Self::failing(0).await
    }

    async fn failing(n: usize) -> (Self, String) {
        Self::answering(n, Duration::ZERO).await
    }

    /// Answers 200 to every POST, each `delay` after reading it (a request is kept as soon as it
    /// is read).
    async fn slow(delay: Duration) -> (Self, String) {
        Self::answering(0, delay).await
    }

    async fn answering(n: usize, delay: Duration) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let me = Self { fail_first: Arc::new(Mutex::new(n)), ..Self::default() };
        let got = Arc::clone(&me.got);
        let fail = Arc::clone(&me.fail_first);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let got = Arc::clone(&got);
                let fail = Arc::clone(&fail);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then Content-Length bytes of body.
                    let (head_end, len) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let first = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let body = serde_json::from_slice(&buf[head_end..head_end + len])
                        .unwrap_or(Value::Null);
                    let failing = {
                        let mut f = fail.lock().unwrap();
                        let failing = *f > 0;
                        *f = f.saturating_sub(1);
                        failing
                    };
                    let status: &[u8] = if failing {
                        b"HTTP/1.1 500 Internal Server Error\r\n"
                    } else {
                        got.lock().unwrap().push((path, body));
                        b"HTTP/1.1 200 OK\r\n"
                    };
                    tokio::time::sleep(delay).await;
                    let _ = sock.write_all(status).await;
                    let _ = sock.write_all(b"content-length: 0\r\nconnection: close\r\n\r\n").await;
                });
            }
        });
        (me, addr)
    }

    fn bodies(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for a body `pred` accepts.
    async fn wait_for(&self, within: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some((_, b)) = self.bodies().into_iter().find(|(_, b)| pred(b)) {
                return b;
            }
            assert!(
                start.elapsed() < within,
                "no {what} within {within:?}; got {:#?}",
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn start(text: &str) -> (App, tempfile::TempDir, String) {
    listening(config_text(text), None).await
}

async fn get(addr: &str, path: &str) -> Value {
    reqwest::get(format!("http://{addr}{path}")).await.unwrap().json().await.unwrap()
}

/// The server the rules watch: healthy, and down for 3 s after a kill (long enough for
/// 1-second evaluations to see it) before Warden restarts it.
fn victim() -> String {
    misbehave(
        &[],
        &format!(
            r#", {FAST_HEALTH}, "restart": {{ "backoff": {{ "initial": "3s", "jitter": 0 }} }}"#
        ),
    )
}

/// A receiver that takes the connection and the request, and never answers: its address.
async fn hang() -> std::net::SocketAddr {
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = hang.accept().await {
            held.push(sock);
        }
    });
    addr
}

/// Warden with two receivers for the victim's crash, "hook" and "hang" (which never answers,
/// for `timeout`): the victim is killed, and the hook has heard "firing".
async fn victim_down_told_to_hook_and_hang(
    timeout: &str,
) -> (Receiver, App, tempfile::TempDir, String) {
    let (hook, hook_addr) = Receiver::start().await;
    let hang_addr = hang().await;
    let webhooks = format!(
        r#"[ {{ "name": "hang", "url": "http://{hang_addr}/h", "timeout": "{timeout}" }},
             {{ "name": "hook", "url": "http://{hook_addr}/hook" }} ]"#
    );
    // Both receivers' firing notifications are attempted; the hook's is answered.
    let (app, db, addr) = victim_killed(&webhooks, &hook).await;
    (hook, app, db, addr)
}

/// Warden whose rule VictimDown (`for` 0 s) notifies `webhooks` (a JSON list): the victim is
/// killed once healthy, and `told` (one of them) has heard "firing".
async fn victim_killed(webhooks: &str, told: &Receiver) -> (App, tempfile::TempDir, String) {
    let text = format!(
        r#"{{ "mcpServers": {{ "victim": {victim} }},
             "warden": {{ "alerts": {{
                "evaluation_interval": "1s", "group_wait": "1s", "group_interval": "1s",
                "webhooks": {webhooks},
                "rules": [ {{ "alert": "VictimDown", "metric": "up", "op": "<", "threshold": 1,
                             "match": {{ "server": "victim" }}, "for": "0s",
                             "severity": "critical" }} ] }} }} }}"#,
        victim = victim(),
    );
    let (app, db, addr) = start(&text).await;
    let pid = healthy_pid(&app, "victim").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(pid, Signal::SIGKILL);
    told.wait_for(Duration::from_secs(20), "firing notification", |b| b["status"] == "firing")
        .await;
    (app, db, addr)
}

fn alerts_of(body: &Value) -> Vec<Value> {
    body["alerts"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_notified_firing_then_resolved_in_alertmanager_format() {
    let (hook, hook_addr) = Receiver::start().await;
    // Fails twice, then accepts: delivery is retried with backoff.
    let (flaky, flaky_addr) = Receiver::failing(2).await;
    let dir = tempfile::tempdir().unwrap();
    let hook_file = dir.path().join("hook.jsonl");
    // A closed port: its notifications must stay in the outbox, never lost.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let text = format!(
        r#"{{ "mcpServers": {{ "victim": {victim} }},
             "warden": {{ "alerts": {{
                "evaluation_interval": "1s", "group_wait": "1s", "group_interval": "1s",
                "webhooks": [ {{ "name": "hook", "url": "http://{hook_addr}/hook" }},
                              {{ "name": "dead", "url": "http://{dead}/x", "timeout": "1s" }},
                              {{ "name": "flaky", "url": "http://{flaky_addr}/f" }} ],
                "commands": [ {{ "name": "tee", "command": "tee", "args": ["-a", {file}] }} ],
                "rules": [ {{ "alert": "VictimDown", "metric": "up", "op": "<", "threshold": 1,
                             "match": {{ "server": "victim" }}, "for": "0s",
                             "severity": "critical", "labels": {{ "team": "ops" }} }} ] }} }} }}"#,
        victim = victim(),
        file = json_str(&hook_file.display().to_string()),
    );
    let (app, _db, addr) = start(&text).await;
    let pid = healthy_pid(&app, "victim").await;
    // Let an evaluation see it healthy, so "down" starts from the kill. (While it was starting
    // the rule held too, but resolved inside group_wait: nothing was sent for that.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut events = app.bus().subscribe();
    assert!(hook.bodies().is_empty(), "nothing fires while healthy: {:#?}", hook.bodies());

    signal(pid, Signal::SIGKILL);
    let firing = hook
        .wait_for(Duration::from_secs(20), "firing notification", |b| b["status"] == "firing")
        .await;
    // Alertmanager's webhook payload, version 4.
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["receiver"], "hook");
    assert_eq!(firing["truncatedAlerts"], 0);
    assert_eq!(
        firing["groupLabels"],
        serde_json::json!({"alertname": "VictimDown", "server": "victim"})
    );
    assert!(firing["groupKey"].as_str().unwrap().contains("VictimDown"));
    assert!(firing["externalURL"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    let a = &alerts_of(&firing)[0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["alertname"], "VictimDown");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["team"], "ops");
    assert_eq!(a["labels"]["server_instance"], "victim#0");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert!(chrono::DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap()).is_ok());
    assert!(a["annotations"]["summary"].as_str().unwrap().contains("up{"), "{a}");
    assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);

    // Warden restarts the victim; the rule stops holding; the resolved notification follows.
    let resolved = hook
        .wait_for(Duration::from_secs(30), "resolved notification", |b| b["status"] == "resolved")
        .await;
    let r = &alerts_of(&resolved)[0];
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["fingerprint"], a["fingerprint"], "the same alert resolves");
    let ends = chrono::DateTime::parse_from_rfc3339(r["endsAt"].as_str().unwrap()).unwrap();
    let starts = chrono::DateTime::parse_from_rfc3339(r["startsAt"].as_str().unwrap()).unwrap();
    assert!(ends > starts);
    assert!(hook.bodies().iter().all(|(path, _)| path == "/hook"));
    // The flaky receiver refused the first two attempts and got both notifications anyway.
    flaky
        .wait_for(Duration::from_secs(20), "retried resolved notification", |b| {
            b["status"] == "resolved"
        })
        .await;
    assert!(flaky.bodies().iter().any(|(_, b)| b["status"] == "firing"));

    // The command hook got the same payloads on stdin (tee appends them to the file).
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&hook_file).unwrap_or_default();
        if text.contains("\"resolved\"") {
            assert!(text.contains("\"firing\"") && text.contains("VictimDown"), "{text}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "hook file: {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The live stream carried both transitions.
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.kind.name().starts_with("alert_") {
            kinds.push(e.kind.name());
        }
    }
    assert_eq!(kinds, vec!["alert_firing", "alert_resolved"]);

    // The API: history from the store; the dead receiver's notifications wait in the outbox
    // with the reason, and the store keeps them as pending.
    let history = get(&addr, "/api/alerts/history?since=10m").await;
    let rows = history["alerts"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["fingerprint"] == a["fingerprint"] && r["starts_at"].as_str() > Some(""))
        .unwrap();
    assert_eq!(row["name"], "VictimDown");
    assert_eq!(row["severity"], "critical");
    assert_eq!(row["instance"], "victim#0");
    assert!(rows.iter().all(|r| r["ends_at"].is_string()), "all resolved in the store: {history}");
    let view = get(&addr, "/api/alerts").await;
    let undelivered = view["notifications"]["undelivered"].as_array().unwrap();
    assert!(!undelivered.is_empty(), "{view}");
    assert!(undelivered.iter().all(|o| o["receiver"] == "dead"), "{view}");
    assert!(view["notifications"]["failed_attempts"].as_u64() >= Some(3), "2 flaky + dead: {view}");
    assert!(
        undelivered.iter().any(|o| o["attempts"].as_u64() >= Some(1)
            && o["last_error"].as_str().is_some_and(|e| e.contains("cannot connect"))),
        "{view}"
    );
    assert!(
        view["notifications"]["delivered"].as_u64() >= Some(6),
        "hook, flaky, tee, twice: {view}"
    );
    let pending = get(&addr, "/api/alerts/notifications?state=pending").await;
    let pending = pending["notifications"].as_array().unwrap();
    assert!(!pending.is_empty() && pending.iter().all(|n| n["receiver"] == "dead"));
    assert_eq!(pending[0]["payload"]["version"], "4", "the exact body is kept for retries");
    let receivers = view["receivers"].as_array().unwrap();
    assert!(
        receivers.iter().all(|r| !r["target"].as_str().unwrap().contains("/hook")),
        "receiver URLs are shown without their path: {receivers:?}"
    );
    let metrics =
        reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("warden_alert_notifications_delivered_total"), "{metrics}");
    assert!(metrics.contains("warden_alert_notifications_undelivered "), "{metrics}");
    let bad =
        reqwest::get(format!("http://{addr}/api/alerts/history?since=yesterday")).await.unwrap();
    assert_eq!(bad.status(), 400);
    app.shutdown().await;
}

/// A notification whose attempt is under way is still undelivered: the API and the metrics
/// show it for the whole attempt (they once lost it from the moment it was taken from the
/// outbox until its attempt ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_being_sent_is_shown_undelivered() {
    let (_hook, app, _db, addr) = victim_down_told_to_hook_and_hang("20s").await;
    // The hang receiver's attempt runs for 20 s: for the next 2 s it is undelivered throughout.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let view = get(&addr, "/api/alerts").await;
        let undelivered = view["notifications"]["undelivered"].as_array().unwrap();
        assert!(
            undelivered.iter().any(|o| o["receiver"] == "hang" && o["status"] == "firing"),
            "the notification being sent is undelivered: {view}"
        );
        let metrics =
            reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix("warden_alert_notifications_undelivered "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(count >= Some(1.0), "undelivered in the metrics: {count:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.shutdown().await;
}

/// A receiver that takes the request and never answers holds up no other: while its first
/// attempt runs (a minute), the other receiver hears "firing", is counted delivered, and then
/// hears "resolved".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_holds_up_no_other() {
    let (hook, app, _db, addr) = victim_down_told_to_hook_and_hang("60s").await;
    // Counted as soon as its own attempt ends.
    let start = Instant::now();
    loop {
        let view = get(&addr, "/api/alerts").await;
        if view["notifications"]["delivered"].as_u64() >= Some(1) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the hook's is not counted: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The victim is restarted (3 s backoff): the hook hears it resolved, well inside the hang
    // receiver's minute.
    hook.wait_for(Duration::from_secs(30), "resolved notification", |b| b["status"] == "resolved")
        .await;
    let view = get(&addr, "/api/alerts").await;
    let undelivered = view["notifications"]["undelivered"].as_array().unwrap();
    assert!(
        undelivered.iter().any(|o| o["receiver"] == "hang" && o["status"] == "firing"),
        "the hang receiver's attempt is still under way: {view}"
    );
    app.shutdown().await;
}

/// A notification whose attempt is under way when Warden stops is recorded as it ends (within
/// shutdown's wait for the alerting tasks): the next start on the same database does not send
/// it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_under_way_at_shutdown_is_recorded_and_not_sent_again() {
    let (slow, slow_addr) = Receiver::slow(Duration::from_secs(2)).await;
    let webhook = format!(r#"{{ "name": "slow", "url": "http://{slow_addr}/s" }}"#);
    // The request has arrived; its answer comes 2 s later, while Warden stops.
    let (app, dir, _) = victim_killed(&format!("[ {webhook} ]"), &slow).await;
    app.shutdown().await;
    // Again, with the receiver and nothing that could raise a new alert.
    let quiet = format!(
        r#"{{ "mcpServers": {{}}, "warden": {{ "alerts": {{ "webhooks": [ {webhook} ] }} }} }}"#
    );
    let again = start_in(config_text(&quiet), dir.path(), false, None).await;
    // What the store left pending would be sent at once (it is due): nothing is.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let firing = slow.bodies().iter().filter(|(_, b)| b["status"] == "firing").count();
    assert_eq!(firing, 1, "the firing notification was sent again: {:#?}", slow.bodies());
    again.shutdown().await;
}

/// A user rule on a series of `/metrics` (not one of the per-instance signals) fires with the
/// series' labels: the evaluation reads the exposition's samples of the metrics rules watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_rule_watches_a_series_of_the_exposition() {
    let text = format!(
        r#"{{ "mcpServers": {{ "calm": {calm} }},
             "warden": {{ "alerts": {{ "evaluation_interval": "1s",
                "rules": [ {{ "alert": "Probed", "metric": "warden_probe_duration_seconds_count",
                              "op": ">=", "threshold": 1, "matchers": {{ "server": "calm" }} }} ] }} }} }}"#,
        calm = misbehave(&[], &format!(", {FAST_HEALTH}")),
    );
    let (app, _db, addr) = start(&text).await;
    healthy_pid(&app, "calm").await;
    let start = Instant::now();
    loop {
        let view = get(&addr, "/api/alerts").await;
        let fired =
            view["firing"].as_array().unwrap().iter().chain(view["pending"].as_array().unwrap());
        if let Some(a) = fired.clone().find(|a| a["labels"]["alertname"] == "Probed") {
            assert_eq!(a["labels"]["server_instance"], "calm#0", "{a}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the rule never held: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_mutes_a_firing_alert_until_it_is_expired() {
    let (hook, hook_addr) = Receiver::start().await;
    let text = format!(
        r#"{{ "mcpServers": {{ "calm": {calm} }},
             "warden": {{ "alerts": {{
                "evaluation_interval": "1s", "group_wait": "3s", "group_interval": "1s",
                "webhooks": [ {{ "url": "http://{hook_addr}/h" }} ],
                "rules": [ {{ "alert": "AlwaysUp", "metric": "up", "op": ">=", "threshold": 1 }} ] }} }} }}"#,
        calm = misbehave(&[], &format!(", {FAST_HEALTH}")),
    );
    let (app, _db, addr) = start(&text).await;
    let client = reqwest::Client::new();
    // Bad silences are refused, naming the field.
    for (body, field) in [
        (serde_json::json!({"duration": "1h"}), "matchers"),
        (serde_json::json!({"matchers": ["alertname"], "duration": "1h"}), "matchers[0]"),
        (serde_json::json!({"matchers": ["alertname=AlwaysUp"]}), "duration"),
        (serde_json::json!({"matchers": ["alertname=AlwaysUp"], "duration": "soon"}), "duration"),
    ] {
        let r =
            client.post(format!("http://{addr}/api/silences")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"]["message"].as_str().unwrap().starts_with(field), "{e}");
    }
    let r = client
        .post(format!("http://{addr}/api/silences"))
        .json(&serde_json::json!({"matchers": ["alertname=AlwaysUp", "server=calm"], "duration": "1h", "comment": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let silence: Value = r.json().await.unwrap();
    let id = silence["id"].as_str().unwrap().to_owned();

    healthy_pid(&app, "calm").await;
    // Firing, but muted: nothing is sent.
    let start = Instant::now();
    loop {
        let view = get(&addr, "/api/alerts").await;
        let firing = view["firing"].as_array().unwrap();
        if firing.first().is_some_and(|a| a["muted"] == format!("silenced by {id}")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never fired muted: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(hook.bodies().is_empty(), "a silenced alert is not sent: {:#?}", hook.bodies());
    let listed = get(&addr, "/api/silences").await;
    assert_eq!(listed["silences"][0]["id"], id.as_str());

    let r = client
        .delete(format!("http://{addr}/api/silences/{id}"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .delete(format!("http://{addr}/api/silences/{id}"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an expired silence cannot be expired again");
    let sent = hook
        .wait_for(Duration::from_secs(10), "notification after the silence", |b| {
            b["status"] == "firing"
        })
        .await;
    assert_eq!(alerts_of(&sent)[0]["labels"]["alertname"], "AlwaysUp");
    assert!(get(&addr, "/api/silences").await["silences"].as_array().unwrap().is_empty());

    // The CLI: `warden alerts` exits 1 while something fires; `warden silence` adds, lists
    // and expires.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(warden())
            .args(args)
            .env("WARDEN_URL", format!("http://{addr}"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = tokio::task::block_in_place(|| cli(&["alerts"]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FIRING") && out.contains("AlwaysUp") && out.contains("calm#0"), "{out}");
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(&["silence", "add", "server=calm", "--duration", "30m", "-c", "deploy"])
    });
    assert_eq!(code, Some(0), "{out}{err}");
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    let (_, out, _) = tokio::task::block_in_place(|| cli(&["silence", "list"]));
    assert!(out.contains(&id) && out.contains("server=calm") && out.contains("deploy"), "{out}");
    let (code, _, err) = tokio::task::block_in_place(|| cli(&["silence", "add", "calm"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("matchers[0]"), "{err}");
    let (code, out, _) = tokio::task::block_in_place(|| cli(&["silence", "expire", &id]));
    assert_eq!(code, Some(0), "{out}");
    let (_, out, _) = tokio::task::block_in_place(|| cli(&["silence", "list"]));
    assert!(out.contains("no active silences"), "{out}");
    app.shutdown().await;
}

/// Alertmanager itself (Debian package prometheus-alertmanager; `.ci/run` installs it).
fn alertmanager_bin() -> String {
    for name in ["prometheus-alertmanager", "alertmanager"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.exists()));
        if let Some(Some(path)) = found {
            return path.display().to_string();
        }
    }
    panic!("alertmanager is missing: install the Debian package prometheus-alertmanager (.ci/run does)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_itself_accepts_and_resolves_wardens_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let am_url = format!("http://127.0.0.1:{port}");
    let mut am = tokio::process::Command::new(alertmanager_bin())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("alertmanager starts");
    let began = Instant::now();
    while reqwest::get(format!("{am_url}/-/ready")).await.map(|r| r.status().as_u16()).ok()
        != Some(200)
    {
        assert!(began.elapsed() < Duration::from_secs(30), "alertmanager never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let text = format!(
        r#"{{ "mcpServers": {{ "calm": {calm} }},
             "warden": {{ "alerts": {{ "evaluation_interval": "1s",
                "webhooks": [ {{ "url": "{am_url}", "format": "alertmanager" }} ],
                "rules": [ {{ "alert": "CalmIsUp", "metric": "up", "op": ">=", "threshold": 1,
                             "labels": {{ "team": "ops" }} }} ] }} }} }}"#,
        calm = misbehave(&[], &format!(", {FAST_HEALTH}")),
    );
    let (app, _db, addr) = start(&text).await;
    healthy_pid(&app, "calm").await;
    let am_alerts = || async {
        let v: Value =
            reqwest::get(format!("{am_url}/api/v2/alerts")).await.unwrap().json().await.unwrap();
        v.as_array().cloned().unwrap_or_default()
    };
    let start = Instant::now();
    let got = loop {
        let list = am_alerts().await;
        if let Some(a) = list.iter().find(|a| a["labels"]["alertname"] == "CalmIsUp") {
            break a.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "alertmanager has no CalmIsUp: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got["labels"]["server"], "calm");
    assert_eq!(got["labels"]["server_instance"], "calm#0");
    assert_eq!(got["labels"]["severity"], "warning");
    assert_eq!(got["labels"]["team"], "ops");
    assert_eq!(got["status"]["state"], "active");
    assert!(got["annotations"]["summary"].as_str().unwrap().contains("up{"), "{got}");
    assert!(got["generatorURL"].as_str().unwrap().ends_with("/api/servers/calm"), "{got}");

    // Stopping the server ends the condition: Warden sends the resolution, and Alertmanager
    // no longer lists the alert as active.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/servers/calm/stop"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let start = Instant::now();
    loop {
        let list = am_alerts().await;
        if !list.iter().any(|a| a["labels"]["alertname"] == "CalmIsUp") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still active in alertmanager: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.shutdown().await;
    let _ = am.kill().await;
}

/// The misbehaving server, its latency climbing 50 ms a second from 30 s on (calls, with a 2 s
/// timeout, start failing about 70 s after it starts); `extra` adds keys.
fn ramp_server(extra: &str) -> String {
    misbehave(
        &[
            "--latency",
            "20ms",
            "--latency-jitter",
            "10ms",
            "--ramp-after",
            "30s",
            "--ramp-ms-per-s",
            "50",
        ],
        &format!(
            r#", "timeout": "2s", "health": {{ "interval": "500ms", "timeout": "5s" }}{extra}"#
        ),
    )
}

/// An MCP client calling `echo` on `/servers/{server}/mcp`.
struct Echo(rmcp::service::RunningService<rmcp::RoleClient, ()>);

impl Echo {
    async fn connect(addr: &str, server: &str) -> Self {
        use rmcp::transport::streamable_http_client::{
            StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
        };
        use rmcp::ServiceExt;
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(format!(
                "http://{addr}/servers/{server}/mcp"
            )),
        );
        Self(().serve(transport).await.expect("the client connects"))
    }

    async fn call(&self) -> Result<rmcp::model::CallToolResult, rmcp::ServiceError> {
        let args = serde_json::json!({"text": "x"}).as_object().unwrap().clone();
        let p = rmcp::model::CallToolRequestParams::new("echo").with_arguments(args);
        self.0.peer().call_tool(p).await
    }
}

/// The misbehaving server's latency climbs 50 ms a second from 30 s on: calls (timeout 2 s)
/// start failing about 70 s after it starts. PredictedFailure must be notified before the
/// first call fails, and the instance must say why in its view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the lead, for whoever reads the test log
async fn a_latency_ramp_is_predicted_before_calls_time_out() {
    let (hook, hook_addr) = Receiver::start().await;
    let ramp = ramp_server("");
    let text = format!(
        r#"{{ "mcpServers": {{ "ramp": {ramp} }},
             "warden": {{ "prediction": {{ "warmup": "20s" }},
                          "alerts": {{ "evaluation_interval": "1s", "group_wait": "0s",
                                       "webhooks": [ {{ "url": "http://{hook_addr}/p" }} ] }} }} }}"#
    );
    let started = Instant::now();
    let (app, _db, addr) = start(&text).await;
    healthy_pid(&app, "ramp").await;

    // Calls every 200 ms until one fails or takes the whole timeout.
    let client = Echo::connect(&addr, "ramp").await;
    let caller = tokio::spawn(async move {
        loop {
            let sent = Instant::now();
            let r = client.call().await;
            if r.is_err() || sent.elapsed() >= Duration::from_secs(2) {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let predicted = hook
        .wait_for(Duration::from_secs(120), "PredictedFailure", |b| {
            alerts_of(b)
                .iter()
                .any(|a| a["labels"]["alertname"] == "PredictedFailure" && a["status"] == "firing")
        })
        .await;
    let predicted_at = Instant::now();
    let view = get(&addr, "/api/servers/ramp").await;
    let first_failure =
        tokio::time::timeout(Duration::from_secs(90), caller).await.unwrap().unwrap();
    let a = alerts_of(&predicted)
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "PredictedFailure")
        .unwrap();
    assert_eq!(a["labels"]["server_instance"], "ramp#0");
    assert_eq!(a["labels"]["signal"], "latency");
    let lead = first_failure.saturating_duration_since(predicted_at);
    assert!(
        predicted_at < first_failure,
        "predicted {:?} after start, but a call failed at {:?}",
        predicted_at - started,
        first_failure - started
    );
    eprintln!(
        "predicted at {:.1} s, first failed call at {:.1} s: lead {:.1} s; {}",
        (predicted_at - started).as_secs_f64(),
        (first_failure - started).as_secs_f64(),
        lead.as_secs_f64(),
        a["annotations"]["summary"]
    );
    let inst = &view["instances"][0];
    assert_eq!(inst["prediction"]["predicted"]["signal"], "latency", "{inst}");
    assert_eq!(inst["draining"], true, "{inst}");
    // The drift or the forecast holds the instance in warning, saying why.
    assert_eq!(inst["state"], "warning", "{inst}");
    let why = inst["reason"]["message"].as_str().unwrap_or("");
    assert!(why.starts_with("latency "), "{inst}");
    app.shutdown().await;
}

/// The same ramp on a server with `"standby": true`: when the failure is predicted, Warden
/// starts the standby and sends new calls to it, so no call fails although the first instance
/// goes on slowing down past the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predicted_failure_starts_the_standby_and_no_call_fails() {
    let ramp = ramp_server(r#", "standby": true"#);
    let text = format!(
        r#"{{ "mcpServers": {{ "ramp": {ramp} }}, "warden": {{ "prediction": {{ "warmup": "20s" }} }} }}"#
    );
    let started = Instant::now();
    let (app, _db, addr) = start(&text).await;
    let mut events = app.bus().subscribe();
    healthy_pid(&app, "ramp").await;
    // In reserve: stopped, and the server is healthy all the same.
    let view = get(&addr, "/api/servers/ramp").await;
    assert_eq!(view["status"], "healthy", "{view}");
    assert_eq!(view["instances"][1]["standby"], true);
    assert_eq!(view["instances"][1]["state"], "stopped");

    let client = Echo::connect(&addr, "ramp").await;
    // Past the moment the first instance's calls time out (about 70 s after it started).
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(85) {
        let sent = Instant::now();
        let r = client.call().await;
        let took = sent.elapsed();
        slowest = slowest.max(took);
        assert!(
            r.is_ok() && took < Duration::from_secs(2),
            "a call failed or timed out at {:?}: {r:?}",
            sent - started
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view = get(&addr, "/api/servers/ramp").await;
    assert_eq!(view["instances"][1]["state"], "healthy", "{view}");
    assert_eq!(view["instances"][0]["draining"], true, "{view}");
    let mut started_standby = false;
    while let Ok(e) = events.try_recv() {
        if let warden_core::EventKind::OperatorAction { action } = &e.kind {
            started_standby |= action.starts_with("standby started: ramp#0");
        }
    }
    assert!(started_standby, "no standby event");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    app.shutdown().await;
}

/// Burn-rate windows outlive a restart: a server whose every call fails burns its 99.9 %
/// budget; Warden is stopped and started again on the same database, and `SloFastBurn` fires
/// at once from the counts kept in `slo_minutes` — nothing fails in the second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_burn_counts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = misbehave(
        &["--error-rate", "1"],
        &format!(r#", {FAST_HEALTH}, "objective": {{ "availability": 99.9 }}"#),
    );
    let text = format!(
        r#"{{ "mcpServers": {{ "burn": {server} }},
             "warden": {{ "alerts": {{ "evaluation_interval": "1s" }} }} }}"#
    );
    let boot = || async {
        let app = start_in(config_text(&text), dir.path(), true, None).await;
        healthy_pid(&app, "burn").await;
        let addr = app.http_addr().unwrap().to_string();
        (app, addr)
    };
    let firing = |v: &Value| {
        v["firing"].as_array().is_some_and(|a| a.iter().any(|x| x["name"] == "SloFastBurn"))
    };
    let (app, addr) = boot().await;
    let client = Echo::connect(&addr, "burn").await;
    for _ in 0..10 {
        assert!(client.call().await.is_err(), "every call fails (--error-rate 1)");
    }
    let start = Instant::now();
    while !firing(&get(&addr, "/api/alerts").await) {
        assert!(start.elapsed() < Duration::from_secs(20), "SloFastBurn did not fire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(client);
    app.shutdown().await;

    let (app, addr) = boot().await;
    let start = Instant::now();
    loop {
        let v = get(&addr, "/api/alerts").await;
        if firing(&v) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not restored: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.shutdown().await;
}

/// Prediction is not blind after Warden restarts: the baselines a server's instance learnt are
/// kept in the store, so after a restart (here with a warm-up far longer than the test) the same
/// server is watched from its first probe, and a ramp from its very start is predicted before
/// any call times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_warden_restarts_a_servers_history_arms_prediction_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let boot = |server: String, warmup: &'static str| {
        let text = format!(
            r#"{{ "mcpServers": {{ "ramp": {server} }},
                 "warden": {{ "prediction": {{ "warmup": "{warmup}" }} }} }}"#
        );
        let dir = dir.path();
        async move {
            let app = start_in(config_text(&text), dir, true, None).await;
            healthy_pid(&app, "ramp").await;
            app
        }
    };
    let status = |app: &App| app.registry().server("ramp").unwrap().views()[0].predictor;
    let extra = r#", "timeout": "2s", "health": { "interval": "500ms", "timeout": "5s" }"#;

    // A steady run long enough to learn the server's normal from its probes.
    let steady = misbehave(&["--latency", "20ms", "--latency-jitter", "10ms"], extra);
    let app = boot(steady, "20s").await;
    let start = Instant::now();
    while status(&app) != Some(warden_supervisor::PredictorStatus { armed: true, seeded: false }) {
        assert!(start.elapsed() < Duration::from_secs(60), "not armed: {:?}", status(&app));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The instance publishes on its next read-out (every 2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.shutdown().await;

    // Restarted, with a 10-minute warm-up: the server's history arms it at once.
    let ramp = misbehave(
        &[
            "--latency",
            "20ms",
            "--latency-jitter",
            "10ms",
            "--ramp-after",
            "3s",
            "--ramp-ms-per-s",
            "50",
        ],
        extra,
    );
    let started = Instant::now();
    let app = boot(ramp, "10m").await;
    assert_eq!(
        status(&app),
        Some(warden_supervisor::PredictorStatus { armed: true, seeded: true }),
        "armed from the store's history"
    );
    let addr = app.http_addr().unwrap().to_string();
    let client = Echo::connect(&addr, "ramp").await;
    let predicted = loop {
        let sent = Instant::now();
        let r = client.call().await;
        let view = app.registry().server("ramp").unwrap().views()[0].clone();
        if let Some(p) = view.prediction.as_ref().and_then(|a| a.predicted.as_ref()) {
            break *p;
        }
        assert!(
            r.is_ok() && sent.elapsed() < Duration::from_secs(2),
            "a call failed {:?} after start and nothing was predicted: {view:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(90), "nothing predicted: {view:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(serde_json::to_value(predicted).unwrap()["signal"], "latency");
    app.shutdown().await;
}

/// PagerDuty's Events API v2 (seed 002's critical channel): a firing group is one `trigger`
/// event with the routing key, a dedup key, and a summary, source and severity; its resolution
/// a `resolve` with the same dedup key. The routing key is added at delivery and never stored.
/// An `info` alert reaches only a receiver whose `min_severity` is `info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_gets_events_v2_and_info_alerts_reach_only_info_receivers() {
    let (pd, pd_addr) = Receiver::start().await;
    let (info, info_addr) = Receiver::start().await;
    let key = "R0UTING-key-0123456789abcdef";
    let text = format!(
        r#"{{ "mcpServers": {{ "victim": {victim} }},
             "warden": {{ "alerts": {{
                "evaluation_interval": "1s", "group_wait": "1s", "group_interval": "1s",
                "pagerduty": [ {{ "name": "pd", "routing_key": "{key}",
                                  "url": "http://{pd_addr}/v2/enqueue" }} ],
                "webhooks": [ {{ "name": "notes", "url": "http://{info_addr}/info", "min_severity": "info" }} ],
                "rules": [ {{ "alert": "VictimDown", "metric": "up", "op": "<", "threshold": 1,
                             "match": {{ "server": "victim" }}, "for": "0s", "severity": "critical" }},
                           {{ "alert": "VictimNote", "metric": "up", "op": "<", "threshold": 1,
                             "match": {{ "server": "victim" }}, "for": "0s", "severity": "info" }} ] }} }} }}"#,
        victim = victim(),
    );
    let (app, _db, addr) = start(&text).await;
    let pid = healthy_pid(&app, "victim").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(pid, Signal::SIGKILL);
    let trigger = pd
        .wait_for(Duration::from_secs(20), "a trigger event", |b| b["event_action"] == "trigger")
        .await;
    assert_eq!(trigger["routing_key"], key);
    assert!(trigger["dedup_key"].as_str().unwrap().starts_with("warden-"));
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "victim");
    assert!(trigger["payload"]["summary"].as_str().unwrap().contains("up{"), "{trigger}");
    assert!(trigger["payload"]["timestamp"].is_string());
    let alerts = trigger["payload"]["custom_details"]["alerts"].as_array().unwrap();
    assert!(
        alerts.iter().all(|a| a["alert"] == "VictimDown"),
        "info stays off PagerDuty: {trigger}"
    );
    let resolve = pd
        .wait_for(Duration::from_secs(30), "a resolve event", |b| b["event_action"] == "resolve")
        .await;
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert!(pd.bodies().iter().all(|(path, _)| path == "/v2/enqueue"));
    // The info receiver got the info alert (and the critical one: info is its floor).
    let note = info
        .wait_for(Duration::from_secs(10), "the info alert", |b| {
            alerts_of(b).iter().any(|a| a["labels"]["alertname"] == "VictimNote")
        })
        .await;
    assert_eq!(
        alerts_of(&note).iter().find(|a| a["labels"]["alertname"] == "VictimNote").unwrap()
            ["labels"]["severity"],
        "info"
    );
    // The outbox and the API never hold the routing key.
    let view = get(&addr, "/api/alerts").await.to_string();
    assert!(!view.contains(key), "{view}");
    let stored =
        get(&addr, "/api/alerts/notifications?state=delivered&limit=100").await.to_string();
    assert!(!stored.contains(key), "the stored payloads lack the routing key");
    assert!(stored.contains("event_action"), "the PagerDuty payloads are stored: {stored}");
    app.shutdown().await;
}

/// A local SMTP server (`tests/python/smtp_sink.py ARGS`, aiosmtpd) with `envs`: its port, the
/// JSON lines it prints (each message, refusal or failed login), and the process, which stops
/// when its stdin closes.
async fn smtp_sink(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (tokio::process::Child, u16, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut sink = tokio::process::Command::new(python())
        .arg(workspace_root().join("tests/python/smtp_sink.py"))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the SMTP sink starts (tests/python/.venv with aiosmtpd)");
    let mut lines = BufReader::new(sink.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the sink says its port")
        .unwrap()
        .expect("the sink prints its port")
        .trim()
        .parse()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(serde_json::from_str(&l).unwrap());
        }
    });
    (sink, port, rx)
}

/// Email (seed 002's warning channel) over SMTP to local aiosmtpd servers: a firing group is
/// one message from the configured sender to every recipient (envelope and headers), its
/// subject naming the state, the alert, the server and the severity, its body the annotations,
/// labels, start and a link; its resolution a second message with the end. A second receiver
/// (`host` + `port`) logs in with a `${env:…}` password the server checks, and its first message
/// is refused with 451: the outbox retries it (2 attempts), and the password is in no view and
/// no stored notification. A third receiver, with the default `tls` (starttls), refuses to
/// send to a server without STARTTLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_receivers_send_one_message_per_notification_over_smtp() {
    const PASSWORD: &str = "smtp-Pa55-0123456789abcdef";
    let (mut plain, port, mut rx) = smtp_sink(&[], &[]).await;
    let (mut authed, auth_port, mut auth_rx) = smtp_sink(
        &["--auth", "warden", "--refuse-first", "1"],
        &[("SMTP_SINK_PASSWORD", PASSWORD)],
    )
    .await;
    let text = format!(
        r#"{{ "mcpServers": {{ "victim": {victim} }},
             "warden": {{ "alerts": {{
                "evaluation_interval": "1s", "group_wait": "1s", "group_interval": "1s",
                "emails": [ {{ "name": "ops", "smtp": "127.0.0.1:{port}", "tls": "none",
                               "from": "Warden <warden@example.org>",
                               "to": ["oncall@example.org", "lead@example.org"] }},
                            {{ "name": "ops-auth", "host": "127.0.0.1", "port": {auth_port},
                               "tls": "none", "from": "warden@example.org", "to": "oncall@example.org",
                               "username": "warden", "password": "${{env:SMTP_PASSWORD}}" }},
                            {{ "name": "strict", "smtp": "127.0.0.1:{port}",
                               "from": "warden@example.org", "to": "oncall@example.org" }} ],
                "rules": [ {{ "alert": "VictimDown", "metric": "up", "op": "<", "threshold": 1,
                             "match": {{ "server": "victim" }}, "for": "0s", "severity": "warning",
                             "summary": "victim is down" }} ] }} }} }}"#,
        victim = victim(),
    );
    let lookup = |name: &str| (name == "SMTP_PASSWORD").then(|| PASSWORD.to_owned());
    let config = warden_config::compile(&text, &lookup).expect("the test config compiles").config;
    let (app, _db, addr) = listening(config, None).await;
    let pid = healthy_pid(&app, "victim").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(pid, Signal::SIGKILL);
    let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>| {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a message arrives")
            .unwrap()
    };
    let firing = next(&mut rx).await;
    assert_eq!(firing["from"], "warden@example.org", "{firing}");
    assert_eq!(firing["to"], json!(["oncall@example.org", "lead@example.org"]));
    assert_eq!(firing["header_from"], "Warden <warden@example.org>", "{firing}");
    assert_eq!(firing["header_to"], "oncall@example.org, lead@example.org", "{firing}");
    assert_eq!(firing["login"], Value::Null, "no credentials configured, none sent");
    let subject = firing["subject"].as_str().unwrap();
    assert!(subject.starts_with("[FIRING:1] VictimDown on victim (warning)"), "{subject}");
    let body = firing["body"].as_str().unwrap();
    for want in [
        "VictimDown — firing (warning)",
        "summary: victim is down",
        "alertname=VictimDown",
        "server=victim",
        "since: ",
        "/api/servers/victim",
    ] {
        assert!(body.contains(want), "{want:?} is missing from {body}");
    }
    let resolved = next(&mut rx).await;
    assert!(
        resolved["subject"].as_str().unwrap().starts_with("[RESOLVED] VictimDown on victim"),
        "{resolved}"
    );
    assert!(resolved["body"].as_str().unwrap().contains("ended: "), "{resolved}");

    // The second receiver: refused once, then sent after a login with the expanded password.
    assert_eq!(next(&mut auth_rx).await, json!({ "refused": 451 }));
    let firing = next(&mut auth_rx).await;
    assert_eq!(firing["login"], "warden", "{firing}");
    assert!(firing["subject"].as_str().unwrap().starts_with("[FIRING:1] VictimDown"), "{firing}");
    let resolved = next(&mut auth_rx).await;
    assert!(resolved["subject"].as_str().unwrap().starts_with("[RESOLVED]"), "{resolved}");

    let view = get(&addr, "/api/alerts").await;
    let receiver = |name: &str| {
        view["receivers"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone()
    };
    assert_eq!(receiver("ops")["kind"], "email");
    assert_eq!(
        receiver("ops")["target"],
        format!("smtp://127.0.0.1:{port} (none) → oncall@example.org, lead@example.org")
    );
    assert_eq!(
        receiver("ops-auth")["target"],
        format!("smtp://127.0.0.1:{auth_port} (none) → oncall@example.org")
    );
    // The default (starttls) never falls back to plain SMTP: the sink offers no STARTTLS, so
    // nothing is sent and the notification waits in the outbox with the reason (once its first
    // attempt has run: on a loaded machine it may not have yet, so poll).
    let started = Instant::now();
    let strict = loop {
        let view = get(&addr, "/api/alerts").await;
        let waiting: Vec<Value> = view["notifications"]["undelivered"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["receiver"] == "strict")
            .cloned()
            .collect();
        assert!(!waiting.is_empty(), "strict's notifications wait: {view}");
        if let Some(tried) = waiting.iter().find(|n| n["last_error"].is_string()) {
            break tried.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never attempted: {waiting:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(strict["last_error"].as_str().unwrap().contains("STARTTLS"), "{strict}");
    assert!(rx.try_recv().is_err(), "the plain sink got only ops' two messages");
    assert!(!view.to_string().contains(PASSWORD), "{view}");
    let stored = get(&addr, "/api/alerts/notifications?state=delivered&limit=100").await;
    assert!(!stored.to_string().contains(PASSWORD), "the stored notifications lack the password");
    let retried = stored["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|n| n["receiver"] == "ops-auth" && n["status"] == "firing")
        .unwrap_or_else(|| panic!("ops-auth's firing notification is stored: {stored}"));
    assert_eq!(retried["attempts"], 2, "refused once, then delivered: {retried}");
    app.shutdown().await;
    for sink in [&mut plain, &mut authed] {
        drop(sink.stdin.take());
        let _ = sink.wait().await;
    }
}
