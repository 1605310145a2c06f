//! [`Pool`], its builder, and the handles on results: [`Imap`] and
//! [`AsyncResult`].

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{mpsc, Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use queue::Queue;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shm::pid::Pid;

use crate::batch::{Batch, Indices};
use crate::call::Call;
use crate::error::{PoolError, TaskError};
use crate::manager::{self, Control, Driven, Driver, NewChunk, Settings, Shared, Submission};
use crate::wire::{serde_failure, Items, ITEM_OVERHEAD, MESSAGE_OVERHEAD};
use crate::worker::WorkerConfig;

/// The most workers a pool may have: each takes an endpoint row of the
/// manager's inbox (a queue has [`queue::MAX_ENDPOINTS`]), and a few rows
/// stay for the owner's own threads.
pub const MAX_WORKERS: usize = 100;

/// The largest chunks with which a `map`'s caller runs the pool's
/// bookkeeping itself while it waits (see `manager::Driver`).
const DRIVE_CHUNKS_AT_MOST: usize = 16;

/// The default largest message between the owner and a worker: a chunk's
/// encoded arguments, or its encoded results (split across messages when
/// larger). A single argument or result may take this less 74 bytes (see
/// [`Pool::max_value_bytes`]).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The largest [`max_message_bytes`](PoolBuilder::max_message_bytes): 1 GiB
/// (an item's length is a 32-bit word on the wire, and each worker holds
/// several messages of shared memory).
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// How a [`Pool`] is made: Python's `Pool(processes, initializer,
/// maxtasksperchild)`, plus a per-task timeout and retries of died tasks.
///
/// ```
/// use std::time::Duration;
/// use pool::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::builder()
///     .workers(2)
///     .max_tasks_per_child(100)
///     .timeout(Duration::from_secs(10))
///     .retries(1)
///     .build()?;
/// assert_eq!(pool.workers(), 2);
/// assert_eq!(pool.apply(square, 12), Ok(144));
/// # Ok::<(), pool::PoolError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a PoolBuilder does nothing until built"]
pub struct PoolBuilder {
    workers: Option<usize>,
    initializer: Option<fn()>,
    max_tasks_per_child: Option<u64>,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    retries: u32,
    max_message_bytes: usize,
}

impl Default for PoolBuilder {
    fn default() -> PoolBuilder {
        PoolBuilder {
            workers: None,
            initializer: None,
            max_tasks_per_child: None,
            chunksize: None,
            timeout: None,
            retries: 0,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl PoolBuilder {
    /// How many workers (default: the CPUs this process may run on,
    /// `std::thread::available_parallelism`, as Python's `os.cpu_count()`
    /// default; at most [`MAX_WORKERS`]).
    pub fn workers(mut self, workers: usize) -> PoolBuilder {
        self.workers = Some(workers);
        self
    }

    /// A function each worker runs once, when it starts (Python's
    /// `initializer`), including replacement workers. A panic in it kills
    /// that worker; it is replaced after a pause (10 ms, doubling with each
    /// such death in a row, up to 1 s), and tries again. Once 3 workers in
    /// a row have died before finishing it and none is ready, the pool's
    /// tasks fail with [`TaskError::InitializerFailed`] (with the last
    /// panic's message) instead of waiting for ever, until a worker
    /// finishes it again. The initializer has no timeout.
    pub fn initializer(mut self, initializer: fn()) -> PoolBuilder {
        self.initializer = Some(initializer);
        self
    }

    /// A worker exits after running this many chunks (Python's
    /// `maxtasksperchild`, where a chunk is one task too) and is replaced
    /// by a fresh fork of the owner. Chunks queued to it go to its
    /// replacement.
    pub fn max_tasks_per_child(mut self, tasks: u64) -> PoolBuilder {
        self.max_tasks_per_child = Some(tasks.max(1));
        self
    }

    /// The chunk size of [`Pool::map`] and [`Pool::starmap`] (default:
    /// Python's rule, `ceil(len / (4 x workers))`).
    pub fn chunksize(mut self, chunksize: usize) -> PoolBuilder {
        self.chunksize = Some(chunksize.max(1));
        self
    }

    /// A task running longer than `timeout` has its worker killed (SIGKILL)
    /// and replaced, and returns [`TaskError::TimedOut`]. Enforced by the
    /// manager thread, which wakes at the earliest deadline; costs a clock
    /// read per task in the workers. No timeout by default.
    ///
    /// The same limit applies to a worker that, once started (past the
    /// initializer, which has no limit), runs no task and sends no outcome
    /// for a whole `timeout` while chunks wait for it: stopped (SIGSTOP) or
    /// stuck outside a task. It is killed and replaced, and its chunks go
    /// to its replacement, no task failing. Without a timeout such a worker
    /// holds its chunks for as long as it is stuck, and one stopped inside
    /// the inbox's producers' lock (sending outcomes) holds up every
    /// worker's outcomes (with a timeout, those waiting behind it for a
    /// whole limit are replaced too, their unsent outcomes run again).
    pub fn timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// A task whose worker died while running it (or after it finished,
    /// before its outcome was sent) is run again, up to `retries` more
    /// times, before it returns [`TaskError::WorkerDied`] (default 0).
    /// Without retries no task ever runs twice. Timed-out and panicked
    /// tasks are not retried.
    pub fn retries(mut self, retries: u32) -> PoolBuilder {
        self.retries = retries;
        self
    }

    /// The largest message between the owner and a worker (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]; at least 138 and at most
    /// [`MAX_MESSAGE_BYTES`]: a value outside is brought to the nearer). One argument or result may take the message less 74
    /// bytes (the message's and the item's framing), encoded:
    /// [`Pool::max_value_bytes`]; a larger one gives
    /// [`TaskError::TooLarge`] with that limit. Each worker's task queue
    /// takes nine such messages of shared memory (eight chunks in flight,
    /// and one spare), its journal one more; the owner's inbox
    /// `4 x workers + 16`.
    pub fn max_message_bytes(mut self, bytes: usize) -> PoolBuilder {
        self.max_message_bytes =
            bytes.clamp(MESSAGE_OVERHEAD + ITEM_OVERHEAD + 64, MAX_MESSAGE_BYTES);
        self
    }

    /// Starts the manager thread, which forks the workers; returns once
    /// they are all started.
    pub fn build(self) -> Result<Pool, PoolError> {
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
                .min(MAX_WORKERS)
        });
        if workers == 0 || workers > MAX_WORKERS {
            return Err(PoolError::Workers {
                asked: workers,
                max: MAX_WORKERS,
            });
        }
        let inbox = Queue::builder()
            .capacity(4 * workers + 16)
            .max_message_bytes(self.max_message_bytes)
            .anonymous()?;
        let shared = Arc::new(Shared {
            inbox,
            control: Mutex::new(Control::default()),
            pids: Mutex::new(vec![None; workers]),
            replaced: Default::default(),
            next_job: Default::default(),
            core: Default::default(),
            drive: Default::default(),
            drivers: Default::default(),
            drive_done: Default::default(),
            broken: Default::default(),
        });
        let settings = Settings {
            workers,
            config: WorkerConfig {
                initializer: self.initializer,
                max_tasks: self.max_tasks_per_child,
                timed: self.timeout.is_some(),
                budget: self.max_message_bytes,
            },
            timeout: self.timeout,
            retries: self.retries,
        };
        let manager = manager::start(Arc::clone(&shared), settings)?;
        Ok(Pool {
            shared,
            owner: shm::pid::current(),
            manager: Mutex::new(Joining {
                handle: Some(manager),
                joined: None,
            }),
            joined: Condvar::new(),
            workers,
            chunksize: self.chunksize,
            budget: self.max_message_bytes,
        })
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`, where a
/// killed worker costs the one task it was running (no task runs twice),
/// never the pool.
///
/// Tasks are a plain `fn` and serde arguments (see the crate's
/// documentation for why, and for what workers inherit). Every method takes
/// `&self`: threads may share a pool. Dropping it terminates it (Python's
/// `with Pool() as p:` does the same); [`close`](Pool::close) and
/// [`join`](Pool::join) first to let submitted work finish.
///
/// ```
/// use pool::Pool;
///
/// fn add_one(x: u64) -> u64 {
///     x + 1
/// }
///
/// let pool = Pool::new(2)?;
/// let out: Vec<u64> = pool.map(add_one, 0..1000).into_iter().map(Result::unwrap).collect();
/// assert_eq!(out, (1..1001).collect::<Vec<_>>());
/// pool.close();
/// pool.join()?;
/// # Ok::<(), pool::PoolError>(())
/// ```
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    /// The process that built the pool, the only one with its manager
    /// thread and workers (a forked child has a copy of this handle only).
    owner: Pid,
    manager: Mutex<Joining>,
    /// Notified when the manager thread has been joined: every `join`
    /// caller waits for that, not only the one joining it.
    joined: Condvar,
    workers: usize,
    chunksize: Option<usize>,
    budget: usize,
}

impl Pool {
    /// A pool of `workers` processes, with everything else as
    /// [`Pool::builder`] leaves it.
    pub fn new(workers: usize) -> Result<Pool, PoolError> {
        Pool::builder().workers(workers).build()
    }

    /// The builder: workers, initializer, `max_tasks_per_child`, chunk
    /// size, timeout, retries.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The largest argument or result, in encoded (postcard) bytes: the
    /// pool's [`max_message_bytes`](PoolBuilder::max_message_bytes) less
    /// 74 bytes of framing. A larger one gives [`TaskError::TooLarge`]
    /// with `max` this.
    ///
    /// ```
    /// let pool = pool::Pool::builder().workers(1).max_message_bytes(1000).build()?;
    /// assert_eq!(pool.max_value_bytes(), 926);
    /// # Ok::<(), pool::PoolError>(())
    /// ```
    pub fn max_value_bytes(&self) -> usize {
        self.budget - MESSAGE_OVERHEAD - ITEM_OVERHEAD
    }

    /// How many workers the pool keeps running.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The pids of the workers running now (a slot whose worker died and
    /// whose replacement is being forked is left out).
    pub fn worker_pids(&self) -> Vec<Pid> {
        lock(&self.shared.pids).iter().flatten().copied().collect()
    }

    /// Workers that exited (died, timed out, or reached
    /// `max_tasks_per_child`) and were replaced, in the pool's life.
    pub fn workers_replaced(&self) -> u64 {
        self.shared
            .replaced
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Python's automatic chunk size for `len` inputs: `ceil(len / (4 x
    /// workers))`, at least 1 (or the builder's `chunksize`).
    pub fn auto_chunksize(&self, len: usize) -> usize {
        self.chunksize
            .unwrap_or_else(|| len.div_ceil(4 * self.workers))
            .max(1)
    }

    /// `f` applied to every input, in the inputs' order (Python's `map`),
    /// in chunks of [`auto_chunksize`](Pool::auto_chunksize). Waits for all.
    pub fn map<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Vec<Result<R, TaskError>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let inputs: Vec<A> = inputs.into_iter().collect();
        let chunksize = self.auto_chunksize(inputs.len());
        self.map_chunked(f, inputs, chunksize)
    }

    /// [`map`](Pool::map) in chunks of `chunksize` inputs.
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Vec<Result<R, TaskError>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_chunked(f, inputs, chunksize).into_vec()
    }

    /// `f(a, b)` for every pair, in order (Python's `starmap`), in chunks
    /// of [`auto_chunksize`](Pool::auto_chunksize).
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
    ) -> Vec<Result<R, TaskError>>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let inputs: Vec<(A, B)> = inputs.into_iter().collect();
        let chunksize = self.auto_chunksize(inputs.len());
        self.starmap_chunked(f, inputs, chunksize)
    }

    /// [`starmap`](Pool::starmap) in chunks of `chunksize` pairs.
    pub fn starmap_chunked<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
        chunksize: usize,
    ) -> Vec<Result<R, TaskError>>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.submit::<_, R>(Call::two(f), inputs, chunksize, true)
            .into_vec()
    }

    /// `f` applied to every input, as a lazy iterator of the outcomes in
    /// the inputs' order (Python's `imap`, chunk size 1). The inputs are
    /// encoded and submitted at once; outcomes are waited for one by one.
    pub fn imap<A, R>(&self, f: fn(A) -> R, inputs: impl IntoIterator<Item = A>) -> Imap<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_chunked(f, inputs, 1)
    }

    /// [`imap`](Pool::imap) in chunks of `chunksize` inputs.
    pub fn imap_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Imap<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.submit(Call::one(f), inputs, chunksize, true)
    }

    /// [`imap`](Pool::imap), yielding `(index, outcome)` as outcomes
    /// come, in any order (Python's `imap_unordered`, with the input's
    /// index added).
    pub fn imap_unordered<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Imap<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_unordered_chunked(f, inputs, 1)
    }

    /// [`imap_unordered`](Pool::imap_unordered) in chunks of `chunksize`.
    pub fn imap_unordered_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Imap<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.submit(Call::one(f), inputs, chunksize, false)
    }

    /// `f(arg)` in a worker, waiting for it (Python's `apply`).
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, arg).get()
    }

    /// `f(arg)` in a worker, without waiting (Python's `apply_async`): the
    /// handle's [`get`](AsyncResult::get) waits for the outcome.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> AsyncResult<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (rx, early, _) = self.enqueue(Call::one(f), [arg], 1);
        let mut outcome = None;
        early.for_each(|_, o| outcome = Some(o.map(<[u8]>::to_vec)));
        AsyncResult {
            rx: Mutex::new(rx),
            outcome: Mutex::new(outcome),
            arrived: Condvar::new(),
            _result: PhantomData,
        }
    }

    /// Takes no more tasks (Python's `close`): what was submitted still
    /// runs; once it is done, the workers exit. Later submissions return
    /// [`TaskError::PoolClosed`]. A `map` another thread is submitting at
    /// that moment (its inputs go to the workers in parts as they are
    /// encoded) runs the parts submitted before, and its other inputs are
    /// `PoolClosed`.
    ///
    /// In a child forked from the owner (a copy of the handle) it does
    /// nothing: the pool is the owner's to close.
    pub fn close(&self) {
        if !self.in_owner() {
            return;
        }
        self.shared.control().closed = true;
        self.shared.wake();
    }

    /// Kills the workers now (Python's `terminate`, with SIGKILL): tasks not
    /// finished return [`TaskError::Terminated`]. Waits for the workers to
    /// be collected (also when another thread is joining already).
    ///
    /// In a child forked from the owner it does nothing (see
    /// [`close`](Pool::close)).
    pub fn terminate(&self) {
        if !self.in_owner() {
            return;
        }
        {
            let mut control = self.shared.control();
            control.closed = true;
            control.terminate = true;
        }
        self.shared.wake();
        let _ = self.join();
    }

    /// Waits for the workers to exit (Python's `join`), after
    /// [`close`](Pool::close) or [`terminate`](Pool::terminate); fails with
    /// [`PoolError::StillRunning`] before. Threads may join at once: each
    /// call waits until the workers are gone (one thread joins the manager
    /// thread, the others wait for it), and all get the same answer; once
    /// joined, it returns at once.
    ///
    /// In a child forked from the owner it fails with
    /// [`PoolError::NotOwner`].
    pub fn join(&self) -> Result<(), PoolError> {
        if !self.in_owner() {
            return Err(PoolError::NotOwner {
                owner: self.owner.get(),
            });
        }
        if !self.shared.control().closed {
            return Err(PoolError::StillRunning);
        }
        let mut joining = lock(&self.manager);
        loop {
            if let Some(joined) = &joining.joined {
                return joined.clone().map_err(PoolError::ManagerPanicked);
            }
            match joining.handle.take() {
                // This thread joins the manager (which joins the workers),
                // without the lock; the others wait for it below.
                Some(handle) => {
                    drop(joining);
                    let joined = handle.join().map_err(|payload| {
                        payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_default()
                    });
                    joining = lock(&self.manager);
                    joining.joined = Some(joined);
                    self.joined.notify_all();
                }
                None => joining = self.joined.wait(joining).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// Whether this process is the pool's owner (not a child forked from
    /// it with a copy of the handle).
    fn in_owner(&self) -> bool {
        shm::pid::current() == self.owner
    }

    /// Hands the inputs to the manager; the iterator receives the
    /// outcomes.
    fn submit<A: Serialize, R: DeserializeOwned>(
        &self,
        call: Call,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<R> {
        let (rx, early, total) = self.enqueue(call, inputs, chunksize);
        let mut imap = Imap {
            rx,
            // Small chunks only: there the bookkeeping per task is what
            // costs; with large ones it is little, and taking it over and
            // giving it back costs more (W10, automatic chunks: ~10%).
            pool: (self.in_owner() && chunksize <= DRIVE_CHUNKS_AT_MOST)
                .then(|| (Arc::clone(&self.shared), self.owner)),
            total,
            received: 0,
            yielded: 0,
            ordered,
            arrived: vec![false; total],
            window: VecDeque::new(),
            unordered: VecDeque::new(),
        };
        imap.absorb(early);
        imap
    }

    /// Encodes the inputs, cuts them into chunks and hands them to the
    /// manager. Returns where the outcomes will come, the outcomes decided
    /// at once (inputs refused, or a closed pool), and how many inputs
    /// there were.
    fn enqueue<A: Serialize>(
        &self,
        call: Call,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> (mpsc::Receiver<Batch>, Batch, usize) {
        let (reply, rx) = mpsc::channel();
        if !self.in_owner() {
            // Nothing here would run them (the manager and the workers are
            // the owner's): each fails at once.
            let mut early = Batch::default();
            let owner = self.owner.get();
            let mut total = 0;
            for (index, _) in inputs.into_iter().enumerate() {
                early.failed(index, TaskError::NotOwner { owner });
                total += 1;
            }
            return (rx, early, total);
        }
        let chunksize = chunksize.max(1);
        let max_arg = self.max_value_bytes();
        let mut early = Batch::default();
        let mut chunks = Vec::new();
        // Room for a whole chunk from the start (it would otherwise grow,
        // and be copied, a dozen times): `chunksize` items of a few bytes,
        // at most a message.
        let chunk_bytes = chunksize.saturating_mul(16).min(self.budget);
        let new_chunk = |args| NewChunk {
            call,
            indices: Indices::default(),
            args,
        };
        let mut current = new_chunk(Items::with_capacity(chunk_bytes));
        let mut total = 0;
        let mut parts = Parts {
            shared: &self.shared,
            job: self
                .shared
                .next_job
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            reply: Some(reply),
            closed: false,
            next_part: 1,
            done: false,
        };
        for (index, input) in inputs.into_iter().enumerate() {
            total += 1;
            if current.args.len() == chunksize {
                chunks.push(std::mem::replace(
                    &mut current,
                    new_chunk(Items::with_capacity(chunk_bytes)),
                ));
                parts.send_if_due(&mut chunks, &mut early);
            }
            // Encoded straight into the chunk's buffer (no allocation per
            // input); taken back out when refused.
            let (mark, before) = (current.args.byte_len(), current.args.len());
            match current.args.push_encoded(&input) {
                Ok(size) if size > max_arg => {
                    current.args.truncate_to(mark, before);
                    // A huge refused input must not leave its room held
                    // for as long as the chunk lives.
                    current.args.shrink_to(chunk_bytes);
                    early.failed(index, TaskError::TooLarge { size, max: max_arg });
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    let message = serde_failure("the argument did not encode", &e);
                    early.failed(index, TaskError::Serde(message));
                    continue;
                }
            }
            if current.args.byte_len() + MESSAGE_OVERHEAD > self.budget && before > 0 {
                // Too much for one message with the others: it starts the
                // next chunk.
                let args = current.args.split_off(mark, before);
                chunks.push(std::mem::replace(&mut current, new_chunk(args)));
                parts.send_if_due(&mut chunks, &mut early);
            }
            current.indices.push(index);
        }
        if !current.args.is_empty() {
            chunks.push(current);
        }
        parts.send(&mut chunks, &mut early, true);
        (rx, early, total)
    }
}

/// A job's chunks on their way to the manager, in parts of 1, 2, 4, ...
/// chunks as they are encoded: the workers run the first while the caller
/// encodes the rest (a map of many inputs used to encode them all first,
/// the workers idle), and a job of many small chunks costs a few dozen
/// parts, not one lock and wake-up per chunk.
struct Parts<'a> {
    shared: &'a Shared,
    job: u64,
    /// The job's reply channel, until its first part takes it.
    reply: Option<mpsc::Sender<Batch>>,
    /// The pool was found closed: the rest of the job is refused.
    closed: bool,
    /// Chunks that make the next part.
    next_part: usize,
    /// The last part was handed over.
    done: bool,
}

impl Parts<'_> {
    /// Sends `chunks` as the next part once there are enough of them.
    fn send_if_due(&mut self, chunks: &mut Vec<NewChunk>, early: &mut Batch) {
        if chunks.len() >= self.next_part {
            self.send(chunks, early, false);
            self.next_part = self.next_part.saturating_mul(2);
        }
    }

    /// Hands `chunks` to the manager as a part of the job (`last`: its
    /// last); in a pool closed meanwhile, fails their items with
    /// [`TaskError::PoolClosed`] instead, and those of every later part.
    fn send(&mut self, chunks: &mut Vec<NewChunk>, early: &mut Batch, last: bool) {
        let mut control = self.shared.control();
        if self.closed || control.closed {
            self.closed = true;
            for index in chunks.iter().flat_map(|c| c.indices.iter()) {
                early.failed(index, TaskError::PoolClosed);
            }
            chunks.clear();
            if !last {
                return;
            }
        }
        let count: usize = chunks.iter().map(|c| c.indices.len()).sum();
        if count == 0 && !last {
            return;
        }
        if self.reply.is_some() && count == 0 {
            // The manager never heard of the job and nothing is left to
            // run: dropping the reply channel ends it.
            self.done = true;
            return;
        }
        control.submissions.push(Submission {
            job: self.job,
            chunks: std::mem::take(chunks),
            count,
            reply: self.reply.take(),
            last,
        });
        drop(control);
        self.done |= last;
        self.shared.wake();
    }
}

impl Drop for Parts<'_> {
    /// An encoding that panicked (a `Serialize` impl of the caller's)
    /// still ends the job for the manager, which would otherwise keep it
    /// open for ever, and `close` + `join` with it.
    fn drop(&mut self) {
        if !self.done {
            self.send(&mut Vec::new(), &mut Batch::default(), true);
        }
    }
}

impl Drop for Pool {
    /// Terminates the pool (as Python's `with Pool() as p:` does on exit),
    /// unless it was joined. In a process forked from the owner (which has
    /// a copy of the handle, but neither the manager thread nor the
    /// workers) it only forgets the copy: the owner's pool goes on.
    fn drop(&mut self) {
        if !self.in_owner() {
            // The handle names a thread of the owner: joining or detaching
            // it here would act on a thread this process does not have.
            if let Some(handle) = lock(&self.manager).handle.take() {
                std::mem::forget(handle);
            }
            return;
        }
        if lock(&self.manager).joined.is_none() {
            self.terminate();
        }
    }
}

/// The manager thread's handle until one caller of [`Pool::join`] takes it
/// to join it, then how that ended (the manager's panic message).
#[derive(Debug)]
struct Joining {
    handle: Option<JoinHandle<()>>,
    joined: Option<Result<(), String>>,
}

/// The outcomes of [`Pool::imap`] (in the inputs' order) or
/// [`Pool::imap_unordered`] (as they come, with their input's index), as
/// they arrive; knows how many are done, for a progress bar.
///
/// ```
/// use pool::Pool;
///
/// fn double(x: u32) -> u32 {
///     2 * x
/// }
///
/// let pool = Pool::new(2)?;
/// let mut results = pool.imap(double, [1, 2, 3]);
/// assert_eq!(results.len(), 3);
/// assert_eq!(results.next(), Some(Ok(2)));
/// assert!(results.done() >= 1);
/// assert_eq!(results.done() + results.pending(), 3);
/// assert_eq!(results.collect::<Vec<_>>(), [Ok(4), Ok(6)]);
///
/// let mut unordered: Vec<_> = pool.imap_unordered(double, [5, 6]).indexed().collect();
/// unordered.sort_by_key(|(i, _)| *i);
/// assert_eq!(unordered, [(0, Ok(10)), (1, Ok(12))]);
/// # Ok::<(), pool::PoolError>(())
/// ```
#[derive(Debug)]
pub struct Imap<R> {
    rx: mpsc::Receiver<Batch>,
    /// The pool and the process that owns it, for [`Imap::into_vec`] to run
    /// the pool's bookkeeping while it waits (there only).
    pool: Option<(Arc<Shared>, Pid)>,
    total: usize,
    received: usize,
    yielded: usize,
    ordered: bool,
    /// Per input: whether its outcome has arrived.
    arrived: Vec<bool>,
    /// In order: the outcomes of the inputs from `yielded` on, as far as
    /// the furthest that arrived (`None`: not yet).
    window: VecDeque<Option<Result<R, TaskError>>>,
    /// Out of order: outcomes as they came.
    unordered: VecDeque<(usize, Result<R, TaskError>)>,
}

impl<R: DeserializeOwned> Imap<R> {
    /// How many tasks were submitted.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no task was submitted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Tasks whose outcome has arrived (yielded or waiting to be).
    pub fn done(&self) -> usize {
        self.received
    }

    /// Tasks whose outcome has not arrived yet.
    pub fn pending(&self) -> usize {
        self.total - self.received
    }

    /// Takes what has arrived without waiting, so `done` is current.
    pub fn refresh(&mut self) {
        while let Ok(batch) = self.rx.try_recv() {
            self.absorb(batch);
        }
    }

    /// The outcomes with their input's index (for `imap_unordered`).
    pub fn indexed(self) -> impl Iterator<Item = (usize, Result<R, TaskError>)> {
        let mut imap = self;
        std::iter::from_fn(move || imap.next_indexed())
    }

    /// Every outcome in input order, each decoded straight into its place
    /// (what `map` returns: no reordering window on the way).
    fn into_vec(mut self) -> Vec<Result<R, TaskError>> {
        let mut out: Vec<Result<R, TaskError>> = Vec::with_capacity(self.total);
        out.resize_with(self.total, || Err(TaskError::Terminated));
        // Whatever arrived before (refused inputs) is in the window, whose
        // slot `at` is input `yielded + at` (its empty slots are inputs
        // still to come: review 8 saw the first one dropped, every refusal
        // after it filed one place early).
        let base = self.yielded;
        for (at, outcome) in std::mem::take(&mut self.window).into_iter().enumerate() {
            if let Some(outcome) = outcome {
                out[base + at] = outcome;
            }
        }
        // While it waits, this thread runs the pool (see `Driver`), in the
        // process that owns it (a forked copy of a pool runs nothing), if
        // no other thread does and the chunks are small. It keeps the
        // outcomes as they came and decodes them only once it has let go:
        // a `Deserialize` of the user's may take long or use the pool
        // itself, and nothing may run the pool meanwhile. It lets go every
        // `DECODE_AT` outcomes to decode them (taking the bookkeeping back
        // after), so that decoding overlaps the workers' work as it did
        // before callers drove.
        const DECODE_AT: usize = 4096;
        let pool = self
            .pool
            .take()
            .filter(|(_, owner)| shm::pid::current() == *owner);
        let mut driving = pool.is_some();
        while driving && self.received < self.total {
            let Some(mut driver) = pool.as_ref().and_then(|(shared, _)| Driver::begin(shared))
            else {
                break;
            };
            let mut came = Vec::new();
            let mut undecoded = 0;
            while self.received < self.total && undecoded < DECODE_AT {
                match driver.next_batch(&self.rx) {
                    Driven::Batch(batch) => {
                        self.received += batch.len();
                        undecoded += batch.len();
                        came.push(batch);
                    }
                    Driven::Ended | Driven::Stopping => {
                        driving = false;
                        break;
                    }
                }
            }
            drop(driver);
            for batch in came {
                batch.for_each(|index, outcome| out[index] = decode(outcome));
            }
        }
        while self.received < self.total {
            // The manager gone, what has not come never will: those stay
            // `Terminated`.
            let Ok(batch) = self.rx.recv() else { break };
            self.received += batch.len();
            batch.for_each(|index, outcome| out[index] = decode(outcome));
        }
        out
    }

    /// Decodes what arrived, and files it.
    fn absorb(&mut self, batch: Batch) {
        self.received += batch.len();
        batch.for_each(|index, outcome| {
            self.arrived[index] = true;
            let outcome = decode(outcome);
            if self.ordered {
                // Each input's outcome arrives once, and only inputs not
                // yielded yet can arrive.
                let at = index - self.yielded;
                if self.window.len() <= at {
                    self.window.resize_with(at + 1, || None);
                }
                self.window[at] = Some(outcome);
            } else {
                self.unordered.push_back((index, outcome));
            }
        });
    }

    fn next_indexed(&mut self) -> Option<(usize, Result<R, TaskError>)> {
        if self.yielded == self.total {
            return None;
        }
        loop {
            let ready = if self.ordered {
                match self.window.front() {
                    Some(Some(_)) => self
                        .window
                        .pop_front()
                        .flatten()
                        .map(|outcome| (self.yielded, outcome)),
                    _ => None,
                }
            } else {
                self.unordered.pop_front()
            };
            if let Some(ready) = ready {
                self.yielded += 1;
                return Some(ready);
            }
            match self.rx.recv() {
                Ok(batch) => self.absorb(batch),
                // The manager is gone (terminated): what has not come
                // never will.
                Err(_) => {
                    let mut missing = Batch::default();
                    for index in (0..self.total).filter(|&i| !self.arrived[i]) {
                        missing.failed(index, TaskError::Terminated);
                    }
                    if missing.is_empty() {
                        return None;
                    }
                    self.absorb(missing);
                }
            }
        }
    }
}

impl<R: DeserializeOwned> Iterator for Imap<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_indexed().map(|(_, outcome)| outcome)
    }
}

/// The outcome of [`Pool::apply_async`], to come (Python's `AsyncResult`).
///
/// ```
/// use std::time::Duration;
/// use pool::Pool;
///
/// fn shout(s: String) -> String {
///     s.to_uppercase()
/// }
///
/// let pool = Pool::new(1)?;
/// let pending = pool.apply_async(shout, "hey".to_string());
/// assert_eq!(pending.get_timeout(Duration::from_secs(10)), Some(Ok("HEY".to_string())));
/// assert!(pending.ready());
/// assert_eq!(pending.get(), Ok("HEY".to_string()));
/// # Ok::<(), pool::PoolError>(())
/// ```
#[derive(Debug)]
pub struct AsyncResult<R> {
    /// The channel from the manager: locked only by the one thread
    /// receiving on it (never while another thread waits for that one).
    rx: Mutex<mpsc::Receiver<Batch>>,
    /// The outcome once it has come; held only for instants, never across
    /// a wait, so `ready` answers at once whatever other threads do.
    outcome: Mutex<Option<Result<Vec<u8>, TaskError>>>,
    /// Notified when the receiving thread puts the outcome in place or
    /// gives up receiving (another thread may then receive).
    arrived: Condvar,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Whether the outcome has arrived (Python's `ready()`). Never waits,
    /// also while other threads wait in [`get`](AsyncResult::get).
    pub fn ready(&self) -> bool {
        self.wait_until(Some(Instant::now()))
    }

    /// Waits for the outcome (Python's `get()`). May be called again, and
    /// from several threads at once.
    pub fn get(&self) -> Result<R, TaskError> {
        self.wait_until(None);
        self.decoded()
    }

    /// Waits at most `timeout` for the outcome: `None` if it has not come
    /// by then (Python raises `TimeoutError`), whether this thread or
    /// another one is receiving it.
    pub fn get_timeout(&self, timeout: Duration) -> Option<Result<R, TaskError>> {
        let deadline = Instant::now().checked_add(timeout);
        if self.wait_until(deadline) || deadline.is_none() {
            Some(self.decoded())
        } else {
            None
        }
    }

    fn decoded(&self) -> Result<R, TaskError> {
        match &*lock(&self.outcome) {
            Some(outcome) => decode(outcome.as_deref().map_err(Clone::clone)),
            None => Err(TaskError::Terminated),
        }
    }

    /// Whether the outcome is here, waiting for it until `deadline`
    /// (`None`: for ever). One thread at a time receives on the channel,
    /// without holding `outcome`; the others wait on `arrived`.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut outcome = lock(&self.outcome);
        loop {
            if outcome.is_some() {
                return true;
            }
            let rx = match self.rx.try_lock() {
                Ok(rx) => rx,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // Another thread receives: it notifies under `outcome`
                    // after releasing `rx`, so this check and the wait
                    // below cannot miss it.
                    outcome = match deadline {
                        None => self
                            .arrived
                            .wait(outcome)
                            .unwrap_or_else(|p| p.into_inner()),
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return false;
                            }
                            let (guard, _) = self
                                .arrived
                                .wait_timeout(outcome, left)
                                .unwrap_or_else(|p| p.into_inner());
                            guard
                        }
                    };
                    continue;
                }
            };
            drop(outcome);
            let batch = match deadline {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            outcome = lock(&self.outcome);
            match batch {
                Ok(batch) => batch.for_each(|_, o| *outcome = Some(o.map(<[u8]>::to_vec))),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    *outcome = Some(Err(TaskError::Terminated))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            drop(rx);
            self.arrived.notify_all();
            return outcome.is_some();
        }
    }
}

fn decode<R: DeserializeOwned>(outcome: Result<&[u8], TaskError>) -> Result<R, TaskError> {
    outcome.and_then(|bytes| {
        postcard::from_bytes(bytes)
            .map_err(|e| TaskError::Serde(serde_failure("the result did not decode", &e)))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
