//! A process pool, Python's `multiprocessing.Pool`, where **a killed worker
//! costs one task, never the pool**.
//!
//! Python's `Pool.map` hangs for ever when a worker is killed (CPython
//! gh-96062); `concurrent.futures.ProcessPoolExecutor` fails every pending
//! task with `BrokenProcessPool` and is unusable afterwards. Here the task
//! the dead worker was running returns [`TaskError::WorkerDied`] (or runs
//! again, with [`PoolBuilder::retries`]), a replacement worker is forked,
//! and every other task completes normally. No task ever runs twice except
//! by `retries`: the outcomes of the items of the dead worker's chunk that
//! had finished, not sent yet (a chunk's outcomes go back together), are
//! in its journal in shared memory and are delivered as if sent.
//!
//! - [`Pool::new`] / [`Pool::builder`]: workers (default: the CPUs this
//!   process may use), `initializer`, `max_tasks_per_child`, `chunksize`,
//!   a per-task `timeout`, `retries` of died tasks.
//! - [`Pool::map`], [`Pool::starmap`] (ordered, all at once, Python's
//!   automatic chunk size), [`Pool::imap`] and [`Pool::imap_unordered`]
//!   (lazy, with [`Imap::done`] and [`Imap::pending`] for a progress bar),
//!   [`Pool::apply`], [`Pool::apply_async`] ([`AsyncResult`]),
//!   [`Pool::close`], [`Pool::join`], [`Pool::terminate`]; `_chunked`
//!   variants take an explicit chunk size.
//!
//! ```
//! use pool::{Pool, TaskError};
//!
//! fn collatz_steps(mut n: u64) -> u32 {
//!     let mut steps = 0;
//!     while n != 1 {
//!         n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
//!         steps += 1;
//!     }
//!     steps
//! }
//!
//! let pool = Pool::new(2)?;
//! let steps: Result<Vec<u32>, TaskError> = pool.map(collatz_steps, 1..=10).into_iter().collect();
//! assert_eq!(steps?, [0, 1, 7, 2, 5, 8, 16, 3, 19, 6]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # From Python
//!
//! | Python | here |
//! |---|---|
//! | `Pool(processes, initializer, initargs, maxtasksperchild)` | [`Pool::builder`]`.workers(n).initializer(f).max_tasks_per_child(n)` (no `initargs`: `f` is a `fn()`, set data up before building the pool) |
//! | `pool.map(f, xs, chunksize)` | [`Pool::map`] / [`Pool::map_chunked`]: a `Vec` of `Result`s, one per input |
//! | `pool.imap(f, xs)`, `imap_unordered` | [`Pool::imap`], [`Pool::imap_unordered`] ([`Imap::indexed`] gives the input's index) |
//! | `pool.starmap(f, pairs)` | [`Pool::starmap`] with `fn(A, B) -> R` |
//! | `pool.apply(f, (x,))`, `apply_async` | [`Pool::apply`], [`Pool::apply_async`] |
//! | `AsyncResult.get(timeout)`, `ready()` | [`AsyncResult::get`], [`AsyncResult::get_timeout`] (`None` for Python's `TimeoutError`), [`AsyncResult::ready`] |
//! | `close()`, `join()`, `terminate()`, `with Pool() as p:` | [`Pool::close`], [`Pool::join`], [`Pool::terminate`], dropping the pool (terminates, as the `with` block's exit does) |
//! | a worker killed: `map` hangs (gh-96062) | that task `Err(`[`TaskError::WorkerDied`]`)`, a new worker, the rest complete |
//! | `ProcessPoolExecutor`: `BrokenProcessPool` for every pending task | the same as above: one task fails, the pool goes on |
//! | an exception in a task, re-raised by `get` | `Err(`[`TaskError::Panicked`]`(message))`, the worker goes on |
//! | `AsyncResult.get(timeout)` leaves the task running | [`PoolBuilder::timeout`] kills the worker: `Err(`[`TaskError::TimedOut`]`)` |
//!
//! # Tasks are data: a `fn` and serde arguments
//!
//! A task is a plain function pointer, `fn(A) -> R` (or `fn(A, B) -> R` for
//! `starmap`), with `A` and `R` serde types that postcard, the pool's
//! encoding, can carry (below). The workers are forked once,
//! when the pool starts (and again for each replacement), and run many
//! tasks; a task crosses to a worker as bytes in a shared-memory queue. The
//! function travels as its *address*: valid in the worker because every
//! worker is a `fork` of the owner, never an `exec`, so its address space
//! is a copy of the owner's with the program and its libraries at the same
//! addresses (ASLR is chosen at `exec`). Along with it goes the address of
//! a small runner monomorphized for `A` and `R`, which decodes the
//! argument, calls the function and encodes the result; the worker loop
//! itself knows no types. (The alternative, a worker loop generic over
//! each `map`'s types, would need a fork per `map` call or per type.)
//!
//! **Which serde types.** Postcard is compact and fast but not
//! self-describing: a value is decoded by its type alone. Plain structs,
//! enums (externally tagged, serde's default), tuples, `Vec`, `String`,
//! maps, `Option`, numbers and the like all work. Types whose serde impls
//! need a self-describing format do not: `#[serde(untagged)]`,
//! `#[serde(tag = ...)]` (internally or adjacently tagged) enums,
//! `#[serde(flatten)]` fields, `serde_json::Value` and other types that
//! deserialize "any" value, and sequences or maps serialized without a
//! known length. Such a task fails, never hangs: [`TaskError::Serde`], whose
//! message says the type needs a self-describing format (the argument
//! fails to decode in the worker, or to encode when submitted; a result
//! fails to decode in the owner). Convert them to a plain type (or to a
//! JSON `String`) at the task's boundary.
//!
//! **Why not closures.** A closure's captures live in the owner's memory.
//! A worker has a copy of that memory *as it was at the fork*: a closure
//! made afterwards, or anything it captures that changed since, is not
//! there (or is stale) in the worker. So a task carries only what is sent
//! with it (the serde argument), and what workers share is what existed
//! when they were forked:
//!
//! - **What workers inherit**: the owner's whole memory at the fork
//!   (statics, `OnceLock`s filled before the pool was built, heap data),
//!   its open descriptors, and its shared-memory mappings (a
//!   [`shm::Shared`] made before the pool is shared with the workers, live).
//!   Replacement workers are forked later, from the pool's forker thread:
//!   they see the owner's memory as it is at *their* fork. Set global state
//!   up before building the pool, or in [`PoolBuilder::initializer`], which
//!   every worker (replacements included) runs once.
//! - **Threads**: a worker has one thread. Workers are forked from the
//!   pool's forker thread while the owner's other threads run (as
//!   Python's pool forks replacements from its handler thread): a lock
//!   another owner thread held at that instant (a `std::sync::Mutex` of
//!   yours) stays held for ever in the worker. Tasks should not take locks
//!   the owner's threads use; glibc's `malloc` is safe after fork, and
//!   `daemon::Process::start` holds the stdout lock across the fork so
//!   workers may print (a fork waits while another owner thread holds
//!   that lock, but only the forker thread waits: the pool goes on with
//!   the workers it has). The same holds for the standard library's own
//!   locks: a worker forked while another owner thread was printing a
//!   panic would wait for ever in its own first panic (a pool
//!   [`timeout`](PoolBuilder::timeout) ends such a task).
//! - **A pool belongs to the process that built it.** A child forked from
//!   the owner later inherits a copy of the `Pool` but not its manager
//!   thread: its tasks fail at once with [`TaskError::NotOwner`] (in
//!   Python they wait for ever), `join` is [`PoolError::NotOwner`],
//!   `close`/`terminate` do nothing there; dropping it there (or unwinding
//!   past it) only forgets the copy: the pool sees it is not in the
//!   process that built it, and neither joins the owner's manager thread
//!   nor touches the owner's workers.
//!
//! # Design
//!
//! - **Jobs in parts**: a job's chunks go to the manager in parts of 1, 2,
//!   4, ... chunks as the caller encodes them, so the workers start on the
//!   first while the rest is encoded; the manager ends a job only after
//!   its last part (sent even when an argument's `Serialize` panics).
//! - **One task queue per worker slot** ([`queue::Queue`], capacity 9, at
//!   most 8 chunks in flight): the owner knows which chunks went to which
//!   worker, in order, and keeps the rest itself to give to whichever
//!   worker frees up first. Chunks queued to a dead worker and not
//!   started are taken back out of its queue and go to whichever worker
//!   frees up first (its replacement may be long to come): re-dispatched,
//!   never failed.
//! - **One shared inbox** (a queue) for the manager: outcomes from the
//!   workers (one message per chunk, split if large), a worker's exit from
//!   the watcher thread, wake-ups from submitters. Its order is the
//!   attribution argument: every outcome a worker committed before dying
//!   is read before its exit.
//! - **A per-slot record in shared memory**: the task id the worker is
//!   running (0 between tasks), when it started, and the last task id it
//!   began (written before the function is called, never cleared by the
//!   worker). After a death: the chunks sent and no longer in the queue
//!   were taken (at most one: a worker takes the next only after sending
//!   the last one's outcomes). First the outcomes in the worker's
//!   *journal* are delivered: every outcome a worker makes is also copied
//!   to its slot's journal in shared memory and committed there by one
//!   store, and the journal is emptied once the message carrying them is
//!   sent (module `journal`; an outcome that came both ways is delivered
//!   once). Then the chunk's items up to the last one begun and still
//!   without outcome ran, whole or in part (the one running, or one that
//!   finished an instant before its outcome was kept): they are
//!   `WorkerDied` (or retried, by `retries`), never run again otherwise;
//!   the items after it never started and are re-dispatched. So a death
//!   costs one task, and nothing ever runs twice except by `retries`
//!   (review 7's `with_chunks_of_1_no_task_runs_twice_without_retries`).
//! - **A `map` runs its own bookkeeping** ([`Pool::map`], [`Pool::starmap`]
//!   and their `_chunked` forms, with chunks of at most 16 tasks, where
//!   the bookkeeping per task is what costs): once its inputs are
//!   submitted, the thread waiting for the outcomes takes the bookkeeping
//!   over (the same rounds, under one lock, so the inbox's order still
//!   decides) and the manager thread waits until it is done; no thread of
//!   the owner is
//!   woken per task (with chunks of one task, that relay cost half the
//!   throughput on two cores). One caller drives at a time (the others'
//!   outcomes come through its rounds), and it runs none of the user's
//!   code meanwhile: it lets go every 4,096 outcomes to decode them.
//!   `imap` and `apply` leave it to the manager thread.
//! - **One manager thread per pool** does all the bookkeeping; its
//!   **forker thread** forks every worker, including replacements, when
//!   the manager asks (so the manager never waits for a fork, which waits
//!   for the stdout lock). A daemon's parent-death signal follows the
//!   *thread* that forked it, so workers die when the forker ends, with
//!   the manager (the pool is dropped, or the owner process dies), and a
//!   short-lived caller thread never takes workers with it. Callers hand
//!   work to the manager and get outcomes over in-process channels.
//! - **A watcher thread** waits in `poll(2)` on the workers' pidfds
//!   ([`daemon::Child::sentinel`]) and puts an exit event in the inbox the
//!   moment one dies: the manager sleeps on its inbox's futex and wakes at
//!   once, so a died task's `Err(WorkerDied)` comes within a wake-up or
//!   two of the death (no polling schedule; `queue::wait` would look at the
//!   inbox, which has no descriptor, only every 1 to 10 ms).
//! - **Timeouts**: the manager sleeps until the earliest running task's
//!   deadline, then SIGKILLs that worker; the normal death path replaces
//!   it and reports [`TaskError::TimedOut`]. A started worker that runs no
//!   task for a whole limit while chunks wait for it (stopped) is killed
//!   the same way, its chunks re-dispatched.
//! - **Crash points** ([`POOL_CRASH_POINTS`], `shm::crash`) after each
//!   shared store of the worker loop: the suite kills, and stops, the
//!   workers at each in turn (`tests/crash_points.rs`).
//! - **Workers are daemons** of the owner (`daemon::Process::daemon`): a
//!   SIGKILLed owner leaves none behind.

#![deny(unsafe_code)]

mod batch;
// The one module with `unsafe` code: function addresses turned back into
// function pointers in the workers, each block argued there.
#[allow(unsafe_code)]
mod call;
mod error;
mod journal;
mod manager;
mod pool;
mod wire;
mod worker;

pub use crate::error::{PoolError, TaskError};
pub use crate::pool::{
    AsyncResult, Imap, Pool, PoolBuilder, DEFAULT_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES, MAX_WORKERS,
};
pub use crate::worker::POOL_CRASH_POINTS;
