//! The processes a benchmark starts: `warden run` on a free loopback port, stopped by its PID
//! when dropped, and its CPU and memory read from `/proc`.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A child process of the bench: SIGTERMed (by its PID) and reaped when dropped.
pub(crate) struct Proc(pub(crate) std::process::Child);

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `warden run` on `127.0.0.1:port` with config `cfg` and a database in `dir` (no token, even
/// if `WARDEN_TOKEN` is set here; no log files), stopped when dropped.
pub(crate) fn run_warden(warden: &Path, dir: &Path, cfg: &Path, port: u16) -> Proc {
    run_warden_env(warden, dir, cfg, port, &[])
}

/// [`run_warden`] with these variables set for it.
pub(crate) fn run_warden_env(
    warden: &Path,
    dir: &Path,
    cfg: &Path,
    port: u16,
    env: &[(&str, String)],
) -> Proc {
    Proc(
        std::process::Command::new(warden)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["run", "--log-level", "warn", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(dir.join("w.db"))
            .arg("-c")
            .arg(cfg)
            .env_remove("WARDEN_TOKEN")
            // Benchmarks leave no log files in the user's state directory.
            .env("WARDEN_LOG_DIR", "none")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Writes `{"mcpServers": {name: spec, …}}` to `dir/c.json` and returns its path.
pub(crate) fn write_config(dir: &Path, servers: &[(String, String)]) -> std::path::PathBuf {
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, crate::servers_json(servers)).unwrap();
    cfg
}

/// Until `url` answers at all.
pub(crate) async fn wait_http(url: &str) {
    let start = Instant::now();
    while reqwest::get(url).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Until the Warden at `base` says every server is healthy (`/api/servers`).
pub(crate) async fn wait_healthy(base: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let v: Option<serde_json::Value> =
            async { reqwest::get(format!("{base}/api/servers")).await.ok()?.json().await.ok() }
                .await;
        if v.is_some_and(|v| v["status"] == "healthy") {
            return;
        }
        assert!(start.elapsed() < within, "the servers were not healthy within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// User + system CPU of a process, in clock ticks (USER_HZ, 100 a second on Linux).
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are 12 and 13 after the command name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Resident memory of a process, MiB.
pub(crate) fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}

/// How long the threads of a process have waited, runnable, for a CPU, ns (the second field
/// of each thread's `schedstat`; threads that ended are not counted).
fn run_delay_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The CPU a process uses over a window, and how long its threads waited for one: started by
/// [`CpuMeter::start`], read by `percent` and `waited_ms_per_s`.
pub(crate) struct CpuMeter {
    pid: u32,
    ticks: u64,
    delay_ns: u64,
    at: Instant,
}

impl CpuMeter {
    pub(crate) fn start(pid: u32) -> Self {
        Self { pid, ticks: cpu_ticks(pid), delay_ns: run_delay_ns(pid), at: Instant::now() }
    }

    /// Percent of one core since the start.
    pub(crate) fn percent(&self) -> f64 {
        let ticks = cpu_ticks(self.pid) - self.ticks;
        ticks as f64 / 100.0 / self.at.elapsed().as_secs_f64() * 100.0
    }

    /// Milliseconds per second the process's threads were runnable but not running: the
    /// machine's contention, as this process felt it.
    pub(crate) fn waited_ms_per_s(&self) -> f64 {
        let waited = run_delay_ns(self.pid).saturating_sub(self.delay_ns);
        waited as f64 / 1e6 / self.at.elapsed().as_secs_f64()
    }
}
