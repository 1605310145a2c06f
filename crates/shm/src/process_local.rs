//! [`ProcessLocal`]: state of one process behind a lock that a `fork` can
//! never leave held for good.
//!
//! A `std::sync::Mutex` that another thread holds at the instant of a
//! `fork` stays held in the child for ever (the thread that would unlock it
//! does not exist there). This lock records the *process* holding it, by
//! identity (pid and start tag: a descendant that reuses the pid of a
//! holder that has since died is still another process): a holder that is
//! not this process can only be a thread of a process this one was forked
//! from, so it takes the lock over, and starts from an empty value,
//! leaking (never dropping) the one that thread may have left half-changed.
//! The value, too, is this process's alone: a child forked while the lock
//! was free finds its parent's value dropped and starts from `None`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pid;

/// No process holds the lock.
const FREE: u64 = 0;

/// A value of this process, behind a fork-aware lock.
pub(crate) struct ProcessLocal<T> {
    /// The identity (`Identity::to_bits`, never 0) of the process one of
    /// whose threads holds the lock, or [`FREE`].
    holder: AtomicU64,
    /// The value, and the identity of the process it belongs to (0 before
    /// any).
    value: UnsafeCell<(u64, Option<T>)>,
}

// SAFETY: the value is only reached through `with`, which gives one
// thread at a time a `&mut` (the lock: a thread of this process holds it
// from a successful compare-exchange to the release store). `T: Send`
// because threads take turns with it.
unsafe impl<T: Send> Sync for ProcessLocal<T> {}

/// Releases the lock when `with` ends, a panic in its closure included.
struct Release<'a>(&'a AtomicU64);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(FREE, Ordering::Release);
    }
}

impl<T> ProcessLocal<T> {
    /// An empty value.
    pub(crate) const fn new() -> ProcessLocal<T> {
        ProcessLocal {
            holder: AtomicU64::new(FREE),
            value: UnsafeCell::new((0, None)),
        }
    }

    /// Runs `f` with this process's value, the lock held. In a forked
    /// child `f` first finds `None`: the parent's value is dropped, or, if a
    /// thread of the parent held the lock at the fork, leaked (it may be
    /// half-changed).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        let me = pid::current_identity().to_bits();
        let mut inherited_held = false;
        loop {
            match self
                .holder
                .compare_exchange(FREE, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                // Another thread of this process: wait for it.
                Err(held) if held == me => std::thread::yield_now(),
                // A thread of a process this one was forked from (another
                // identity, even with this pid), which does not exist here:
                // take the lock over.
                Err(stale) => {
                    if self
                        .holder
                        .compare_exchange(stale, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        inherited_held = true;
                        break;
                    }
                }
            }
        }
        let _release = Release(&self.holder);
        // SAFETY: this thread holds the lock (the compare-exchange above
        // stored this process's identity; other threads of this process see it
        // and wait, and no other process shares this memory: it is not
        // shared memory), so this is the only reference to the value
        // until `_release` drops.
        let (owner, value) = unsafe { &mut *self.value.get() };
        if inherited_held {
            std::mem::forget(value.take());
        }
        if *owner != me {
            *owner = me;
            *value = None;
        }
        f(value)
    }
}
