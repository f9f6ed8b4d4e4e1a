//! The predictor baselines each server's instances have learnt ([`warden_predict::Seed`]),
//! shared between them and kept across restarts of Warden: a new instance (a restart, a replica,
//! a standby, the first instance after Warden started) takes its server's seed and is watched
//! from its first sample instead of after the warm-up. Instances publish here; the composition
//! root loads the book from the store at start and saves what changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use warden_core::Timestamp;
use warden_predict::Seed;

/// A seed older than this describes a server that may have changed since: not used.
pub const SEED_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// One baseline and when it was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub seed: Seed,
    pub at: Timestamp,
}

/// One server's seeds: probes and calls live on different scales, so each has its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSeed {
    pub probes: Option<Stamped>,
    pub calls: Option<Stamped>,
}

impl ServerSeed {
    /// The newest time either seed was learnt.
    pub fn at(&self) -> Option<Timestamp> {
        self.probes.map(|s| s.at).max(self.calls.map(|s| s.at))
    }

    /// The parts still fresh at `now`.
    pub fn fresh(&self, now: Timestamp) -> (Option<Seed>, Option<Seed>) {
        let young = |s: Option<Stamped>| s.filter(|s| now - s.at <= SEED_MAX_AGE).map(|s| s.seed);
        (young(self.probes), young(self.calls))
    }
}

#[derive(Debug, Default)]
struct Book {
    servers: BTreeMap<String, ServerSeed>,
    /// Bumped on every publish, so a saver writes only what changed.
    generation: u64,
    changed: BTreeMap<String, u64>,
}

/// Every server's seeds (cheap to clone: one shared map).
#[derive(Clone, Debug, Default)]
pub struct SeedBook(Arc<Mutex<Book>>);

impl SeedBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic elsewhere while holding the lock leaves a map of plain values: still usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seeds read back from the store (not marked changed).
    pub fn load(&self, rows: impl IntoIterator<Item = (String, ServerSeed)>) {
        let mut book = self.lock();
        for (server, seed) in rows {
            book.servers.insert(server, seed);
        }
    }

    pub fn get(&self, server: &str) -> Option<ServerSeed> {
        self.lock().servers.get(server).copied()
    }

    /// An instance of `server` learnt these baselines at `at`; a kind it has nothing for keeps
    /// what another instance published.
    pub fn publish(&self, server: &str, probes: Option<Seed>, calls: Option<Seed>, at: Timestamp) {
        if probes.is_none() && calls.is_none() {
            return;
        }
        let mut book = self.lock();
        let entry = book.servers.entry(server.to_owned()).or_default();
        if let Some(seed) = probes {
            entry.probes = Some(Stamped { seed, at });
        }
        if let Some(seed) = calls {
            entry.calls = Some(Stamped { seed, at });
        }
        book.generation += 1;
        let generation = book.generation;
        book.changed.insert(server.to_owned(), generation);
    }

    /// Forgets a server's seeds (a reload gave it another program, or removed it).
    pub fn forget(&self, server: &str) {
        let mut book = self.lock();
        book.servers.remove(server);
        book.changed.remove(server);
    }

    /// The servers published since generation `since`, and the generation to ask from next.
    pub fn changed_since(&self, since: u64) -> (Vec<(String, ServerSeed)>, u64) {
        let book = self.lock();
        let rows = book
            .changed
            .iter()
            .filter(|(_, g)| **g > since)
            .filter_map(|(s, _)| Some((s.clone(), *book.servers.get(s)?)))
            .collect();
        (rows, book.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_one_kind_keeps_the_other_and_only_fresh_seeds_are_used() {
        let book = SeedBook::default();
        let seed = Seed::default();
        let then = warden_core::now() - chrono::TimeDelta::days(2);
        book.publish("a", Some(seed), Some(seed), then);
        let now = warden_core::now();
        book.publish("a", Some(seed), None, now);
        let a = book.get("a").unwrap();
        assert_eq!(a.probes.unwrap().at, now);
        assert_eq!(a.calls.unwrap().at, then, "calls kept");
        assert_eq!(a.fresh(now), (Some(seed), None), "a two-day-old seed is not used");
        assert_eq!(a.at(), Some(now));

        let (rows, generation) = book.changed_since(0);
        assert_eq!(rows.len(), 1);
        assert_eq!(book.changed_since(generation).0, vec![]);
        book.publish("b", None, Some(seed), now);
        let (rows, _) = book.changed_since(generation);
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["b"]);
        book.publish("c", None, None, now);
        assert!(book.get("c").is_none(), "nothing learnt, nothing published");
    }
}
