//! `GET /metrics`: the Prometheus exposition of Warden's one [`Metrics`] registry.
//!
//! What is recorded as it happens lives in `warden-metrics` (probes, calls, failed sessions,
//! retries, failovers, and the event counts). This module adds what is *read* at every
//! scrape from the views every other surface reads too — instance state and up, restarts,
//! calls in flight, circuit breakers, server status, the store — so `/metrics`,
//! `/api/servers` and `/health` never disagree.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use warden_config::ServerSpec;
use warden_core::{EventBus, InstanceState, ServerStatus};
use warden_gateway::{BreakerState, Gateway};
use warden_metrics::scrape::{self, Collector, DescriptorEncoder, Unit};
use warden_metrics::{instance_labels, Labels, Lag, Metrics};
use warden_store::Store;
use warden_supervisor::{InstanceView, Overview};

const BREAKER_STATES: [BreakerState; 3] =
    [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen];
const SERVER_STATUSES: [ServerStatus; 3] =
    [ServerStatus::Healthy, ServerStatus::Degraded, ServerStatus::Unhealthy];

/// The answer to `GET /metrics`.
pub fn exposition(metrics: &Metrics) -> Response {
    ([(header::CONTENT_TYPE, warden_metrics::CONTENT_TYPE)], metrics.encode()).into_response()
}

/// What the scrape-time collector reads besides the supervisor.
pub struct Sources {
    pub gateway: warden_gateway::Gateway,
    pub store: warden_store::Store,
    /// The configured database could not be opened (recording in memory).
    pub store_fallback: bool,
    pub bus: Arc<warden_core::EventBus>,
    /// When Warden started.
    pub started: Instant,
    /// The HTTP listener's serving threads' connections, if it listens.
    pub http: Option<crate::Connections>,
}

/// Registers the scrape-time collector in the registry's metrics.
pub fn register(registry: &warden_supervisor::Registry, src: Sources) {
    let servers = registry.views();
    let started_unix = SystemTime::now()
        .checked_sub(src.started.elapsed())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    registry.metrics().register_collector(Box::new(Views {
        servers,
        gateway: src.gateway,
        store: src.store,
        store_fallback: src.store_fallback,
        bus: src.bus,
        lagged: registry.metrics().events_lagged(),
        started_unix,
        http: src.http,
    }));
}

/// Each server's instance views with their calls in flight, as read for one scrape.
type Snapshot = Vec<(Arc<ServerSpec>, Vec<(InstanceView, usize)>)>;

/// What the scrape reads. Holds no [`Metrics`] (it is registered in one).
struct Views {
    /// Every server as the last reload left them.
    servers: warden_supervisor::Views,
    gateway: Gateway,
    store: Store,
    /// The configured database could not be opened: Warden records in memory.
    store_fallback: bool,
    bus: Arc<EventBus>,
    lagged: Lag,
    started_unix: f64,
    http: Option<crate::Connections>,
}

impl fmt::Debug for Views {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Views")
            .field("servers", &self.servers.handles().len())
            .finish_non_exhaustive()
    }
}

fn with(mut labels: Labels, key: &'static str, value: &str) -> Labels {
    labels.push((key, value.to_owned()));
    labels
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

impl Collector for Views {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let e = &mut e;
        // One consistent snapshot of every view for this scrape.
        let handles = self.servers.handles();
        let snapshot: Snapshot = handles
            .iter()
            .map(|h| {
                let views = h.views().into_iter().enumerate();
                let views = views.map(|(i, v)| (v, h.link(i).map_or(0, |l| l.in_flight())));
                (Arc::clone(&h.spec), views.collect())
            })
            .collect();
        let instances = || snapshot.iter().flat_map(|(_, v)| v);

        scrape::single(e, "up", "1 while Warden runs", None, 1_i64)?;
        scrape::gauge(
            e,
            "build_info",
            "Warden's version (the value is always 1)",
            None,
            [(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1_i64)],
        )?;
        scrape::single(
            e,
            "start_time",
            "When Warden started, as Unix time",
            Some(&Unit::Seconds),
            self.started_unix,
        )?;

        if let Some(http) = &self.http {
            scrape::gauge(
                e,
                "http_connections",
                "Connections open on each thread serving the HTTP listener (a connection calling a \
                 stdio server moves to the thread that reads its output)",
                None,
                http.per_thread()
                    .into_iter()
                    .enumerate()
                    .map(|(n, open)| (vec![("thread", n.to_string())], open as i64)),
            )?;
        }
        scrape::gauge(
            e,
            "instance_up",
            "1 while the instance is routable (healthy or warning), else 0",
            None,
            instances().map(|(v, _)| (instance_labels(&v.id), flag(v.state.is_routable()))),
        )?;
        scrape::gauge(
            e,
            "instance_state",
            "The instance's state, one-hot: 1 for the current state, 0 for the others",
            None,
            instances().flat_map(|(v, _)| {
                InstanceState::ALL.map(|s| {
                    (with(instance_labels(&v.id), "state", s.as_str()), flag(v.state == s))
                })
            }),
        )?;
        scrape::counter(
            e,
            "instance_restarts",
            "Restarts (or reconnects) of the instance since Warden started",
            instances().map(|(v, _)| (instance_labels(&v.id), u64::from(v.restarts))),
        )?;
        scrape::gauge(
            e,
            "calls_in_flight",
            "Calls the gateway has sent to the instance and not yet seen answered",
            None,
            instances().map(|(v, n)| (instance_labels(&v.id), *n as i64)),
        )?;

        let breakers = self.gateway.breakers();
        scrape::gauge(
            e,
            "breaker_state",
            "The instance's circuit breaker, one-hot over closed, open and half_open",
            None,
            breakers.iter().flat_map(|(id, state, _)| {
                BREAKER_STATES
                    .map(|s| (with(instance_labels(id), "state", s.as_str()), flag(*state == s)))
            }),
        )?;
        scrape::counter(
            e,
            "breaker_ejections",
            "Times the instance's circuit breaker opened (the instance was ejected from routing)",
            breakers.iter().map(|(id, _, opened)| (instance_labels(id), *opened)),
        )?;

        let overview = Overview::from_parts(
            snapshot
                .iter()
                .zip(handles.iter())
                .map(|((spec, v), h)| {
                    (
                        Arc::clone(spec),
                        v.iter().map(|(v, _)| v.clone()).collect(),
                        h.failover().get(),
                    )
                })
                .collect(),
        );
        let server = |name: &str| vec![("server", name.to_owned())];
        scrape::gauge(
            e,
            "server_up",
            "1 while something serves the server (its own instances or a fallback), else 0",
            None,
            overview.servers.iter().map(|s| (server(&s.name), flag(s.served_by.is_some()))),
        )?;
        scrape::gauge(
            e,
            "server_status",
            "The server's status, one-hot over healthy, degraded and unhealthy",
            None,
            overview.servers.iter().flat_map(|s| {
                SERVER_STATUSES
                    .map(|st| (with(server(&s.name), "status", st.as_str()), flag(s.status == st)))
            }),
        )?;

        let store = self.store.health();
        scrape::single(
            e,
            "store_degraded",
            "1 while the database cannot be written (or Warden records in memory), else 0",
            None,
            flag(!store.ok || self.store_fallback),
        )?;
        scrape::single(
            e,
            "store_pending_rows",
            "Rows waiting to be written to the database",
            None,
            store.pending as i64,
        )?;
        scrape::counter(
            e,
            "store_rows_dropped",
            "Rows given up on because the backlog overflowed while the database was failing",
            [(Labels::new(), store.dropped)],
        )?;
        scrape::counter(
            e,
            "events_dropped",
            "Events a consumer could not take: the store's queue was full, or the metrics \
             counter lagged behind the bus",
            [
                (vec![("sink", "store".to_owned())], self.bus.dropped()),
                (vec![("sink", "metrics".to_owned())], self.lagged.get()),
            ],
        )?;

        let (coalesced, cache_hits) = self.gateway.optimized_calls();
        scrape::single(
            e,
            "client_sessions",
            "MCP client sessions connected to the gateway",
            None,
            self.gateway.client_sessions() as i64,
        )?;
        scrape::counter(
            e,
            "calls_coalesced",
            "Calls answered with an identical concurrent call's result",
            [(Labels::new(), coalesced)],
        )?;
        scrape::counter(
            e,
            "cache_hits",
            "Calls answered from the result cache",
            [(Labels::new(), cache_hits)],
        )?;
        scrape::counter(
            e,
            "tool_categorizations",
            "Choices of tools for a prompt (analyze_prompt), by method (static, llm) and outcome",
            self.gateway
                .categorizations()
                .into_iter()
                .map(|((m, o), n)| (vec![("method", m), ("outcome", o)], n)),
        )?;
        let (n, secs) = self.gateway.llm_time();
        scrape::counter(
            e,
            "llm_requests",
            "Requests to the tool-choosing model (warden.tools.llm)",
            [(Labels::new(), n)],
        )?;
        scrape::gauge(
            e,
            "llm_request_seconds_sum",
            "Seconds the tool-choosing model's requests took in all (with llm_requests_total: the mean)",
            None,
            [(Labels::new(), secs)],
        )?;
        let counts = self.gateway.exposed_tool_counts();
        scrape::gauge(
            e,
            "exposed_tools_per_session",
            "Servers' tools each client session of /mcp is shown now: the largest and the sum over sessions (with sessions_by_exposure: the mean)",
            None,
            [
                (vec![("stat", "max".to_owned())], counts.iter().copied().max().unwrap_or(0) as i64),
                (vec![("stat", "sum".to_owned())], counts.iter().sum::<usize>() as i64),
            ],
        )?;
        scrape::gauge(
            e,
            "sessions_by_exposure",
            "Client sessions of the aggregated endpoint by what they are shown (all, meta, chosen)",
            None,
            self.gateway
                .exposure_modes()
                .into_iter()
                .map(|(m, n)| (vec![("mode", m.to_owned())], n as i64)),
        )?;
        scrape::counter(
            e,
            "stale_answers",
            "Read-only calls answered from their last good result while nothing could serve them (offline mode)",
            [(Labels::new(), self.gateway.stale_answers())],
        )
    }
}

/// The seed's health gauges (seed 002's exporter names, unprefixed) and Warden's own status
/// gauge, read from the health snapshot at each scrape.
struct HealthGauges {
    health: crate::health::Health,
    /// `mcp_*` (the seed's names) or `warden_health_status` (Warden's).
    seed: bool,
}

impl fmt::Debug for HealthGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthGauges").field("seed", &self.seed).finish_non_exhaustive()
    }
}

impl Collector for HealthGauges {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let e = &mut e;
        let g = self.health.get().gauges;
        if !self.seed {
            return scrape::single(
                e,
                "health_status",
                "Warden's own status, as /health/status says it: 1 healthy, 0.5 degraded, 0 unhealthy",
                None,
                g.status,
            );
        }
        scrape::single(
            e,
            "mcp_health_status",
            "Health status (1=healthy, 0.5=degraded, 0=unhealthy)",
            None,
            g.status,
        )?;
        scrape::single(
            e,
            "mcp_pool_utilization",
            "Connection pool utilization (0-1)",
            None,
            g.pool_utilization,
        )?;
        if let Some(ms) = g.database_latency_ms {
            scrape::single(
                e,
                "mcp_database_latency_ms",
                "Database response time in milliseconds",
                None,
                ms,
            )?;
        }
        Ok(())
    }
}

/// Registers the health gauges: `warden_health_status`, and the seed's `mcp_health_status`,
/// `mcp_pool_utilization`, `mcp_database_latency_ms`.
pub fn register_health(metrics: &Metrics, health: &crate::health::Health) {
    metrics.register_collector(Box::new(HealthGauges { health: health.clone(), seed: false }));
    metrics.register_plain_collector(Box::new(HealthGauges { health: health.clone(), seed: true }));
}
