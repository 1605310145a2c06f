//! Semaphores between processes: "many keys to one lock".
//!
//! - [`Semaphore`]: Python's `Semaphore` (and, made with
//!   [`Semaphore::bounded`], `BoundedSemaphore`). As fast as a POSIX
//!   semaphore: one compare-and-swap to acquire, one to release, a system
//!   call only to sleep or to wake a sleeper.
//! - [`RobustSemaphore`]: the same, and permits held through a [`Permit`] by
//!   a process that dies come back to the semaphore. Python, POSIX and
//!   Boost all lose such a permit for ever. The bookkeeping that makes this
//!   possible costs on every acquisition, so it is a type of its own.
//! - [`Permit`]: one acquired permit; dropping it releases it.
//!
//! Both are `#[repr(C)]` structs of atomics with `const fn` constructors,
//! [`ShmSafe`](shm::ShmSafe), meant to live in `shm::Shared` memory;
//! [`Semaphore::shared`] and [`RobustSemaphore::shared`] put one there for
//! forked children in one line.
//!
//! # Choosing
//!
//! Use [`Semaphore`] when processes are trusted to finish or when permits
//! are handed from one process to another ([`Permit::forget`] in one,
//! [`Semaphore::release`] in another). Use [`RobustSemaphore`] to limit
//! concurrency among workers that may be killed (the KTV rooms must come
//! back when a singer is thrown out); a robust permit moved into a child
//! process is made the child's with [`Permit::adopt`].

#![deny(unsafe_code)]

mod count;
mod error;
#[allow(unsafe_code)] // declares the unsafe Permit::adopt (a promise only the caller can keep)
mod permit;
#[allow(unsafe_code)] // implements ShmSafe
mod plain;
#[allow(unsafe_code)] // implements ShmSafe; guards its table lock's acquisitions
mod robust;

pub use error::{AcquireError, AdoptError, ReleaseError};
pub use permit::Permit;
pub use plain::{Semaphore, SEMAPHORE_CRASH_POINTS};
pub use robust::{RobustSemaphore, MAX_HOLDERS, ROBUST_SEMAPHORE_CRASH_POINTS};

/// The most permits a semaphore can count (the top bit of its word is
/// taken by the sleepers flag).
pub const MAX_PERMITS: u32 = (1 << 31) - 1;
