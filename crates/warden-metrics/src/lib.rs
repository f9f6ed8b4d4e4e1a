//! Warden's Prometheus metrics: one [`Metrics`] object, made by the app and handed to the
//! places where facts occur.
//!
//! Three ways a number gets here, each chosen so the number cannot disagree with the other
//! views of the same fact:
//! - **At the source**, through handles resolved once per instance or server (no label lookup
//!   on the hot path): probe round trips and failed sessions in the supervisor's instance
//!   loop, every call's latency and error class where the gateway reports the call to the
//!   instance's link, retries, failovers and refusals in the gateway's forwarding.
//! - **From the event bus** ([`Metrics::spawn_event_counter`]): the typed events that also
//!   feed the log, the store and the live stream — probe failures, incidents (one per
//!   `integration_failures` row), crash loops.
//! - **At scrape time**, by a [`Collector`] the app registers ([`Metrics::register_collector`]):
//!   gauges read from the views (state, up, breakers, calls in flight, the store).
//!
//! Every name has the `warden_` prefix and, where it has one, its unit (`_seconds`); counters
//! end in `_total`. Labels: `server`, `server_instance` (`name#index`), `class` (a
//! [`FailureClass`]). Not `instance`: Prometheus gives every scraped series an `instance`
//! label of its own (the scraped Warden's address) and would rename ours `exported_instance`.
//! Class-labelled counters export a zero for every class from the start, so `rate()` and
//! `increase()` see the first failure too.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::broadcast;
use warden_core::{Event, EventKind, FailureClass, InstanceId};

pub mod scrape;

/// The media type of the exposition [`Metrics::encode`] writes (OpenMetrics text 1.0.0,
/// which Prometheus negotiates by default).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this (and `_`).
pub const PREFIX: &str = "warden";

/// Upper bounds of the call latency buckets, in seconds: 1 ms to 2 minutes.
pub const CALL_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Upper bounds of the probe latency buckets, in seconds: 0.5 ms to 10 s (a probe times out
/// long before that).
pub const PROBE_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A label set: `(name, value)` pairs in export order.
pub type Labels = Vec<(&'static str, String)>;

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

/// The labels of one instance: `server`, `server_instance` (`name#index`).
pub fn instance_labels(id: &InstanceId) -> Labels {
    vec![("server", id.server().to_owned()), ("server_instance", id.to_string())]
}

fn class_labels(id: &InstanceId, class: FailureClass) -> Labels {
    let mut l = instance_labels(id);
    l.push(("class", class.as_str().to_owned()));
    l
}

/// The one metrics registry of a Warden. Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Written only to register collectors (at start); read at every scrape.
    registry: RwLock<Registry>,
    /// Families named without Warden's prefix: the seeds' `mcp_*` gauges.
    plain: RwLock<Registry>,
    probe_duration: Histograms,
    probe_failures: Family<Labels, Counter>,
    call_duration: Histograms,
    call_errors: Family<Labels, Counter>,
    instance_failures: Family<Labels, Counter>,
    incidents: Family<Labels, Counter>,
    crash_loops: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    retries_denied: Family<Labels, Counter>,
    failovers: Family<Labels, Counter>,
    unavailable: Family<Labels, Counter>,
    /// Events the bus counter missed because it lagged behind the bus.
    events_lagged: Lag,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let probe_duration = Histograms::new_with_constructor(probe_histogram as fn() -> _);
        let call_duration = Histograms::new_with_constructor(call_histogram as fn() -> _);
        let mut inner = Inner {
            registry: RwLock::new(Registry::with_prefix(PREFIX)),
            plain: RwLock::new(Registry::default()),
            probe_duration,
            probe_failures: Family::default(),
            call_duration,
            call_errors: Family::default(),
            instance_failures: Family::default(),
            incidents: Family::default(),
            crash_loops: Family::default(),
            retries: Family::default(),
            retries_denied: Family::default(),
            failovers: Family::default(),
            unavailable: Family::default(),
            events_lagged: Lag::default(),
        };
        let registry = inner.registry.get_mut().expect("not poisoned");
        registry.register_with_unit(
            "probe_duration",
            "Round trip of successful health probes (ping or server/discover)",
            Unit::Seconds,
            inner.probe_duration.clone(),
        );
        registry.register(
            "probe_failures",
            "Failed health probes and listings, by failure class",
            inner.probe_failures.clone(),
        );
        registry.register_with_unit(
            "call_duration",
            "Latency of calls the gateway forwarded to an instance, whatever their outcome",
            Unit::Seconds,
            inner.call_duration.clone(),
        );
        registry.register(
            "call_errors",
            "Forwarded calls that failed on the instance, by failure class (a tool's isError \
             answer and the caller's own mistakes are not errors)",
            inner.call_errors.clone(),
        );
        registry.register(
            "instance_failures",
            "Sessions or starts that ended in failure (crash, hang kill, start failure, \
             connection loss), by failure class",
            inner.instance_failures.clone(),
        );
        registry.register(
            "incidents",
            "Incidents opened or escalated (rows of integration_failures), by failure class",
            inner.incidents.clone(),
        );
        registry.register(
            "instance_crash_loops",
            "Times an instance exceeded its restart intensity and was marked failed",
            inner.crash_loops.clone(),
        );
        registry.register(
            "retries",
            "Calls retried on another instance, by the server the client named",
            inner.retries.clone(),
        );
        registry.register(
            "retries_denied",
            "Retries the retry budget refused (20 % of calls + 3/s)",
            inner.retries_denied.clone(),
        );
        registry.register(
            "failovers",
            "Calls sent to a fallback server because the named server could not serve them",
            inner.failovers.clone(),
        );
        registry.register(
            "calls_unavailable",
            "Calls refused at once because nothing could serve the server (JSON-RPC -32001)",
            inner.unavailable.clone(),
        );
        Self { inner: Arc::new(inner) }
    }

    /// The handles of one instance; every series of the instance exists (at zero) from now on.
    pub fn instance(&self, id: &InstanceId) -> InstanceMetrics {
        let i = &self.inner;
        let per_class = |family: &Family<Labels, Counter>| {
            FailureClass::ALL.map(|c| family.get_or_create_owned(&class_labels(id, c)))
        };
        // Created here so they export zeros; the bus counter increments them later.
        per_class(&i.probe_failures);
        per_class(&i.incidents);
        i.crash_loops.get_or_create_owned(&instance_labels(id));
        InstanceMetrics {
            probe_duration: i.probe_duration.get_or_create_owned(&instance_labels(id)),
            call_duration: i.call_duration.get_or_create_owned(&instance_labels(id)),
            call_errors: per_class(&i.call_errors),
            failures: per_class(&i.instance_failures),
        }
    }

    /// The handles of one server's routing (the server a client named, with its fallbacks).
    pub fn server(&self, name: &str, fallbacks: &[String]) -> ServerMetrics {
        let i = &self.inner;
        let labels: Labels = vec![("server", name.to_owned())];
        ServerMetrics {
            retries: i.retries.get_or_create_owned(&labels),
            retries_denied: i.retries_denied.get_or_create_owned(&labels),
            unavailable: i.unavailable.get_or_create_owned(&labels),
            failovers: fallbacks
                .iter()
                .map(|f| {
                    let l = vec![("server", name.to_owned()), ("fallback", f.clone())];
                    (f.clone(), i.failovers.get_or_create_owned(&l))
                })
                .collect(),
        }
    }

    /// Counts what an event says (the bus counter calls this for every event).
    pub fn record_event(&self, event: &Event) {
        let Some(id) = &event.instance else { return };
        let i = &self.inner;
        match &event.kind {
            EventKind::ProbeFailed { reason, .. } => {
                i.probe_failures.get_or_create(&class_labels(id, reason.class)).inc();
            }
            EventKind::Failure { reason, .. } => {
                i.incidents.get_or_create(&class_labels(id, reason.class)).inc();
            }
            EventKind::RestartIntensityExceeded { .. } => {
                i.crash_loops.get_or_create(&instance_labels(id)).inc();
            }
            _ => {}
        }
    }

    /// Counts every event from `events` until the bus is gone. Subscribe before anything
    /// emits, so no event is missed; a lag (the bus outran this task) is counted as dropped.
    pub fn spawn_event_counter(
        &self,
        mut events: broadcast::Receiver<Arc<Event>>,
    ) -> tokio::task::JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => metrics.record_event(&e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        metrics.inner.events_lagged.0.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(missed = n, "the metrics event counter lagged behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// Events the bus counter missed. A collector reads it through the returned handle (a
    /// collector holding the [`Metrics`] it is registered in would never be freed).
    pub fn events_lagged(&self) -> Lag {
        self.inner.events_lagged.clone()
    }

    /// Adds a collector whose metrics are read at every scrape (names get the `warden_`
    /// prefix).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.inner.registry.write().expect("not poisoned").register_collector(collector);
    }

    /// Registers a collector whose families keep their names as written (no `warden_`
    /// prefix): the names other tools already expect (the seeds' `mcp_health_status`, …).
    pub fn register_plain_collector(&self, collector: Box<dyn Collector>) {
        self.inner.plain.write().expect("not poisoned").register_collector(collector);
    }

    /// The exposition, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let registry = self.inner.registry.read().expect("not poisoned");
        let plain = self.inner.plain.read().expect("not poisoned");
        text::encode_registry(&mut out, &registry).expect("writing to a String cannot fail");
        text::encode_registry(&mut out, &plain).expect("writing to a String cannot fail");
        text::encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}

/// How many events the bus counter missed (it lagged behind the bus).
#[derive(Clone, Debug, Default)]
pub struct Lag(Arc<AtomicU64>);

impl Lag {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One instance's handles, resolved once: recording is a lock-free add or one short lock.
#[derive(Clone, Debug)]
pub struct InstanceMetrics {
    probe_duration: Histogram,
    call_duration: Histogram,
    call_errors: [Counter; 8],
    failures: [Counter; 8],
}

fn class_index(class: FailureClass) -> usize {
    FailureClass::ALL.iter().position(|c| *c == class).expect("every class is in ALL")
}

impl InstanceMetrics {
    /// A probe was answered after `rtt`.
    pub fn probe_ok(&self, rtt: Duration) {
        self.probe_duration.observe(rtt.as_secs_f64());
    }

    /// A forwarded call ended after `latency`; `failed` is its failure class if it failed.
    pub fn call(&self, latency: Duration, failed: Option<FailureClass>) {
        self.call_duration.observe(latency.as_secs_f64());
        if let Some(class) = failed {
            self.call_errors[class_index(class)].inc();
        }
    }

    /// A session (or a start) ended in failure.
    pub fn failure(&self, class: FailureClass) {
        self.failures[class_index(class)].inc();
    }
}

/// One server's routing handles.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    retries: Counter,
    retries_denied: Counter,
    unavailable: Counter,
    failovers: Vec<(String, Counter)>,
}

impl ServerMetrics {
    /// A call is being retried on another instance.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// A retry was due but the budget refused it.
    pub fn retry_denied(&self) {
        self.retries_denied.inc();
    }

    /// A call was refused: nothing could serve it.
    pub fn unavailable(&self) {
        self.unavailable.inc();
    }

    /// A call went to `fallback` instead of the named server.
    pub fn failover(&self, fallback: &str) {
        if let Some((_, c)) = self.failovers.iter().find(|(f, _)| f == fallback) {
            c.inc();
        }
    }
}

#[cfg(test)]
mod tests;
