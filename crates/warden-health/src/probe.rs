//! Probe scheduling and the verdicts that keep a busy server from being called hung.

use std::time::Duration;

use warden_config::HealthPolicy;

/// What a probe that timed out means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// The server sent bytes while the probe was outstanding, or is working on calls and sent
    /// bytes within the busy window: it is alive, just busy. Not a failure.
    Busy,
    /// Nothing came back: a failure.
    Failed,
}

/// Classifies a probe timeout.
///
/// * `bytes_during_probe`: any byte from the server arrived after the probe was sent;
/// * `since_last_byte`: time since the last byte from the server;
/// * `calls_in_flight`: requests other than the probe are outstanding.
pub fn probe_timeout_verdict(
    policy: &HealthPolicy,
    bytes_during_probe: bool,
    since_last_byte: Duration,
    calls_in_flight: bool,
) -> ProbeVerdict {
    if bytes_during_probe || (calls_in_flight && since_last_byte < policy.busy_window) {
        ProbeVerdict::Busy
    } else {
        ProbeVerdict::Failed
    }
}

/// Whether a server that keeps failing probes has been silent long enough to be killed as hung.
pub fn should_kill_hung(
    policy: &HealthPolicy,
    since_last_byte: Duration,
    probe_failures: u32,
) -> bool {
    probe_failures > 0 && since_last_byte >= policy.hang_timeout
}

/// The delay before the next probe: the edge interval while failures are accumulating toward
/// the threshold, the regular interval otherwise; plus up to `jitter` of it, at random.
/// `unit` is a random number in `[0, 1]`.
pub fn next_probe_delay(policy: &HealthPolicy, consecutive_failures: u32, unit: f64) -> Duration {
    if consecutive_failures > 0 && consecutive_failures < policy.unhealthy_threshold {
        return policy.edge_interval;
    }
    policy.interval.mul_f64(1.0 + policy.jitter * unit.clamp(0.0, 1.0))
}
