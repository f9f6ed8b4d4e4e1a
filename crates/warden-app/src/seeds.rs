//! Keeps the predictor's learnt baselines ([`SeedBook`]) across restarts of Warden: read from
//! the store before the supervisor starts, so every server with recent history is watched from
//! its first probe, and saved once a minute (what changed) and once more at shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warden_store::Store;
use warden_supervisor::{SeedBook, ServerSeed, SEED_MAX_AGE};

/// How often what instances published is written.
const SAVE_EVERY: Duration = Duration::from_secs(60);

/// The seeds learnt within [`SEED_MAX_AGE`]; a row that does not parse is skipped (and said).
pub(crate) async fn load(store: &Store) -> SeedBook {
    let book = SeedBook::default();
    if !store.is_ready() {
        // Not reached yet (PostgreSQL down at start): warm up afresh rather than wait.
        return book;
    }
    let since = warden_core::now() - SEED_MAX_AGE;
    match store.predictor_seeds(since).await {
        Ok(rows) => {
            book.load(rows.into_iter().filter_map(|(server, v)| {
                match serde_json::from_value::<ServerSeed>(v) {
                    Ok(seed) => Some((server, seed)),
                    Err(e) => {
                        tracing::warn!(server, error = %e, "ignoring an unreadable predictor seed");
                        None
                    }
                }
            }))
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the predictor seeds; warming up afresh"),
    }
    book
}

/// Saves what changed every minute until `stop`, then once more.
pub(crate) fn spawn_saver(
    book: SeedBook,
    store: Store,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut saved = 0;
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(SAVE_EVERY) => false,
            };
            saved = save(&book, &store, saved).await;
            if stopping {
                break;
            }
        }
    })
}

/// Writes the servers published since generation `since`; returns the generation saved (the
/// same on failure, so the next round tries again).
async fn save(book: &SeedBook, store: &Store, since: u64) -> u64 {
    let (rows, generation) = book.changed_since(since);
    if rows.is_empty() {
        return generation;
    }
    let rows: Vec<_> = rows
        .into_iter()
        .filter_map(|(server, seed)| Some((server, seed.at()?, serde_json::to_value(seed).ok()?)))
        .collect();
    match store.put_predictor_seeds(&rows).await {
        Ok(()) => generation,
        Err(e) => {
            tracing::warn!(error = %e, "cannot save the predictor seeds; trying again in a minute");
            since
        }
    }
}
