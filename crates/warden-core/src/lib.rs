//! Warden's shared vocabulary: instance ids, states, failure classes, exit records and the typed
//! events every other crate speaks. No I/O lives here, so every crate can depend on it.

pub mod child_env;
pub mod dayfiles;
mod event;
mod state;
pub mod wire;

pub use event::{AlertInfo, Event, EventBus, EventKind, RecoveryAction, TraceId};
pub use state::{ExitInfo, FailureClass, InstanceId, InstanceState, Reason, ServerStatus};

/// Wall-clock timestamps as they appear in every output (RFC 3339, UTC).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current wall-clock time.
pub fn now() -> Timestamp {
    chrono::Utc::now()
}

/// One periodic measurement of an instance, stored as rows of `integration_health_metrics`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MetricSample {
    pub instance: InstanceId,
    pub at: Timestamp,
    pub state: InstanceState,
    /// Median response time over the recent window, in milliseconds.
    pub response_time_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Failed share of requests over the recent window, 0..1.
    pub error_rate: f64,
    /// Share of time routable, 0..1.
    pub availability: f64,
    /// Requests per second over the recent window.
    pub throughput: f64,
}

/// Tool calls of one tool of one server in one UTC hour, as the gateway counted them; rows of
/// the `tool_usage` rollup table (added to what is there for the same hour).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ToolUsage {
    pub server: String,
    pub tool: String,
    /// The start of the hour (UTC).
    pub hour: Timestamp,
    pub calls: u64,
    /// Calls that failed for the server's sake (unavailable, timed out, transport or server
    /// error); `isError` results, the caller's mistakes and cancellations are not errors.
    pub errors: u64,
    /// Latency as the client saw it, summed over the calls, in milliseconds.
    pub total_ms: f64,
    pub max_ms: f64,
    /// Calls whose arguments equal one of the last few calls' of the same tool.
    pub repeats: u64,
}
