//! [`RawMutex`]: the robust lock word behind `lock_api`'s traits, for
//! generic in-process code (feature `lock_api`).
//!
//! `lock_api::Mutex<RawMutex, T>` is an ordinary in-process mutex (its
//! `UnsafeCell<T>` is not `ShmSafe`, so it does not go into shared memory;
//! use [`crate::Mutex`] there). What the adapter offers is the same word
//! every procsync lock stands on, behind the traits generic Rust code is
//! written against: a holder is a process, threads of it exclude each other
//! through the word, and no system call is made uncontended.
//!
//! `lock_api` has no owner death and no poisoning: in one process the
//! holder cannot die without the waiters dying too, and a panicking holder
//! simply releases (as `parking_lot` does).

use lock_api::GuardSend;
use shm::lockword::RawLock;

/// The robust lock word as a [`lock_api::RawMutex`].
///
/// # Example
///
/// ```
/// use sync_lock::lock_api_adapter::RawMutex;
///
/// type Mutex<T> = lock_api::Mutex<RawMutex, T>;
///
/// let counter = std::sync::Arc::new(Mutex::new(0u64));
/// let threads: Vec<_> = (0..4)
///     .map(|_| {
///         let counter = counter.clone();
///         std::thread::spawn(move || {
///             for _ in 0..1_000 {
///                 *counter.lock() += 1;
///             }
///         })
///     })
///     .collect();
/// for t in threads {
///     t.join().unwrap();
/// }
/// assert_eq!(*counter.lock(), 4_000);
/// ```
#[derive(Debug)]
pub struct RawMutex(RawLock);

// SAFETY: the word lets one acquisition in at a time: taking it is a CAS
// from free to this process's identity (acquire), releasing a CAS back
// (release); a second thread of the same process finds the word held by
// its own process and waits (or `try_lock` fails) until the release. The
// guard marker is `GuardSend`: the word is held by the process, so any of
// its threads may release it.
unsafe impl lock_api::RawMutex for RawMutex {
    #[allow(clippy::declare_interior_mutable_const)] // lock_api's INIT idiom
    const INIT: RawMutex = RawMutex(RawLock::new());

    type GuardMarker = GuardSend;

    #[inline]
    fn lock(&self) {
        // In one process nobody can die holding it while we wait, and a
        // panicking holder's mark is not lock_api's business: any outcome
        // is "held".
        let _how = self.0.lock_until(None).expect("no deadline");
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.0.try_lock().is_some()
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: lock_api calls this only for the acquisition it ends.
        unsafe { self.0.unlock() };
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}
