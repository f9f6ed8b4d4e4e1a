//! The config file watch (`warden.reload.watch`, on by default): the file's directory is
//! watched (editors save by writing a new file and renaming it over the old one, by truncating
//! and writing, or in several writes), changes are debounced, and a file that is briefly
//! missing or does not compile yet gets a moment to settle before it is reloaded — a reload
//! validates in full, so a half-written file is never applied. A Kubernetes ConfigMap mount is
//! followed too (its `..data` symlink swapped under a `config.json` that never changes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::reload::Reloader;

/// No change for this long ends a burst of writes.
const QUIET: Duration = Duration::from_millis(250);
/// A burst longer than this is reloaded anyway.
const MAX_BURST: Duration = Duration::from_secs(2);
/// A missing file, or one that does not compile, gets this long to be finished.
const SETTLE: Duration = Duration::from_secs(1);

/// Watches the reloader's file until `stop`; `None` when it cannot be watched (logged).
pub(crate) fn spawn(
    reloader: Reloader,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let file = reloader.file()?.clone();
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tx, rx) = mpsc::channel::<()>(64);
    let name = file.file_name().map(ToOwned::to_owned);
    let mut watcher = match notify::recommended_watcher(
        move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if event.need_rescan() || event.paths.iter().any(|p| concerns(p, name.as_deref())) {
                let _ = tx.try_send(());
            }
        },
    ) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "the config file cannot be watched; reload with SIGHUP or `warden reload`");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "the config file's directory cannot be watched; reload with SIGHUP or `warden reload`");
        return None;
    }
    tracing::debug!(file = %file.display(), "watching the config file");
    Some(tokio::spawn(async move {
        // Dropping the watcher ends the watch: it lives as long as the task.
        let _watcher = watcher;
        run(reloader, file, rx, stop).await;
    }))
}

/// An event on `path` may change the config file named `name`: the file itself, or one of the
/// `..`-names a Kubernetes ConfigMap mount swaps (`..data`, `..data_tmp`, `..2026_…`): the
/// kubelet renames a new `..data` symlink over the old one and `config.json`, a symlink to
/// `..data/config.json`, is never touched. Whether the content changed is decided by reading.
fn concerns(path: &Path, name: Option<&std::ffi::OsStr>) -> bool {
    match path.file_name() {
        Some(f) => Some(f) == name || f.to_string_lossy().starts_with(".."),
        None => false,
    }
}

async fn run(
    reloader: Reloader,
    file: PathBuf,
    mut rx: mpsc::Receiver<()>,
    stop: CancellationToken,
) {
    let mut last = read(&file).await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = rx.recv() => if got.is_none() { return },
        }
        if !settle(&mut rx, &file, &stop).await {
            return;
        }
        let now = read(&file).await;
        if now.is_none() {
            tracing::warn!(file = %file.display(), "the config file is missing; the running config stays");
            continue;
        }
        if now == last {
            // Touched, or saved unchanged: nothing to do.
            continue;
        }
        if !reloader.watching().await {
            continue;
        }
        last = now;
        // The reload logs and records what it did (or every error).
        let _ = reloader.reload("file").await;
    }
}

/// Waits for the writes to stop, then for a missing or not-yet-valid file to be finished;
/// `false` when stopped.
async fn settle(rx: &mut mpsc::Receiver<()>, file: &Path, stop: &CancellationToken) -> bool {
    let started = tokio::time::Instant::now();
    loop {
        // Quiet for QUIET, or the burst has gone on too long.
        loop {
            let wait = QUIET.min(MAX_BURST.saturating_sub(started.elapsed()));
            tokio::select! {
                () = stop.cancelled() => return false,
                got = tokio::time::timeout(wait, rx.recv()) => match got {
                    Ok(Some(())) if started.elapsed() < MAX_BURST => continue,
                    Ok(None) => return false,
                    _ => break,
                },
            }
        }
        let f = file.to_owned();
        let compiles = tokio::task::spawn_blocking(move || warden_config::load(&f).is_ok())
            .await
            .unwrap_or(false);
        if compiles {
            return true;
        }
        // Missing or not compiling: a moment for the editor to finish, if it is writing.
        tokio::select! {
            () = stop.cancelled() => return false,
            got = tokio::time::timeout(SETTLE, rx.recv()) => match got {
                Ok(Some(())) => continue,
                Ok(None) => return false,
                // Nothing more came: reload what is there (a broken file is refused in full).
                Err(_) => return true,
            },
        }
    }
}

async fn read(file: &Path) -> Option<Vec<u8>> {
    tokio::fs::read(file).await.ok()
}
