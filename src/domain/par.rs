//! Data parallelism for CPU-bound work on large states (checkpoint encoding and
//! decoding): scoped threads, no I/O, no shared mutable state besides the
//! results.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many threads, however many cores there are.
const MAX_THREADS: usize = 8;

/// `f` applied to every item, in order, on up to one thread per core (the
/// caller's thread included). Items are handed out one at a time, so a thread
/// slowed down by other load takes fewer of them. One item, or one core, runs
/// on the caller's thread alone.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len())
        .min(MAX_THREADS);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let r = f(item);
            *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        }
    };
    // A panic in `f` is a bug, not an outcome: it propagates to the caller, with
    // its own payload, exactly as it would from the sequential `iter().map(f)`.
    // Nothing is returned short: every slot is filled or the caller panics.
    std::thread::scope(|s| {
        let workers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        for w in workers {
            if let Err(panic) = w.join() {
                std::panic::resume_unwind(panic);
            }
        }
        if let Err(panic) = mine {
            std::panic::resume_unwind(panic);
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect::<Option<Vec<R>>>()
        // Invariant: no thread panicked (else we resumed its panic above), so
        // every item's slot was filled.
        .expect("every item was mapped")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_covers_every_item() {
        let items: Vec<u64> = (0..1000).collect();
        assert_eq!(
            map(&items, |x| x * 2),
            items.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(map(&[] as &[u64], |x| *x).is_empty());
        assert_eq!(map(&[7u64], |x| x + 1), vec![8]);
    }

    /// A worker that panics takes the call down with its own message: results
    /// are never silently missing.
    #[test]
    fn a_panicking_worker_propagates_its_panic() {
        let items: Vec<u64> = (0..64).collect();
        let caught = std::panic::catch_unwind(|| {
            map(&items, |x| {
                if *x == 37 {
                    panic!("item 37 is bad");
                }
                *x
            })
        });
        let payload = caught.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"item 37 is bad"));
    }
}
