//! The count word both semaphores share: free permits plus the sleepers
//! bit, and the rules for changing it.

use shm::sync::atomic::Ordering;
use shm::Futex;

use crate::{ReleaseError, MAX_PERMITS};

/// Set while some process may sleep on the word (the ground's convention).
pub(crate) use shm::futex::SLEEPERS;
/// The count of free permits.
pub(crate) const COUNT: u32 = !SLEEPERS;

/// The free permits a count word holds.
pub(crate) fn permits_in(word: &Futex) -> u32 {
    word.load(Ordering::Relaxed) & COUNT
}

/// Whether the count word's sleepers bit is set.
pub(crate) fn has_sleepers(word: &Futex) -> bool {
    word.load(Ordering::Relaxed) & SLEEPERS != 0
}

/// A semaphore's bound as its public API gives it: `None` when unbounded.
pub(crate) fn public_bound(bound: u32) -> Option<u32> {
    (bound != MAX_PERMITS).then_some(bound)
}

/// Wakes every sleeper if `seen` (the word before a release) flagged any.
pub(crate) fn wake_sleepers_of(word: &Futex, seen: u32) {
    if seen & SLEEPERS != 0 {
        word.wake_all();
    }
}

/// `permits`, at most [`MAX_PERMITS`].
pub(crate) const fn clamp_permits(permits: u32) -> u32 {
    if permits > MAX_PERMITS {
        MAX_PERMITS
    } else {
        permits
    }
}

/// The value after releasing `n` onto `value`, or why that would break the
/// semaphore's `bound` (`MAX_PERMITS` when unbounded).
pub(crate) fn checked_release(value: u32, n: u32, bound: u32) -> Result<u32, ReleaseError> {
    let would_be = u64::from(value) + u64::from(n);
    if would_be <= u64::from(bound) {
        return Ok(would_be as u32);
    }
    Err(if bound == MAX_PERMITS {
        ReleaseError::Overflow {
            released: n,
            value,
            max: MAX_PERMITS,
        }
    } else {
        ReleaseError::AboveBound {
            released: n,
            would_be,
            bound,
        }
    })
}
