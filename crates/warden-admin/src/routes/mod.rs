//! The routes of the services in warden-ops: each file turns HTTP into one service's calls
//! and its refusals into the API's one error type.

pub(crate) mod alerts;
pub(crate) mod hub;
pub(crate) mod logs;
pub(crate) mod reports;
pub(crate) mod tuning;
