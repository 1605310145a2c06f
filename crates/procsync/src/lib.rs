//! procsync: what Python's `multiprocessing` gives processes, in Rust, on
//! Linux, built so that a process killed at the wrong moment never wedges
//! the others.
//!
//! This crate re-exports the procsync crates, one feature each, so that a
//! program names one dependency and pulls in only the primitives it uses:
//!
//! ```toml
//! [dependencies]
//! procsync = { version = "0.1", default-features = false, features = ["lock", "event"] }
//! ```
//!
//! | module | feature | what it holds |
//! |---|---|---|
//! | [`shm`] | always | `Shared<T>`, `SharedSlice<T>`, `Segment`, named segments, `ShmSafe` and its derive, the futex word, the robust lock word, process ids |
//! | `lock` | `lock` | `Lock`, `Mutex<T>`, `RLock`, `Condvar`: a dead holder is reported, never a deadlock |
//! | `sem` | `sem` | `Semaphore`, `RobustSemaphore` (a dead holder's permits come back) |
//! | `event` | `event` | `Event`, `Barrier` that breaks instead of hanging |
//! | `daemon` | `daemon` | `Process` / `Child`: fork a closure, join its result; daemon children |
//! | `pool` | `pool` (opt-in while it is new) | `Pool`: `map`, `imap`, `apply_async`...; a killed worker costs one task, never the pool |
//! | `queue` | `queue` | `Queue<T>` (Python's `Queue`, `SimpleQueue`, `JoinableQueue`), `Pipe`/`Connection`, `wait`: no killed peer tears a message or wedges the others |
//! | `heartbeat` | `heartbeat` | a daemon that reports that its process is alive, and a monitor (UDP, SQLite) |
//!
//! The default features are `lock`, `sem`, `event`, `daemon` and `queue`;
//! `heartbeat` (which builds SQLite) is opt-in.
//!
//! `procsync::shm::ShmSafe` is the derive that names `shm` through this
//! crate (`::procsync::shm`), so `use procsync::shm::ShmSafe;` is all a
//! program needs.
//!
//! # Example
//!
//! ```
//! use procsync::daemon::Process;
//! use procsync::lock::Mutex;
//! use procsync::shm::ShmSafe;
//!
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Tickets {
//!     left: u32,
//! }
//!
//! let db = Mutex::shared(Tickets { left: 1 })?;
//! let buyer = Process::new(|| {
//!     let mut t = db.lock().unwrap_or_else(|died| died.into_inner());
//!     t.left -= 1;
//! })
//! .start()?;
//! buyer.join()?;
//! assert_eq!(db.lock().unwrap().left, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

/// Shared memory (the `procsync-shm` crate): `Shared<T>`,
/// `SharedSlice<T>`, `Segment`, named segments, `ShmSafe` and its derive,
/// the futex word, process ids.
pub mod shm {
    pub use shm_crate::*;
    /// `#[derive(ShmSafe)]` as a program that depends only on `procsync`
    /// uses it: the generated impl names `shm` as `::procsync::shm`.
    pub use shm_derive::ShmSafeThroughProcsync as ShmSafe;
}

/// Locks between processes (the `procsync-lock` crate).
#[cfg(feature = "lock")]
pub use sync_lock as lock;

/// Semaphores between processes (the `procsync-sem` crate).
#[cfg(feature = "sem")]
pub use sync_sem as sem;

/// Events and barriers between processes (the `procsync-event` crate).
#[cfg(feature = "event")]
pub use sync_event as event;

/// Processes: fork a closure, join its result (the `procsync-daemon` crate).
#[cfg(feature = "daemon")]
pub use daemon;

/// Messages between processes (the `procsync-queue` crate): `Queue<T>`,
/// `Pipe`/`Connection`, `wait`.
#[cfg(feature = "queue")]
pub use queue;

/// A process pool (the `procsync-pool` crate).
#[cfg(feature = "pool")]
pub use pool;

/// A heartbeat daemon and its monitor (the `procsync-heartbeat` crate).
#[cfg(feature = "heartbeat")]
pub use heartbeat;
