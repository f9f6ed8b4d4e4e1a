//! Moves the gateway's per-tool call counts into the store's `tool_usage` rollup: once a
//! minute, right before a report reads the table (so reports are current to the call), and once
//! more at shutdown. Counts the store refuses go back to the gateway for the next try.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warden_gateway::Gateway;
use warden_store::Store;

/// How often the counts are written.
const FLUSH_EVERY: Duration = Duration::from_secs(60);

pub struct UsageFlusher {
    gateway: Gateway,
    store: Store,
    /// Held from taking the counts to writing them, so a report never reads between the two.
    writing: tokio::sync::Mutex<bool>,
}

impl UsageFlusher {
    pub fn new(gateway: Gateway, store: Store) -> Arc<Self> {
        Arc::new(Self { gateway, store, writing: tokio::sync::Mutex::new(false) })
    }

    /// Writes what the gateway counted since the last flush.
    pub async fn flush(&self) {
        let mut failing = self.writing.lock().await;
        let rows = self.gateway.take_tool_usage();
        match self.store.record_tool_usage(&rows).await {
            Ok(()) => *failing = false,
            Err(e) => {
                self.gateway.restore_tool_usage(&rows);
                if !std::mem::replace(&mut *failing, true) {
                    tracing::warn!(error = %e, "could not write tool usage; keeping the counts");
                }
            }
        }
    }

    /// Flushes every minute until `stop`, then once more.
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(FLUSH_EVERY) => me.flush().await,
                }
            }
            me.flush().await;
        })
    }
}
