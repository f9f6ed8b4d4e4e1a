//! Byte-level liveness of a session: busy is not hung.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Counts bytes from the server and remembers when the last one arrived.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_nanos: AtomicU64,
    bytes: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Self { base: Instant::now(), last_nanos: AtomicU64::new(0), bytes: AtomicU64::new(0) }
    }

    /// Records `n` bytes received now.
    pub fn touch(&self, n: usize) {
        let nanos = Instant::now().duration_since(self.base).as_nanos() as u64;
        self.last_nanos.fetch_max(nanos, Ordering::Relaxed);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Time since the last byte (or since the session began).
    pub fn since_last_byte(&self) -> Duration {
        let last = self.base + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last)
    }

    /// Total bytes received; compare two readings to learn whether anything arrived between.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}
