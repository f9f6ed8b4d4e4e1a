//! Input no MCP server can read gets a JSON-RPC error, over HTTP and over stdio: a request
//! whose id can be read is answered under that id (-32602 when its params do not fit its
//! method: a `_meta` that is not an object, params that are not an object), so the client's
//! call ends instead of waiting for its timeout; anything else over HTTP gets 400 with an
//! error whose id is null (-32700 for text that is not JSON, -32600 for JSON that is not a
//! JSON-RPC message). The session goes on serving.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const LIMIT: Duration = Duration::from_secs(90);

/// Requests with a readable id whose params do not fit: (id, body).
fn unfit(tool: &str) -> Vec<(Value, String)> {
    vec![
        (
            json!(7),
            json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": { "name": tool, "arguments": { "text": "x" }, "_meta": 5 } })
            .to_string(),
        ),
        (
            json!(8),
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{"_meta":"x"}}"#.into(),
        ),
        (json!("nine"), r#"{"jsonrpc":"2.0","id":"nine","method":"tools/call","params":5}"#.into()),
    ]
}

/// POSTs `body` as JSON to `url` (in `session`, if any): status, content type, body.
async fn post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: String,
) -> (u16, String, String) {
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, res.text().await.unwrap())
}

/// An initialized legacy session on `url`.
async fn session(http: &reqwest::Client, url: &str) -> String {
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": { "name": "t", "version": "0" } } });
    let res = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{url}: {}", res.status());
    let id = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string();
    let (status, _, _) = post(http, url, Some(&id), note).await;
    assert_eq!(status, 202, "{url}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_requests_over_http_get_json_rpc_errors() {
    tokio::time::timeout(LIMIT, async {
        let (app, _dir, addr) = listening(config(&[("a", misbehave(&[], ""))]), None).await;
        healthy_pid(&app, "a").await;
        let http = reqwest::Client::new();
        for (path, tool) in [("/mcp", "a__echo"), ("/servers/a/mcp", "echo")] {
            let url = format!("http://{addr}{path}");
            let sid = session(&http, &url).await;
            // Nothing to answer under an id: 400, and the error says what the input is.
            for (body, code) in [
                ("{bad".to_owned(), -32700),
                ("[1,2]".to_owned(), -32600),
                (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}"#.to_owned(), -32600),
                (r#"{"jsonrpc":"2.0","id":3}"#.to_owned(), -32600),
            ] {
                let (status, kind, text) = post(&http, &url, Some(&sid), body.clone()).await;
                assert_eq!(status, 400, "{path} {body}: {text}");
                assert!(kind.starts_with("application/json"), "{path} {body}: {kind}");
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
                assert_eq!(v["jsonrpc"], "2.0", "{v}");
                assert_eq!(v["id"], Value::Null, "{v}");
                assert!(v.as_object().unwrap().contains_key("id"), "{v}");
                assert_eq!(v["error"]["code"], code, "{path} {body}: {v}");
            }
            // A request whose id reads is answered under it.
            for (id, body) in unfit(tool) {
                let (status, kind, text) = post(&http, &url, Some(&sid), body.clone()).await;
                assert_eq!(status, 200, "{path} {body}: {text}");
                assert!(kind.starts_with("application/json"), "{path} {body}: {kind}");
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
                assert_eq!(v["id"], id, "{v}");
                assert_eq!(v["error"]["code"], -32602, "{path} {body}: {v}");
                let message = v["error"]["message"].as_str().unwrap();
                assert!(message.starts_with("tools/"), "{message}");
            }
            // A body sent as something other than JSON is still rmcp's 415.
            let res = http
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "text/plain")
                .header("mcp-session-id", &sid)
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 415, "{path}");
            // The session still serves.
            let call = json!({ "jsonrpc": "2.0", "id": 10, "method": "tools/call",
                               "params": { "name": tool, "arguments": { "text": "still here" } } });
            let (status, _, text) = post(&http, &url, Some(&sid), call.to_string()).await;
            assert_eq!(status, 200, "{path}: {text}");
            assert!(text.contains("still here"), "{path}: {text}");
        }
        app.shutdown().await;
    })
    .await
    .expect("the test finished within its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_requests_over_stdio_are_answered_under_their_id() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.json");
        let alpha = misbehave(&[], &format!(", {FAST_HEALTH}"));
        std::fs::write(&cfg, format!(r#"{{ "mcpServers": {{ "alpha": {alpha} }} }}"#)).unwrap();
        let child = warden_stdio(&cfg, &dir.path().join("w.db"), &[]);
        over_stdio(child, "alpha__echo").await;
    })
    .await
    .expect("the test finished within its time limit");
}

/// `warden run --stdio` attached to a running Warden (it bridges to its `/mcp`) answers the
/// same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_requests_through_an_attached_run_stdio_are_answered_under_their_id() {
    tokio::time::timeout(LIMIT, async {
        let (app, _db, addr) = listening(config(&[("a", misbehave(&[], ""))]), None).await;
        healthy_pid(&app, "a").await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.json");
        let text = format!(r#"{{ "mcpServers": {{}}, "warden": {{ "listen": "{addr}" }} }}"#);
        std::fs::write(&cfg, text).unwrap();
        let child = warden_stdio(&cfg, &dir.path().join("w.db"), &[]);
        over_stdio(child, "a__echo").await;
        app.shutdown().await;
    })
    .await
    .expect("the test finished within its time limit");
}

/// A session on `child`'s stdin/stdout (`warden run --stdio`) once `tool` is listed; then
/// requests that do not read, each answered under its id, and a call that still works.
async fn over_stdio(mut child: tokio::process::Child, tool: &str) {
    {
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut send = async |line: String| {
            stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
            stdin.flush().await.unwrap();
        };
        let mut answer = async |id: Value| loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            let line = line.expect("an answer within 30 s").unwrap().expect("stdout open");
            let m: Value = serde_json::from_str(&line).unwrap();
            if m.get("method").is_none() && m["id"] == id {
                return m;
            }
        };
        send(
            json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": { "name": "wire", "version": "0" } } })
            .to_string(),
        )
        .await;
        assert!(answer(json!(0)).await["result"]["serverInfo"].is_object());
        send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string()).await;
        let began = Instant::now();
        for id in 1.. {
            send(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" }).to_string()).await;
            if answer(json!(id)).await.to_string().contains(tool) {
                break;
            }
            assert!(began.elapsed() < Duration::from_secs(30), "{tool} never listed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Text that is not JSON is ignored (answering it could start an error storm with a
        // peer that echoes); each request whose id reads is answered under it.
        send("{bad".to_owned()).await;
        for (_, body) in unfit(tool) {
            send(body).await;
        }
        for (id, body) in unfit(tool) {
            let v = answer(id).await;
            assert_eq!(v["error"]["code"], -32602, "{body}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().starts_with("tools/"), "{v}");
        }
        send(
            json!({ "jsonrpc": "2.0", "id": 10, "method": "tools/call",
                    "params": { "name": tool, "arguments": { "text": "still here" } } })
            .to_string(),
        )
        .await;
        assert!(answer(json!(10)).await.to_string().contains("still here"));
    }
}
