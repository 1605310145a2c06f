//! What every guard of this crate shares: it belongs to the process that
//! acquired the lock.
//!
//! A guard is an ordinary value in one process's memory. `fork` copies it
//! into the child, and a closure moved into a `daemon::Process` carries it
//! there, but the lock word still names the acquiring process: the child
//! does not hold the lock. So a guard asks the lock word, which names the
//! holding process by its identity, before it reaches the data: in any
//! other process it refuses (a panic that says why), and its drop leaves
//! the lock alone. The lock stays held by the acquirer until that process
//! drops its own guard or ends (then the next locker learns `OwnerDied`).
//! Asking the word keeps the guard a bare reference: nothing is recorded
//! at lock time, so the uncontended path stays two compare-and-swaps.

use shm::pid;

use crate::raw::RawLock;

/// Panics unless the calling process holds `raw`: only the holder may
/// reach what the lock protects. A guard exists only while its acquiring
/// process holds the lock, so in that process this never fires; in any
/// other (a forked child with a copy of the guard) the word names someone
/// else.
#[inline]
pub(crate) fn assert_held_here(raw: &RawLock, guard: &str) {
    if !raw.is_held_by_current_process() {
        wrong_process(raw, guard);
    }
}

/// Ends a guard's acquisition: unlocks if the calling process holds the
/// lock (marking it poisoned if this thread is panicking); in any other
/// process the lock is left alone, because the word does not name it.
///
/// # Safety
///
/// The caller is the guard of an acquisition, ending it once.
#[inline]
pub(crate) unsafe fn release(raw: &RawLock) {
    if std::thread::panicking() {
        // SAFETY: the caller's guard stands for this process's acquisition;
        // a copy in another process fails the compare-and-swap, which
        // compares the word with the calling process's identity.
        unsafe { raw.unlock_poisoned() };
    } else {
        // SAFETY: as above.
        unsafe { raw.unlock() };
    }
}

#[cold]
#[inline(never)]
fn wrong_process(raw: &RawLock, guard: &str) -> ! {
    panic!(
        "{guard} used in process {} but the lock is held by {}: a guard belongs to the \
         process that locked it (fork copies the guard, not the lock); lock again in this \
         process instead",
        pid::current(),
        raw.owner()
            .map_or_else(|| "nobody".to_string(), |pid| format!("process {pid}"))
    )
}
