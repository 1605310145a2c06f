//! The owner's side: one manager thread per pool (forks every worker,
//! dispatches chunks, collects outcomes, replaces dead workers, enforces the
//! timeout) and one watcher thread (turns a worker's exit into an event in
//! the manager's inbox).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use daemon::{Child, ExitStatus, Process};
use queue::{Queue, Sender};
use rustix::event::{EventfdFlags, PollFd, PollFlags};
use shm::pid::Pid;
use shm::SharedSlice;

use crate::batch::{Batch, Indices, SKIP};
use crate::call::Call;
use crate::error::{died, PoolError, TaskError};
use crate::journal::Journal;
use crate::wire::{Event, Items, TaskMsg};
use crate::worker::{self, WorkerConfig, BEGUN, READY, RECORD_WORDS, RUNNING, STARTED};

/// Chunks a worker may have queued or running at once. The owner keeps the
/// rest, so it can give them to whichever worker frees up first. With
/// chunks of one task, a worker must not run dry while the manager (on a
/// busy CPU) catches up: 8 gave W10c1 about 15% more tasks a second than 3.
pub(crate) const IN_FLIGHT: usize = 8;
/// The longest the manager sleeps without looking at its control flags.
const MAX_IDLE: Duration = Duration::from_millis(100);
/// How many inbox events the manager takes in a row before it looks at
/// its control flags and dispatches again.
const DRAIN: usize = 256;
/// How soon the manager tries again to fork a worker whose fork failed.
const REFORK_PAUSE: Duration = Duration::from_millis(10);
/// Workers in a row that die before they are ready (in the pool's
/// initializer, normally) after which, while no worker is ready, the pool
/// fails its tasks with [`TaskError::InitializerFailed`] instead of
/// holding them for a worker that may never come.
pub(crate) const INIT_FAILURES: u32 = 3;
/// SIGKILL's number (the same on every Linux architecture).
const SIGKILL: i32 = 9;
/// The pause before forking the replacement of a worker that died before
/// it was ready: doubles with each such death in a row, from this...
const INIT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// ... up to this.
const INIT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the pool's handle and the manager share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The manager's inbox: outcomes from workers, exits from the watcher,
    /// wake-ups from submitters.
    pub(crate) inbox: Queue<Event>,
    pub(crate) control: Mutex<Control>,
    pub(crate) pids: Mutex<Vec<Option<Pid>>>,
    pub(crate) replaced: AtomicU64,
    /// The next job's number (see [`Submission::job`]).
    pub(crate) next_job: AtomicU64,
    /// Made by the manager thread as it starts.
    pub(crate) core: OnceLock<Core>,
    /// The bookkeeping, once the pool runs (`None` before, and once the
    /// manager has stopped): held by the manager thread, or lent to a
    /// caller that waits for a `map` ([`Driver`]).
    pub(crate) drive: Mutex<Option<State>>,
    /// 1 while a caller asks for the bookkeeping or holds it (one at a
    /// time), else 0: the manager thread leaves it to that caller and waits
    /// on `drive_done` until it is 0.
    pub(crate) drivers: AtomicUsize,
    pub(crate) drive_done: Condvar,
    /// A caller panicked inside a round of the bookkeeping (a bug of this
    /// crate's): the state may be half-changed, so the manager thread
    /// terminates the pool instead of going on with it.
    pub(crate) broken: AtomicBool,
}

impl Shared {
    pub(crate) fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the manager: a message in its inbox (it also looks every
    /// [`MAX_IDLE`] if this fails).
    pub(crate) fn wake(&self) {
        if let Ok(tx) = self.inbox.sender() {
            let _ = tx.try_put(Event::Wake);
        }
    }
}

/// Submissions and flags, under one lock.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) submissions: Vec<Submission>,
    pub(crate) closed: bool,
    pub(crate) terminate: bool,
}

/// A part of a job handed to the manager: a job's chunks come in parts as
/// they are encoded, so that the workers start on the first while the
/// caller encodes the rest.
#[derive(Debug)]
pub(crate) struct Submission {
    /// The job (numbered by the pool's handle).
    pub(crate) job: u64,
    pub(crate) chunks: Vec<NewChunk>,
    /// Items in `chunks`.
    pub(crate) count: usize,
    /// Where the job's outcomes go: in its first part.
    pub(crate) reply: Option<mpsc::Sender<Batch>>,
    /// The job's last part: no chunk of it comes after.
    pub(crate) last: bool,
}

/// Items of one job to run together.
#[derive(Debug)]
pub(crate) struct NewChunk {
    pub(crate) call: Call,
    pub(crate) indices: Indices,
    pub(crate) args: Items,
}

/// How the pool was built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) workers: usize,
    pub(crate) config: WorkerConfig,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
}

/// Starts the manager thread, which forks the workers; returns once they
/// are all started (or one could not be).
pub(crate) fn start(shared: Arc<Shared>, settings: Settings) -> Result<JoinHandle<()>, PoolError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("procsync-pool".into())
        .spawn(move || manage(&shared, settings, ready_tx))
        .map_err(PoolError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err(PoolError::ManagerPanicked(match handle.join() {
            Err(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default(),
            Ok(()) => String::new(),
        })),
    }
}

/// On the manager thread's way out (returning or unwinding): the pool
/// takes nothing more, and submissions it will never see are dropped, so
/// their iterators end (with [`TaskError::Terminated`]) instead of waiting.
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut control = self.0.control();
        control.closed = true;
        control.submissions.clear();
        drop(control);
        // Nobody runs the pool any more: a caller finds nothing to drive.
        *lock(&self.0.drive) = None;
    }
}

/// The manager thread's body.
fn manage(shared: &Shared, settings: Settings, ready: mpsc::Sender<Result<(), PoolError>>) {
    let _gone = Gone(shared);
    let made = (|| -> Result<_, PoolError> {
        let queues = (0..settings.workers)
            .map(|_| {
                Queue::<TaskMsg>::builder()
                    .capacity(IN_FLIGHT + 1)
                    .max_message_bytes(settings.config.budget)
                    .anonymous()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stride = worker::slot_words(settings.config.budget);
        let records = SharedSlice::from_fn(settings.workers * stride, |_| AtomicU64::new(0))?;
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| daemon::Error::Os {
                op: "eventfd",
                source: e.into(),
            })?;
        Ok((queues, records, wake))
    })();
    let (queues, records, wake) = match made {
        Ok(made) => made,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (watch_tx, watch_rx) = mpsc::channel();
    let core = Core {
        settings,
        queues,
        records,
        wake,
        stop: AtomicBool::new(false),
        watch_tx,
    };
    // Set once: a pool starts one manager thread.
    let core = shared.core.get_or_init(|| core);
    let attached = (|| -> Result<_, PoolError> {
        let senders = core
            .queues
            .iter()
            .map(Queue::sender)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((senders, shared.inbox.receiver()?, shared.inbox.sender()?))
    })();
    let (mut senders, rx, watcher_tx) = match attached {
        Ok(attached) => attached,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (fork_tx, fork_rx) = mpsc::channel();
    let (forked_tx, forked) = mpsc::channel();
    let mut state = State {
        slots: (0..settings.workers).map(|_| Slot::default()).collect(),
        jobs: HashMap::new(),
        dirty: Vec::new(),
        backlog: VecDeque::new(),
        next_tid: 1,
        init_failures: 0,
        init_failure: String::new(),
        fork_tx: Some(fork_tx),
        forked,
    };
    std::thread::scope(|scope| {
        let watcher = std::thread::Builder::new()
            .name("procsync-pool-watch".into())
            .spawn_scoped(scope, || {
                watch(watcher_tx, watch_rx, &core.wake, &core.stop)
            });
        let config = settings.config;
        let forker = std::thread::Builder::new()
            .name("procsync-pool-fork".into())
            .spawn_scoped(scope, move || {
                forker(
                    fork_rx,
                    forked_tx,
                    shared,
                    &core.queues,
                    &core.records,
                    config,
                )
            });
        let mut manager = Manager::new(shared, core, &mut senders, &rx, &mut state);
        let threads = watcher.and_then(|_| forker.map(|_| ()));
        if let Err(e) = threads {
            let _ = ready.send(Err(PoolError::Thread(e)));
            manager.st.fork_tx = None;
            manager.stop_watcher();
            return;
        }
        for slot in 0..settings.workers {
            manager.request_fork(slot, false);
        }
        let mut failed = None;
        for _ in 0..settings.workers {
            match manager.st.forked.recv() {
                Ok((slot, started)) => {
                    if let Err(e) = manager.on_forked(slot, started) {
                        failed.get_or_insert(e);
                    }
                }
                Err(_) => break,
            }
        }
        if let Some(e) = failed {
            manager.end(Exit::Terminate);
            let _ = ready.send(Err(e));
            return;
        }
        // From here on, whichever thread holds the lock runs the pool:
        // this one, or a caller waiting for its `map` (see `Driver`).
        let mut drive = lock(&shared.drive);
        *drive = Some(state);
        let _ = ready.send(Ok(()));
        loop {
            let st = drive.as_mut().expect("emptied only by this thread");
            let mut manager = Manager::new(shared, core, &mut senders, &rx, st);
            if shared.broken.load(Ordering::SeqCst) {
                manager.end(Exit::Terminate);
                break;
            }
            match manager.run() {
                Run::Exit(exit) => {
                    manager.end(exit);
                    break;
                }
                Run::Yield => {}
            }
            drive = shared
                .drive_done
                .wait_while(drive, |_| shared.drivers.load(Ordering::SeqCst) > 0)
                .unwrap_or_else(|p| p.into_inner());
        }
        *drive = None;
    });
}

/// How [`Manager::run`] returns.
enum Run {
    /// The pool stops.
    Exit(Exit),
    /// A caller asks for the bookkeeping (see [`Driver`]).
    Yield,
}

/// A caller's turn at running the pool while it waits for its `map`: the
/// bookkeeping the manager thread does, done by the thread that waits for
/// its outcomes instead, so that no other thread of the owner is woken per
/// task (W10c1, chunks of one: the caller sleeping on its channel while
/// the manager thread relays each task cost half the throughput on two
/// cores). Only one caller drives at a time (another one waits on its
/// job's channel, its outcomes handed over by the driver's rounds); the
/// manager thread waits meanwhile and takes over when it is dropped. The
/// caller runs no code of the user's while it drives: it keeps its
/// outcomes as they come and decodes them after (review 16: a slow or
/// pool-using `Deserialize` stalled every other job, the timeouts and the
/// deaths' handling).
pub(crate) struct Driver<'a> {
    core: &'a Core,
    // Fields drop in this order: the endpoints, then the turn.
    senders: Vec<Sender<'a, TaskMsg>>,
    rx: queue::Receiver<'a, Event>,
    turn: Turn<'a>,
}

/// The lock on the bookkeeping, counted in [`Shared::drivers`] from before
/// it is asked for until it is given back.
struct Turn<'a> {
    shared: &'a Shared,
    drive: Option<MutexGuard<'a, Option<State>>>,
    /// Inside a round of the bookkeeping.
    stepping: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.stepping {
            // Unwinding out of a round.
            self.shared.broken.store(true, Ordering::SeqCst);
        }
        // Under the lock, if held: the manager thread either waits on
        // `drive_done` already (and is woken) or has not looked at the
        // count yet (and sees it without this caller).
        self.shared.drivers.fetch_sub(1, Ordering::SeqCst);
        self.shared.drive_done.notify_all();
        self.drive = None;
    }
}

/// What [`Driver::next_batch`] found.
pub(crate) enum Driven {
    /// Outcomes of the job.
    Batch(Batch),
    /// The job has ended (its channel is closed): nothing more comes.
    Ended,
    /// The pool is stopping: the driver must be dropped, and the job's
    /// channel waited on (the manager thread ends it).
    Stopping,
}

impl<'a> Driver<'a> {
    /// Takes the bookkeeping over from the manager thread (waiting for it
    /// to leave it, within one of its rounds). `None` if another caller
    /// drives already (it hands this caller's outcomes over: never wait
    /// for its whole job, review 16), if the pool does not run (not
    /// started, or stopped) or has no endpoint row to spare: wait on the
    /// job's channel then.
    pub(crate) fn begin(shared: &'a Shared) -> Option<Driver<'a>> {
        let core = shared.core.get()?;
        shared
            .drivers
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        let mut turn = Turn {
            shared,
            drive: None,
            stepping: false,
        };
        // The manager thread looks at the count between two rounds: wake
        // it from its sleep on the inbox.
        shared.wake();
        let drive = lock(&shared.drive);
        if drive.is_none() {
            return None;
        }
        turn.drive = Some(drive);
        let senders = core
            .queues
            .iter()
            .map(Queue::sender)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let rx = shared.inbox.receiver().ok()?;
        Some(Driver {
            core,
            senders,
            rx,
            turn,
        })
    }

    /// Runs the pool until `reply` (a job's channel) has outcomes, or says
    /// the job has ended, or the pool stops.
    pub(crate) fn next_batch(&mut self, reply: &mpsc::Receiver<Batch>) -> Driven {
        loop {
            match reply.try_recv() {
                Ok(batch) => return Driven::Batch(batch),
                Err(mpsc::TryRecvError::Disconnected) => return Driven::Ended,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let Some(st) = self.turn.drive.as_mut().and_then(|drive| drive.as_mut()) else {
                return Driven::Stopping;
            };
            let mut manager =
                Manager::new(self.turn.shared, self.core, &mut self.senders, &self.rx, st);
            self.turn.stepping = true;
            let exit = manager.step();
            self.turn.stepping = false;
            if exit.is_some() {
                // Closed with nothing left, or terminated: the manager
                // thread ends the pool (and this job) once this is dropped.
                return Driven::Stopping;
            }
        }
    }
}

/// Why the manager stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Closed, and every job is finished: let the workers go.
    Close,
    /// Terminated: kill the workers, fail what is left.
    Terminate,
}

/// One worker position: its worker (replaced when it dies) and the chunks
/// sent to its task queue that have not all their outcomes yet, in order.
#[derive(Debug, Default)]
struct Slot {
    child: Option<Child<()>>,
    generation: u64,
    fifo: VecDeque<Chunk>,
    /// The task (id + 1) the manager killed this worker for, by timeout
    /// (0: for running none while chunks waited for it; see
    /// `check_timeouts`).
    timed_out: Option<u64>,
    /// Since when (CLOCK_MONOTONIC ns) chunks have waited for this worker
    /// while it ran no task and sent no outcome, if they do.
    quiet_since: Option<u64>,
    /// A fork for this slot failed, or waits for its back-off: fork when
    /// the clock (CLOCK_MONOTONIC ns) reaches `fork_at`.
    needs_fork: bool,
    fork_at: u64,
    /// The forker thread was asked for this slot's worker and has not
    /// answered yet.
    forking: bool,
}

/// Items of one job, sent to a worker as one message.
#[derive(Debug)]
struct Chunk {
    job: u64,
    call: Call,
    indices: Indices,
    args: Items,
    /// Earlier runs that died, per item; empty when none did (a new
    /// chunk: no allocation for it).
    attempts: Vec<u32>,
    done: Delivered,
    left: usize,
    /// Task id of item 0 (assigned at dispatch).
    first_tid: u64,
}

impl Chunk {
    fn new(job: u64, call: Call, indices: Indices, args: Items, attempts: Vec<u32>) -> Chunk {
        let n = args.len();
        Chunk {
            job,
            call,
            indices,
            args,
            attempts,
            done: Delivered::new(n),
            left: n,
            first_tid: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Job {
    reply: Option<mpsc::Sender<Batch>>,
    /// Items submitted and without outcome yet.
    left: usize,
    /// Whether its last part came: only then does `left == 0` end it.
    complete: bool,
    /// Outcomes not handed over yet (see `Manager::flush`).
    pending: Batch,
}

/// Which items of a chunk have had their outcome delivered: a bit each,
/// in one word for a chunk of up to 64 items (no allocation), in more
/// beyond.
#[derive(Debug)]
struct Delivered {
    first: u64,
    rest: Vec<u64>,
}

impl Delivered {
    fn new(items: usize) -> Delivered {
        Delivered {
            first: 0,
            rest: vec![0; items.saturating_sub(1) / 64],
        }
    }

    /// The word and bit of item `k`.
    fn word(&mut self, k: usize) -> &mut u64 {
        match k / 64 {
            0 => &mut self.first,
            w => &mut self.rest[w - 1],
        }
    }

    fn get(&self, k: usize) -> bool {
        let word = match k / 64 {
            0 => self.first,
            w => self.rest[w - 1],
        };
        word & (1 << (k % 64)) != 0
    }

    fn set(&mut self, k: usize) {
        *self.word(k) |= 1 << (k % 64);
    }

    /// The bits of items `from..to` within word `w`, as a mask.
    fn mask(w: usize, from: usize, to: usize) -> u64 {
        let (lo, hi) = (from.max(w * 64) - w * 64, to.min(w * 64 + 64) - w * 64);
        if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        }
    }

    /// Whether none of items `from..to` (`from < to`) is set: a word at a
    /// time (a chunk's message of 12,500 outcomes was 12,500 looks).
    fn none_in(&self, from: usize, to: usize) -> bool {
        (from / 64..=(to - 1) / 64).all(|w| {
            let word = if w == 0 { self.first } else { self.rest[w - 1] };
            word & Self::mask(w, from, to) == 0
        })
    }

    /// Sets items `from..to` (`from < to`), a word at a time.
    fn set_range(&mut self, from: usize, to: usize) {
        for w in from / 64..=(to - 1) / 64 {
            *self.word(w * 64) |= Self::mask(w, from, to);
        }
    }
}

/// What the watcher is told.
#[derive(Debug)]
enum Watch {
    /// Watch this worker's pidfd.
    Add(u32, u64, OwnedFd),
}

/// What the manager's bookkeeping shares across threads, made once by the
/// manager thread: the workers' task queues and records, and the watcher's
/// wake-up and stop flag and channel.
#[derive(Debug)]
pub(crate) struct Core {
    settings: Settings,
    queues: Vec<Queue<TaskMsg>>,
    records: SharedSlice<AtomicU64>,
    wake: OwnedFd,
    stop: AtomicBool,
    watch_tx: mpsc::Sender<Watch>,
}

/// The bookkeeping itself, under [`Shared::drive`]: whichever thread holds
/// it runs the pool (the manager thread, or a caller waiting for a `map`).
#[derive(Debug)]
pub(crate) struct State {
    slots: Vec<Slot>,
    jobs: HashMap<u64, Job>,
    /// Jobs with outcomes in `pending`.
    dirty: Vec<u64>,
    backlog: VecDeque<Chunk>,
    next_tid: u64,
    /// Workers that died before they were ready, in a row (reset when one
    /// is seen ready), and how the last one ended.
    init_failures: u32,
    init_failure: String,
    /// Slots to fork a worker for, to the forker thread (`None` once the
    /// manager stops), and its answers.
    fork_tx: Option<mpsc::Sender<ForkRequest>>,
    forked: mpsc::Receiver<Forked>,
}

/// One thread's hold on the bookkeeping: the shared parts, that thread's
/// own endpoints of the queues (`'a`: as long as the pool's [`Core`]), and
/// the [`State`] it holds the lock of (`'s`).
struct Manager<'s, 'a> {
    shared: &'a Shared,
    core: &'a Core,
    senders: &'s mut Vec<Sender<'a, TaskMsg>>,
    rx: &'s queue::Receiver<'a, Event>,
    st: &'s mut State,
}

/// A worker to fork: its slot, and whether to wake the manager (through
/// its inbox) once forked: not while the pool is being built, when the
/// manager waits for the answers themselves.
type ForkRequest = (usize, bool);

/// The forker's answer: the slot, and its new worker.
type Forked = (usize, Result<Child<()>, daemon::Error>);

/// The forker thread: forks the workers the manager asks for, so that the
/// manager never waits for a fork (`daemon::Process::start` takes the
/// stdout lock, which another thread of the owner may hold for long: a
/// `println!` into a full pipe, a held `stdout().lock()`). Lives as long
/// as the manager: the workers' parent-death signal follows it.
fn forker(
    requests: mpsc::Receiver<ForkRequest>,
    answers: mpsc::Sender<Forked>,
    shared: &Shared,
    queues: &[Queue<TaskMsg>],
    records: &[AtomicU64],
    config: WorkerConfig,
) {
    while let Ok((slot, wake)) = requests.recv() {
        let queue = &queues[slot];
        let inbox = &shared.inbox;
        let stride = worker::slot_words(config.budget);
        let record = &records[slot * stride..(slot + 1) * stride];
        // The child runs only the worker loop (and the pool's initializer)
        // over what it borrows here, then leaves with `_exit`. It is forked
        // from this thread on purpose, in a multithreaded process: the
        // worker loop takes no lock another thread of the owner may hold
        // (its queues and records are futex words in shared memory), and
        // the crate's documentation (Threads) gives tasks the rule. So no
        // multithreaded-fork warning at every pool.
        let started = Process::new(move || worker::run(slot as u32, queue, inbox, record, config))
            .daemon(true)
            .name(format!("pool-worker-{slot}"))
            .threads_ok(true)
            .start();
        if answers.send((slot, started)).is_err() {
            return;
        }
        if wake {
            shared.wake();
        }
    }
}

impl<'s, 'a> Manager<'s, 'a> {
    fn new(
        shared: &'a Shared,
        core: &'a Core,
        senders: &'s mut Vec<Sender<'a, TaskMsg>>,
        rx: &'s queue::Receiver<'a, Event>,
        st: &'s mut State,
    ) -> Manager<'s, 'a> {
        Manager {
            shared,
            core,
            senders,
            rx,
            st,
        }
    }

    /// The slot's words: its record, then its journal.
    fn slot_words(&self, slot: usize) -> &'a [AtomicU64] {
        let stride = worker::slot_words(self.core.settings.config.budget);
        &self.core.records[slot * stride..(slot + 1) * stride]
    }

    fn record(&self, slot: usize) -> &'a [AtomicU64] {
        &self.slot_words(slot)[..RECORD_WORDS]
    }

    fn journal(&self, slot: usize) -> Journal<'a> {
        Journal::new(&self.slot_words(slot)[RECORD_WORDS..])
    }

    /// Asks the forker thread for a worker in `slot` (its answer comes
    /// back through `forked`, see [`Manager::on_forked`]).
    fn request_fork(&mut self, slot: usize, wake: bool) {
        let record = self.record(slot);
        record[RUNNING].store(0, Ordering::SeqCst);
        record[BEGUN].store(0, Ordering::SeqCst);
        record[READY].store(0, Ordering::SeqCst);
        self.journal(slot).clear();
        let s = &mut self.st.slots[slot];
        s.needs_fork = false;
        s.forking = true;
        let asked = self
            .st
            .fork_tx
            .as_ref()
            .is_some_and(|tx| tx.send((slot, wake)).is_ok());
        if !asked {
            // The forker is gone (only when stopping): no worker here.
            let s = &mut self.st.slots[slot];
            s.forking = false;
            s.needs_fork = true;
            s.fork_at = u64::MAX;
        }
    }

    /// The forker's answer for `slot`: the new worker is put in place and
    /// watched, or the fork is tried again after [`REFORK_PAUSE`].
    fn on_forked(
        &mut self,
        slot: usize,
        started: Result<Child<()>, daemon::Error>,
    ) -> Result<(), PoolError> {
        self.st.slots[slot].forking = false;
        let installed = started.map_err(PoolError::from).and_then(|child| {
            match child.sentinel().try_clone_to_owned() {
                Ok(pidfd) => Ok((child, pidfd)),
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.join();
                    Err(daemon::Error::Os {
                        op: "dup of a worker's pidfd",
                        source,
                    }
                    .into())
                }
            }
        });
        let (child, pidfd) = match installed {
            Ok(installed) => installed,
            Err(e) => {
                let s = &mut self.st.slots[slot];
                s.needs_fork = true;
                s.fork_at =
                    shm::sync::monotonic_ns().saturating_add(REFORK_PAUSE.as_nanos() as u64);
                return Err(e);
            }
        };
        let s = &mut self.st.slots[slot];
        s.generation += 1;
        s.quiet_since = None;
        let _ = self
            .core
            .watch_tx
            .send(Watch::Add(slot as u32, s.generation, pidfd));
        let _ = rustix::io::write(&self.core.wake, &1u64.to_ne_bytes());
        lock(&self.shared.pids)[slot] = Some(child.pid());
        s.child = Some(child);
        Ok(())
    }

    /// The manager thread's rounds, until the pool stops or a caller asks
    /// for the bookkeeping.
    fn run(&mut self) -> Run {
        loop {
            if self.shared.drivers.load(Ordering::SeqCst) > 0 {
                return Run::Yield;
            }
            if let Some(exit) = self.step() {
                return Run::Exit(exit);
            }
        }
    }

    /// One round: takes submissions, forks what is due, dispatches, waits
    /// for events (until the next deadline at most) and handles them.
    /// Returns why the pool stops, if it does.
    fn step(&mut self) -> Option<Exit> {
        {
            if let Some(exit) = self.take_control() {
                return Some(exit);
            }
            while let Ok((slot, started)) = self.st.forked.try_recv() {
                let _ = self.on_forked(slot, started);
            }
            let now = shm::sync::monotonic_ns();
            let mut next_fork = None::<u64>;
            for slot in 0..self.st.slots.len() {
                let s = &self.st.slots[slot];
                if !s.needs_fork || s.forking {
                    continue;
                }
                if s.fork_at <= now {
                    self.request_fork(slot, true);
                } else {
                    next_fork = Some(next_fork.map_or(s.fork_at, |n| n.min(s.fork_at)));
                }
            }
            if self.st.init_failures > 0 {
                self.check_initializer();
            }
            self.dispatch();
            // After dispatching: a worker given its first chunk just now
            // has a deadline within this sleep.
            let mut wait = self.check_timeouts();
            if let Some(at) = next_fork {
                wait = wait.min(Duration::from_nanos(at.saturating_sub(now)));
            }
            let mut event = self.rx.get_timeout(wait);
            // Then whatever else is there, without waiting, so outcomes go
            // to each job's handle in one batch (one wake-up of its thread).
            for taken in 1.. {
                match event {
                    Ok(Event::Results {
                        slot,
                        first_tid,
                        offset,
                        outcomes,
                    }) => {
                        self.on_results(slot as usize, first_tid, offset as usize, outcomes);
                        // Room in that worker's queue: keep it busy.
                        self.dispatch();
                    }
                    Ok(Event::Exited { slot, generation }) => {
                        self.on_exit(slot as usize, generation)
                    }
                    Ok(Event::Wake) => {}
                    Err(_) => break,
                }
                // Only now: an event taken is an event handled.
                if taken == DRAIN {
                    break;
                }
                event = self.rx.try_get();
            }
            self.flush();
        }
        None
    }

    /// Hands the outcomes gathered since the last flush to their jobs.
    fn flush(&mut self) {
        for job in std::mem::take(&mut self.st.dirty) {
            if let Some(j) = self.st.jobs.get_mut(&job) {
                if let (false, Some(reply)) = (j.pending.is_empty(), &j.reply) {
                    // A job whose handle was dropped no longer listens.
                    let _ = reply.send(std::mem::take(&mut j.pending));
                }
            }
        }
    }

    /// Takes new submissions; says whether to stop.
    fn take_control(&mut self) -> Option<Exit> {
        let shared = self.shared;
        let mut control = shared.control();
        // Submissions first, even when terminating: a job left in
        // `control` would keep its reply channel open, and its iterator
        // would wait for ever (`end` fails what the manager holds).
        for submission in control.submissions.drain(..) {
            let id = submission.job;
            let job = self.st.jobs.entry(id).or_default();
            if let Some(reply) = submission.reply {
                job.reply = Some(reply);
            }
            job.left += submission.count;
            job.complete |= submission.last;
            for chunk in submission.chunks {
                self.st.backlog.push_back(Chunk::new(
                    id,
                    chunk.call,
                    chunk.indices,
                    chunk.args,
                    Vec::new(),
                ));
            }
            self.finish_if_done(id);
        }
        if control.terminate {
            return Some(Exit::Terminate);
        }
        (control.closed && self.st.jobs.is_empty()).then_some(Exit::Close)
    }

    /// Sends waiting chunks to the workers with the fewest in flight.
    fn dispatch(&mut self) {
        while !self.st.backlog.is_empty() {
            let best = (0..self.st.slots.len())
                .filter(|&s| {
                    self.st.slots[s].child.is_some() && self.st.slots[s].timed_out.is_none()
                })
                .filter(|&s| self.st.slots[s].fifo.len() < IN_FLIGHT)
                .min_by_key(|&s| self.st.slots[s].fifo.len());
            let Some(slot) = best else { return };
            let Some(mut chunk) = self.st.backlog.pop_front() else {
                return;
            };
            chunk.first_tid = self.st.next_tid;
            self.st.next_tid += chunk.args.len() as u64;
            let msg = TaskMsg {
                first_tid: chunk.first_tid,
                call: chunk.call,
                args: chunk.args.clone(),
            };
            match self.senders[slot].try_put(msg) {
                Ok(()) => self.st.slots[slot].fifo.push_back(chunk),
                Err(_) => {
                    // Cannot happen: the queue holds one more than
                    // `IN_FLIGHT`, and sizes were checked at submission.
                    // Keep the chunk and look again later.
                    self.st.backlog.push_front(chunk);
                    return;
                }
            }
        }
    }

    fn on_results(&mut self, slot: usize, first_tid: u64, offset: usize, outcomes: Items) {
        let fifo = &mut self.st.slots[slot].fifo;
        let Some(pos) = fifo.iter().position(|c| c.first_tid == first_tid) else {
            return;
        };
        self.st.slots[slot].quiet_since = None;
        let fifo = &mut self.st.slots[slot].fifo;
        let chunk = &mut fifo[pos];
        let end = offset + outcomes.len();
        let fresh = offset < end && end <= chunk.indices.len() && chunk.done.none_in(offset, end);
        let indices = if fresh {
            // The usual case, with no allocation for a `map`'s chunk: none
            // of them delivered before.
            chunk.done.set_range(offset, end);
            chunk.left -= end - offset;
            chunk.indices.range(offset, end)
        } else {
            Indices::List(
                (offset..end)
                    .map(|k| {
                        if k >= chunk.indices.len() || chunk.done.get(k) {
                            return SKIP;
                        }
                        chunk.done.set(k);
                        chunk.left -= 1;
                        chunk.indices.get(k)
                    })
                    .collect(),
            )
        };
        let job = chunk.job;
        if chunk.left == 0 {
            fifo.remove(pos);
        }
        // Straight into the job's pending batch: no batch of its own to
        // allocate for every message (one a task with chunks of one).
        self.deliver_with(job, |pending| pending.outcomes(indices, outcomes));
    }

    fn deliver(&mut self, job: u64, batch: Batch) {
        if !batch.is_empty() {
            self.deliver_with(job, |pending| pending.append(batch));
        }
    }

    /// Adds outcomes to `job`'s pending batch with `add` (nothing if the
    /// job has ended), and ends the job if they were its last.
    fn deliver_with(&mut self, job: u64, add: impl FnOnce(&mut Batch)) {
        if let Some(j) = self.st.jobs.get_mut(&job) {
            let before = j.pending.len();
            add(&mut j.pending);
            let added = j.pending.len() - before;
            if added == 0 {
                return;
            }
            j.left = j.left.saturating_sub(added);
            if before == 0 {
                self.st.dirty.push(job);
            }
            self.finish_if_done(job);
        }
    }

    /// Ends `job` if its last part came and every item has its outcome:
    /// hands over what is pending and drops the reply channel, which ends
    /// its iterator.
    fn finish_if_done(&mut self, job: u64) {
        if !self
            .st
            .jobs
            .get(&job)
            .is_some_and(|j| j.complete && j.left == 0)
        {
            return;
        }
        if let Some(j) = self.st.jobs.remove(&job) {
            if let (false, Some(reply)) = (j.pending.is_empty(), j.reply) {
                // A job whose handle was dropped no longer listens.
                let _ = reply.send(j.pending);
            }
        }
    }

    /// A worker exited: attribute, re-dispatch, replace.
    fn on_exit(&mut self, slot: usize, generation: u64) {
        let s = &mut self.st.slots[slot];
        if s.generation != generation {
            return;
        }
        let Some(mut child) = s.child.take() else {
            return;
        };
        lock(&self.shared.pids)[slot] = None;
        // Counted before any outcome below is handed over: a job this
        // death completes sees it in `workers_replaced`.
        self.shared.replaced.fetch_add(1, Ordering::Relaxed);
        let status = child.status();
        // Its pidfd said it exited, so this does not wait; collected either
        // way (no zombie left in daemon's registry). A panic outside any
        // task (in the initializer) comes with its message.
        let joined = child.join();
        let (signal, exit_code) = match (status, &joined) {
            (Some(ExitStatus::Signaled(signal)), _) => (Some(signal), None),
            (Some(ExitStatus::Exited(code)), _) => (None, Some(code)),
            (None, Err(daemon::JoinError::Signaled { signal, .. })) => (Some(*signal), None),
            (None, Err(daemon::JoinError::Exited { code, .. })) => (None, Some(*code)),
            _ => (None, None),
        };
        let timed_out = s.timed_out.take();
        let record = self.record(slot);
        let was_ready = record[READY].load(Ordering::SeqCst) == 1;
        // A worker SIGKILLed before it was ready, in a pool without an
        // initializer, was killed from outside (the OOM killer, a user, a
        // chaos test): nothing it ran can fail again, so it is replaced at
        // once and is no sign that workers cannot start (three such kills
        // in a row used to fail the backlog with `InitializerFailed`).
        let killed_from_outside =
            self.core.settings.config.initializer.is_none() && signal == Some(SIGKILL);
        let failed_to_start = !was_ready && !killed_from_outside;
        if was_ready {
            self.st.init_failures = 0;
        } else if failed_to_start {
            // Died before it was ready: in the initializer (its panic
            // message comes with the join), or killed while starting.
            self.st.init_failures += 1;
            self.st.init_failure = match joined {
                Err(daemon::JoinError::Panicked { message, .. }) => {
                    format!("it panicked: {message}")
                }
                _ => format!("it died ({})", died(signal, exit_code)),
            };
        }
        // What it finished and had not sent yet is in its journal: taken as
        // if it had been sent (an outcome that also came by a message is
        // delivered once, whichever came first).
        if let Some(kept) = self.journal(slot).kept() {
            self.on_results(slot, kept.first_tid, kept.offset as usize, kept.outcomes);
        }
        // The worker is dead and this thread is the queue's only producer:
        // the queue's length is exact. Chunks sent and not in the queue any
        // more were taken by the dead worker (at most one: it takes the
        // next only after sending the last one's outcomes, which came
        // before this event).
        let taken = self.st.slots[slot]
            .fifo
            .len()
            .saturating_sub(self.core.queues[slot].len());
        // Every item of the taken chunk up to the last one the worker began
        // has run, and what has no outcome yet was running (or had just
        // finished, its outcome not yet kept): none runs again except by
        // `retries`.
        let begun = self.record(slot)[BEGUN].load(Ordering::SeqCst);
        let mut failed = Batch::default();
        for _ in 0..taken {
            let Some(chunk) = self.st.slots[slot].fifo.pop_front() else {
                break;
            };
            let mut redo = (Indices::default(), Items::default(), Vec::new());
            for (k, arg) in chunk.args.iter().enumerate() {
                if chunk.done.get(k) {
                    continue;
                }
                let index = chunk.indices.get(k);
                let attempts = chunk.attempts.get(k).copied().unwrap_or(0);
                let tid = chunk.first_tid + k as u64 + 1;
                if tid > begun {
                    // Never started: re-dispatched.
                    push3(&mut redo, index, arg, attempts);
                    continue;
                }
                match timed_out {
                    // Killed for this task's timeout, or for running none
                    // for a whole limit (stopped after it finished, say).
                    Some(t) if t == tid || t == 0 => failed.failed(index, TaskError::TimedOut),
                    // Killed for another task's timeout (one that ended
                    // just before, or a later one of this chunk), or died:
                    // not at fault, but it ran.
                    _ if attempts < self.core.settings.retries => {
                        push3(&mut redo, index, arg, attempts + 1)
                    }
                    _ => failed.failed(index, TaskError::WorkerDied { signal, exit_code }),
                }
            }
            let job = chunk.job;
            self.deliver(job, std::mem::take(&mut failed));
            if !redo.0.is_empty() {
                self.st
                    .backlog
                    .push_front(Chunk::new(job, chunk.call, redo.0, redo.1, redo.2));
            }
        }
        self.take_back(slot);
        if failed_to_start {
            // Not at once: a failing initializer would fork for ever.
            let failures = self.st.init_failures.min(16) - 1;
            let pause = INIT_BACKOFF_FIRST
                .saturating_mul(1 << failures)
                .min(INIT_BACKOFF_MAX);
            let s = &mut self.st.slots[slot];
            s.needs_fork = true;
            s.fork_at = shm::sync::monotonic_ns().saturating_add(pause.as_nanos() as u64);
        } else {
            self.request_fork(slot, true);
        }
    }

    /// The chunks still in the task queue of `slot`, whose worker is dead,
    /// go back to the backlog: to whichever worker frees up first, not to
    /// its replacement only, which may be long to come (a back-off, a slow
    /// initializer, a fork waiting for the stdout lock). Matched by task
    /// id: a chunk the queue does not give back stays for the replacement.
    fn take_back(&mut self, slot: usize) {
        if self.st.slots[slot].fifo.is_empty() {
            return;
        }
        // No worker of this slot is alive, and this thread is its queue's
        // only producer.
        let Ok(rx) = self.core.queues[slot].receiver() else {
            return;
        };
        let mut back = Vec::new();
        while let Ok(msg) = rx.try_get() {
            let fifo = &mut self.st.slots[slot].fifo;
            if let Some(chunk) = fifo
                .iter()
                .position(|c| c.first_tid == msg.first_tid)
                .and_then(|pos| fifo.remove(pos))
            {
                back.push(chunk);
            }
        }
        for chunk in back.into_iter().rev() {
            self.st.backlog.push_front(chunk);
        }
    }

    /// After workers died before they were ready: once one is ready, all
    /// is well again; while none is and [`INIT_FAILURES`] died in a row,
    /// every task waiting in the backlog fails with `InitializerFailed`
    /// (a dead worker's queued chunks are taken back there), and so does
    /// every new one, so nothing waits for ever. Tasks queued to a worker
    /// still starting wait for it.
    fn check_initializer(&mut self) {
        let ready = (0..self.st.slots.len()).any(|slot| {
            self.st.slots[slot].child.is_some()
                && self.record(slot)[READY].load(Ordering::SeqCst) == 1
        });
        if ready {
            self.st.init_failures = 0;
            return;
        }
        if self.st.init_failures < INIT_FAILURES {
            return;
        }
        let error = TaskError::InitializerFailed(format!(
            "{} workers in a row died before finishing the pool's initializer; the last: {}",
            self.st.init_failures, self.st.init_failure
        ));
        let chunks: Vec<Chunk> = self.st.backlog.drain(..).collect();
        for chunk in chunks {
            let mut batch = Batch::default();
            for (k, index) in chunk.indices.iter().enumerate() {
                if !chunk.done.get(k) {
                    batch.failed(index, error.clone());
                }
            }
            self.deliver(chunk.job, batch);
        }
    }

    /// Kills workers whose running task is past the timeout; returns how
    /// long the manager may sleep.
    fn check_timeouts(&mut self) -> Duration {
        let Some(limit) = self.core.settings.timeout else {
            return MAX_IDLE;
        };
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let now = shm::sync::monotonic_ns();
        let mut next = now.saturating_add(MAX_IDLE.as_nanos() as u64);
        for slot in 0..self.st.slots.len() {
            let record = self.record(slot);
            let s = &mut self.st.slots[slot];
            if s.child.is_none() || s.fifo.is_empty() || s.timed_out.is_some() {
                s.quiet_since = None;
                continue;
            }
            // SeqCst on both sides: equal task ids around the read of the
            // start time mean it is that task's (see worker::run).
            let before = record[RUNNING].load(Ordering::SeqCst);
            let started = record[STARTED].load(Ordering::SeqCst);
            let after = record[RUNNING].load(Ordering::SeqCst);
            if before == 0 && record[READY].load(Ordering::SeqCst) == 0 {
                // Still starting (the initializer may take long): not
                // judged, or a slow initializer would be killed for ever.
                s.quiet_since = None;
                next = next.min(now.saturating_add(limit_ns));
                continue;
            }
            if before == 0 {
                // Chunks wait for this worker and it runs no task: between
                // two tasks for an instant, normally. For a whole limit
                // without an outcome, it is stuck outside any task
                // (stopped, say): killed like a task past its limit; its
                // chunks are re-dispatched, nobody's fault.
                let since = *s.quiet_since.get_or_insert(now);
                let deadline = since.saturating_add(limit_ns);
                if now >= deadline {
                    if let Some(child) = &s.child {
                        let _ = child.kill();
                    }
                    s.timed_out = Some(0);
                } else {
                    next = next.min(deadline);
                }
                continue;
            }
            s.quiet_since = None;
            if before != after {
                // One started just now: not due before a full limit.
                next = next.min(now.saturating_add(limit_ns));
                continue;
            }
            let deadline = started.saturating_add(limit_ns);
            if now >= deadline {
                if let Some(child) = &s.child {
                    let _ = child.kill();
                }
                s.timed_out = Some(before);
            } else {
                next = next.min(deadline);
            }
        }
        Duration::from_nanos(next.saturating_sub(now))
    }

    /// Stops: lets the workers go (close) or kills them (terminate), fails
    /// what is left, stops the watcher.
    fn end(&mut self, exit: Exit) {
        // The forker ends after the fork in hand, if any: its worker is
        // put in place, to be ended with the others.
        self.st.fork_tx = None;
        while let Ok((slot, started)) = self.st.forked.recv() {
            let _ = self.on_forked(slot, started);
        }
        if exit == Exit::Terminate {
            for s in &self.st.slots {
                if let Some(child) = &s.child {
                    let _ = child.kill();
                }
            }
        }
        // A worker waiting for a task sees its queue disconnected and
        // returns.
        self.senders.clear();
        for slot in 0..self.st.slots.len() {
            if let Some(child) = self.st.slots[slot].child.take() {
                let _ = child.join();
            }
            lock(&self.shared.pids)[slot] = None;
        }
        let mut left: HashMap<u64, Batch> = HashMap::new();
        let chunks = self
            .st
            .slots
            .iter_mut()
            .flat_map(|s| s.fifo.drain(..))
            .chain(self.st.backlog.drain(..));
        for chunk in chunks {
            let batch = left.entry(chunk.job).or_default();
            for (k, index) in chunk.indices.iter().enumerate() {
                if !chunk.done.get(k) {
                    batch.failed(index, TaskError::Terminated);
                }
            }
        }
        for (job, batch) in left {
            self.deliver(job, batch);
        }
        self.flush();
        self.st.jobs.clear();
        self.stop_watcher();
    }

    fn stop_watcher(&self) {
        self.core.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(&self.core.wake, &1u64.to_ne_bytes());
    }
}

fn push3(redo: &mut (Indices, Items, Vec<u32>), index: usize, arg: &[u8], attempts: u32) {
    redo.0.push(index);
    redo.1.push(arg);
    redo.2.push(attempts);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The watcher thread: waits in `poll(2)` on every worker's pidfd and puts
/// an [`Event::Exited`] in the inbox when one becomes readable, so the
/// manager, asleep on its inbox, learns of a death at once.
fn watch(tx: Sender<'_, Event>, control: mpsc::Receiver<Watch>, wake: &OwnedFd, stop: &AtomicBool) {
    let mut watched: Vec<(u32, u64, OwnedFd)> = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        loop {
            match control.try_recv() {
                Ok(Watch::Add(slot, generation, fd)) => watched.push((slot, generation, fd)),
                Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = std::iter::once(wake.as_fd())
                .chain(watched.iter().map(|(_, _, fd)| fd.as_fd()))
                .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
                .collect();
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => fds.iter().map(|f| !f.revents().is_empty()).collect(),
                Err(rustix::io::Errno::INTR) => continue,
                // No memory for the descriptor table: look again soon.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
        };
        if ready[0] {
            let _ = rustix::io::read(wake, &mut [0u8; 8]);
        }
        let mut i = 0;
        watched.retain(|(slot, generation, _)| {
            i += 1;
            if ready[i] {
                let mut event = Event::Exited {
                    slot: *slot,
                    generation: *generation,
                };
                // A full inbox the manager no longer reads (it stopped)
                // must not keep this thread for ever.
                while let Err(e) = tx.put_timeout(event, Duration::from_millis(10)) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    event = e.into_inner();
                }
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Delivered;

    #[test]
    fn delivered_keeps_one_bit_per_item_across_words() {
        for items in [1, 63, 64, 65, 200] {
            let mut done = Delivered::new(items);
            let marked: Vec<usize> = (0..items)
                .filter(|k| k % 3 == 0 || k + 1 == items)
                .collect();
            for &k in &marked {
                done.set(k);
            }
            for k in 0..items {
                assert_eq!(done.get(k), marked.contains(&k), "item {k} of {items}");
            }
        }
        // A chunk of up to 64 items needs no allocation.
        assert_eq!(Delivered::new(64).rest.capacity(), 0);
    }

    #[test]
    fn ranges_are_set_and_looked_at_across_words_as_bit_by_bit() {
        for (items, from, to) in [
            (1, 0, 1),
            (64, 0, 64),
            (200, 3, 70),
            (200, 64, 128),
            (200, 127, 200),
        ] {
            let mut done = Delivered::new(items);
            assert!(done.none_in(from, to));
            done.set_range(from, to);
            for k in 0..items {
                assert_eq!(
                    done.get(k),
                    (from..to).contains(&k),
                    "item {k} of {from}..{to}"
                );
            }
            assert!(!done.none_in(from, to));
            if from > 0 {
                assert!(done.none_in(0, from));
            }
            if to < items {
                assert!(done.none_in(to, items));
            }
        }
    }
}
