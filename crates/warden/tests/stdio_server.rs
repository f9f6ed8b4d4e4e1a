//! `warden run --stdio` on the wire (the desktop path), in front of `server-everything` (npm):
//! calls, their progress (every update before the answer), the server's sampling request
//! relayed to the client and answered, cancellation (no answer to a cancelled call, the next
//! call unaffected), calls in flight together, and errors — as raw JSON-RPC lines, so the
//! order of what Warden writes is checked exactly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const LIMIT: Duration = Duration::from_secs(120);

struct Wire {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Wire {
    async fn send(&mut self, v: Value) {
        self.stdin.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn next(&mut self, within: Duration) -> Option<Value> {
        let line = tokio::time::timeout(within, self.lines.next_line()).await.ok()?;
        Some(serde_json::from_str(&line.unwrap().expect("stdout open")).unwrap())
    }

    /// What Warden writes until the answer to `id`, and the answer.
    async fn until_answer(&mut self, id: &Value) -> (Vec<Value>, Value) {
        let mut before = vec![];
        loop {
            let m = self.next(Duration::from_secs(30)).await.expect("an answer within 30 s");
            if m.get("method").is_none() && m.get("id") == Some(id) {
                return (before, m);
            }
            before.push(m);
        }
    }

    async fn call(&mut self, id: i64, name: &str, args: Value, meta: Option<Value>) {
        let mut params = json!({ "name": name, "arguments": args });
        if let Some(m) = meta {
            params["_meta"] = m;
        }
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }))
            .await;
    }
}

fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_progress_sampling_and_cancellation_over_warden_run_stdio() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{ "mcpServers": {{ "everything": {{ "command": "node", "args": [{}, "stdio"], {FAST_HEALTH} }} }} }}"#,
                json_str(&everything_js())
            ),
        )
        .unwrap();
        let mut child = warden_stdio(&cfg, &dir.path().join("w.db"), &[]);
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut w = Wire { child, stdin, lines };
        w.send(json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": { "sampling": {} },
            "clientInfo": { "name": "wire", "version": "0" } } }))
        .await;
        let (_, init) = w.until_answer(&json!(0)).await;
        assert!(init["result"]["serverInfo"].is_object(), "{init}");
        // A desktop client's Warden runs on one worker thread (main.rs: `runtime`), and with no
        // `--listen` it has no HTTP threads.
        assert_eq!(runtime_workers(w.child.id().unwrap()), 1);
        assert_eq!(http_threads(w.child.id().unwrap()), 0);
        w.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;

        // Until the server's tools are listed.
        let began = Instant::now();
        let mut id = 1;
        loop {
            id += 1;
            w.send(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" })).await;
            let (_, list) = w.until_answer(&json!(id)).await;
            let names: Vec<&str> = list["result"]["tools"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
                .unwrap_or_default();
            if names.contains(&"everything__trigger-long-running-operation") {
                break;
            }
            assert!(began.elapsed() < Duration::from_secs(60), "no tools: {list}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Progress: every update, under the client's token, before the answer.
        w.call(
            10,
            "everything__trigger-long-running-operation",
            json!({ "duration": 1, "steps": 3 }),
            Some(json!({ "progressToken": "p10" })),
        )
        .await;
        let (before, answer) = w.until_answer(&json!(10)).await;
        let progress: Vec<f64> = before
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .inspect(|m| assert_eq!(m["params"]["progressToken"], "p10", "{m}"))
            .map(|m| m["params"]["progress"].as_f64().unwrap())
            .collect();
        assert_eq!(progress, vec![1.0, 2.0, 3.0], "{before:?}");
        assert!(text(&answer).contains("completed"), "{answer}");
        assert!(answer["result"].get("resultType").is_none(), "a legacy session's shape: {answer}");

        // Sampling: the server's request reaches this client, whose answer reaches the server.
        w.call(11, "everything__trigger-sampling-request", json!({ "prompt": "hi", "maxTokens": 5 }), None)
            .await;
        let ask = loop {
            let m = w.next(Duration::from_secs(30)).await.expect("the sampling request");
            if m["method"] == "sampling/createMessage" {
                break m;
            }
            assert_ne!(m["id"], json!(11), "answered before sampling: {m}");
        };
        w.send(json!({ "jsonrpc": "2.0", "id": ask["id"], "result": {
            "role": "assistant", "content": { "type": "text", "text": "sampled by wire" },
            "model": "test-model", "stopReason": "endTurn" } }))
        .await;
        let (_, answer) = w.until_answer(&json!(11)).await;
        assert!(text(&answer).contains("sampled by wire"), "{answer}");

        // Cancellation: no answer to the cancelled call; the next call is answered at once.
        w.call(
            12,
            "everything__trigger-long-running-operation",
            json!({ "duration": 30, "steps": 30 }),
            Some(json!({ "progressToken": "p12" })),
        )
        .await;
        loop {
            let m = w.next(Duration::from_secs(30)).await.expect("progress of the long call");
            if m["method"] == "notifications/progress" {
                break;
            }
        }
        w.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": { "requestId": 12, "reason": "changed my mind" } }))
        .await;
        let t = Instant::now();
        w.call(13, "everything__echo", json!({ "message": "after" }), None).await;
        let (before, answer) = w.until_answer(&json!(13)).await;
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(text(&answer).contains("after"), "{answer}");
        let late = |m: &Value| m.get("method").is_none() && m["id"] == json!(12);
        assert!(!before.iter().any(late), "the cancelled call was answered: {before:?}");
        // The server was told: its progress (one update a second) stops.
        let mut updates = 0;
        let quiet = Instant::now() + Duration::from_millis(2500);
        while let Some(m) = w.next(quiet.saturating_duration_since(Instant::now())).await {
            assert!(!late(&m), "the cancelled call was answered: {m}");
            updates += usize::from(m["params"]["progressToken"] == "p12");
        }
        assert!(updates <= 1, "{updates} updates after the cancellation");

        // Calls in flight together, and errors, each under its own id.
        w.call(20, "everything__echo", json!({ "message": "a" }), None).await;
        w.call(21, "everything__echo", json!({ "message": "b" }), None).await;
        w.call(22, "everything__no-such-tool", json!({}), None).await;
        let mut got = std::collections::HashMap::new();
        while got.len() < 3 {
            let m = w.next(Duration::from_secs(30)).await.expect("three answers");
            if let Some(i) = m["id"].as_i64().filter(|_| m.get("method").is_none()) {
                got.insert(i, m);
            }
        }
        assert!(text(&got[&20]).contains('a') && text(&got[&21]).contains('b'), "{got:?}");
        assert!(got[&22]["error"]["code"].is_i64(), "{}", got[&22]);

        // Closing stdin right after a call: the call is answered, then Warden ends.
        w.call(30, "everything__echo", json!({ "message": "last" }), None).await;
        let Wire { mut child, stdin, mut lines } = w;
        drop(stdin);
        let last = loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
            let line = line.expect("an answer after stdin closed").unwrap().expect("stdout open");
            let m: Value = serde_json::from_str(&line).unwrap();
            if m["id"] == json!(30) {
                break m;
            }
        };
        assert!(text(&last).contains("last"), "{last}");
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
        assert!(status.is_ok(), "warden run --stdio did not exit when stdin closed");
    })
    .await
    .expect("the test finished within its time limit");
}

/// `warden run --stdio` (one misbehaving server, `alpha`) with `stdin` and `stdout` as given;
/// the client's end of them is `to`/`from`.
struct Desktop {
    child: std::process::Child,
    to: Box<dyn std::io::Write + Send>,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Desktop {
    fn start(
        dir: &std::path::Path,
        stdin: std::process::Stdio,
        stdout: std::process::Stdio,
    ) -> std::process::Child {
        let cfg = dir.join("c.json");
        let alpha = misbehave(&[], &format!(", {FAST_HEALTH}"));
        std::fs::write(&cfg, format!(r#"{{ "mcpServers": {{ "alpha": {alpha} }} }}"#)).unwrap();
        std::process::Command::new(warden())
            .args(["run", "--stdio", "--log-dir", "none", "--db"])
            .arg(dir.join("w.db"))
            .arg("-c")
            .arg(cfg)
            .env_remove("WARDEN_TOKEN")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    fn new(
        child: std::process::Child,
        to: Box<dyn std::io::Write + Send>,
        from: Box<dyn std::io::Read + Send>,
    ) -> Self {
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(from).lines() {
                let Ok(line) = line else { return };
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        Self { child, to, lines }
    }

    fn send(&mut self, v: Value) {
        writeln!(self.to, "{v}").unwrap();
        self.to.flush().unwrap();
    }

    fn answer(&self, id: i64) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let m = self.lines.recv_timeout(left).expect("an answer within 30 s");
            if m.get("method").is_none() && m["id"] == id {
                return m;
            }
        }
    }

    /// Handshake, then calls `alpha__echo` once the tool is listed.
    fn echo(&mut self) -> Value {
        self.send(json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "desktop", "version": "0" } } }));
        assert!(self.answer(0)["result"]["serverInfo"].is_object());
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
        let began = Instant::now();
        for id in 1.. {
            self.send(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" }));
            if self.answer(id).to_string().contains("alpha__echo") {
                break;
            }
            assert!(began.elapsed() < Duration::from_secs(30), "alpha's tools never listed");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.send(json!({ "jsonrpc": "2.0", "id": 1000, "method": "tools/call",
                          "params": { "name": "alpha__echo", "arguments": { "text": "hi" } } }));
        self.answer(1000)
    }

    /// Whether Warden reads fd `fd` non-blocking (from its event loop).
    fn nonblocking(&self, fd: u32) -> bool {
        let info =
            std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", self.child.id())).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
        u32::from_str_radix(flags, 8).unwrap() & 0o4000 != 0
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use std::io::Write as _;

/// A client that launched Warden with pipes (Python's `subprocess`, rmcp) or with a socket
/// pair (Node's `child_process`, so Electron clients) is read and answered from Warden's
/// event loop (its stdin and stdout non-blocking); one that gave it a file is still served.
#[test]
fn a_desktop_client_on_pipes_sockets_or_a_file_is_served() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();

    // Pipes, whose Warden ends the test keeps too (as a wrapper script that inherited them
    // would): non-blocking while Warden serves, put back when its session ends.
    let (stdin_r, stdin_w) = std::io::pipe().unwrap();
    let (stdout_r, stdout_w) = std::io::pipe().unwrap();
    let child = Desktop::start(
        dir.path(),
        Stdio::from(stdin_r.try_clone().unwrap()),
        Stdio::from(stdout_w.try_clone().unwrap()),
    );
    let mut pipes = Desktop::new(child, Box::new(stdin_w), Box::new(stdout_r));
    assert_eq!(text(&pipes.echo()), "hi");
    assert!(pipes.nonblocking(0) && pipes.nonblocking(1), "pipes are on the event loop");
    let blocking = |fd: &dyn std::os::fd::AsFd| {
        let flags = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()),
            nix::fcntl::FcntlArg::F_GETFL,
        )
        .unwrap();
        flags & nix::libc::O_NONBLOCK == 0
    };
    assert!(!blocking(&stdin_r), "the kept end shares the open file");
    pipes.to = Box::new(std::io::sink()); // the end of stdin: Warden ends
    let began = Instant::now();
    while pipes.child.try_wait().unwrap().is_none() {
        assert!(began.elapsed() < Duration::from_secs(20), "warden did not end with its stdin");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(blocking(&stdin_r) && blocking(&stdout_w), "flags put back when Warden ended");
    drop(pipes);

    let (ours_in, theirs_in) = UnixStream::pair().unwrap();
    let (ours_out, theirs_out) = UnixStream::pair().unwrap();
    let child = Desktop::start(
        dir.path(),
        Stdio::from(OwnedFd::from(theirs_in)),
        Stdio::from(OwnedFd::from(theirs_out)),
    );
    let mut sockets = Desktop::new(child, Box::new(ours_in), Box::new(ours_out));
    assert_eq!(text(&sockets.echo()), "hi");
    assert!(sockets.nonblocking(0) && sockets.nonblocking(1), "sockets are on the event loop");
    drop(sockets);

    // A file: everything at once, then its end; the answers still come before Warden ends.
    let input = dir.path().join("in.jsonl");
    let lines = [
        json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "file", "version": "0" } } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }),
    ];
    std::fs::write(&input, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let mut child = Desktop::start(
        dir.path(),
        Stdio::from(std::fs::File::open(&input).unwrap()),
        Stdio::piped(),
    );
    let from = child.stdout.take().unwrap();
    let file = Desktop::new(child, Box::new(std::io::sink()), Box::new(from));
    assert!(file.answer(0)["result"]["serverInfo"].is_object());
    assert_eq!(file.answer(1)["result"], json!({}));
}
