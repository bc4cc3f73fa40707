//! Turns: how this process's writers of one model take turns at the log's next
//! position without any of them waiting long on another's store call.
//!
//! A commit folds the log, builds its event and appends it with
//! create-if-absent. Two writers of this process doing that at once both build
//! an event for the same position; one append loses and is paid for (on local
//! disk a wasted `fsync`, on object storage a wasted PUT) before a retry. A
//! lock held from the fold to the end of the append avoided that, but then a
//! stalled append (an S3 PUT that hangs) or a command future polled once and
//! then kept stalled every writer of the model for as long as it lasted.
//!
//! A [`Turn`] is that lock with patience: a writer waits for the one holding
//! the turn only as long as a turn usually takes (a few times the last one's
//! length, within [`MIN_PATIENCE`]..=[`MAX_PATIENCE`]), and then takes the turn
//! anyway. Correctness never rests on it: the append is create-if-absent, so a
//! writer that goes ahead of a stalled one at worst races it, and the loser
//! retries from a fresh fold. A turn held by a future that is never polled
//! again is therefore ignored after one patience, and never again waited for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, so tests can pause it; the same as std's in a running program.
use tokio::time::Instant;

/// The least a writer waits for another's turn before going ahead.
pub(super) const MIN_PATIENCE: Duration = Duration::from_millis(2);
/// The most a writer waits for another's turn before going ahead.
pub(super) const MAX_PATIENCE: Duration = Duration::from_millis(500);
/// How long a writer waits before any turn of this model has been timed.
const FIRST_PATIENCE: Duration = Duration::from_millis(50);

/// One model's turn at the log: see the module's documentation.
#[derive(Debug, Default)]
pub(super) struct Turn {
    held: Mutex<Held>,
    released: tokio::sync::Notify,
    /// How long the last turn that ended normally lasted, in nanoseconds
    /// (0: none yet).
    last: AtomicU64,
}

#[derive(Debug, Default)]
struct Held {
    /// When the turn now held was taken; `None` when free.
    since: Option<Instant>,
    /// Counts turns taken, so a holder whose turn was taken from it does not
    /// end its successor's.
    generation: u64,
}

/// The turn, while held; ends it when dropped.
#[derive(Debug)]
pub(super) struct TurnGuard<'a> {
    turn: &'a Turn,
    generation: u64,
    since: Instant,
}

impl Turn {
    /// How long a writer waits for the turn now held before taking it.
    fn patience(&self) -> Duration {
        match self.last.load(Ordering::Relaxed) {
            0 => FIRST_PATIENCE,
            n => Duration::from_nanos(n.saturating_mul(4)).clamp(MIN_PATIENCE, MAX_PATIENCE),
        }
    }

    /// Takes the turn: at once if it is free or its holder has had it longer
    /// than the patience; otherwise when the holder ends it, or when the
    /// patience runs out, whichever comes first.
    pub(super) async fn take(&self) -> TurnGuard<'_> {
        loop {
            // Registered before the check, so a release between the check and
            // the wait is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let wait = {
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                let patience = self.patience();
                let now = Instant::now();
                match held.since {
                    Some(since) if now.saturating_duration_since(since) < patience => {
                        patience - now.saturating_duration_since(since)
                    }
                    _ => {
                        held.generation += 1;
                        held.since = Some(now);
                        return TurnGuard {
                            turn: self,
                            generation: held.generation,
                            since: now,
                        };
                    }
                }
            };
            let _ = tokio::time::timeout(wait, released).await;
        }
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.turn.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.generation == self.generation {
            held.since = None;
            let took = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.turn.last.store(took.max(1), Ordering::Relaxed);
        }
        drop(held);
        self.turn.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long `take` waited, on tokio's (paused) clock.
    async fn waited(turn: &Turn) -> (TurnGuard<'_>, Duration) {
        let started = Instant::now();
        let guard = turn.take().await;
        (guard, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_turn_is_waited_for_until_its_release() {
        let turn = Turn::default();
        let (first, at_once) = waited(&turn).await;
        assert_eq!(at_once, Duration::ZERO);
        let release = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(first);
        };
        let ((_second, took), ()) = tokio::join!(waited(&turn), release);
        assert_eq!(took, Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_never_ended_is_waited_for_one_patience_then_taken() {
        let turn = Turn::default();
        let kept = turn.take().await;
        let (stolen, took) = waited(&turn).await;
        assert_eq!(
            took, FIRST_PATIENCE,
            "nothing timed yet: the first patience"
        );
        // The kept holder ending late does not end the turn of the one that
        // took it: a third writer still waits for the second.
        drop(kept);
        let release = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(stolen);
        };
        let ((third, took), ()) = tokio::join!(waited(&turn), release);
        assert_eq!(took, Duration::from_millis(5));
        drop(third);
    }

    #[tokio::test(start_paused = true)]
    async fn patience_follows_the_last_turn_within_bounds() {
        let turn = Turn::default();
        for (held, patience) in [
            (Duration::from_millis(10), Duration::from_millis(40)),
            (Duration::ZERO, MIN_PATIENCE),
            (Duration::from_secs(10), MAX_PATIENCE),
        ] {
            let g = turn.take().await;
            tokio::time::sleep(held).await;
            drop(g);
            assert_eq!(turn.patience(), patience);
            let kept = turn.take().await;
            let (_next, took) = waited(&turn).await;
            assert_eq!(took, patience);
            drop(kept);
        }
    }
}
