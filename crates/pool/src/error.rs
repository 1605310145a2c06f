//! [`TaskError`] (what became of one task) and [`PoolError`] (a pool that
//! could not be made or joined).

/// Why a task gave no value.
///
/// ```
/// use pool::{Pool, TaskError};
///
/// fn checked_half(x: u32) -> u32 {
///     assert!(x % 2 == 0, "{x} is odd");
///     x / 2
/// }
///
/// let pool = Pool::new(1)?;
/// let results = pool.map(checked_half, [4, 7]);
/// assert_eq!(results[0], Ok(2));
/// assert_eq!(results[1], Err(TaskError::Panicked("7 is odd".into())));
/// # Ok::<(), pool::PoolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The worker running the task died (killed by a signal, or exited)
    /// before it finished, and no retry was left
    /// ([`PoolBuilder::retries`](crate::PoolBuilder::retries)). A
    /// replacement worker was started; the other tasks were not affected.
    #[error("the worker running this task died ({})", died(*signal, *exit_code))]
    WorkerDied {
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
    },
    /// The function panicked, with this message; the worker goes on. A
    /// message longer than an item may be (the pool's
    /// [`max_message_bytes`](crate::PoolBuilder::max_message_bytes) less
    /// 74 bytes) is cut to fit, on a character boundary, and ends with
    /// `"… (cut)"`.
    #[error("the task panicked: {0}")]
    Panicked(String),
    /// The task ran longer than the pool's
    /// [`timeout`](crate::PoolBuilder::timeout): its worker was killed and
    /// replaced.
    #[error("the task ran past the pool's timeout; its worker was killed")]
    TimedOut,
    /// The argument or the result is larger than the pool's messages hold
    /// ([`PoolBuilder::max_message_bytes`](crate::PoolBuilder::max_message_bytes)).
    #[error(
        "the task's argument or result takes {size} bytes encoded; the pool's messages hold {max}"
    )]
    TooLarge {
        /// Bytes it takes, encoded.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The argument or the result could not be encoded or decoded; also
    /// every task of a type postcard cannot carry (`#[serde(untagged)]`,
    /// `#[serde(flatten)]`, `serde_json::Value`, ...: see the crate's
    /// documentation), whose message then says so.
    #[error("the task's argument or result could not be encoded or decoded: {0}")]
    Serde(String),
    /// No worker could get ready: 3 workers in a row died before finishing the pool's
    /// [`initializer`](crate::PoolBuilder::initializer) (it panicked, say),
    /// and none is ready. Every task the pool holds then fails so, and so
    /// does every task submitted while it lasts, instead of waiting for
    /// ever (Python's pool hangs there). Workers are still forked, with a
    /// back-off; once one finishes the initializer, tasks run again. The
    /// message says how the last one died (its panic message).
    #[error("the pool's workers could not start: {0}")]
    InitializerFailed(String),
    /// The pool was closed or terminated before the task was submitted.
    #[error("the pool is closed: it takes no new tasks")]
    PoolClosed,
    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// The pool was used in a process that is not its owner: a child
    /// forked from the owner has a copy of the handle, but the pool's
    /// manager thread and workers are the owner's, and nothing in the child
    /// would ever run the task. Make a pool in the child instead.
    #[error(
        "this pool belongs to process {owner}; a forked child cannot use its copy (make a pool in the child)"
    )]
    NotOwner {
        /// The pool's owner.
        owner: u32,
    },
}

pub(crate) fn died(signal: Option<i32>, exit_code: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(signal), _) => format!("signal {signal}"),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "how is unknown".into(),
    }
}

/// A pool could not be made, or [`Pool::join`](crate::Pool::join) was
/// called too early.
///
/// ```
/// use pool::{Pool, PoolError};
///
/// let pool = Pool::new(1)?;
/// assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
/// pool.close();
/// pool.join()?;
/// # Ok::<(), PoolError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A queue of the pool could not be made.
    #[error("a queue of the pool could not be made: {0}")]
    Queue(#[from] queue::QueueError),
    /// The workers' shared records could not be made.
    #[error("the workers' shared records could not be made: {0}")]
    Shm(#[from] shm::Error),
    /// A worker could not be started.
    #[error("a worker could not be started: {0}")]
    Start(#[from] daemon::Error),
    /// The manager thread could not be started.
    #[error("the pool's manager thread could not be started: {0}")]
    Thread(#[source] std::io::Error),
    /// Zero workers, or more than [`MAX_WORKERS`](crate::MAX_WORKERS).
    #[error("a pool has 1 to {max} workers; {asked} were asked for")]
    Workers {
        /// Workers asked for.
        asked: usize,
        /// The most a pool may have.
        max: usize,
    },
    /// [`Pool::join`](crate::Pool::join) before
    /// [`close`](crate::Pool::close) or [`terminate`](crate::Pool::terminate)
    /// (Python raises `ValueError` there).
    #[error("join needs the pool closed or terminated first")]
    StillRunning,
    /// The manager thread panicked: its workers died with it.
    #[error("the pool's manager thread panicked: {0}")]
    ManagerPanicked(String),
    /// [`Pool::join`](crate::Pool::join) in a process that is not the
    /// pool's owner (a forked child's copy of the handle): only the owner
    /// can wait for its workers.
    #[error("this pool belongs to process {owner}; a forked child cannot join it")]
    NotOwner {
        /// The pool's owner.
        owner: u32,
    },
}
