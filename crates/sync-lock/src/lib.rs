//! Locks between processes that no dying process can wedge.
//!
//! - [`Lock`]: Python's `multiprocessing.Lock`. Guards unlock on drop.
//! - [`Mutex<T>`]: data guarded by a lock (Python's `Value(..., lock=True)`),
//!   `&mut T` only while held.
//! - [`RLock`]: re-entrant for the holding thread (Python's `RLock`).
//! - [`Condvar`]: wait for a condition on a `Mutex`'s data (Python's
//!   `Condition(lock)` with a `Lock`, and its `notify(n)` that ends at most
//!   n waits).
//! - [`Condition`]: a condition variable that owns its re-entrant lock
//!   (Python's `Condition()`, whose default lock is an `RLock`).
//! - [`RawLock`]: the lock word under all of them, for building others.
//!
//! Every one is a small `#[repr(C)]` struct of atomics with a `const fn
//! new`, [`ShmSafe`](shm::ShmSafe), meant to live in `shm::Shared` memory
//! (anonymous for forked children, named for unrelated processes). Each has
//! a `shared` constructor that puts it there for forked children in one
//! line ([`Mutex::shared`], [`Lock::shared`], [`RLock::shared`],
//! [`Condvar::shared`], [`Condition::shared`]); a `Mutex::new` kept in
//! ordinary memory is copied by `fork`, and each process would lock its
//! own copy. Debug builds catch that: in a child started by
//! `daemon::Process`, the first use of a primitive that is not in shared
//! memory panics, naming the `shared` form to use
//! ([`shm::placement`]).
//!
//! ```
//! use sync_lock::Mutex;
//!
//! let counter = Mutex::shared(0u64)?;
//! let workers: Vec<_> = (0..4)
//!     .map(|_| daemon::Process::new(|| *counter.lock().unwrap() += 1).start())
//!     .collect::<Result<_, _>>()?;
//! for w in workers {
//!     w.join()?;
//! }
//! assert_eq!(*counter.lock().unwrap(), 4); // every worker's increment counted
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A dead holder is reported, not a deadlock
//!
//! If the process holding a lock dies (SIGKILL at any instruction, a crash),
//! the next process that locks it gets it within about a millisecond, with
//! an [`OwnerDied`] report that carries the guard so it can repair the
//! protected data. The report is made once; the lock stays usable. Python's
//! `multiprocessing.Lock` deadlocks there; glibc's robust mutex recovers but
//! costs a linked-list update on every lock and unlock. Here the
//! uncontended path is one compare-and-swap each way; the cost of
//! robustness is paid only by waiters, who check now and then
//! ([`OWNER_CHECK_INTERVAL`]) that the holder still runs.
//!
//! Holding is per process: the word records the holder's
//! [`Identity`](shm::pid::Identity), its pid and a start tag, so a new
//! process that reuses a dead holder's pid is never taken for the holder,
//! and a waiter acting on a stale judgement of a holder's death fails its
//! compare-and-swap instead of entering beside a live newcomer. All
//! processes sharing a lock must be in one pid namespace.
//!
//! A guard belongs to the process that locked (a forked child's copy
//! refuses the data and leaves the lock alone), and a guard dropped while
//! its thread panics tells the next locker, as std's poisoning does.
//!
//! # Names
//!
//! std's names (`lock`, `try_lock`, guards) with Python's semantics:
//! `acquire()` is [`Lock::lock`], `acquire(False)` is [`Lock::try_lock`],
//! `acquire(timeout=t)` is [`Lock::lock_timeout`], `release()` is dropping
//! the guard.

#![deny(unsafe_code)]

#[allow(unsafe_code)] // implements ShmSafe
mod condition;
#[allow(unsafe_code)] // implements ShmSafe; rebuilds the guard it took apart to wait
mod condvar;
#[allow(unsafe_code)] // implements ShmSafe; builds guards of acquisitions it made
mod lock;
#[cfg(all(feature = "lock_api", not(loom)))]
#[allow(unsafe_code)] // implements lock_api's unsafe RawMutex trait
pub mod lock_api_adapter;
#[allow(unsafe_code)] // hands out &T / &mut T through the lock; Send/Sync argued there
mod mutex;
mod poison;
#[allow(unsafe_code)] // implements ShmSafe; releases acquisitions it made
mod rlock;
mod sys;

pub use condition::Condition;
pub use condvar::{Condvar, WaitTimeoutResult, CONDVAR_CRASH_POINTS, MAX_WAITERS};
pub use lock::{Lock, LockGuard};
pub use mutex::{Mutex, MutexGuard};
pub use poison::{LockResult, OwnerDied, TryLockError, TryLockResult};
pub use rlock::{NotOwner, RLock, RLockGuard};
pub use shm::lockword::{Acquired, OwnerCheck, RawLock, OWNER_CHECK_INTERVAL};
