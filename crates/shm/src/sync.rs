//! The seam between procsync's shared-word protocols and the `loom` model
//! checker (crossbeam's habit: one module that hands out either the real
//! thing or loom's).
//!
//! Every primitive takes its atomics, its spinning, its thread-locals and
//! its clock from here. In the normal build these are plain re-exports of
//! `std`, `crossbeam-utils` and `Instant::now`: nothing changes and nothing
//! costs. Built with `RUSTFLAGS="--cfg loom"` they come from `loom` and
//! from `model`, a small world in which each loom thread plays one
//! process:
//!
//! - [`atomic`]: loom's atomics, so loom explores every interleaving (and
//!   every weak-memory outcome it models) of the shared-word protocols.
//! - [`Futex`](crate::Futex) and [`Futex64`](crate::Futex64): `wait` sleeps
//!   only if the word still holds the expected value, checked atomically
//!   with going to sleep, and `wake(n)` wakes at most `n` sleepers, as the
//!   kernel does: a lost wake-up is a loom deadlock.
//! - [`pid::current_identity`](crate::pid::current_identity) and
//!   [`Identity::is_running`](crate::pid::Identity::is_running): the model
//!   thread's assigned process, and a table of dead processes
//!   (`model::play`, `model::die`).
//! - [`now`]: a model clock that moves only when a timed wait times out
//!   (see `model::Timers`).
//! - [`Backoff`]: spins that loom explores like any other steps, and
//!   only `model::SPINS` of them.
//!
//! # Running the models
//!
//! The models are the `loom_*` tests of the primitive crates, compiled only
//! under `cfg(loom)`, in a target directory of their own (loom changes
//! every crate of the build):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p procsync-lock --release \
//!     --target-dir target/loom --test 'loom_*' -- --nocapture
//! ```
//!
//! Each model bounds the preemptions loom tries (two or three; a bug
//! needing more is rare, and each one more multiplies the time);
//! `LOOM_MAX_PREEMPTIONS` overrides the bound for all of them.
//!
//! `.ci/run` runs them, and each prints how many interleavings it explored.
//! A failing model panics with what it found: a deadlock (a lost wake-up),
//! concurrent access to a loom cell (two holders), or a failed assertion.
//! `LOOM_LOCATION=1` adds where each thread stood. (A deadlock
//! makes loom panic again while unwinding, which aborts the whole test
//! binary: run the failing model alone.)
//!
//! # Rules for code behind the seam
//!
//! - Atomics from [`atomic`], not `std::sync::atomic`.
//! - "Now" from [`now`], not `Instant::now()` (deadlines stay
//!   `std::time::Instant`s; only the clock is swapped).
//! - Spinning through [`Backoff`], thread-locals through [`thread_local!`].
//! - Constructors `const fn` through [`const_unless_loom!`](crate::const_unless_loom):
//!   loom's atomics cannot be made in a const context.

/// The atomic types of the shared words: `std`'s, or loom's under
/// `cfg(loom)`.
pub mod atomic {
    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
}

#[cfg(not(loom))]
pub use crossbeam_utils::Backoff;
#[cfg(loom)]
pub use model::Backoff;

#[cfg(not(loom))]
pub use std::thread_local;

/// `std::thread_local!` for the model: loom's, which gives every loom
/// thread its own value, taking std's `const { ... }` initialisers too.
#[cfg(loom)]
#[doc(hidden)]
#[macro_export]
macro_rules! __loom_thread_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }; $($rest:tt)*) => {
        $crate::sync::__loom::thread_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::__loom_thread_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $crate::sync::__loom::thread_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::__loom_thread_local!($($rest)*);
    };
}
#[cfg(loom)]
pub use crate::__loom_thread_local as thread_local;
#[cfg(loom)]
#[doc(hidden)]
pub use loom as __loom;

#[cfg(loom)]
pub mod model;

/// The current instant: `Instant::now()`, or the model clock under
/// `cfg(loom)` (see `model::Timers`).
#[cfg(not(loom))]
#[inline(always)]
pub fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(loom)]
pub use model::now;

/// `CLOCK_MONOTONIC` in nanoseconds, the same in every process: a time
/// that can be stored in shared memory and compared by another process. The
/// model clock, counted from its origin, under `cfg(loom)`.
#[cfg(not(loom))]
pub fn monotonic_ns() -> u64 {
    crate::sys::monotonic_ns()
}

/// The model clock (`now`) in nanoseconds since its origin.
#[cfg(loom)]
pub fn monotonic_ns() -> u64 {
    now().saturating_duration_since(model::origin()).as_nanos() as u64
}

/// Defines a `const fn`, or under `cfg(loom)` the same function without
/// `const` (loom's atomics, mutexes and condvars cannot be made in a const
/// context). For the constructors of the primitives, so that the normal
/// build keeps its `const fn new`.
///
/// ```
/// pub struct Flag(shm::sync::atomic::AtomicU32);
///
/// impl Flag {
///     shm::const_unless_loom! {
///         /// A lowered flag.
///         pub const fn new() -> Flag {
///             Flag(shm::sync::atomic::AtomicU32::new(0))
///         }
///     }
/// }
/// # let _ = Flag::new();
/// ```
#[macro_export]
macro_rules! const_unless_loom {
    ($(#[$attr:meta])* $vis:vis const fn $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$attr])*
        $vis const fn $($rest)*

        #[cfg(loom)]
        $(#[$attr])*
        $vis fn $($rest)*
    };
}
