//! The queue's errors: one for making and opening queues and endpoints,
//! one for `put` (which hands the value back), one for `get`.

use std::fmt;

/// Why a queue or an endpoint could not be made, opened or used for a
/// task call.
///
/// ```
/// use queue::{Queue, QueueError};
///
/// let name = format!("doc-queue-error-{}", std::process::id());
/// let _numbers = Queue::<u64>::builder().capacity(4).create(&name)?;
/// match Queue::<String>::open(&name) {
///     Err(QueueError::TypeMismatch { expected, found, .. }) => {
///         assert_eq!((expected.as_str(), found.as_str()), ("String", "u64"));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), QueueError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The shared memory could not be made, mapped or opened.
    #[error(transparent)]
    Shm(#[from] shm::Error),
    /// A capacity of zero, or one whose memory does not fit this machine's
    /// address space.
    #[error("a queue of {capacity} messages of up to {max_message_bytes} bytes cannot be made: the capacity must be at least 1 and the whole ring must fit in memory")]
    InvalidSize {
        /// Messages asked for.
        capacity: usize,
        /// Bytes per message asked for.
        max_message_bytes: usize,
    },
    /// The named segment exists but is not a procsync queue.
    #[error("segment {name:?} is not a procsync queue (its first word is not the queue's magic number, or its header does not describe its size)")]
    NotAQueue {
        /// The segment's name.
        name: String,
    },
    /// The named queue's words contradict each other (more messages than
    /// its capacity, its head past its tail...): a file written by
    /// something that does not follow the queue's protocol ([`inspect`]).
    ///
    /// [`inspect`]: crate::inspect
    #[error("queue {name:?} is corrupt: {reason}")]
    Corrupt {
        /// The segment's name.
        name: String,
        /// Which words contradict each other, and how.
        reason: String,
    },
    /// The named queue was made by a procsync of another queue protocol.
    #[error("queue {name:?} uses queue protocol version {found}; this program speaks version {expected}")]
    Version {
        /// The segment's name.
        name: String,
        /// The version found.
        found: u64,
        /// The version this program speaks.
        expected: u64,
    },
    /// The named queue carries another message type.
    #[error("queue {name:?} carries messages of type {found:?}; this program opened it for {expected:?}")]
    TypeMismatch {
        /// The segment's name.
        name: String,
        /// The type this program asked for.
        expected: String,
        /// The type its creator recorded.
        found: String,
    },
    /// Every endpoint row is held by a live process.
    #[error("every one of the queue's {max} endpoint rows is held by a live process: drop some Senders or Receivers")]
    TooManyEndpoints {
        /// The number of rows.
        max: usize,
    },
    /// `task_done` or `join` on a queue made without task accounting.
    #[error("task_done and join need a joinable queue (QueueBuilder::joinable)")]
    NotJoinable,
    /// `task_done` called more times than messages this receiver took.
    #[error("task_done called more times than this receiver took messages")]
    TaskDoneTooManyTimes,
    /// `join_timeout` ran out of time.
    #[error("timed out waiting for every message to be marked done")]
    TimedOut,
}

/// Why a `put` did not put: the value comes back in the error (see
/// [`PutError::into_inner`]).
///
/// ```
/// use queue::{PutErrorKind, Queue};
///
/// let q = Queue::<u32>::new(1)?;
/// let tx = q.sender()?;
/// tx.try_put(1).unwrap();
/// let err = tx.try_put(2).unwrap_err();
/// assert_eq!(err.kind(), &PutErrorKind::Full);
/// assert_eq!(err.into_inner(), 2);
/// # Ok::<(), queue::QueueError>(())
/// ```
pub struct PutError<T> {
    pub(crate) value: T,
    pub(crate) kind: PutErrorKind,
}

/// What went wrong in a `put`.
///
/// ```
/// use queue::{PutErrorKind, Queue};
///
/// let q = Queue::<Vec<u8>>::builder().capacity(1).max_message_bytes(16).anonymous()?;
/// let err = q.sender()?.put(vec![0; 100]).unwrap_err();
/// assert_eq!(err.kind(), &PutErrorKind::TooLarge { size: 101, max: 16 });
/// # Ok::<(), queue::QueueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutErrorKind {
    /// The queue was full (`try_put`), or another producer held the
    /// producers' lock at that moment (`try_put` never waits for it).
    #[error("the queue is full")]
    Full,
    /// The queue stayed full (or other producers held it) until the
    /// timeout.
    #[error("the queue stayed full until the timeout")]
    TimedOut,
    /// Consumers were required ([`Sender::require_consumers`](crate::Sender::require_consumers)),
    /// the queue is full and every consumer that attached has closed or died.
    #[error("the queue is full and no consumer is left to empty it")]
    Disconnected,
    /// The encoded message is longer than the queue's slots.
    #[error("the message takes {size} bytes encoded; this queue's messages hold at most {max} (QueueBuilder::max_message_bytes)")]
    TooLarge {
        /// Bytes the message takes, encoded.
        size: usize,
        /// The queue's limit.
        max: usize,
    },
    /// The value's `Serialize` failed.
    #[error("the message could not be encoded: {0}")]
    Encode(String),
    /// The sender was moved into a process where it could not attach
    /// (see [`QueueError::TooManyEndpoints`]).
    #[error(
        "this sender could not attach to the queue in this process: every endpoint row is held"
    )]
    TooManyEndpoints,
}

impl<T> PutError<T> {
    /// What went wrong.
    pub fn kind(&self) -> &PutErrorKind {
        &self.kind
    }

    /// The value that was not put.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for PutError<T> {
    /// The kind only: `T` need not be `Debug` (as std's `SendError`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl<T> std::error::Error for PutError<T> {}

/// Why a `get` returned no message.
///
/// ```
/// use queue::{GetError, Queue};
///
/// let q = Queue::<u8>::new(1)?;
/// let rx = q.receiver()?;
/// assert_eq!(rx.try_get(), Err(GetError::Empty)); // no producer yet: wait
/// drop(q.sender()?); // one attached, and closed
/// assert_eq!(rx.try_get(), Err(GetError::Disconnected));
/// # Ok::<(), queue::QueueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The queue was empty (`try_get`), or another consumer held the
    /// consumers' lock at that moment (`try_get` never waits for it).
    #[error("the queue is empty")]
    Empty,
    /// The queue stayed empty (or other consumers held it) until the
    /// timeout.
    #[error("the queue stayed empty until the timeout")]
    TimedOut,
    /// The queue is empty and every producer that attached has closed or
    /// died: nothing will come.
    #[error("the queue is empty and every producer has closed or died")]
    Disconnected,
    /// The message's bytes do not decode as this queue's type. The message
    /// was taken (it would fail again); its bytes are here. On a joinable
    /// queue it counts as taken by this receiver: mark it done
    /// (`Receiver::task_done`) once dealt with, or `join` waits for it.
    #[error("a message could not be decoded ({message}); its {} bytes are in the error", bytes.len())]
    Decode {
        /// The message's encoded bytes.
        bytes: Vec<u8>,
        /// The decoder's complaint.
        message: String,
    },
    /// A slot's length word exceeds the queue's limit: something that does
    /// not follow the queue's protocol wrote into its memory. The slot was
    /// skipped (on a joinable queue it is no task to mark done).
    #[error("a slot claims {length} bytes, more than this queue's messages hold: its memory was written by something other than procsync")]
    Corrupt {
        /// The length found.
        length: u64,
    },
    /// The receiver was moved into a process where it could not attach.
    #[error(
        "this receiver could not attach to the queue in this process: every endpoint row is held"
    )]
    TooManyEndpoints,
}
