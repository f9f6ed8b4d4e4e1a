//! Warden's operational services: what it does with the store and the supervisor's live views
//! besides supervising and routing. No HTTP here — warden-admin serves every one of these, and
//! the composition root (warden-app) starts them.
//!
//! - [`alerting`]: the evaluation loop over the rules of `warden-alerts`, the notification
//!   outbox and its delivery to receivers, silences.
//! - [`tuning`]: run-time policy changes; the pure learning rules apart from the orchestration.
//! - [`reports`]: failures, performance, capacity and availability over a period.
//! - [`usage`]: the gateway's per-tool counts moved into the store.
//! - [`eventlog`], [`logfiles`]: the JSONL event log, and how Warden's own log files do.
//! - [`logstream`]: Warden's own log lines, live, for `GET /logs`.
//! - [`reloads`]: the record of live reloads (applied, refused) and the way to ask for one.
//! - [`fleet`]: replicas sharing one PostgreSQL database: heartbeat, views, the fleet view.

pub mod alerting;
pub mod eventlog;
pub mod fleet;
pub mod logfiles;
pub mod logstream;
pub mod reloads;
pub mod reports;
pub mod toolpick;
pub mod tuning;
pub mod usage;

use warden_core::Timestamp;

/// Why a request could not be served: the HTTP status a route answers with, and the message
/// (the MCP tools put the message in their error).
pub type Refusal = (http::StatusCode, String);

/// `since` / `until`: an RFC 3339 timestamp, or a duration meaning that long before `now`.
/// The message names the parameter (`name`), for a 400 or an MCP tool's error.
pub fn parse_instant(name: &str, text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    warden_config::parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            format!(
                "{name}: {text:?} is neither an RFC 3339 timestamp (2026-01-02T15:04:05Z) \
                 nor a duration before now (15m, 2h)"
            )
        })
}
