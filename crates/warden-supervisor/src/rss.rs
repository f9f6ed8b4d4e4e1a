//! The resident memory of a child's whole process group (`npx`/`uvx`/`sh -c` wrappers start
//! the real server as a grandchild), read from `/proc`. Linux only; elsewhere `None`.
//!
//! The work is proportional to the group, not to the host: starting from the group leader (the
//! child Warden started, whose pid is the group id), it follows `/proc/PID/task/TID/children`
//! down the process tree and counts every descendant still in the group. A descendant that
//! left the group (`setsid`, its own `setpgid`) is not counted — it is no longer stopped with
//! the group either — and neither is one reparented away after its parent died (to init or a
//! subreaper); both are rare for MCP servers. The reads are blocking file reads: the caller runs
//! them off the async runtime (see [`Sampler`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

/// At most this many processes are read for one group (a fork bomb must not make a sample
/// read the whole host after all).
const MAX_MEMBERS: usize = 4096;

/// Sum of `VmRSS` over the process group led by `leader`, in bytes.
pub(crate) fn group_rss(leader: u32) -> Option<u64> {
    group_rss_in(Path::new("/proc"), leader)
}

/// [`group_rss`] over a `/proc` mounted at `proc` (a test builds a fake one).
pub(crate) fn group_rss_in(proc: &Path, leader: u32) -> Option<u64> {
    let mut todo = vec![leader];
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut found = false;
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) || seen.len() > MAX_MEMBERS {
            continue;
        }
        let dir = proc.join(pid.to_string());
        // Processes come and go while we read: a vanished one is skipped.
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else { continue };
        if pgrp(&stat) != Some(leader) {
            continue;
        }
        if let Some(kb) =
            std::fs::read_to_string(dir.join("status")).ok().as_deref().and_then(vm_rss_kb)
        {
            total += kb * 1024;
            found = true;
        }
        todo.extend(children(&dir));
    }
    found.then_some(total)
}

/// The children of every thread of the process at `dir`.
fn children(dir: &Path) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(dir.join("task")) else { return vec![] };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>()
        })
        .collect()
}

/// Field 5 of `/proc/PID/stat` (after the parenthesized command, which may hold spaces).
fn pgrp(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn vm_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples a group's RSS on the blocking pool, never on a runtime worker: each call returns
/// the result of the previous sample (one interval old) and starts the next one, unless one is
/// still running.
#[derive(Default)]
pub(crate) struct Sampler {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    latest: Option<u64>,
    busy: bool,
}

impl Sampler {
    /// The latest finished sample, and a new one started for `leader` (none: the instance has
    /// no process, and the latest is forgotten).
    pub(crate) fn sample(&self, leader: Option<u32>) -> Option<u64> {
        let mut slot = self.slot.lock().expect("not poisoned");
        let Some(leader) = leader else {
            slot.latest = None;
            return None;
        };
        if !slot.busy {
            slot.busy = true;
            let shared = Arc::clone(&self.slot);
            tokio::task::spawn_blocking(move || {
                let rss = group_rss(leader);
                let mut slot = shared.lock().expect("not poisoned");
                slot.latest = rss;
                slot.busy = false;
            });
        }
        slot.latest
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn parses_proc_lines() {
        assert_eq!(super::pgrp("42 (my (odd) name) S 1 4242 4242 0 -1"), Some(4242));
        assert_eq!(super::vm_rss_kb("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12345));
        assert_eq!(super::vm_rss_kb("Name:\tx\n"), None);
    }

    fn fake(proc: &Path, pid: u32, pgid: u32, rss_kb: u64, children: &[u32]) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(dir.join("task").join(pid.to_string())).unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} (srv x) S 1 {pgid} {pgid} 0 -1")).unwrap();
        std::fs::write(dir.join("status"), format!("Name:\tsrv\nVmRSS:\t{rss_kb} kB\n")).unwrap();
        let kids: Vec<String> = children.iter().map(u32::to_string).collect();
        std::fs::write(dir.join("task").join(pid.to_string()).join("children"), kids.join(" "))
            .unwrap();
    }

    #[test]
    fn only_the_groups_own_tree_is_read() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        // 100 leads the group: a child 101 in the group with a grandchild 102, and a child 103
        // that left the group (its own session).
        fake(p, 100, 100, 1000, &[101, 103]);
        fake(p, 101, 100, 200, &[102]);
        fake(p, 102, 100, 30, &[]);
        fake(p, 103, 103, 5000, &[]);
        // An unrelated process that claims the same group: never reached from the leader, so
        // never read (an unreadable entry would be skipped anyway; this one would count).
        fake(p, 900, 100, 777_777, &[]);
        // Garbage where a scan of every pid would trip.
        std::fs::create_dir_all(p.join("901")).unwrap();
        std::fs::write(p.join("901").join("stat"), "\u{0}not a stat").unwrap();
        assert_eq!(super::group_rss_in(p, 100), Some((1000 + 200 + 30) * 1024));
        assert_eq!(super::group_rss_in(p, 555), None, "no such leader");
    }

    #[test]
    fn a_real_child_and_grandchild_both_count() {
        // `sh` leads its own group (process_group(0)) and starts `sleep` as a grandchild.
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let leader = child.id();
        let start = std::time::Instant::now();
        let members = loop {
            let text = std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))
                .unwrap_or_default();
            let n = text.split_whitespace().count();
            if n >= 2 || start.elapsed() > std::time::Duration::from_secs(5) {
                break n;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(members >= 2, "sh started its two sleeps");
        let alone = std::fs::read_to_string(format!("/proc/{leader}/status"))
            .ok()
            .as_deref()
            .and_then(super::vm_rss_kb)
            .unwrap();
        let group = super::group_rss(leader).unwrap();
        assert!(group > alone * 1024, "the grandchildren count: {group} vs {alone} kB alone");
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(leader as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
    }
}
