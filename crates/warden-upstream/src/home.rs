//! Where a call would rather have been served. A stdio child's stdout is read on one of Warden's
//! HTTP threads (its home, [`crate::Relay::set_homes`]); a call served on another thread gets
//! its answer through a wake-up of that thread, and its request and answer are interleaved with
//! the home thread's work on both cores. A call to a child notes the child's home here, and the
//! HTTP loop that served it (a connection's loop runs inside [`scope`], and [`take`]s the home
//! after each request) may move its connection there (`warden_admin`'s data plane), so the next
//! calls on that connection need no hand-off.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static WANTED: Cell<Option<usize>>;
}

/// Runs `work` (a connection's whole loop: one scope, not one a request, whose future would be
/// moved into it each time) with a place where its calls note their home.
pub async fn scope<F: Future>(work: F) -> F::Output {
    WANTED.scope(Cell::new(None), work).await
}

/// Which home (an index into the handles given to [`crate::Relay::set_homes`]) the last call
/// to a stdio child since the last `take` was read on, if any; clears it. `None` outside
/// [`scope`].
pub fn take() -> Option<usize> {
    WANTED.try_with(Cell::take).ok().flatten()
}

/// Notes that the call under way is answered on home `home` (the stdio lane's calls note it;
/// outside [`scope`], nothing).
pub fn note(home: usize) {
    let _ = WANTED.try_with(|w| w.set(Some(home)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_home_noted_since_the_last_take_is_told_and_nothing_leaks_outside() {
        scope(async {
            assert_eq!(take(), None);
            note(1);
            tokio::task::yield_now().await;
            note(3);
            assert_eq!(take(), Some(3));
            assert_eq!(take(), None, "a take clears");
            note(2);
            assert_eq!(take(), Some(2));
        })
        .await;
        note(2); // outside any scope: ignored
        assert_eq!(take(), None);
        assert_eq!(scope(async { take() }).await, None, "a new scope starts empty");
    }
}
