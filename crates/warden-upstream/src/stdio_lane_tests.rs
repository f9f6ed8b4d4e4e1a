use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::relay::{Call, Progress, Shared};

/// A lane on an in-memory "child": its stdin lines are read here, and what it "prints" is
/// handed to the lane as the stdout tap would.
struct Child {
    stdin: Lines<BufReader<DuplexStream>>,
    pending: Arc<Pending>,
    shared: Arc<Shared>,
    _rmcp: Option<RmcpWriter>,
}

fn lane() -> (Arc<Lane>, Child) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (rmcp, out) = wire(ours);
    let pending = Arc::new(Pending::default());
    let shared = Shared::new(warden_core::InstanceId::new("s", 0), crate::Relay::default());
    let lane = Arc::new(Lane::new(out, false, Arc::clone(&pending), Arc::clone(&shared)));
    let child = Child { stdin: BufReader::new(theirs).lines(), pending, shared, _rmcp: Some(rmcp) };
    (lane, child)
}

impl Child {
    async fn read(&mut self) -> Value {
        let line = self.stdin.next_line().await.unwrap().expect("a line on stdin");
        serde_json::from_str(&line).unwrap()
    }

    fn print(&self, message: Value) -> bool {
        self.pending.take(message.to_string().as_bytes(), &self.shared)
    }
}

fn call(name: &str, timeout: Duration) -> Call {
    Call::new("tools/call", Some(json!({ "name": name, "arguments": {} })), timeout)
}

#[tokio::test]
async fn calls_in_flight_together_each_get_their_own_answer() {
    let (lane, mut child) = lane();
    let a = tokio::spawn({
        let lane = Arc::clone(&lane);
        async move { lane.request(call("a", Duration::from_secs(5))).await }
    });
    let first = child.read().await;
    let b = tokio::spawn({
        let lane = Arc::clone(&lane);
        async move { lane.request(call("b", Duration::from_secs(5))).await }
    });
    let second = child.read().await;
    assert_eq!(first["method"], "tools/call");
    assert!(first["id"].as_str().unwrap().starts_with("wf-"), "{first}");
    assert_ne!(first["id"], second["id"]);
    // Answered in the other order.
    for m in [&second, &first] {
        let name = m["params"]["name"].clone();
        assert!(child.print(json!({ "jsonrpc": "2.0", "id": m["id"], "result": { "n": name } })));
    }
    assert_eq!(a.await.unwrap().unwrap(), json!({ "n": "a" }));
    assert_eq!(b.await.unwrap().unwrap(), json!({ "n": "b" }));
}

#[tokio::test]
async fn an_error_answer_is_a_server_error() {
    let (lane, mut child) = lane();
    let task = tokio::spawn(async move { lane.request(call("a", Duration::from_secs(5))).await });
    let m = child.read().await;
    child.print(
        json!({ "jsonrpc": "2.0", "id": m["id"], "error": { "code": -32602, "message": "no" } }),
    );
    match task.await.unwrap() {
        Err(UpstreamError::Server { code: -32602, message }) => assert_eq!(message, "no"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lines_that_are_rmcps_are_left_to_it() {
    let (_lane, child) = lane();
    // An answer to rmcp's numbered request, even one that mentions a lane id.
    assert!(!child.print(json!({ "jsonrpc": "2.0", "id": 3, "result": { "text": "\"wf-1\"" } })));
    // A log message that mentions one; a server's own request.
    assert!(!child.print(json!({ "jsonrpc": "2.0", "method": "notifications/message",
        "params": { "level": "info", "data": "\"wf-1\"" } })));
    assert!(!child.print(json!({ "jsonrpc": "2.0", "id": "wf-9", "method": "roots/list" })));
    // Progress under rmcp's token.
    assert!(!child.print(json!({ "jsonrpc": "2.0", "method": "notifications/progress",
        "params": { "progressToken": 7, "progress": 1, "message": "\"wf-" } })));
    // A late answer to a lane call that gave up is the lane's (and dropped).
    assert!(child.print(json!({ "jsonrpc": "2.0", "id": "wf-41", "result": {} })));
}

#[tokio::test(start_paused = true)]
async fn progress_comes_before_the_answer_and_keeps_the_call_alive() {
    let (lane, mut child) = lane();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut c = call("slow", Duration::from_secs(1));
    c.progress = Some(tx);
    c.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(60));
    let task = tokio::spawn(async move { lane.request(c).await });
    let m = child.read().await;
    let token = m["params"]["_meta"]["progressToken"].clone();
    assert_eq!(token, m["id"], "the lane's own token");
    // Three updates 0.8 s apart: 2.4 s in all, past the 1 s timeout, which each restarts.
    for i in 1..=3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(child.print(json!({ "jsonrpc": "2.0", "method": "notifications/progress",
            "params": { "progressToken": token, "progress": i, "total": 3 } })));
    }
    child.print(json!({ "jsonrpc": "2.0", "id": m["id"], "result": { "ok": true } }));
    assert_eq!(task.await.unwrap().unwrap(), json!({ "ok": true }));
    let mut got = Vec::new();
    while let Ok(p) = rx.try_recv() {
        got.push(p);
    }
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2], Progress { progress: 3.0, total: Some(3.0), message: None });
}

#[tokio::test(start_paused = true)]
async fn a_call_with_no_answer_times_out_and_the_server_is_told() {
    let (lane, mut child) = lane();
    let task = tokio::spawn(async move { lane.request(call("a", Duration::from_secs(2))).await });
    let m = child.read().await;
    let note = child.read().await;
    assert!(matches!(task.await.unwrap(), Err(UpstreamError::Timeout(_))));
    assert_eq!(note["method"], "notifications/cancelled");
    assert_eq!(note["params"]["requestId"], m["id"]);
    assert_eq!(note["params"]["reason"], "request timeout");
    assert!(child.pending.calls.lock().unwrap().is_empty(), "its place is given up");
}

#[tokio::test]
async fn a_cancelled_call_ends_at_once_and_the_server_is_told() {
    let (lane, mut child) = lane();
    let mut c = call("a", Duration::from_secs(60));
    let cancel = CancellationToken::new();
    c.cancel = cancel.clone();
    let task = tokio::spawn(async move { lane.request(c).await });
    let m = child.read().await;
    cancel.cancel();
    assert!(matches!(task.await.unwrap(), Err(UpstreamError::Cancelled)));
    let note = child.read().await;
    assert_eq!(note["params"]["requestId"], m["id"]);
    assert_eq!(note["params"]["reason"], "cancelled by the client");
}

#[tokio::test]
async fn when_stdout_ends_waiting_and_later_calls_fail_at_once() {
    let (lane, mut child) = lane();
    let task = tokio::spawn({
        let lane = Arc::clone(&lane);
        async move { lane.request(call("a", Duration::from_secs(60))).await }
    });
    child.read().await;
    child.pending.close();
    assert!(matches!(task.await.unwrap(), Err(UpstreamError::Closed(_))));
    let later = tokio::time::timeout(
        Duration::from_secs(5),
        lane.request(call("b", Duration::from_secs(60))),
    )
    .await
    .expect("no wait");
    assert!(matches!(later, Err(UpstreamError::Closed(_))), "{later:?}");
}

#[tokio::test]
async fn rmcp_and_the_lane_share_stdin_in_whole_lines_and_rmcp_closes_it() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut rmcp, Out { lines: lane, .. }) = wire(ours);
    let mut stdin = BufReader::new(theirs).lines();
    // rmcp's line arrives in two writes; the lane's line is sent between them.
    rmcp.write_all(b"{\"from\":").await.unwrap();
    lane.send(b"{\"from\":\"lane\"}\n".to_vec()).await.unwrap();
    assert_eq!(stdin.next_line().await.unwrap().unwrap(), r#"{"from":"lane"}"#);
    rmcp.write_all(b"\"rmcp\"}\n{\"n\":2}\n").await.unwrap();
    assert_eq!(stdin.next_line().await.unwrap().unwrap(), r#"{"from":"rmcp"}"#);
    assert_eq!(stdin.next_line().await.unwrap().unwrap(), r#"{"n":2}"#);
    // rmcp ends (a stop): stdin closes although the lane's sender lives on.
    drop(rmcp);
    let end = tokio::time::timeout(Duration::from_secs(5), stdin.next_line()).await.unwrap();
    assert_eq!(end.unwrap(), None, "stdin closed");
    assert!(lane.send(b"{}\n".to_vec()).await.is_err(), "the lane is told");
}

#[tokio::test]
async fn on_a_2026_session_calls_wait_for_rmcps_stamp_and_then_carry_it() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut rmcp, out) = wire(ours);
    let pending = Arc::new(Pending::default());
    let shared = Shared::new(warden_core::InstanceId::new("s", 0), crate::Relay::default());
    let lane = Arc::new(Lane::new(out, true, Arc::clone(&pending), Arc::clone(&shared)));
    let mut child = Child { stdin: BufReader::new(theirs).lines(), pending, shared, _rmcp: None };
    let c = call("a", Duration::from_secs(5));
    assert!(!lane.takes(&c), "rmcp has sent no request yet");
    // A notification does not show the stamp; rmcp's first request does.
    rmcp.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    let stamp = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}, "progressToken": 0 });
    let first = json!({ "jsonrpc": "2.0", "id": 0, "method": "server/discover",
        "params": { "_meta": stamp } });
    rmcp.write_all(format!("{first}\n").as_bytes()).await.unwrap();
    child.read().await;
    child.read().await;
    assert!(lane.takes(&c));
    let task = tokio::spawn({
        let lane = Arc::clone(&lane);
        async move { lane.request(c).await }
    });
    let m = child.read().await;
    let meta = &m["params"]["_meta"];
    assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
    assert_eq!(meta["io.modelcontextprotocol/clientCapabilities"], json!({}));
    assert!(meta.get("progressToken").is_none(), "rmcp's token is not the lane's: {m}");
    child.print(json!({ "jsonrpc": "2.0", "id": m["id"], "result": {} }));
    task.await.unwrap().unwrap();
}

/// The lane writes its lines itself when nothing is queued (at the end of the turn): a line the
/// pipe takes only in part is finished by a task holding stdin, so the next line (the lane's or
/// rmcp's) waits for it and no line is ever cut, even when the caller is gone before the child
/// reads.
#[tokio::test]
async fn a_line_the_pipe_takes_in_part_is_finished_whole_before_the_next() {
    let (ours, theirs) = tokio::io::duplex(16);
    let (mut rmcp, Out { lines: lane, .. }) = wire(ours);
    let long = format!("{{\"long\":\"{}\"}}\n", "x".repeat(200));
    // Handed at once, though the child has read nothing yet; the turn ends and the pipe takes
    // 16 bytes of it.
    tokio::time::timeout(Duration::from_secs(1), lane.send(long.clone().into_bytes()))
        .await
        .expect("handed without waiting for the child")
        .unwrap();
    tokio::task::yield_now().await;
    let lane2 = lane.clone();
    let short = tokio::spawn(async move { lane2.send(b"{\"n\":2}\n".to_vec()).await });
    rmcp.write_all(b"{\"from\":\"rmcp\"}\n").await.unwrap();
    let mut stdin = BufReader::new(theirs).lines();
    assert_eq!(next_line(&mut stdin).await.unwrap(), long.trim_end());
    short.await.unwrap().unwrap();
    let mut rest = vec![next_line(&mut stdin).await.unwrap(), next_line(&mut stdin).await.unwrap()];
    rest.sort();
    assert_eq!(rest, [r#"{"from":"rmcp"}"#, r#"{"n":2}"#]);
    drop(rmcp);
    assert_eq!(next_line(&mut stdin).await, None, "stdin closed");
    assert!(lane.send(b"{}\n".to_vec()).await.is_err());
}

async fn next_line(s: &mut Lines<BufReader<DuplexStream>>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), s.next_line()).await.unwrap().unwrap()
}

/// Records each write it is given.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

impl Writes {
    /// Each write so far, as text.
    fn texts(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|w| String::from_utf8_lossy(w).into_owned()).collect()
    }
}

impl AsyncWrite for Writes {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().push(b.to_vec());
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Lines handed over in one turn of the event loop (calls that one wake-up brought) reach the
/// child in one write, in order; a line of a later turn in a write of its own.
#[tokio::test]
async fn lines_of_one_turn_go_out_in_one_write() {
    let writes = Writes::default();
    let (_rmcp, Out { lines: lane, .. }) = wire(writes.clone());
    for n in 1..=3 {
        lane.send(format!("{{\"n\":{n}}}\n").into_bytes()).await.unwrap();
    }
    assert!(writes.0.lock().unwrap().is_empty(), "nothing is written before the turn ends");
    tokio::task::yield_now().await;
    lane.send(b"{\"n\":4}\n".to_vec()).await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(writes.texts(), ["{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n", "{\"n\":4}\n"]);
}

/// On a multi-threaded runtime (`run --stdio`'s one worker) a flush would run next anyway, so
/// nothing is batched: each line is written by its caller at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn on_a_multi_threaded_runtime_each_line_is_written_at_once() {
    let writes = Writes::default();
    let (_rmcp, Out { lines: lane, .. }) = wire(writes.clone());
    lane.send(b"{\"n\":1}\n".to_vec()).await.unwrap();
    lane.send(b"{\"n\":2}\n".to_vec()).await.unwrap();
    assert_eq!(writes.texts(), ["{\"n\":1}\n", "{\"n\":2}\n"]);
}

#[tokio::test]
async fn a_call_notes_the_home_its_answer_is_read_on() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (_rmcp, out) = wire(ours);
    let pending = Arc::new(Pending::default());
    let shared = Shared::new(warden_core::InstanceId::new("s", 0), crate::Relay::default());
    let mut lane = Lane::new(out, false, Arc::clone(&pending), Arc::clone(&shared));
    lane.home = Some(1);
    let mut child = Child { stdin: BufReader::new(theirs).lines(), pending, shared, _rmcp: None };
    let call = crate::home::scope(async {
        let result = lane.request(call("a", Duration::from_secs(5))).await;
        (result, crate::home::take())
    });
    let answer = async {
        let m = child.read().await;
        assert!(child.print(json!({ "jsonrpc": "2.0", "id": m["id"], "result": {} })));
    };
    let ((result, home), ()) = tokio::join!(call, answer);
    assert_eq!(result.unwrap(), json!({}));
    assert_eq!(home, Some(1));
}
