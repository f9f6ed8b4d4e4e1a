//! Legacy (`Mcp-Session-Id`) client sessions any replica continues (issue 16): real `warden
//! run` replicas on a real PostgreSQL, plain HTTP as a client behind a balancer sends it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use serde_json::{json, Value};
use warden_testkit::postgres::Postgres;

/// Begins a legacy session on `base`: `initialize` and `notifications/initialized`.
async fn begin(base: &str) -> String {
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "fleet-test", "version": "1" } }
    });
    let (status, session, answer) = mcp(base, None, init).await;
    assert_eq!(status, 200, "{answer}");
    let session = session.expect("a legacy session id");
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let (status, _, _) = mcp(base, Some(&session), initialized).await;
    assert_eq!(status, 202);
    session
}

/// Three replicas on database `db` of a new PostgreSQL, serving `alpha` (healthy on each).
async fn alpha_on_three_replicas(
    db: &str,
) -> (Postgres, tempfile::TempDir, Vec<(tokio::process::Child, String)>) {
    let pg = Postgres::started().await;
    let url = pg.create_database(db);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let replicas = three_replicas(&config, &url, dir.path()).await;
    healthy_on_every_replica(&replicas[0].1, "alpha").await;
    (pg, dir, replicas)
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn tool_names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// A legacy (Mcp-Session-Id) client session begun on replica 0 goes on on replica 1 (as
/// behind a load balancer), and on replica 2 after replica 0 is killed: the session's
/// `initialize` is in the database and the replica that gets the request replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_session_goes_on_on_another_replica_when_its_own_dies() {
    let (pg, _dir, replicas) = alpha_on_three_replicas("sessions").await;
    let session = begin(&replicas[0].1).await;

    let (status, _, answer) =
        mcp(&replicas[1].1, Some(&session), request(2, "tools/list", json!({}))).await;
    assert_eq!(status, 200, "replica 1 continues replica 0's session: {answer}");
    assert!(!tool_names(&answer).is_empty(), "{answer}");
    // And its calls take replica 1's fast lane (rmcp's restore replays the client's
    // `initialized`, which registers the session there — on a task of its own, so the first
    // call may still go through rmcp; the lane's answer has no priming event, rmcp's path
    // would send one first).
    let body =
        request(4, "tools/call", json!({ "name": "alpha__echo", "arguments": { "text": "x" } }));
    let began = Instant::now();
    loop {
        let r = reqwest::Client::new()
            .post(format!("{}/mcp", replicas[1].1))
            .header("Accept", "application/json, text/event-stream")
            .header("Mcp-Session-Id", &session)
            .header("MCP-Protocol-Version", "2025-06-18")
            .json(&body)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(text.contains("\"id\":4"), "{text}");
        if !text.lines().any(|l| l.starts_with("id:")) {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(5), "never on the lane: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    signal(replicas[0].0.id().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let (status, _, answer) =
        mcp(&replicas[2].1, Some(&session), request(3, "tools/list", json!({}))).await;
    assert_eq!(status, 200, "replica 2 continues it after replica 0 died: {answer}");
    assert!(!tool_names(&answer).is_empty(), "{answer}");
    drop(replicas);
    drop(pg);
}

/// A client whose replica died sends its next requests at once (its notification stream and
/// several calls), and they reach a replica that never saw the session together. rmcp
/// publishes a restored session before it has replayed the handshake, so a second request
/// reached the half-restored session, its worker quit, and every request got a 500 (seen
/// in CI). Warden lets the first request restore the session and the others follow it,
/// and finishes a restore whose client went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_on_another_replica_all_continue_the_session() {
    let (pg, _dir, replicas) = alpha_on_three_replicas("restore_race").await;
    let (r0, r1) = (replicas[0].1.clone(), replicas[1].1.clone());
    for round in 0..4 {
        let session = begin(&r0).await;
        // Clients that give up at once (their requests may begin the restore and go away
        // in the middle of it; the restore is finished all the same).
        for _ in 0..2 {
            let (r1, session) = (r1.clone(), session.clone());
            tokio::spawn(async move {
                let _ = reqwest::Client::new()
                    .post(format!("{r1}/mcp"))
                    .timeout(Duration::from_millis(3))
                    .header("Accept", "application/json, text/event-stream")
                    .header("Mcp-Session-Id", &session)
                    .header("MCP-Protocol-Version", "2025-06-18")
                    .json(&request(1, "ping", json!({})))
                    .send()
                    .await;
            });
        }
        let mut requests = tokio::task::JoinSet::new();
        {
            let (r1, session) = (r1.clone(), session.clone());
            requests.spawn(async move {
                let r = open_stream(&r1, &session).await;
                let status = r.status().as_u16();
                // The stream stays open: its head is the answer.
                let text = if status == 200 { String::new() } else { r.text().await.unwrap() };
                ("GET".to_owned(), status, Value::String(text))
            });
        }
        for id in 2..8 {
            let (r1, session) = (r1.clone(), session.clone());
            requests.spawn(async move {
                let (status, _, answer) =
                    mcp(&r1, Some(&session), request(id, "tools/list", json!({}))).await;
                (format!("tools/list {id}"), status, answer)
            });
        }
        let answers = tokio::time::timeout(LIMIT, requests.join_all()).await.expect("answered");
        for (what, status, answer) in answers {
            assert_eq!(status, 200, "round {round}, {what}: {answer}");
            if what != "GET" {
                assert!(!tool_names(&answer).is_empty(), "round {round}, {what}: {answer}");
            }
        }
    }
    drop(replicas);
    drop(pg);
}

/// `GET /mcp` on `base` for `session`: its standalone SSE stream, once the head is in.
async fn open_stream(base: &str, session: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/mcp"))
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", "2025-06-18")
        .send()
        .await
        .unwrap()
}

/// The session's standalone SSE stream (`GET /mcp`) on `base`: every JSON-RPC message it
/// brings, as it comes, until the test ends.
fn listen(base: &str, session: &str) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (into, base, session) = (Arc::clone(&seen), base.to_owned(), session.to_owned());
    tokio::spawn(async move {
        let r = open_stream(&base, &session).await;
        let status = r.status();
        if status != 200 {
            let text = r.text().await.unwrap_or_default();
            panic!("the standalone stream on {base}: {status} {text}");
        }
        let mut r = r;
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                        into.lock().unwrap().push(v);
                    }
                }
            }
        }
    });
    seen
}

async fn heard(seen: &Arc<Mutex<Vec<Value>>>, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        if let Some(v) = seen.lock().unwrap().iter().find(|v| ok(v)) {
            return v.clone();
        }
        assert!(started.elapsed() < LIMIT, "{what} never came: {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a session set after `initialize` — its log level, a resource subscription and its tool
/// exposure — goes on with it on the replica that continues it once its own replica is killed:
/// the new replica shows the chosen tools only, sends the session the server's log messages
/// and the updates of the subscribed resource. (Without the settings in the database, the new
/// replica shows every tool and sends neither.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_level_subscriptions_and_tool_exposure_go_on_with_it() {
    let pg = Postgres::started().await;
    let url = pg.create_database("session_settings");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.json");
    let entry = format!(
        r#"{{ "command": "node", "args": [{}, "stdio"], {FAST_HEALTH} }}"#,
        json_str(&everything_js())
    );
    std::fs::write(&config, format!(r#"{{ "mcpServers": {{ "everything": {entry} }} }}"#)).unwrap();
    let replicas = three_replicas(&config, &url, dir.path()).await;
    healthy_on_every_replica(&replicas[0].1, "everything").await;
    let (r0, r1) = (&replicas[0].1, &replicas[1].1);
    let session = begin(r0).await;
    let s = Some(session.as_str());

    let (_, _, answer) = mcp(r0, s, request(2, "tools/list", json!({}))).await;
    let all = tool_names(&answer);
    assert!(all.len() > 5 && all.iter().any(|t| t == "everything__echo"), "{answer}");
    let (_, _, answer) = mcp(r0, s, request(3, "resources/list", json!({}))).await;
    let uri = answer["result"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uri"].as_str())
        .find(|u| u.starts_with("demo://"))
        .unwrap_or_else(|| panic!("server-everything lists demo:// resources: {answer}"))
        .to_owned();

    // The settings, made on replica 0.
    let (status, _, answer) =
        mcp(r0, s, request(4, "logging/setLevel", json!({ "level": "debug" }))).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"].is_object(), "{answer}");
    let (_, _, answer) = mcp(r0, s, request(5, "resources/subscribe", json!({ "uri": uri }))).await;
    assert!(answer["result"].is_object(), "{answer}");
    let expose = json!({ "name": "warden__expose_tools",
                         "arguments": { "mode": "replace", "tools": ["everything__echo"] } });
    let (_, _, answer) = mcp(r0, s, request(6, "tools/call", expose)).await;
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    let (_, _, answer) = mcp(r0, s, request(7, "tools/list", json!({}))).await;
    let chosen = tool_names(&answer);
    assert!(
        chosen.len() < all.len() && chosen.iter().any(|t| t == "everything__echo"),
        "{chosen:?}"
    );

    signal(replicas[0].0.id().unwrap(), nix::sys::signal::Signal::SIGKILL);

    // Replica 1 continues the session as the client left it.
    let stream = listen(r1, &session);
    let (status, _, answer) = mcp(r1, s, request(8, "tools/list", json!({}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(tool_names(&answer), chosen, "the exposure the session chose on replica 0");
    for (id, toggle) in
        [(9, "everything__toggle-subscriber-updates"), (10, "everything__toggle-simulated-logging")]
    {
        let call = json!({ "name": toggle, "arguments": {} });
        let (status, _, answer) = mcp(r1, s, request(id, "tools/call", call)).await;
        assert_eq!(status, 200, "{answer}");
        assert_ne!(answer["result"]["isError"], true, "{answer}");
    }
    heard(&stream, "an update of the subscribed resource", |v| {
        v["method"] == "notifications/resources/updated" && v["params"]["uri"] == uri.as_str()
    })
    .await;
    heard(&stream, "a log message", |v| v["method"] == "notifications/message").await;
    drop(replicas);
    drop(pg);
}
