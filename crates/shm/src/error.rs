//! [`Error`]: everything that can go wrong creating, opening or using a segment.

use std::time::Duration;

/// An error from the `shm` crate. Each variant is a failure a caller can act
/// on; its message names the segment and says what was expected and found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name cannot be used for a shared-memory segment.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Permission bits other than `0o777`'s were asked for.
    #[error(
        "invalid mode {mode:#o} for a segment: only permission bits (at most 0o777) are allowed"
    )]
    InvalidMode {
        /// The mode as given.
        mode: u32,
    },

    /// `create` found a segment of that name already there.
    #[error("segment {name:?} already exists (open it, or unlink it first)")]
    AlreadyExists {
        /// The segment's name.
        name: String,
    },

    /// `open` found no segment of that name.
    #[error("segment {name:?} does not exist")]
    NotFound {
        /// The segment's name.
        name: String,
    },

    /// The segment exists but this process may not open it (another user's,
    /// created with mode 0600).
    #[error("permission denied opening segment {name:?} (it belongs to another user or its mode forbids it)")]
    PermissionDenied {
        /// The segment's name.
        name: String,
    },

    /// The name exists but was not made by procsync, or was damaged.
    #[error("segment {name:?} is not a procsync segment: {reason}")]
    Foreign {
        /// The segment's name.
        name: String,
        /// What gave it away.
        reason: String,
    },

    /// The segment was made by an incompatible version of procsync.
    #[error("segment {name:?} has layout version {found}, this procsync reads version {expected}")]
    LayoutVersion {
        /// The segment's name.
        name: String,
        /// The version in the segment.
        found: u32,
        /// The version this build writes and reads.
        expected: u32,
    },

    /// The segment was created in another pid namespace: its primitives
    /// record holders by pid, and a pid from there names another process
    /// here (a live holder would look dead), so it is not opened.
    #[error(
        "segment {name:?} was created in another pid namespace (pid namespace {found}, this \
         process is in {ours}); procsync primitives work only between processes of one pid \
         namespace"
    )]
    OtherPidNamespace {
        /// The segment's name.
        name: String,
        /// The creator's pid namespace (inode of `/proc/PID/ns/pid`).
        found: u64,
        /// This process's pid namespace.
        ours: u64,
    },

    /// The segment holds a different type (or kind of segment) than asked
    /// for. Types are compared by layout (see [`crate::layout`]), not by
    /// name or module path.
    #[error("segment {name:?} holds {found}, but {expected} was asked for: {difference}")]
    TypeMismatch {
        /// The segment's name.
        name: String,
        /// What the caller asked for: kind, type, size and alignment.
        expected: String,
        /// What the segment's header says it holds.
        found: String,
        /// The first difference, in words: for example "field `count`:
        /// `u32` here, `u64` in the segment", or "field 2 is `b` here, `c`
        /// in the segment".
        difference: String,
    },

    /// The segment's creator did not finish initialising it in time.
    #[error(
        "segment {name:?} was not initialised within {waited:?} (creator pid {}, {})",
        creator_pid.map_or("not recorded".to_string(), |p| p.to_string()),
        if *creator_alive { "still running" } else { "no longer running: unlink the name and create it again" }
    )]
    Uninitialized {
        /// The segment's name.
        name: String,
        /// The pid of the process that created it (`None` if not yet
        /// recorded).
        creator_pid: Option<crate::pid::Pid>,
        /// Whether that process still runs.
        creator_alive: bool,
        /// How long `open` waited.
        waited: Duration,
    },

    /// The file behind the segment is smaller than its header says: another
    /// process truncated it.
    #[error("segment {name:?} was truncated to {actual} bytes; its header says {expected}")]
    Truncated {
        /// The segment's name.
        name: String,
        /// The size the header promises.
        expected: u64,
        /// The size the file has.
        actual: u64,
    },

    /// A size or length that cannot be mapped (zero bytes, or too large).
    #[error("invalid size for {what}: {reason}")]
    InvalidSize {
        /// What was being sized.
        what: String,
        /// Why the size was refused.
        reason: String,
    },

    /// `remove` refused: processes map the segment or hold it open.
    #[error(
        "segment {name:?} is in use by {} (pids {}); stop them first, or remove it anyway \
         (they keep their mappings)",
        if users.len() == 1 { "1 process".to_string() } else { format!("{} processes", users.len()) },
        users.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    )]
    InUse {
        /// The segment's name.
        name: String,
        /// The processes that map it or hold it open.
        users: Vec<crate::pid::Pid>,
    },
    /// A byte range outside a [`Segment`](crate::Segment).
    #[error("byte range {offset}..{offset}+{len} is outside segment {segment} of {size} bytes")]
    OutOfBounds {
        /// The segment (its name, or "anonymous").
        segment: String,
        /// Start of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// The segment's size.
        size: usize,
    },

    /// A system call failed.
    #[error("{op} failed for segment {segment}: {source}")]
    Os {
        /// The operation (`shm_open`, `mmap`, ...).
        op: &'static str,
        /// The segment (its name, or "anonymous").
        segment: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the `shm` [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
