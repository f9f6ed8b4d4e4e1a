//! Warden's shared vocabulary: instance ids, states, failure classes, exit records and the typed
//! events every other crate speaks. No I/O lives here, so every crate can depend on it.

mod event;
mod state;
pub mod wire;

pub use event::{Event, EventBus, EventKind, RecoveryAction, TraceId};
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
