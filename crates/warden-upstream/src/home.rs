//! Where a call would rather have been served. A stdio child's stdout is read on one of Warden's
//! HTTP threads (its home, [`crate::Relay::set_homes`]); a call served on another thread gets
//! its answer through a wake-up of that thread, and its request and answer are interleaved with
//! the home thread's work on both cores. A call to a child notes the child's home here, and the
//! HTTP loop that served it (inside [`noting`]) may move its connection there
//! (`warden_admin`'s data plane), so the next calls on that connection need no hand-off.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static WANTED: Cell<Option<usize>>;
}

/// Runs `work`, and says which home (an index into the handles given to
/// [`crate::Relay::set_homes`]) the last call it made to a stdio child was read on, if any.
pub async fn noting<F: Future>(work: F) -> (F::Output, Option<usize>) {
    WANTED
        .scope(Cell::new(None), async {
            let out = work.await;
            (out, WANTED.with(Cell::get))
        })
        .await
}

/// Notes that the call under way is answered on home `home` (the stdio lane's calls note it;
/// outside [`noting`], nothing).
pub fn note(home: usize) {
    let _ = WANTED.try_with(|w| w.set(Some(home)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_home_noted_inside_is_told_and_nothing_leaks_outside() {
        let ((), none) = noting(async {}).await;
        assert_eq!(none, None);
        let ((), last) = noting(async {
            note(1);
            tokio::task::yield_now().await;
            note(3);
        })
        .await;
        assert_eq!(last, Some(3));
        note(2); // outside any scope: ignored
        let ((), again) = noting(async {}).await;
        assert_eq!(again, None);
    }
}
