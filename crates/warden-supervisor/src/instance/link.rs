//! What the gateway holds of an instance: its live session and catalog, its calls in flight,
//! and the outcome of each call (a passive health signal), read by the instance task in batches.

use std::sync::Mutex;

use tokio::sync::Notify;

use super::*;

/// How long a settled call may wait for the instance task to read it.
pub(crate) const SETTLE_WINDOW: Duration = Duration::from_millis(100);
/// Settled calls kept at most between two batches.
const SETTLED_CAP: usize = 8192;

/// What a router holds for each instance: the count of calls in flight (a busy server is not a
/// hung one) and a queue for call outcomes. Reporting never blocks.
///
/// Every call's outcome goes into `settled`, in the order the calls ended, and the instance
/// task reads them in batches: at once after a failure (it may move the health state; the
/// `failed` channel wakes the task), else at most [`SETTLE_WINDOW`] after the first of a
/// batch. On a busy instance the task wakes once per window, not once per call (a wake and a
/// turn of its event loop cost about as much CPU as the gateway's own work on a call).
pub struct InstanceLink {
    in_flight: AtomicUsize,
    settled: Mutex<Vec<CallReport>>,
    /// Wakes the task for a failure (one pending wake is enough: it reads the whole batch).
    failed: mpsc::Sender<()>,
    /// Told when a call settles into an empty batch.
    pub(crate) batch: Notify,
    /// Batches the instance task has read.
    #[cfg(test)]
    pub(crate) batches: AtomicUsize,
    session: RwLock<Option<Arc<dyn Session>>>,
    catalog: RwLock<Option<Arc<Catalog>>>,
    /// This instance's metric handles (the instance loop records into them too).
    pub(crate) metrics: InstanceMetrics,
}

impl std::fmt::Debug for InstanceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLink").field("in_flight", &self.in_flight()).finish_non_exhaustive()
    }
}

impl InstanceLink {
    pub(crate) fn new(failed: mpsc::Sender<()>, metrics: InstanceMetrics) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            failed,
            settled: Mutex::new(Vec::new()),
            batch: Notify::new(),
            #[cfg(test)]
            batches: AtomicUsize::new(0),
            session: RwLock::new(None),
            catalog: RwLock::new(None),
            metrics,
        }
    }

    /// The live MCP session, while the instance has one.
    pub fn session(&self) -> Option<Arc<dyn Session>> {
        self.session.read().expect("not poisoned").clone()
    }

    /// What the instance offered when last listed (kept while it is down).
    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.read().expect("not poisoned").clone()
    }

    pub(crate) fn set_session(&self, session: Option<Arc<dyn Session>>) {
        *self.session.write().expect("not poisoned") = session;
    }

    pub(crate) fn set_catalog(&self, catalog: Arc<Catalog>) {
        *self.catalog.write().expect("not poisoned") = Some(catalog);
    }

    /// Marks a call as started; the guard marks it finished when dropped.
    pub fn begin_call(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        CallGuard(Arc::clone(self))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Reports how a call ended. Dropped (never blocking) if the queue is full; counted in
    /// the metrics (latency, error class) either way.
    pub fn report(&self, latency: Duration, outcome: CallOutcome) {
        let failed = match &outcome {
            CallOutcome::Failed(reason) => Some(reason.class),
            CallOutcome::Ok | CallOutcome::Ignorable => None,
        };
        self.metrics.call(latency, failed);
        let report = CallReport { latency, outcome, at: Instant::now() };
        let first = {
            let mut settled = self.settled.lock().expect("not poisoned");
            if settled.len() >= SETTLED_CAP {
                return; // the task is far behind: as a full queue, drop
            }
            settled.push(report);
            settled.len() == 1
        };
        if failed.is_some() {
            let _ = self.failed.try_send(());
        } else if first {
            self.batch.notify_one();
        }
    }

    /// The calls that settled since the last batch, oldest first.
    pub(crate) fn take_settled(&self) -> Vec<CallReport> {
        let batch = std::mem::take(&mut *self.settled.lock().expect("not poisoned"));
        #[cfg(test)]
        if !batch.is_empty() {
            self.batches.fetch_add(1, Ordering::SeqCst);
        }
        batch
    }
}

/// A call in flight; dropping it ends the call.
#[derive(Debug)]
pub struct CallGuard(Arc<InstanceLink>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
