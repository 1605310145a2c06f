//! What every guard of this crate shares: it belongs to the process that
//! acquired the lock.
//!
//! A guard is an ordinary value in one process's memory. `fork` copies it
//! into the child, and a closure moved into a `daemon::Process` carries it
//! there, but the lock word still names the acquiring process: the child
//! does not hold the lock. So a guard remembers its acquirer's
//! [`Identity`]; in any other process it refuses to reach the data (a
//! panic that says why) and its drop leaves the lock alone. The lock stays
//! held by the acquirer until that process drops its own guard or ends
//! (then the next locker learns `OwnerDied`).

use shm::pid::{self, Identity};

use crate::raw::RawLock;

/// The process that made an acquisition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acquirer(Identity);

impl Acquirer {
    /// The calling process, which has just acquired a lock.
    #[inline]
    pub(crate) fn here() -> Acquirer {
        Acquirer(pid::current_identity())
    }

    /// Panics unless the calling process is the acquirer: only it holds
    /// the lock, so only it may reach what the lock protects.
    #[inline]
    pub(crate) fn assert_here(self, guard: &str) {
        if pid::current_identity() != self.0 {
            wrong_process(guard, self.0);
        }
    }

    /// Ends the acquisition: unlocks if the calling process is the
    /// acquirer (marking the lock poisoned if this thread is panicking),
    /// and does nothing in any other process.
    ///
    /// # Safety
    ///
    /// The caller is the guard of this acquisition, ending it once.
    #[inline]
    pub(crate) unsafe fn release(self, raw: &RawLock) {
        if std::thread::panicking() {
            if pid::current_identity() == self.0 {
                // SAFETY: this process made the acquisition the caller ends.
                unsafe { raw.unlock_poisoned() };
            }
        } else {
            // SAFETY: as above. In another process the unlock's
            // compare-and-swap finds a word that does not name it, and
            // leaves the lock alone.
            unsafe { raw.unlock() };
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
