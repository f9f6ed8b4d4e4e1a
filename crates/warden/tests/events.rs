//! The live event stream end to end, over real loopback sockets: a SIGKILLed child seen on
//! `/events` (SSE) and `/ws` (WebSocket) with its trace id, slow subscribers dropped while
//! Warden carries on, and `warden events [--follow]` against a running Warden.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use warden_app::App;
use warden_core::{Event, EventKind, TraceId};

const TOKEN: &str = "an-events-test-token-0123";

async fn start_listening(config: warden_config::Config) -> (App, tempfile::TempDir, String) {
    listening(config, Some(TOKEN)).await
}

/// Reads SSE `data:` payloads from a reqwest response.
struct SseReader {
    res: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(addr: &str, query: &str) -> Self {
        let res = reqwest::Client::new()
            .get(format!("http://{addr}/events{query}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Self { res, buf: String::new() }
    }

    /// The next event's JSON; `None` when the stream ends.
    async fn next(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(d) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(d).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .expect("the SSE stream answered in time")
                .ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// Events until every kind in `want` has been seen (by seq), or the deadline.
fn crash_seen(events: &BTreeMap<u64, Value>) -> bool {
    let has = |pred: &dyn Fn(&Value) -> bool| events.values().any(pred);
    has(&|e| e["kind"] == "process_exited" && e["data"]["exit"]["signal"] == 9)
        && has(&|e| e["kind"] == "failure")
        && has(&|e| e["kind"] == "state_changed" && e["data"]["to"] == "offline")
        && has(&|e| e["kind"] == "restart_scheduled")
        && has(&|e| e["kind"] == "process_started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_appears_on_sse_and_ws_with_its_trace_id() {
    let (app, _dir, addr) =
        start_listening(config(&[("victim", misbehave(&[], &format!(", {FAST_RESTART}")))])).await;
    let pid = healthy_pid(&app, "victim").await;
    // SSE with the Authorization header, WebSocket with `?token=` (as a browser would).
    let mut sse = SseReader::open(&addr, "?server=victim").await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?server=victim&token={TOKEN}"))
            .await
            .expect("the WebSocket opens");

    signal(pid, Signal::SIGKILL);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut on_sse = BTreeMap::new();
    while !crash_seen(&on_sse) {
        let e = sse.next(deadline).await.expect("the SSE stream stays open");
        on_sse.insert(e["seq"].as_u64().unwrap(), e);
    }
    let mut on_ws = BTreeMap::new();
    while !crash_seen(&on_ws) {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("WebSocket events in time")
            .expect("the WebSocket stays open")
            .unwrap();
        if let Message::Text(t) = m {
            let e: Value = serde_json::from_str(&t).unwrap();
            on_ws.insert(e["seq"].as_u64().unwrap(), e);
        }
    }
    // Both transports carry the same events, byte for byte.
    for (seq, e) in &on_sse {
        if let Some(w) = on_ws.get(seq) {
            assert_eq!(w, e);
        }
    }
    // One incident, one trace id: the failure, the exit, the restart.
    let of = |kind: &str| on_sse.values().find(|e| e["kind"] == kind).unwrap().clone();
    let trace = of("failure")["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace.len(), 32);
    assert!(trace.bytes().all(|b| b.is_ascii_hexdigit()));
    for kind in ["process_exited", "restart_scheduled", "process_started"] {
        assert_eq!(of(kind)["trace_id"], trace.as_str(), "{kind} is part of the incident");
    }
    let exited = of("process_exited");
    assert_eq!(exited["instance"], "victim#0");
    assert_eq!(exited["server"], "victim");
    assert_eq!(exited["message"], format!("process {pid} exited with signal 9"));
    assert!(exited["traceparent"].as_str().unwrap().starts_with(&format!("00-{trace}-")));
    assert!(on_sse.values().all(|e| e["server"] == "victim"), "the server filter holds");

    // A client's close is honoured.
    ws.send(Message::Close(None)).await.unwrap();
    app.shutdown().await;
    // Shutdown ends the SSE stream (it does not hold the listener open).
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while sse.next(end).await.is_some() {}
}

async fn health(addr: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}/health/status"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A raw `GET /events` over a socket with a tiny receive buffer, so that not reading fills
/// it after a few KB (instead of the megabytes the kernel would otherwise grow it to).
async fn raw_subscriber(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr.parse().unwrap()).await.unwrap();
    s.write_all(
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_subscribers_are_dropped_and_warden_carries_on() {
    use tokio::io::AsyncReadExt;
    let (app, _dir, addr) =
        start_listening(config(&[("victim", misbehave(&[], &format!(", {FAST_RESTART}")))])).await;
    let pid = healthy_pid(&app, "victim").await;
    // Reads nothing for now, then everything.
    let mut lagging = raw_subscriber(&addr).await;
    // Never reads at all.
    let stuck = raw_subscriber(&addr).await;
    // Keeps up: only lifecycle events, read as they come.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/ws?token={TOKEN}&kind=process_exited,process_started"
    ))
    .await
    .unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = vec![];
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                let e: Value = serde_json::from_str(&t).unwrap();
                let done = e["kind"] == "process_started";
                seen.push(e);
                if done {
                    break;
                }
            }
        }
        seen
    });
    let start = Instant::now();
    while health(&addr).await["checks"]["event_stream"]["subscribers"] != 3 {
        assert!(start.elapsed() < Duration::from_secs(10), "three subscribers");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // More than the server's socket buffer (it grows up to tcp_wmem's maximum however little
    // the client reads) and the 1024-frame ring hold: events of about 1 KB, at a steady pace.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let total = (wmem_max + (wmem_max >> 1)) / 1000 + 2048;
    assert!(total < 100_000, "tcp_wmem max {wmem_max} is too large for this test");
    const PAUSE: Duration = Duration::from_millis(80);
    let flood = Instant::now();
    for n in 0..total {
        app.bus().emit(Event::new(
            None,
            TraceId::random(),
            EventKind::OperatorAction { action: format!("flood {n} {}", "x".repeat(800)) },
        ));
        // ~1200 a second: a pace a debug build keeps up with while other tests run.
        if n % 100 == 99 {
            tokio::time::sleep(PAUSE).await;
        }
    }
    assert!(
        flood.elapsed() < PAUSE * (total / 100) as u32 + Duration::from_secs(5),
        "emitting never waits for a subscriber"
    );
    // Warden answers and supervises as usual: a crash is seen and repaired.
    let t = Instant::now();
    let livez = reqwest::get(format!("http://{addr}/livez")).await.unwrap();
    assert_eq!(livez.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    signal(pid, Signal::SIGKILL);
    let seen = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the keeping-up subscriber sees the crash and the restart")
        .unwrap();
    let notices: Vec<&Value> = seen.iter().filter(|e| e["kind"] == "dropped").collect();
    assert!(notices.is_empty(), "the reader that keeps up stays: {notices:?}");
    assert!(seen.iter().any(|e| e["kind"] == "process_exited"));

    // The lagging subscriber, reading at last, gets what was buffered, one notice, and the
    // end of the response (the last chunk of a chunked body).
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let read_all = async {
        loop {
            let n = lagging.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            if n == 0 || got.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(20), read_all).await.is_ok();
    let text = String::from_utf8_lossy(&got);
    assert!(
        ended,
        "the stream ends; got {} bytes, ending {:?}",
        got.len(),
        &text[text.len().saturating_sub(600)..]
    );
    let notice = text.lines().filter(|l| l.contains(r#""kind":"dropped""#)).collect::<Vec<_>>();
    assert_eq!(notice.len(), 1, "one notice: {notice:?}");
    assert!(notice[0].contains("this subscriber fell behind"), "{}", notice[0]);
    assert!(text.contains("flood 0 "), "what was buffered comes first");

    // The one that never reads is cut off by the send timeout (20 s without progress).
    let start = Instant::now();
    loop {
        let v = health(&addr).await;
        let s = &v["checks"]["event_stream"];
        if s["subscribers"] == 0 && s["dropped_subscribers"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "the stuck subscriber stays: {s}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(stuck);
    // And the crashed server is serving again.
    healthy_pid(&app, "victim").await;
    app.shutdown().await;
}

fn events_cmd(addr: &str) -> std::process::Command {
    let mut c = std::process::Command::new(warden());
    c.args(["events", "--url", &format!("http://{addr}")])
        .env_remove("WARDEN_TOKEN")
        .env_remove("WARDEN_URL");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_events_prints_history_and_follows() {
    let (app, _dir, addr) = start_listening(config(&[])).await;
    let say = |what: &str| {
        app.bus().emit(Event::new(
            None,
            TraceId::random(),
            EventKind::OperatorAction { action: what.into() },
        ))
    };
    say("restart before");
    let start = Instant::now();
    loop {
        let out = events_cmd(&addr).args(["--token", TOKEN]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if let Some(line) = text.lines().find(|l| l.contains("operator: restart before")) {
            assert!(line.contains("operator_action"), "{line}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "history: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The token is required, and never printed.
    let out = events_cmd(&addr).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
    let out = events_cmd("127.0.0.1:9").args(["--token", TOKEN]).output().unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));

    // --follow --json: the last event, then new ones as they happen, one JSON object a line.
    let mut child = events_cmd(&addr)
        .args(["--follow", "--json", "-n", "1"])
        .env("WARDEN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .expect("JSON lines");
    assert_eq!(first["data"]["action"], "restart before");
    // Wait until it is subscribed, then act.
    let start = Instant::now();
    while health(&addr).await["checks"]["event_stream"]["subscribers"] != 1 {
        assert!(start.elapsed() < Duration::from_secs(10), "the CLI subscribes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say("restart after");
    let line = rx.recv_timeout(Duration::from_secs(10)).expect("the new event is printed");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["data"]["action"], "restart after");
    assert_eq!(v["kind"], "operator_action");
    child.kill().unwrap();
    child.wait().unwrap();
    app.shutdown().await;
}
