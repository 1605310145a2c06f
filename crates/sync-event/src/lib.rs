//! Events and barriers between processes.
//!
//! - [`Event`]: Python's `Event`, a flag that is set or clear; `wait` blocks
//!   while it is clear, and a `set` lets every waiter through even if a
//!   `clear` follows at once. `set` never blocks and makes no system call
//!   when nobody waits; waiters spin briefly before sleeping, so a set in one
//!   process reaches a waiter on another CPU in about the time a cache line
//!   takes to cross.
//! - [`Barrier`]: Python's `Barrier`: `parties` processes wait until all have
//!   arrived, generation after generation. A party that dies while waiting,
//!   or gives up on a timeout, breaks the barrier for the others, who get
//!   [`BarrierError::Broken`] instead of hanging; each waiter learns the
//!   exact outcome of its own generation. No internal lock: a party killed
//!   or stopped anywhere blocks nobody past their timeout.
//!
//! Both are `#[repr(C)]` structs of atomics, [`ShmSafe`](shm::ShmSafe), to
//! put in `shm::Shared` memory; [`Event::shared`] and [`Barrier::shared`]
//! put one there for forked children in one line.

#![deny(unsafe_code)]

#[allow(unsafe_code)] // implements ShmSafe
mod barrier;
#[allow(unsafe_code)] // implements ShmSafe
mod event;

pub use barrier::{Barrier, BarrierError, BarrierWaitResult, BARRIER_CRASH_POINTS, MAX_PARTIES};
pub use event::{Event, EVENT_CRASH_POINTS, SPIN_BEFORE_SLEEP};
