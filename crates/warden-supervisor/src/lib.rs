//! Supervision: one task per instance that starts or connects it, probes it, restarts it with
//! backoff when it crashes, kills it when it hangs, re-lists its tools after every restart, and
//! publishes everything it learns as typed events and a watchable [`InstanceView`].
//!
//! Reading order: [`registry`] (how a config becomes tasks), then [`instance`] (the loop of one
//! instance), then [`view`] (the shapes every output shares).

mod instance;
mod predict;
mod registry;
mod rss;
mod seeds;
mod standby;
mod tuning;
mod view;

pub use instance::{CallGuard, CallReport, Command, InstanceLink};
pub use registry::{
    ConnectorFactory, OnChange, Registry, ServerHandle, StoppedAtStart, SupervisorOptions, Views,
};
pub use seeds::{SeedBook, ServerSeed, Stamped, SEED_MAX_AGE};
pub use standby::{spawn_standby_control, STANDBY_COOLDOWN};
pub use tuning::Tuned;
pub use view::{
    Failover, FailoverControl, InstanceView, Overview, PredictorStatus, ServerParts, ServerView,
};
pub use warden_health::CallOutcome;

#[cfg(test)]
mod tests;
