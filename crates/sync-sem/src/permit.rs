//! [`Permit`]: one acquired permit, released on drop by the process it
//! belongs to.

use shm::pid::{self, Identity};

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
///
/// A permit belongs to one process: the one that acquired it, or the one
/// that [adopted](Permit::adopt) it since. `fork` copies the value into the
/// child, but in any process other than its owner a permit is inert:
/// dropping or forgetting it there does nothing, so a copy can never
/// release its owner's live permit. A permit *moved* into a child (a
/// `daemon::Process` closure, whose parent never drops what it moved)
/// therefore stays taken until the child adopts it; a child that does not
/// adopt it leaks it (a [`RobustSemaphore`] gets it back when the
/// acquirer dies; a plain [`Semaphore`] never does).
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    source: Source<'a>,
    /// The only process whose drop or forget acts on the permit.
    owner: Identity,
}

impl<'a> Permit<'a> {
    #[inline]
    pub(crate) fn plain(semaphore: &'a Semaphore) -> Permit<'a> {
        Permit {
            source: Source::Plain(semaphore),
            owner: pid::current_identity(),
        }
    }

    #[inline]
    pub(crate) fn robust(
        semaphore: &'a RobustSemaphore,
        acquirer: crate::robust::Who,
    ) -> Permit<'a> {
        Permit {
            source: Source::Robust(semaphore, acquirer),
            owner: Identity::from_bits(acquirer).expect("the acquirer's identity"),
        }
    }

    /// Makes the calling process the permit's owner: call it first thing
    /// in a child that a permit was moved into. Until then the permit is
    /// inert there (see [`Permit`]).
    ///
    /// A [`RobustSemaphore`] counts a permit under its owner and takes it
    /// back when the owner dies. `adopt` moves it to the calling process's
    /// row, as one crash-safe change (a process killed at any point of it
    /// leaves the permit counted once, under one of the two): from then on
    /// the permit is released under the calling process, and taken back
    /// when *it* dies, not when the acquirer does. (A child that dies
    /// before adopting leaves the permit counted under the acquirer, which
    /// gets it back only when it dies itself.) A plain [`Semaphore`] counts
    /// no holders: adopting its permit only makes the calling process the
    /// one whose drop releases it.
    ///
    /// In the process that owns the permit already, it does nothing and
    /// returns `Ok`.
    ///
    /// # Safety
    ///
    /// The permit was *moved* into the calling process: the process it came
    /// from will never drop or forget its own copy (true of anything moved
    /// into a `daemon::Process` closure: the parent never drops it). Fork
    /// also copies permits the parent keeps (a closure that borrows one and
    /// `take`s it, say); adopting such a copy makes two owners of one
    /// permit, each of whose drops releases one, so more processes than the
    /// semaphore allows get in. Nothing in the permit can tell a moved
    /// value from a copied one, so this is the caller's promise:
    ///
    /// ```compile_fail
    /// let sem = sync_sem::Semaphore::new(1);
    /// let mut permit = sem.acquire();
    /// let _ = permit.adopt(); // needs unsafe
    /// ```
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
    ///         // SAFETY: moved into this closure; the parent never drops it.
    ///         let adopted = unsafe { permit.adopt() }.is_ok();
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
    pub unsafe fn adopt(&mut self) -> Result<(), AdoptError> {
        let me = pid::current_identity();
        if me == self.owner {
            return match self.source {
                Source::Reclaimed => Err(AdoptError::Reclaimed),
                _ => Ok(()),
            };
        }
        match self.source {
            Source::Plain(_) => {
                self.owner = me;
                Ok(())
            }
            Source::Reclaimed => Err(AdoptError::Reclaimed),
            Source::Robust(semaphore, holder) => match semaphore.adopt_one(holder) {
                Ok(adopter) => {
                    self.source = Source::Robust(semaphore, adopter);
                    self.owner = me;
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
    /// as this process's, so it is not returned if this process dies. In a
    /// process that does not own the permit (see [`Permit`]), it does
    /// nothing.
    pub fn forget(self) {
        if let Source::Robust(semaphore, holder) = self.source {
            if self.is_owned_here() {
                semaphore.disown_one(holder);
            }
        }
        std::mem::forget(self);
    }

    /// Whether the calling process owns the permit (only there does it act).
    #[inline]
    fn is_owned_here(&self) -> bool {
        pid::current_identity() == self.owner
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.is_owned_here() {
            // A fork copy (or a moved permit not adopted): its owner, not
            // this process, releases it.
            return;
        }
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
