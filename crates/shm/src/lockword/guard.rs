//! [`RawLockGuard`]: one acquisition of a [`RawLock`], belonging to the
//! process that made it. Every guard of every procsync lock is built on it,
//! so what a guard may do in which process is decided here, once.
//!
//! A guard is an ordinary value in one process's memory. `fork` copies it
//! into the child, and a closure moved into a child process carries it
//! there, but the lock word still names the acquiring process: the child
//! does not hold the lock through it. So the guard records the
//! [`Identity`] of the process that acquired, and in any other process it
//! refuses to stand for the lock ([`RawLockGuard::assert_here`] panics
//! saying why) and its drop leaves the lock alone. The lock stays held by
//! the acquirer until that process drops its own guard or ends (then the
//! next locker learns [`Acquired::OwnerDied`](super::Acquired::OwnerDied)).
//!
//! Asking only "does the word name this process?" is not enough: a child
//! holding a copy of its parent's guard may later lock the same word
//! itself (or take it over from the dead parent), and the copy would then
//! pass that test, hand out a second `&mut T` and unlock the child's own
//! acquisition.

use crate::pid::{self, Identity};

use super::{RawLock, RawRobustLock};

/// One acquisition of a [`RawLock`] (or any [`RawRobustLock`]) by the process that made it: dropping
/// it unlocks (marking the word poisoned if the thread is panicking) when
/// dropped in that process, and does nothing in any other.
///
/// Built only through the `unsafe` [`RawLockGuard::new`]: a guard is a
/// promise that the acquisition happened.
///
/// `Send` and `Sync` (derived, and right): the guard holds a shared
/// reference to a `Sync` word (`RawRobustLock: Sync`) and a plain identity. The lock is held by the
/// *process*, so any of its threads may end the acquisition; a typed guard
/// that hands out data (`sync-lock`'s `MutexGuard`) narrows its own
/// `Send`/`Sync` by what the data allows.
///
/// # Example
///
/// ```
/// use shm::lockword::{Acquired, RawLock, RawLockGuard};
/// use shm::pid;
///
/// let raw = RawLock::new();
/// let me = pid::current_identity();
/// assert_eq!(raw.lock_until(None), Some(Acquired::Clean));
/// // SAFETY: this process has just acquired `raw`; no other guard stands
/// // for that acquisition.
/// let guard = unsafe { RawLockGuard::new(&raw, me) };
/// assert!(guard.is_here());
/// drop(guard);
/// assert!(!raw.is_locked());
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct RawLockGuard<'a, R: RawRobustLock = RawLock> {
    raw: &'a R,
    acquirer: Identity,
}

impl<'a, R: RawRobustLock> RawLockGuard<'a, R> {
    /// The guard of an acquisition just made by the calling process, whose
    /// identity is `acquirer`.
    ///
    /// # Safety
    ///
    /// `acquirer` is the calling process's identity, the calling process
    /// has just acquired `raw` (it holds it now), and no other guard stands
    /// for that acquisition: the guard's drop releases it.
    #[inline]
    pub unsafe fn new(raw: &'a R, acquirer: Identity) -> RawLockGuard<'a, R> {
        debug_assert_eq!(acquirer, pid::current_identity());
        RawLockGuard { raw, acquirer }
    }

    /// The lock word this guard holds.
    pub fn raw(&self) -> &'a R {
        self.raw
    }

    /// The process that made the acquisition.
    pub fn acquirer(&self) -> Identity {
        self.acquirer
    }

    /// Whether the calling process made this acquisition (only there does
    /// the guard stand for holding the lock).
    #[inline]
    pub fn is_here(&self) -> bool {
        pid::current_identity() == self.acquirer
    }

    /// Panics unless the calling process made this acquisition; `guard`
    /// names the guard type in the message.
    #[inline]
    pub fn assert_here(&self, guard: &str) {
        if !self.is_here() {
            wrong_process(guard, self.acquirer);
        }
    }
}

impl<R: RawRobustLock> Drop for RawLockGuard<'_, R> {
    #[inline]
    fn drop(&mut self) {
        let here = pid::current_identity();
        if here != self.acquirer {
            // A copy in another process: it stands for nothing there.
            return;
        }
        if std::thread::panicking() {
            // SAFETY: this process made the acquisition this guard ends,
            // once (`new`'s contract).
            unsafe { self.raw.unlock_poisoned() };
        } else {
            // SAFETY: as above; `here` is this process's identity.
            unsafe { self.raw.unlock_as(here) };
        }
    }
}

/// The panic of a guard used outside the process that acquired it.
#[cold]
#[inline(never)]
fn wrong_process(guard: &str, acquirer: Identity) -> ! {
    panic!(
        "{guard} used in process {} but acquired by process {}: a guard belongs to the \
         process that locked it (fork copies the guard, not the lock); lock again in this \
         process instead",
        pid::current(),
        acquirer.pid()
    )
}
