//! Warden watching itself, through the real binary: its log files (written, scrubbed, failing
//! and recovering, shown in `/health/status`) and systemd's notify protocol (READY, WATCHDOG,
//! STOPPING; children never see the socket).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// A `warden run` process, killed if the test fails before stopping it.
struct Warden(Option<Child>);

impl Warden {
    fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `warden run` on a free port with every default path inside `dir`; its stderr goes to
/// `dir/stderr.log` (shown when a test fails).
fn run_warden(dir: &Path, cfg: &str, extra: &[&str], env: &[(&str, &str)]) -> (Warden, String) {
    let file = dir.join("config.json");
    std::fs::write(&file, cfg).unwrap();
    let port = free_port();
    let mut c = Command::new(warden());
    c.env("XDG_STATE_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_LOG_DIR")
        .env_remove("WARDEN_TOKEN")
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("w.db"))
        .arg("-c")
        .arg(&file)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    (Warden(Some(c.spawn().unwrap())), format!("http://127.0.0.1:{port}"))
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

/// Waits until `url` answers with JSON for which `pred` holds.
fn poll_json(
    dir: &Path,
    url: &str,
    within: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut last = serde_json::Value::Null;
    loop {
        let got = rt.block_on(async {
            client.get(url).send().await.ok()?.json::<serde_json::Value>().await.ok()
        });
        if let Some(v) = got {
            if pred(&v) {
                return v;
            }
            last = v;
        }
        assert!(
            start.elapsed() < within,
            "{url} did not reach the expected state within {within:?}; last answer {last}\nwarden's stderr:\n{}",
            stderr_of(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every `warden.*.log` file in `logs`, concatenated (a test may span midnight).
fn log_text(logs: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("warden.") && n.ends_with(".log"))
    });
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
}

fn wait_for(dir: &Path, what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}\nwarden's stderr:\n{}",
            stderr_of(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(dir: &Path, child: Warden) {
    signal(child.pid(), Signal::SIGTERM);
    wait_exit(dir, child);
}

fn wait_exit(dir: &Path, mut child: Warden) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.as_mut().expect("running").try_wait().unwrap() {
            child.0 = None;
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "warden did not exit after SIGTERM\n{}",
            stderr_of(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", stderr_of(dir));
}

#[test]
fn log_files_are_scrubbed_and_a_failing_log_directory_degrades_health_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let secret = "sk-log-5e1d7a";
    // The child writes the secret to its stderr, which Warden logs: the file must show ***.
    let cfg = format!(
        r#"{{ "mcpServers": {{ "s": {{ "command": "sh",
            "args": ["-c", "echo \"token=$SECRET_VALUE\" >&2; exec \"$0\" misbehave", {}],
            "env": {{ "SECRET_VALUE": "${{env:SECRET_X}}" }}, {FAST_HEALTH} }} }} }}"#,
        json_str(warden())
    );
    let log_dir = logs.display().to_string();
    let (child, base) = run_warden(
        dir.path(),
        &cfg,
        &["--log-dir", &log_dir, "--log-format", "json"],
        &[("SECRET_X", secret)],
    );
    let status = format!("{base}/health/status");
    // (Warden may be degraded already, e.g. by a nearly full disk on the test machine.)
    let v = poll_json(dir.path(), &status, Duration::from_secs(30), |v| {
        v["checks"]["upstreams"]["status"] == "healthy"
            && v["checks"]["logs"]["status"] == "ok"
            && v["checks"]["logs"]["lines_written"].as_u64() > Some(0)
    });
    let before = v["status"].clone();
    assert!(v["checks"]["logs"]["path"].as_str().unwrap().starts_with(&log_dir), "{v}");
    wait_for(
        dir.path(),
        "the child's stderr line in the log file",
        Duration::from_secs(10),
        || log_text(&logs).contains("token="),
    );
    let text = log_text(&logs);
    assert!(!text.contains(secret), "a secret reached the log file:\n{text}");
    assert!(text.contains("token=***"), "{text}");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(text.contains("warden started"), "{text}");
    assert!(!text.contains("\u{1b}["), "no colors in files");
    // --log-dir wins over the default under XDG_STATE_HOME.
    assert!(!dir.path().join("warden/logs").exists());

    // A regular file where the directory was: writes fail, even for root.
    std::fs::rename(&logs, dir.path().join("logs.old")).unwrap();
    std::fs::write(&logs, "in the way").unwrap();
    let v = poll_json(dir.path(), &status, Duration::from_secs(15), |v| {
        v["checks"]["logs"]["status"] == "failing"
    });
    assert_eq!(v["status"], "degraded", "a failing log degrades, never more: {v}");
    assert!(v["checks"]["logs"]["failures"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["checks"]["logs"]["last_error"].is_string(), "{v}");
    // Warden keeps serving meanwhile.
    poll_json(dir.path(), &format!("{base}/api/servers"), Duration::from_secs(5), |v| {
        v["status"] == "healthy"
    });

    // Out of the way: the directory is recreated and the files are written again.
    std::fs::remove_file(&logs).unwrap();
    poll_json(dir.path(), &status, Duration::from_secs(15), |v| {
        v["checks"]["logs"]["status"] == "ok" && v["status"] == before
    });
    wait_for(dir.path(), "a line in the recreated directory", Duration::from_secs(10), || {
        log_text(&logs).contains("writable again")
    });
    stop(dir.path(), child);
    assert!(log_text(&logs).contains("warden stopped"), "the last lines are flushed at exit");
    let stderr = stderr_of(dir.path());
    assert!(stderr.contains("cannot write the log files"), "stderr says so: {stderr}");
    assert!(!stderr.contains(secret));

    // Only `run` writes log files.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(warden())
        .env("XDG_STATE_HOME", other.path())
        .env("SECRET_X", secret)
        .env_remove("WARDEN_LOG_DIR")
        .args(["validate", "-c"])
        .arg(dir.path().join("config.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!other.path().join("warden").exists());
}

/// Reads datagrams until `done` says so about everything received, or `within` passes.
fn receive_until(
    sock: &UnixDatagram,
    got: &mut Vec<String>,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while !done(got) {
        if start.elapsed() >= within {
            return false;
        }
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    true
}

fn count(got: &[String], line: &str) -> usize {
    got.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping_and_children_never_see_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let cfg = format!(
        r#"{{ "mcpServers": {{ "s": {} }} }}"#,
        misbehave(&[], &format!(", {FAST_HEALTH}"))
    );
    let notify = path.display().to_string();
    let (child, base) = run_warden(
        dir.path(),
        &cfg,
        &[],
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "200000")],
    );
    let mut got = Vec::new();
    let ok = receive_until(&sock, &mut got, Duration::from_secs(30), |g| {
        count(g, "READY=1") == 1 && count(g, "WATCHDOG=1") >= 2
    });
    assert!(ok, "READY=1 and two WATCHDOG=1 not received: {got:?}\n{}", stderr_of(dir.path()));
    let ready = got.iter().position(|m| m.lines().any(|l| l == "READY=1")).unwrap();
    assert!(got[ready].contains("STATUS="), "{got:?}");
    // Pets come every WATCHDOG_USEC / 2.
    let t = Instant::now();
    let before = count(&got, "WATCHDOG=1");
    receive_until(&sock, &mut got, Duration::from_secs(1), |_| false);
    let pets = count(&got, "WATCHDOG=1") - before;
    assert!(pets >= 5, "{pets} pets in {:?}: {got:?}", t.elapsed());

    // The child's environment has none of systemd's variables.
    let v = poll_json(dir.path(), &format!("{base}/api/servers"), Duration::from_secs(30), |v| {
        v["servers"][0]["instances"][0]["pid"].is_u64()
    });
    let pid = v["servers"][0]["instances"][0]["pid"].as_u64().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<String> =
        environ.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    assert!(vars.iter().any(|v| v.starts_with("XDG_STATE_HOME=")), "the rest is inherited");
    for name in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(!vars.iter().any(|v| v.starts_with(name)), "the child inherited {name}");
    }

    signal(child.pid(), Signal::SIGTERM);
    let ok =
        receive_until(&sock, &mut got, Duration::from_secs(10), |g| count(g, "STOPPING=1") == 1);
    assert!(ok, "no STOPPING=1 after SIGTERM: {got:?}");
    wait_exit(dir.path(), child);
    // Without --log-dir, the files go under $XDG_STATE_HOME/warden/logs.
    let text = log_text(&dir.path().join("warden/logs"));
    assert!(text.contains("warden started") && text.contains("warden stopped"), "{text}");
}
