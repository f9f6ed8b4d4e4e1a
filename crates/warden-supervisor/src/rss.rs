//! The resident memory of a child's whole process group (`npx`/`uvx`/`sh -c` wrappers start
//! the real server as a grandchild), read from `/proc`. Linux only; elsewhere `None`.

/// Sum of `VmRSS` over every process whose process group is `pgid`, in bytes.
pub(crate) fn group_rss(pgid: u32) -> Option<u64> {
    let dir = std::fs::read_dir("/proc").ok()?;
    let mut total = 0u64;
    let mut found = false;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        // Processes come and go while we read: a vanished one is skipped.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if pgrp(&stat) != Some(pgid) {
            continue;
        }
        if let Some(kb) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .as_deref()
            .and_then(vm_rss_kb)
        {
            total += kb * 1024;
            found = true;
        }
    }
    found.then_some(total)
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

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_lines() {
        assert_eq!(super::pgrp("42 (my (odd) name) S 1 4242 4242 0 -1"), Some(4242));
        assert_eq!(super::vm_rss_kb("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12345));
        assert_eq!(super::vm_rss_kb("Name:\tx\n"), None);
    }

    #[test]
    fn reads_a_real_group() {
        // This test process leads no group of its own, but its group has at least itself.
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let group = super::pgrp(&stat).unwrap();
        assert!(super::group_rss(group).unwrap() > 1024 * 1024);
    }
}
