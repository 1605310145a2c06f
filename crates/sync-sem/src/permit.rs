//! [`Permit`]: one acquired permit, released on drop.

use crate::{RobustSemaphore, Semaphore};

/// Which semaphore a permit goes back to.
#[derive(Clone, Copy)]
enum Source<'a> {
    Plain(&'a Semaphore),
    /// The semaphore and the process that acquired the permit: its row
    /// counts the permit, whichever process drops it.
    Robust(&'a RobustSemaphore, crate::robust::Who),
}

/// A permit of a [`Semaphore`] or [`RobustSemaphore`]. Dropping it releases
/// the permit (Python's `release()` after `acquire()`).
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    source: Source<'a>,
}

impl<'a> Permit<'a> {
    #[inline]
    pub(crate) fn plain(semaphore: &'a Semaphore) -> Permit<'a> {
        Permit {
            source: Source::Plain(semaphore),
        }
    }

    #[inline]
    pub(crate) fn robust(
        semaphore: &'a RobustSemaphore,
        acquirer: crate::robust::Who,
    ) -> Permit<'a> {
        Permit {
            source: Source::Robust(semaphore, acquirer),
        }
    }

    /// Keeps the permit taken for good: the semaphore's value stays one
    /// lower until some process calls `release()` (the way one process
    /// hands a permit to another). A [`RobustSemaphore`] stops counting it
    /// as this process's, so it is not returned if this process dies.
    pub fn forget(self) {
        if let Source::Robust(semaphore, acquirer) = self.source {
            semaphore.disown_one(acquirer);
        }
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        match self.source {
            Source::Plain(semaphore) => semaphore.give_back_one(),
            Source::Robust(semaphore, acquirer) => semaphore.give_back_one(acquirer),
        }
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::Plain(_) => "Semaphore",
            Source::Robust(..) => "RobustSemaphore",
        };
        f.debug_struct("Permit").field("of", &kind).finish()
    }
}
