//! Explicit sharing between processes.
//!
//! Processes do not share memory: after `fork`, a child's writes to ordinary
//! memory are invisible to its parent (the first lesson of Python's
//! `multiprocessing`). This crate is how processes share on purpose, and the
//! ground the other procsync crates stand on.
//!
//! - [`Shared<T>`]: one value (Python's `Value` / `RawValue`), handed out as
//!   `&T`.
//! - [`SharedSlice<T>`]: a fixed-length array (Python's `Array`).
//! - [`Segment`]: raw bytes by name and size (Python's `SharedMemory`).
//! - [`ShmSafe`] (and `#[derive(ShmSafe)]`): the types that may live there.
//! - [`atomic`]: [`AtomicF64`](atomic::AtomicF64) and
//!   [`AtomicF32`](atomic::AtomicF32), for Python's `Value('d')` and
//!   `Array('d')` (`SharedSlice<AtomicF64>`).
//! - [`Futex`]: a 32-bit word processes sleep on and wake each other
//!   through; the `sync-lock`, `sync-sem` and `sync-event` primitives are
//!   built on it.
//! - [`lockword`]: the robust lock word ([`RawLock`](lockword::RawLock)) every
//!   lock stands on, and [`spin`]: the one spin-then-park policy.
//! - [`crash`] and [`crash_point!`]: places where a test build (feature
//!   `crash-points`) kills or stops the process on purpose.
//! - [`pid`]: this process's id without a system call, and a liveness check,
//!   used to notice that a process holding something died.
//! - [`layout`]: the layout description a named segment is checked by.
//! - [`sync`]: the seam through which the primitives get their atomics,
//!   futex and liveness check, swapped for `loom`'s and a model under
//!   `cfg(loom)` to model-check their protocols.
//!
//! Each of the three containers is either **anonymous** (`new`, `from_fn`,
//! `anonymous`: shared with children forked afterwards) or **named**
//! (`create`, `open`, `open_or_create`: unrelated processes meet by a name
//! under `/dev/shm`). A named segment starts with a header recording the
//! type's layout (see [`layout`]: fields, offsets, sizes, not the Rust
//! path), so opening it as the wrong type is an [`Error`] naming the
//! difference, not undefined behaviour. The creating handle removes the name
//! when dropped, unless told to [`persist`](Shared::persist); handles that
//! forked children inherit never do.
//!
//! # Example
//!
//! ```
//! use shm::Shared;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! let name = format!("doc-hits-{}", std::process::id());
//! let hits = Shared::create(&name, AtomicU64::new(0))?;
//! // Any process on the machine (same user) can now open it by name.
//! let same = Shared::<AtomicU64>::open(&name)?;
//! same.fetch_add(1, Ordering::Relaxed);
//! assert_eq!(hits.load(Ordering::Relaxed), 1);
//! // Opening it as another type is refused.
//! assert!(Shared::<u32>::open(&name).is_err());
//! # Ok::<(), shm::Error>(())
//! ```

#![deny(unsafe_code)]

#[allow(unsafe_code)] // implements ShmSafe for the float atomics
pub mod atomic;
pub mod crash;
mod error;
pub mod futex;
mod identity;
pub mod layout;
// Declares the unsafe trait RawRobustLock and the unsafe release calls a
// guard makes on the acquisition it owns.
#[allow(unsafe_code)]
pub mod lockword;
pub mod pid;
pub mod placement;
mod proc_maps;
#[allow(unsafe_code)] // the lock's UnsafeCell, reached by one thread at a time
mod process_local;
mod region;
#[allow(unsafe_code)] // declares the unsafe trait ShmSafe and implements it for std types
mod safe;
mod segment;
#[allow(unsafe_code)] // writes a T into its mapping and hands out &T
mod shared;
#[allow(unsafe_code)] // writes T's into its mapping and hands out &[T]
mod slice;
pub mod spin;
pub mod sync;
mod sys;
pub mod tracker;

pub use error::{Error, Result};
pub use futex::{Futex, Futex64};
pub use region::inventory;
pub use region::{DEFAULT_MODE, DEFAULT_OPEN_TIMEOUT, MAX_NAME_LEN, SEGMENT_CRASH_POINTS};
pub use safe::ShmSafe;
pub use segment::Segment;
pub use shared::Shared;
pub use shm_derive::ShmSafe;
pub use slice::SharedSlice;
