//! What every guard of this crate shares: it belongs to the process that
//! acquired the lock.
//!
//! A guard is an ordinary value in one process's memory. `fork` copies it
//! into the child, and a closure moved into a `daemon::Process` carries it
//! there, but the lock word still names the acquiring process: the child
//! does not hold the lock through it. So a guard records the [`Identity`]
//! of the process that acquired it, and in any other process it refuses to
//! reach the data (a panic that says why) and its drop leaves the lock
//! alone. The lock stays held by the acquirer until that process drops its
//! own guard or ends (then the next locker learns `OwnerDied`).
//!
//! Asking only "does the word name this process?" is not enough: a child
//! holding a copy of its parent's guard may later lock the same mutex
//! itself (or take it over from the dead parent), and the copy would then
//! pass that test, hand out a second `&mut T` and unlock the child's own
//! acquisition.

use shm::pid::{self, Identity};

use shm::lockword::RawLock;

/// The process that made an acquisition: what a guard carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acquirer(Identity);

impl Acquirer {
    /// The calling process, which has just acquired a lock.
    #[inline]
    pub(crate) fn here() -> Acquirer {
        Acquirer(pid::current_identity())
    }

    /// The calling process, whose identity the caller has just read.
    #[inline]
    pub(crate) fn known(me: Identity) -> Acquirer {
        Acquirer(me)
    }

    /// Whether the calling process made this acquisition.
    #[inline]
    pub(crate) fn is_here(self) -> bool {
        pid::current_identity() == self.0
    }

    /// Panics unless the calling process made this acquisition: only there
    /// does the guard stand for holding the lock.
    #[inline]
    pub(crate) fn assert_here(self, guard: &str) {
        if !self.is_here() {
            wrong_process(guard, self.0);
        }
    }

    /// Ends the acquisition: unlocks (marking the lock poisoned if this
    /// thread is panicking) if the calling process made it; in any other
    /// process, leaves the lock alone.
    ///
    /// # Safety
    ///
    /// The caller is the guard of this acquisition, ending it once.
    #[inline]
    pub(crate) unsafe fn release(self, raw: &RawLock) {
        let here = pid::current_identity();
        if here != self.0 {
            return;
        }
        if std::thread::panicking() {
            // SAFETY: this process made the acquisition the caller ends.
            unsafe { raw.unlock_poisoned() };
        } else {
            // SAFETY: as above; `here` is this process's identity.
            unsafe { raw.unlock_as(here) };
        }
    }
}

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
