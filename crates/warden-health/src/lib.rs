//! Pure health logic, no I/O: the per-instance state machine with hysteresis, the restart
//! backoff and intensity limit, probe verdicts (busy is not hung) and per-instance statistics.
//! Everything takes time as an argument, so tests run on paused tokio time in milliseconds.

mod backoff;
mod machine;
mod probe;
mod stats;

pub use backoff::{Backoff, RestartIntensity};
pub use machine::{CallOutcome, HealthMachine, Thresholds, Transition};
pub use probe::{next_probe_delay, probe_timeout_verdict, should_kill_hung, ProbeVerdict};
pub use stats::{InstanceStats, StatsSnapshot};

#[cfg(test)]
mod tests;
