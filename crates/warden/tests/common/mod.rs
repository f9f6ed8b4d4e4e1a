//! Helpers for end-to-end tests: real child processes, real sockets, a real database.
#![allow(dead_code, unreachable_pub)]

pub mod fleet;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_app::{App, RunOptions};
use warden_config::Config;
use warden_core::{Event, InstanceState};
use warden_store::Location;
use warden_supervisor::InstanceView;

/// The `warden` binary under test (it also serves as the misbehaving server: `warden misbehave`).
pub fn warden() -> &'static str {
    env!("CARGO_BIN_EXE_warden")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/warden is two levels down")
        .to_owned()
}

/// The official server-everything, installed by `npm ci --prefix tests/npm`.
pub fn everything_js() -> String {
    let p = workspace_root()
        .join("tests/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        p.exists(),
        "{} is missing: run `npm ci --prefix tests/npm` (scripts/test does)",
        p.display()
    );
    p.display().to_string()
}

/// The Python interpreter of the venv holding the official `mcp` SDK (scripts/test makes it).
pub fn python() -> String {
    let p = workspace_root().join("tests/python/.venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/test, which creates it", p.display());
    p.display().to_string()
}

pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A server entry running `warden misbehave ARGS`.
pub fn misbehave(args: &[&str], extra: &str) -> String {
    let mut all = vec!["misbehave"];
    all.extend_from_slice(args);
    format!(
        r#"{{ "command": {}, "args": {} {extra} }}"#,
        json_str(warden()),
        serde_json::to_string(&all).unwrap()
    )
}

/// Fast probes for tests: the policy mechanics are the same, only the numbers are smaller.
pub const FAST_HEALTH: &str = r#""health": { "interval": "500ms", "timeout": "400ms", "edge_interval": "200ms", "hang_timeout": "3s" }"#;
pub const FAST_RESTART: &str = r#""restart": { "backoff": { "initial": "100ms", "max": "1s" } }"#;

pub fn config(servers: &[(&str, String)]) -> Config {
    let body: Vec<String> = servers.iter().map(|(n, s)| format!("{}: {s}", json_str(n))).collect();
    let text = format!(r#"{{ "mcpServers": {{ {} }} }}"#, body.join(",\n"));
    match warden_config::compile(&text, &|_| None) {
        Ok(l) => l.config,
        Err(e) => panic!("test config is invalid: {e}\n{text}"),
    }
}

pub struct Running {
    pub app: App,
    pub dir: tempfile::TempDir,
    pub events: tokio::sync::broadcast::Receiver<Arc<Event>>,
    pub seen: Vec<Arc<Event>>,
}

pub async fn start(config: Config) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let app = start_in(config, dir.path(), false, None).await;
    let events = app.bus().subscribe();
    Running { app, dir, events, seen: vec![] }
}

impl Running {
    pub fn view(&self, server: &str, index: usize) -> InstanceView {
        self.app.registry().server(server).expect("server exists").views()[index].clone()
    }

    fn drain(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
    }

    /// Polls until `pred` holds for the instance, failing the test after `within`.
    pub async fn wait(
        &mut self,
        server: &str,
        index: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&InstanceView) -> bool,
    ) -> InstanceView {
        let start = Instant::now();
        loop {
            self.drain();
            let v = self.view(server, index);
            if pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < within,
                "{server}#{index}: not {what} within {within:?}; now {} ({:?})",
                v.state,
                v.reason
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_state(
        &mut self,
        server: &str,
        index: usize,
        state: InstanceState,
        within: Duration,
    ) -> InstanceView {
        self.wait(server, index, within, state.as_str(), |v| v.state == state).await
    }

    /// Events seen so far with this kind name, for this instance.
    pub fn events_named(&mut self, instance: &str, name: &str) -> Vec<Arc<Event>> {
        self.drain();
        self.seen
            .iter()
            .filter(|e| {
                e.kind.name() == name
                    && e.instance.as_ref().is_some_and(|i| i.to_string() == instance)
            })
            .cloned()
            .collect()
    }

    /// Waits (at most `within`) until an event of this kind was seen for this instance: a view
    /// changes a moment before the events of the change are emitted.
    pub async fn wait_event(
        &mut self,
        instance: &str,
        name: &str,
        within: Duration,
    ) -> Vec<Arc<Event>> {
        let start = Instant::now();
        loop {
            let found = self.events_named(instance, name);
            if !found.is_empty() {
                return found;
            }
            assert!(start.elapsed() < within, "no {name} event for {instance} within {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops everything and waits for the database writer to flush.
    pub async fn stop(self) -> (warden_store::Store, tempfile::TempDir) {
        let path = self.dir.path().join("warden.db");
        self.app.shutdown().await;
        let store = warden_store::Store::open(&Location::Sqlite(path)).await.unwrap();
        (store, self.dir)
    }
}

/// Whether a process is alive (a zombie counts as dead: it is only waiting to be reaped).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state =
                stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()).unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Every descendant of `root` (children, grandchildren, …) from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(after) = stat.rsplit(')').next() else { continue };
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        parents.push((pid, ppid));
    }
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (child, parent) in &parents {
            if *parent == p && !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

/// `warden misbehave ARGS` as a process of its own (a remote server Warden connects to).
pub fn misbehave_process(args: &[&str]) -> std::process::Child {
    std::process::Command::new(warden())
        .arg("misbehave")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A free loopback port (bound and released; good enough for tests that restart a server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills a child we started, by its pid.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
        .expect("signal the process");
}

/// A whole config text (with a `warden` block), compiled; panics with the errors.
pub fn config_text(text: &str) -> Config {
    match warden_config::compile(text, &|_| None) {
        Ok(l) => l.config,
        Err(e) => panic!("test config is invalid: {e}\n{text}"),
    }
}

/// Starts Warden with its HTTP listener on a loopback port; returns it, its database's
/// directory and the bound address.
pub async fn listening(config: Config, token: Option<&str>) -> (App, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let app = start_in(config, dir.path(), true, token).await;
    let addr = app.http_addr().unwrap().to_string();
    (app, dir, addr)
}

/// Starts Warden on the database in `dir` (started again there, it finds what the last run
/// stored), with its HTTP listener on a loopback port if `listen`.
pub async fn start_in(config: Config, dir: &Path, listen: bool, token: Option<&str>) -> App {
    App::start(RunOptions {
        config,
        database: Location::Sqlite(dir.join("warden.db")),
        listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
        token: token.map(str::to_owned),
        connectors: None,
        http_threads: None,
    })
    .await
    .expect("warden starts")
}

/// Waits (30 s at most) until the server's first instance is healthy; returns its pid.
pub async fn healthy_pid(app: &App, server: &str) -> u32 {
    let start = Instant::now();
    loop {
        let v = app.registry().server(server).unwrap().views()[0].clone();
        if v.state == InstanceState::Healthy {
            return v.pid.unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{server} not healthy: {}", v.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `warden run -c CONFIG` as its own process on a free loopback port, its database in `dir`,
/// no log files, with `envs` added to its environment; returns once `/livez` answers (20 s at
/// most), with the base URL. Killed if dropped.
pub async fn run_warden(
    config: &Path,
    dir: &Path,
    envs: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    run_warden_on(config, Some(&dir.join("w.db")), envs).await
}

/// `warden run --stdio` with config `config`, database `db`, no log files and `extra`
/// arguments; stdin and stdout piped for a client, killed when dropped.
pub fn warden_stdio(config: &Path, db: &Path, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(warden())
        .args(["run", "--stdio"])
        .args(extra)
        .arg("--db")
        .arg(db)
        .args(["--log-dir", "none", "-c"])
        .arg(config)
        .env_remove("WARDEN_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// How many runtime worker threads process `pid` has (Warden names them `warden-worker`).
///
/// The fewest of five reads 20 ms apart: Linux gives a new thread its creator's name until the
/// thread sets its own, so a blocking-pool thread a worker has just started shows up as
/// `warden-worker` for a moment (a flaky count of 2 under load). A real extra worker is in
/// every read.
pub fn runtime_workers(pid: u32) -> usize {
    threads_named(pid, |name| name == "warden-worker")
}

/// How many HTTP threads (`warden-http-N`, the data plane) process `pid` has; counted as
/// [`runtime_workers`].
pub fn http_threads(pid: u32) -> usize {
    threads_named(pid, |name| {
        name.strip_prefix("warden-http-").is_some_and(|n| n.parse::<usize>().is_ok())
    })
}

fn threads_named(pid: u32, named: impl Fn(&str) -> bool) -> usize {
    let read = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| named(comm.trim()))
            .count()
    };
    (0..5)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            read()
        })
        .min()
        .unwrap_or(0)
}

/// [`run_warden`] with the database `db`, or with none given (`WARDEN_DB` in `envs`, say).
pub async fn run_warden_on(
    config: &Path,
    db: Option<&Path>,
    envs: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let port = free_port();
    let mut command = tokio::process::Command::new(warden());
    command.args(["run", "-c"]).arg(config).args(["--listen", &format!("127.0.0.1:{port}")]);
    if let Some(db) = db {
        command.arg("--db").arg(db);
    }
    let child = command
        .args(["--log-dir", "none"])
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/livez")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "warden did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}
