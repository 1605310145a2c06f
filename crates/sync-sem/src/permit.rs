//! [`Permit`]: one acquired permit, released on drop.

use crate::{AdoptError, RobustSemaphore, Semaphore};

/// Which semaphore a permit goes back to.
#[derive(Clone, Copy)]
enum Source<'a> {
    Plain(&'a Semaphore),
    /// The semaphore and the process whose row counts the permit: the one
    /// that acquired it, or the one that adopted it since. That row gives
    /// it back, whichever process drops it.
    Robust(&'a RobustSemaphore, crate::robust::Who),
    /// A robust permit whose acquirer died and was swept before this
    /// process could adopt it: it is no longer counted anywhere, and
    /// dropping it gives nothing back.
    Reclaimed,
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

    /// Makes the calling process the permit's holder: call it first thing
    /// in a child that a [`RobustSemaphore`] permit was moved into.
    ///
    /// A robust permit is counted under the process that acquired it, and
    /// is taken back when that process dies, even if a child it was moved
    /// into still holds it. `adopt` moves it to the calling process's row,
    /// as one crash-safe change (a process killed at any point of it leaves
    /// the permit counted once, under one of the two): from then on the
    /// permit is released under the calling process, and taken back when
    /// *it* dies, not when the acquirer does. (A child that dies before
    /// adopting leaves the permit counted under the acquirer, which gets it
    /// back only when it dies itself.)
    ///
    /// In the process that acquired the permit (or one that adopted it
    /// already), and for a plain [`Semaphore`] permit, it does nothing and
    /// returns `Ok`: a plain semaphore counts no holders, so its permits are
    /// never taken back and a moved one needs no adopting.
    ///
    /// # Errors
    ///
    /// - [`AdoptError::Reclaimed`] if the acquirer died, and its permits
    ///   were taken back, before this call. That race cannot be closed from the
    ///   child (the acquirer can die the moment it forks), only made short:
    ///   adopt before anything else. The permit is spent: another process
    ///   may hold it now, and dropping this one releases nothing.
    /// - [`AdoptError::TooManyHolders`] if [`MAX_HOLDERS`](crate::MAX_HOLDERS)
    ///   live processes hold permits; the permit stays the acquirer's.
    ///
    /// # Example
    ///
    /// A permit moved into a child, adopted there: it counts under the
    /// child, and the child's drop releases it.
    ///
    /// ```
    /// use shm::Shared;
    /// use sync_sem::RobustSemaphore;
    ///
    /// let shared = Shared::new(RobustSemaphore::new(1))?;
    /// let rooms: &RobustSemaphore = &shared; // copied into the closures
    /// let parent = daemon::Process::new(|| -> bool {
    ///     let permit = rooms.acquire().expect("a free room");
    ///     let child = daemon::Process::new(move || -> bool {
    ///         let mut permit = permit;
    ///         // First thing: from here on the room is this process's, and
    ///         // stays taken if the parent dies.
    ///         let adopted = permit.adopt().is_ok();
    ///         adopted && rooms.held_by(shm::pid::current()) == 1
    ///     })
    ///     .start()
    ///     .expect("fork");
    ///     child.join().expect("the child")
    /// })
    /// .start()?;
    /// assert!(parent.join()?);
    /// assert_eq!(rooms.value(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adopt(&mut self) -> Result<(), AdoptError> {
        match self.source {
            Source::Plain(_) => Ok(()),
            Source::Reclaimed => Err(AdoptError::Reclaimed),
            Source::Robust(semaphore, holder) => match semaphore.adopt_one(holder) {
                Ok(me) => {
                    self.source = Source::Robust(semaphore, me);
                    Ok(())
                }
                Err(AdoptError::Reclaimed) => {
                    self.source = Source::Reclaimed;
                    Err(AdoptError::Reclaimed)
                }
                Err(err) => Err(err),
            },
        }
    }

    /// Keeps the permit taken for good: the semaphore's value stays one
    /// lower until some process calls `release()` (the way one process
    /// hands a permit to another). A [`RobustSemaphore`] stops counting it
    /// as this process's, so it is not returned if this process dies.
    pub fn forget(self) {
        if let Source::Robust(semaphore, holder) = self.source {
            semaphore.disown_one(holder);
        }
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        match self.source {
            Source::Plain(semaphore) => semaphore.give_back_one(),
            Source::Robust(semaphore, holder) => semaphore.give_back_one(holder),
            Source::Reclaimed => {}
        }
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::Plain(_) => "Semaphore",
            Source::Robust(..) => "RobustSemaphore",
            Source::Reclaimed => "RobustSemaphore (reclaimed)",
        };
        f.debug_struct("Permit").field("of", &kind).finish()
    }
}
