//! Warden's shared vocabulary: instance ids, states, failure classes, exit records and the typed
//! events every other crate speaks. No I/O lives here, so every crate can depend on it.

mod event;
mod state;

pub use event::{Event, EventBus, EventKind, RecoveryAction, TraceId};
pub use state::{ExitInfo, FailureClass, InstanceId, InstanceState, Reason, ServerStatus};

/// Wall-clock timestamps as they appear in every output (RFC 3339, UTC).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current wall-clock time.
pub fn now() -> Timestamp {
    chrono::Utc::now()
}
