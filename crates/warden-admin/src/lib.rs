//! Warden's surfaces: every HTTP route and Warden's own MCP tools, over handles to the rest
//! (the supervisor's [`warden_supervisor::Views`] and server handles, the gateway, the store,
//! and the services of warden-ops). Nothing here supervises or decides; the composition root
//! (warden-app) builds a [`Surface`] and serves [`app`].
//!
//! - [`router`]: the router (health, the server view, `/metrics`, merged with the rest),
//!   the session limit, and the listener ([`serve`]).
//! - [`guard`]: Origin, Host, Content-Type and the bearer token, before any route.
//! - [`api`]: `/api/servers…`, `/api/failover…`, history from the store.
//! - `routes`: `/api/alerts…`, `/api/silences…`, `/api/reports…`, `/api/tuning…`.
//! - [`health`]: the `/health/status` snapshot task, liveness and readiness.
//! - [`stream`]: `/events` (SSE) and `/ws`.
//! - [`metrics`]: the Prometheus exposition and the views' collector.
//! - [`tools`]: Warden's own MCP tools on `/mcp`.
//! - [`ui`]: the dashboard (`/`, `/ui/…`), embedded at build time.

pub mod api;
mod data_plane;
mod front;
pub mod guard;
mod h1;
pub mod health;
pub mod metrics;
pub mod router;
mod routes;
mod send_timeout;
pub mod stream;
pub mod tools;
pub mod ui;

pub use data_plane::{Connections, DataPlane};
pub use front::Front;
pub use health::Liveness;
pub use router::{app, front, Limits, State, Surface};
