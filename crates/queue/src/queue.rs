//! [`Queue<T>`], its builder and its endpoints, [`Sender`] and
//! [`Receiver`]: the typed layer over the ring protocol (`ring`).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use shm::futex::Recheck;
use shm::pid;
use shm::spin::Spin;
use shm::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use shm::SharedSlice;

use crate::error::{GetError, PutError, PutErrorKind, QueueError};
use crate::line::Line;
use crate::ring::{
    recorded_type_name, Config, GetFailure, Header, Invalid, PutFailure, Ring, Role, MAX_ENDPOINTS,
    VERSION,
};

/// The default largest message, in encoded bytes: one kibibyte slots.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1016;

/// How a [`Queue`] is made: capacity, largest message, task accounting,
/// and then anonymous or named.
///
/// ```
/// use queue::Queue;
///
/// let q = Queue::<String>::builder()
///     .capacity(16)
///     .max_message_bytes(4096)
///     .joinable()
///     .anonymous()?;
/// assert_eq!(q.capacity(), 16);
/// assert_eq!(q.max_message_bytes(), 4096);
/// assert!(q.is_joinable());
/// # Ok::<(), queue::QueueError>(())
/// ```
#[derive(Debug)]
pub struct QueueBuilder<T> {
    capacity: usize,
    max_message_bytes: usize,
    joinable: bool,
    mode: u32,
    _messages: PhantomData<fn(T) -> T>,
}

impl<T> Default for QueueBuilder<T> {
    fn default() -> QueueBuilder<T> {
        QueueBuilder {
            capacity: 1024,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            joinable: false,
            mode: shm::DEFAULT_MODE,
            _messages: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> QueueBuilder<T> {
    /// How many messages the queue holds at most (default 1024). A `put`
    /// on a full queue waits (or fails, for `try_put`).
    pub fn capacity(mut self, messages: usize) -> QueueBuilder<T> {
        self.capacity = messages;
        self
    }

    /// The largest message, in encoded (postcard) bytes (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]). Every slot is this big (rounded up
    /// to whole 64-byte lines, with an 8-byte length): the queue's memory
    /// is about `capacity x max_message_bytes`. A larger message is refused
    /// by `put` with [`PutErrorKind::TooLarge`], and handed back.
    pub fn max_message_bytes(mut self, bytes: usize) -> QueueBuilder<T> {
        self.max_message_bytes = bytes;
        self
    }

    /// Keeps task accounting: each [`Receiver`] counts what it took, and
    /// [`Receiver::task_done`] and [`Queue::join`] work (Python's
    /// `JoinableQueue`). Costs a journalled count per `get`.
    pub fn joinable(mut self) -> QueueBuilder<T> {
        self.joinable = true;
        self
    }

    /// The permission bits of a named queue (default 0600).
    pub fn mode(mut self, mode: u32) -> QueueBuilder<T> {
        self.mode = mode;
        self
    }

    fn config(&self) -> Result<(Config, usize), QueueError> {
        let config = Config {
            capacity: self.capacity as u64,
            max_bytes: self.max_message_bytes,
            joinable: self.joinable,
            type_name: shm::layout::short_type_name::<T>(),
        };
        let invalid = QueueError::InvalidSize {
            capacity: self.capacity,
            max_message_bytes: self.max_message_bytes,
        };
        let lines = config.lines().filter(|_| self.capacity > 0);
        // Refuse rings that cannot be mapped on this machine rather than
        // failing inside mmap with a less helpful error.
        match lines {
            Some(lines)
                if lines
                    .checked_mul(64)
                    .is_some_and(|b| b <= isize::MAX as usize) =>
            {
                Ok((config, lines))
            }
            _ => Err(invalid),
        }
    }

    /// An anonymous queue, shared with children forked afterwards.
    pub fn anonymous(self) -> Result<Queue<T>, QueueError> {
        let (config, lines) = self.config()?;
        let lines = SharedSlice::from_fn(lines, |i| config.line(i))?;
        Queue::from_lines(lines, "an anonymous queue")
    }

    /// Creates the named queue `name` (failing if the name exists). Other
    /// programs [`Queue::open`] it by name; dropping this handle removes
    /// the name (as every procsync named segment does).
    pub fn create(self, name: &str) -> Result<Queue<T>, QueueError> {
        let (config, lines) = self.config()?;
        let lines = SharedSlice::create_with_mode(name, lines, self.mode, |i| config.line(i))?;
        Queue::from_lines(lines, name)
    }
}

/// A bounded multi-producer, multi-consumer queue of `T` between processes:
/// Python's `multiprocessing.Queue` (and `SimpleQueue`, and with
/// [`QueueBuilder::joinable`] `JoinableQueue`).
///
/// Messages are encoded with `postcard` into fixed slots in shared memory
/// (see [`QueueBuilder::max_message_bytes`]). Processes attach as
/// producers ([`Queue::sender`]) and consumers ([`Queue::receiver`]);
/// attachment is what makes disconnection possible: a `get` on an empty
/// queue whose every producer has closed or died returns
/// [`GetError::Disconnected`] instead of waiting for ever.
///
/// # What a killed process can do to it
///
/// Nothing but lose what it held. A producer SIGKILLed at any instruction
/// of `put` either committed its message whole or left nothing; a consumer
/// killed in `get` either took the message (once) or left it for the next
/// consumer. Neither wedges the others: both sides lock with procsync's
/// robust lock word, taken over from a dead holder. On a joinable queue,
/// messages a consumer took and did not mark done before it died (or
/// closed) are counted, by [`Queue::lost`] and [`Queue::join`], instead of
/// making `join` wait for ever.
///
/// # Anonymous or named
///
/// [`Queue::new`] (or [`QueueBuilder::anonymous`]) makes a queue children
/// forked afterwards share; [`QueueBuilder::create`] and [`Queue::open`]
/// let unrelated programs meet by name; `open` checks the queue's protocol
/// version and its message type's name.
///
/// # Example
///
/// ```
/// use daemon::Process;
/// use queue::{GetError, Queue};
///
/// let q = Queue::<String>::new(8)?;
/// let rx = q.receiver()?;
/// let tx = q.sender()?;
/// let producer = Process::new(move || {
///     for word in ["cut", "the", "rope"] {
///         tx.put(word.to_string()).unwrap();
///     }
///     // tx is dropped here: the only producer closes.
/// })
/// .start()?;
/// let mut words = Vec::new();
/// loop {
///     match rx.get() {
///         Ok(word) => words.push(word),
///         Err(GetError::Disconnected) => break,
///         Err(e) => panic!("{e}"),
///     }
/// }
/// producer.join()?;
/// assert_eq!(words, ["cut", "the", "rope"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Queue<T> {
    lines: SharedSlice<Line>,
    /// Read and checked once: another process that overwrites the header
    /// later cannot change the shape this handle uses (review 5).
    header: Header,
    /// Messages cross processes as bytes: `T` itself is never shared.
    _messages: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An anonymous queue of at most `capacity` messages of up to
    /// [`DEFAULT_MAX_MESSAGE_BYTES`] each; see [`Queue::builder`] for more.
    pub fn new(capacity: usize) -> Result<Queue<T>, QueueError> {
        Queue::builder().capacity(capacity).anonymous()
    }

    /// The builder: capacity, message size, task accounting, named or not.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder::default()
    }

    /// Opens the named queue `name`, made by [`QueueBuilder::create`] in
    /// this or another program, waiting up to two seconds for its creator
    /// to finish. Checks that it is a queue of this protocol version, for
    /// messages of `T`'s type name (without module path; only its first 128
    /// bytes are kept and compared).
    pub fn open(name: &str) -> Result<Queue<T>, QueueError> {
        Queue::from_lines(SharedSlice::open(name)?, name)
    }

    fn from_lines(lines: SharedSlice<Line>, name: &str) -> Result<Queue<T>, QueueError> {
        let ring = Ring::new(&lines).map_err(|invalid| invalid_queue(invalid, name))?;
        let expected = shm::layout::short_type_name::<T>();
        let found = ring.type_name();
        if found != recorded_type_name(&expected) {
            return Err(QueueError::TypeMismatch {
                name: name.into(),
                expected,
                found,
            });
        }
        let header = ring.header();
        Ok(Queue {
            lines,
            header,
            _messages: PhantomData,
        })
    }
}

impl<T> Queue<T> {
    fn ring(&self) -> Ring<'_> {
        Ring::with_header(&self.lines, self.header)
    }

    /// Attaches a producer: a handle that puts. The queue counts it until
    /// it is dropped (in the process that last used it) or its process
    /// dies; see [`Sender`].
    pub fn sender(&self) -> Result<Sender<'_, T>, QueueError> {
        Ok(Sender {
            endpoint: Endpoint::attach(self, Role::Producer)?,
            require_consumers: false,
        })
    }

    /// Attaches a consumer: a handle that gets. See [`Receiver`].
    pub fn receiver(&self) -> Result<Receiver<'_, T>, QueueError> {
        Ok(Receiver {
            endpoint: Endpoint::attach(self, Role::Consumer)?,
        })
    }

    /// How many messages the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.ring().capacity() as usize
    }

    /// The largest message, in encoded bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.ring().max_bytes()
    }

    /// Whether the queue keeps task accounting (Python's `JoinableQueue`).
    pub fn is_joinable(&self) -> bool {
        self.ring().joinable()
    }

    /// Messages in the queue. Approximate under concurrency, as Python
    /// says of `qsize`: others may put or get before the caller acts on it.
    pub fn len(&self) -> usize {
        self.ring().len() as usize
    }

    /// Whether the queue holds no message; approximate, as [`len`](Queue::len).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is at capacity; approximate, as [`len`](Queue::len).
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// Whether producers attached once and none is attached and alive now:
    /// once empty, the queue will stay empty unless a new producer attaches.
    pub fn producers_gone(&self) -> bool {
        self.ring().disconnected(Role::Producer)
    }

    /// Whether consumers attached once and none is attached and alive now.
    pub fn consumers_gone(&self) -> bool {
        self.ring().disconnected(Role::Consumer)
    }

    /// On a joinable queue, the messages consumers took and never marked
    /// done because they died or were dropped first. Always 0 on a queue
    /// without task accounting.
    pub fn lost(&self) -> u64 {
        match self.ring().all_done(None) {
            Some((_, lost)) => lost,
            None => unreachable!("no deadline"),
        }
    }

    /// The segment's name, for a named queue.
    pub fn name(&self) -> Option<&str> {
        self.lines.name()
    }

    /// Waits until every message put so far has been taken and marked
    /// done ([`Receiver::task_done`]), or lost with a consumer that died or
    /// closed with messages outstanding (Python's `JoinableQueue.join`,
    /// which would wait for ever there). Returns how many were lost in the
    /// queue's life.
    pub fn join(&self) -> Result<JoinReport, QueueError> {
        self.join_until(None)
    }

    /// [`join`](Queue::join), giving up with [`QueueError::TimedOut`] after
    /// `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<JoinReport, QueueError> {
        self.join_until(deadline_after(timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<JoinReport, QueueError> {
        let ring = self.ring();
        if !ring.joinable() {
            return Err(QueueError::NotJoinable);
        }
        let mut recheck = Recheck::new();
        loop {
            match ring.all_done(deadline) {
                Some((true, lost)) => return Ok(JoinReport { lost }),
                Some((false, _)) => {}
                None => return Err(QueueError::TimedOut),
            }
            if deadline.is_some_and(|d| shm::sync::now() >= d) {
                return Err(QueueError::TimedOut);
            }
            let unfinished = || ring.all_done(deadline).is_some_and(|(done, _)| !done);
            ring.wait_for_done(unfinished, deadline, &mut recheck);
        }
    }
}

/// The error for lines that are not a queue this program can use.
fn invalid_queue(invalid: Invalid, name: &str) -> QueueError {
    match invalid {
        Invalid::NotAQueue | Invalid::Shape => QueueError::NotAQueue { name: name.into() },
        Invalid::Version(found) => QueueError::Version {
            name: name.into(),
            found,
            expected: VERSION,
        },
    }
}

/// A named queue's state as [`inspect`] reads it: whatever its message
/// type, without attaching an endpoint or taking a lock. Each figure is
/// true at some moment during the read; others may change it meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueState {
    /// The message type's name as its creator recorded it (no module path,
    /// at most 128 bytes).
    pub message_type: String,
    /// How many messages it holds at most.
    pub capacity: u64,
    /// The largest message, in encoded bytes.
    pub max_message_bytes: usize,
    /// Whether it keeps task accounting (`JoinableQueue`).
    pub joinable: bool,
    /// Messages in it now (Python's `qsize`).
    pub len: u64,
    /// Producers ([`Sender`]s) attached now whose process runs.
    pub producers: usize,
    /// Consumers ([`Receiver`]s) attached now whose process runs.
    pub consumers: usize,
    /// Messages lost with consumers that died or closed before marking them
    /// done (joinable queues; see [`Queue::lost`]).
    pub lost: u64,
    /// The process holding the producers' lock now (putting), if any; it
    /// may have died (the next producer takes the lock over).
    pub producer_lock: Option<pid::Identity>,
    /// The process holding the consumers' lock now (getting), if any.
    pub consumer_lock: Option<pid::Identity>,
}

/// Reads the state of the named queue `name` without knowing its message
/// type: for tools (`procsync inspect`). Reads a private copy of the
/// queue's file ([`shm::inventory::Snapshot`]), never a mapping, so a file
/// shrunk meanwhile is an error, not a SIGBUS; it attaches no endpoint and
/// takes no lock, so it changes nothing and never waits for a stopped
/// process. Words that contradict each other (more messages than the
/// capacity, the head past the tail) are [`QueueError::Corrupt`] (after
/// two more copies, in case one was read while a put and a get ran).
///
/// ```
/// use queue::Queue;
///
/// let name = format!("doc-queue-inspect-{}", std::process::id());
/// let q = Queue::<String>::builder().capacity(4).create(&name)?;
/// let tx = q.sender()?;
/// tx.put("hello".to_string()).unwrap();
/// let state = queue::inspect(&name)?;
/// assert_eq!(state.message_type, "String");
/// assert_eq!((state.len, state.capacity, state.producers, state.consumers), (1, 4, 1, 0));
/// assert_eq!(state.producer_lock, None);
/// # Ok::<(), queue::QueueError>(())
/// ```
///
/// # Errors
///
/// What [`Queue::open`] fails with, but for a message type mismatch;
/// [`QueueError::Corrupt`]; `shm::Error::Truncated` for a file shorter
/// than its header says (shrunk while it was read, say).
pub fn inspect(name: impl AsRef<std::ffi::OsStr>) -> Result<QueueState, QueueError> {
    let mut looks = 0;
    loop {
        let snapshot = shm::inventory::Snapshot::read(name.as_ref())?;
        match state_of(&snapshot) {
            Err(QueueError::Corrupt { .. }) if looks < 2 => looks += 1,
            done => return done,
        }
    }
}

/// [`inspect`] of one copy.
fn state_of(snapshot: &shm::inventory::Snapshot) -> Result<QueueState, QueueError> {
    let name = snapshot.name();
    let lines = snapshot.slice::<Line>()?;
    let ring = Ring::new(lines).map_err(|invalid| invalid_queue(invalid, name))?;
    let len = ring.checked_len().map_err(|reason| QueueError::Corrupt {
        name: name.to_string(),
        reason,
    })?;
    let (producer_lock, consumer_lock) = ring.lock_holders();
    Ok(QueueState {
        message_type: ring.type_name(),
        capacity: ring.capacity(),
        max_message_bytes: ring.max_bytes(),
        joinable: ring.joinable(),
        len,
        producers: ring.live_endpoints(Role::Producer),
        consumers: ring.live_endpoints(Role::Consumer),
        lost: ring.lost_now(),
        producer_lock,
        consumer_lock,
    })
}

/// What [`Queue::join`] found.
///
/// ```
/// use queue::Queue;
///
/// let q = Queue::<String>::builder().capacity(2).joinable().anonymous()?;
/// let (tx, rx) = (q.sender()?, q.receiver()?);
/// tx.put("wash".into()).unwrap();
/// tx.put("dry".into()).unwrap();
/// rx.get().unwrap();
/// rx.task_done()?;
/// rx.get().unwrap();
/// drop(rx); // closed with one task not done: lost, not waited for
/// assert_eq!(q.join()?.lost, 1);
/// # Ok::<(), queue::QueueError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinReport {
    /// Messages taken by consumers that died or closed before marking
    /// them done, in the queue's whole life.
    pub lost: u64,
}

/// `timeout` from now, or `None` (no limit) when that is beyond the
/// clock's range (`Duration::MAX`).
fn deadline_after(timeout: Duration) -> Option<Instant> {
    shm::sync::now().checked_add(timeout)
}

thread_local! {
    /// One encoding buffer per thread, reused by every put and get.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's buffer (or a fresh one, if `f` calls
/// itself through a `Serialize` impl that puts).
fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => f(&mut buffer),
        Err(_) => f(&mut Vec::new()),
    })
}

/// The row a `Sender` or `Receiver` stands on, and the process that row
/// names. A handle is used from the process that made it, or moved (or
/// copied by `fork`) into another: its first use there moves the row to
/// the new process (the row names whoever uses the handle), so the queue
/// counts the endpoint as long as the process that uses it lives.
///
/// Threads of one process may share the handle: one of them moves the row
/// (`rebinding` names the process it does it for) while the others wait
/// for it, so that the handle ends on exactly one row (review 5).
#[derive(Debug)]
struct Endpoint<'q, T> {
    queue: &'q Queue<T>,
    role: Role,
    row: AtomicU64,
    /// The process `row` names; stored after `row` (Release), so a thread
    /// that sees itself here (Acquire) sees the row that goes with it.
    owner: AtomicU64,
    /// The process one of whose threads moves the row to it (0: none yet).
    /// A value naming another process is stale (copied by `fork`).
    rebinding: AtomicU64,
}

impl<'q, T> Endpoint<'q, T> {
    fn attach(queue: &'q Queue<T>, role: Role) -> Result<Endpoint<'q, T>, QueueError> {
        let row = queue
            .ring()
            .claim_row(role)
            .ok_or(QueueError::TooManyEndpoints { max: MAX_ENDPOINTS })?;
        Ok(Endpoint {
            queue,
            role,
            row: AtomicU64::new(row as u64),
            owner: AtomicU64::new(pid::current_identity().to_bits()),
            rebinding: AtomicU64::new(0),
        })
    }

    /// The row, moved to this process if the handle was last used in
    /// another. `None` if no row is left for it.
    #[inline]
    fn row(&self, ring: &Ring<'_>) -> Option<usize> {
        let me = pid::current_identity().to_bits();
        if self.owner.load(Acquire) == me {
            return Some(self.row.load(Relaxed) as usize);
        }
        self.rebind(ring, me)
    }

    #[cold]
    fn rebind(&self, ring: &Ring<'_>, me: u64) -> Option<usize> {
        let mut spin = Spin::snoozing();
        loop {
            if self.owner.load(Acquire) == me {
                // Another thread of this process moved it.
                return Some(self.row.load(Relaxed) as usize);
            }
            let busy = self.rebinding.load(Acquire);
            if busy == me {
                // Another thread of this process is moving it: wait.
                if !spin.spin_once() {
                    std::thread::yield_now();
                }
                continue;
            }
            if self
                .rebinding
                .compare_exchange(busy, me, Acquire, Relaxed)
                .is_ok()
            {
                break;
            }
        }
        // Only this thread of this process gets here (until it gives up).
        let from = self.owner.load(Relaxed);
        let row = self.row.load(Relaxed) as usize;
        let row = if from == me || ring.adopt_row(row, from, me) {
            row
        } else {
            // Freed or reclaimed since (its last process died and another
            // took the row): attach afresh.
            match ring.claim_row(self.role) {
                Some(row) => row,
                None => {
                    // Let the next call (of any thread) try again.
                    self.rebinding.store(0, Release);
                    return None;
                }
            }
        };
        self.row.store(row as u64, Relaxed);
        self.owner.store(me, Release);
        Some(row)
    }
}

impl<T> Drop for Endpoint<'_, T> {
    /// Detaches, if this process is the one the row names: a copy left in
    /// another process (by `fork`) does nothing.
    fn drop(&mut self) {
        let me = pid::current_identity().to_bits();
        if self.owner.load(Relaxed) == me {
            self.queue
                .ring()
                .release_row(self.row.load(Relaxed) as usize, me);
        }
    }
}

/// A producer of a [`Queue`]: Python's `Queue.put`.
///
/// The queue counts a sender from [`Queue::sender`] until it is dropped
/// or the process that last used it dies: when every sender is gone, an
/// empty queue's `get` returns [`GetError::Disconnected`].
///
/// A sender moved (or copied by `fork`) into another process belongs to
/// that process from its first `put` there. Until then it still counts for
/// the process it came from (`daemon::Process` never drops, in the parent,
/// what it moved into a child): a child killed before its first `put`
/// leaves its sender counted until the parent exits too. `clone` attaches
/// a new sender; use one per process.
///
/// A sender's row names the *last* process that used it: a child that
/// uses a sender it only borrows (a copy the parent goes on using) takes
/// the row from the parent, and once that child exits the queue counts the
/// parent's sender as gone until the parent puts again. Give a child its
/// own sender (`tx.clone()` moved in), never a borrowed one.
///
/// `Sync`: threads of one process may share a sender (they take turns on
/// the producers' lock).
///
/// ```
/// use queue::{PutErrorKind, Queue};
///
/// let q = Queue::<(u32, String)>::new(2)?;
/// let tx = q.sender()?;
/// tx.put((1, "one".into())).unwrap();
/// tx.put_timeout((2, "two".into()), std::time::Duration::from_millis(10)).unwrap();
/// let full = tx.try_put((3, "three".into())).unwrap_err();
/// assert_eq!(full.kind(), &PutErrorKind::Full);
/// assert_eq!(q.len(), 2);
/// # Ok::<(), queue::QueueError>(())
/// ```
#[derive(Debug)]
pub struct Sender<'q, T> {
    endpoint: Endpoint<'q, T>,
    require_consumers: bool,
}

impl<'q, T: Serialize> Sender<'q, T> {
    /// Puts `value`, waiting while the queue is full.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::Forever)
    }

    /// Puts `value`, waiting at most `timeout` while the queue is full (or
    /// other producers hold it); never returns early.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        match deadline_after(timeout) {
            Some(deadline) => self.put_until(value, Wait::Until(deadline)),
            None => self.put(value),
        }
    }

    /// Puts `value` if there is room now.
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::No)
    }

    /// With `true`, a `put` that finds the queue full fails with
    /// [`PutErrorKind::Disconnected`] when every consumer that attached has
    /// closed or died, instead of waiting for room nobody will make. (A
    /// queue that has room takes the message either way: a consumer may
    /// attach later.)
    pub fn require_consumers(&mut self, required: bool) {
        self.require_consumers = required;
    }

    fn put_until(&self, value: T, wait: Wait) -> Result<(), PutError<T>> {
        let fail = |value, kind| Err(PutError { value, kind });
        let ring = self.endpoint.queue.ring();
        if self.endpoint.row(&ring).is_none() {
            return fail(value, PutErrorKind::TooManyEndpoints);
        }
        with_buffer(|buffer| {
            buffer.clear();
            if let Err(e) = postcard::to_io(&value, &mut *buffer) {
                return fail(value, PutErrorKind::Encode(e.to_string()));
            }
            if buffer.len() > ring.max_bytes() {
                let (size, max) = (buffer.len(), ring.max_bytes());
                return fail(value, PutErrorKind::TooLarge { size, max });
            }
            let mut recheck = Recheck::new();
            // Made at the first wait: reading the clock costs tens of
            // nanoseconds, as much as the rest of an uncontended call.
            let mut spin: Option<Spin> = None;
            let mut consumers = Liveness::new(Role::Consumer);
            loop {
                match ring.try_put(buffer, wait.lock_deadline()) {
                    Ok(()) => return Ok(()),
                    // Other producers held the lock past the deadline.
                    Err(None) if matches!(wait, Wait::No) => {
                        return fail(value, PutErrorKind::Full)
                    }
                    Err(None) => return fail(value, PutErrorKind::TimedOut),
                    Err(Some(PutFailure::Full)) => {}
                }
                let gone =
                    |consumers: &mut Liveness| self.require_consumers && consumers.gone(&ring);
                match wait {
                    Wait::No if gone(&mut consumers) => {
                        return fail(value, PutErrorKind::Disconnected)
                    }
                    Wait::No => return fail(value, PutErrorKind::Full),
                    Wait::Until(deadline) if shm::sync::now() >= deadline => {
                        return fail(value, PutErrorKind::TimedOut)
                    }
                    _ => {}
                }
                // Watch for room without the lock (two words, no store),
                // then judge the consumers (system calls) and sleep.
                let spin = spin.get_or_insert_with(|| {
                    Spin::timed_backing_off(SPIN_BEFORE_SLEEP, wait.deadline())
                });
                if spin.spin_while(|| ring.is_full()) {
                    continue;
                }
                // Read before judging: a close after it bumps the count
                // and the sleep below returns at once (the ring itself is
                // looked at again after the sleeper's flag is set).
                let seen = ring.space_events();
                if gone(&mut consumers) {
                    return fail(value, PutErrorKind::Disconnected);
                }
                ring.wait_for_space(seen, wait.deadline(), &mut recheck);
            }
        })
    }
}

impl<T> Clone for Sender<'_, T> {
    /// Attaches another sender (a new row).
    ///
    /// # Panics
    ///
    /// When every endpoint row is held by a live process.
    fn clone(&self) -> Self {
        let mut sender = self
            .endpoint
            .queue
            .sender()
            .expect("an endpoint row for the cloned sender");
        sender.require_consumers = self.require_consumers;
        sender
    }
}

/// A consumer of a [`Queue`]: Python's `Queue.get` (and on a joinable
/// queue, `task_done`).
///
/// Attached and moved between processes as a [`Sender`] is. On a joinable
/// queue the messages a receiver took and has not marked done travel with
/// it; dropping it (or its process dying) counts them as lost.
///
/// ```
/// use queue::{GetError, Queue};
/// use std::time::Duration;
///
/// let q = Queue::<u64>::builder().capacity(4).joinable().anonymous()?;
/// let rx = q.receiver()?;
/// assert_eq!(rx.try_get(), Err(GetError::Empty));
/// q.sender()?.put(7).unwrap();
/// assert_eq!(rx.get_timeout(Duration::from_secs(1)), Ok(7));
/// rx.task_done()?;
/// assert_eq!(q.join()?.lost, 0);
/// # Ok::<(), queue::QueueError>(())
/// ```
#[derive(Debug)]
pub struct Receiver<'q, T> {
    endpoint: Endpoint<'q, T>,
}

impl<'q, T: DeserializeOwned> Receiver<'q, T> {
    /// Takes the oldest message, waiting while the queue is empty; fails
    /// with [`GetError::Disconnected`] once it is empty and every producer
    /// has closed or died.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(Wait::Forever)
    }

    /// [`get`](Receiver::get), waiting at most `timeout`; never returns
    /// early.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        match deadline_after(timeout) {
            Some(deadline) => self.get_until(Wait::Until(deadline)),
            None => self.get(),
        }
    }

    /// Takes the oldest message if there is one now.
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get_until(Wait::No)
    }

    /// The messages, as they come, until the queue is empty and every
    /// producer is gone (or an error other than that).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.get().ok())
    }

    fn get_until(&self, wait: Wait) -> Result<T, GetError> {
        let ring = self.endpoint.queue.ring();
        let row = self.endpoint.row(&ring).ok_or(GetError::TooManyEndpoints)?;
        with_buffer(|buffer| {
            let mut recheck = Recheck::new();
            // Made at the first wait: reading the clock costs tens of
            // nanoseconds, as much as the rest of an uncontended call.
            let mut spin: Option<Spin> = None;
            let mut producers = Liveness::new(Role::Producer);
            loop {
                match ring.try_get(row, buffer, wait.lock_deadline()) {
                    Ok(()) => {
                        return postcard::from_bytes(buffer).map_err(|e| GetError::Decode {
                            bytes: buffer.clone(),
                            message: e.to_string(),
                        })
                    }
                    // Other consumers held the lock past the deadline.
                    Err(None) if matches!(wait, Wait::No) => return Err(GetError::Empty),
                    Err(None) => return Err(GetError::TimedOut),
                    Err(Some(GetFailure::Corrupt(length))) => {
                        return Err(GetError::Corrupt { length })
                    }
                    Err(Some(GetFailure::Empty)) => {}
                }
                // Empty, and nobody left to put: say so, unless a message
                // came in the meantime (its producer may have closed right
                // after committing it).
                let gone = |producers: &mut Liveness| producers.gone(&ring) && ring.len() == 0;
                match wait {
                    Wait::No if gone(&mut producers) => return Err(GetError::Disconnected),
                    Wait::No => return Err(GetError::Empty),
                    Wait::Until(deadline) if shm::sync::now() >= deadline => {
                        return Err(GetError::TimedOut)
                    }
                    _ => {}
                }
                // Watch for a message without the lock (two words, no
                // store), then judge the producers (system calls) and
                // sleep.
                let spin = spin.get_or_insert_with(|| {
                    Spin::timed_backing_off(SPIN_BEFORE_SLEEP, wait.deadline())
                });
                if spin.spin_while(|| ring.len() == 0) {
                    continue;
                }
                // Read before judging: a close after it bumps the count
                // and the sleep below returns at once (the ring itself is
                // looked at again after the sleeper's flag is set).
                let seen = ring.data_events();
                if gone(&mut producers) {
                    return Err(GetError::Disconnected);
                }
                ring.wait_for_data(seen, wait.deadline(), &mut recheck);
            }
        })
    }
}

impl<T> Receiver<'_, T> {
    /// Whether a `get` would return at once: a message is there, or the
    /// queue is empty and every producer is gone.
    pub fn is_ready(&self) -> bool {
        let ring = self.endpoint.queue.ring();
        ring.len() > 0 || ring.disconnected(Role::Producer)
    }

    /// Marks one message this receiver took as done (Python's
    /// `JoinableQueue.task_done`). Fails on a queue without task
    /// accounting, and when every message it took is already done.
    pub fn task_done(&self) -> Result<(), QueueError> {
        let ring = self.endpoint.queue.ring();
        if !ring.joinable() {
            return Err(QueueError::NotJoinable);
        }
        let row = self
            .endpoint
            .row(&ring)
            .ok_or(QueueError::TooManyEndpoints { max: MAX_ENDPOINTS })?;
        if ring.task_done(row) {
            Ok(())
        } else {
            Err(QueueError::TaskDoneTooManyTimes)
        }
    }

    /// Messages this receiver took and has not marked done (0 on a queue
    /// without task accounting).
    pub fn outstanding(&self) -> u64 {
        let ring = self.endpoint.queue.ring();
        match self.endpoint.row(&ring) {
            Some(row) if ring.joinable() => ring.outstanding(row),
            _ => 0,
        }
    }
}

impl<T> Clone for Receiver<'_, T> {
    /// Attaches another receiver (a new row, with nothing taken).
    ///
    /// # Panics
    ///
    /// When every endpoint row is held by a live process.
    fn clone(&self) -> Self {
        self.endpoint
            .queue
            .receiver()
            .expect("an endpoint row for the cloned receiver")
    }
}

/// How long a put or get watches the ring (reading two words, no lock, no
/// store) before it sleeps, as `Event`'s waiter does: a message (or room)
/// that comes within this time is seen in a cache-line transfer instead of
/// a futex wake-up (tens of microseconds on a VM).
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// When a waiter judges whether the other side is gone (every row's process
/// looked at: system calls): only when it is about to sleep (or a `try_`
/// call found nothing), then again whenever an endpoint attached or closed
/// since, and otherwise at most every half re-check interval (a death is
/// noticed on that schedule).
#[derive(Debug)]
struct Liveness {
    side: Role,
    judged_at: Option<Instant>,
    changes: u64,
    gone: bool,
}

impl Liveness {
    fn new(side: Role) -> Liveness {
        Liveness {
            side,
            judged_at: None,
            changes: 0,
            gone: false,
        }
    }

    /// Whether every endpoint of the other side that ever attached has
    /// closed or died, judged again only when due.
    fn gone(&mut self, ring: &Ring<'_>) -> bool {
        let now = shm::sync::now();
        let changes = ring.endpoint_changes();
        let due = match self.judged_at {
            None => true,
            Some(at) => changes != self.changes || now >= at + shm::futex::RECHECK_AT_MOST / 2,
        };
        if due {
            self.judged_at = Some(now);
            self.changes = changes;
            self.gone = ring.disconnected(self.side);
        }
        self.gone
    }
}

/// How long a put or get may wait.
#[derive(Clone, Copy, Debug)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

impl Wait {
    /// The deadline for sleeping.
    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        }
    }

    /// The deadline for taking a side's lock: a `try_` call waits for the
    /// other producers (or consumers) no longer than it must. Its deadline
    /// is any instant already past, taken once per process: the lock reads
    /// the clock only when contended, and a `try_` call that read it every
    /// time spent as long on that as on the rest (a pool's manager makes
    /// two such calls per task).
    fn lock_deadline(self) -> Option<Instant> {
        static PAST: OnceLock<Instant> = OnceLock::new();
        match self {
            Wait::No => Some(*PAST.get_or_init(shm::sync::now)),
            wait => wait.deadline(),
        }
    }
}
