//! [`Identity`]: one process for the whole boot. Only the value type lives
//! here (how it is stored and compared); how this process learns its own and
//! whether one still runs are `crate::pid`'s (and, under loom, the model's),
//! so that the model can use the type without importing `pid`.

/// One process for the whole boot: its pid and a start tag that no later
/// process with the same pid shares.
///
/// Stored in shared memory as one `u64` ([`Identity::to_bits`]): the pid in
/// the low 32 bits (Linux pids are below 2^22, so bits 22..32 stay free for
/// the flags of a lock word), the start tag in the high 32 bits. A lock word
/// that holds a whole identity and is changed only by 64-bit
/// compare-and-swap cannot be fooled by pid reuse: a waiter that judged the
/// holder dead swaps from exactly that identity, and a new process with the
/// same pid writes a different one.
///
/// Where the start tag comes from:
///
/// - On kernels with pidfs (Linux 6.9 and later), the inode number of a
///   pidfd. The kernel gives every process a new one from a 64-bit counter
///   that is never reset while the machine runs; the tag is its low 32 bits,
///   so two processes with one pid share a tag only if 2^32 processes were
///   started between them.
/// - On older kernels, the process's start time in clock ticks since boot
///   (`/proc/PID/stat`, field 22). Two processes with one pid then share a
///   tag only if the pid was reused within one tick (10 ms), which the
///   kernel's cyclic pid allocation rules out short of starting `pid_max`
///   processes in that tick (or forcing the pid as root, through
///   `ns_last_pid` or `clone3`'s `set_tid`).
///
/// # Example
///
/// ```
/// use shm::pid::{self, Identity};
///
/// let me = pid::current_identity();
/// assert_eq!(me.pid(), std::process::id());
/// assert!(me.is_running());
/// assert_eq!(Identity::from_bits(me.to_bits()), Some(me));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    // The pid in the low half, the start tag in the high half: the form the
    // lock words store, so comparing and storing an identity is one 64-bit
    // operation on the uncontended paths. The pid half is never 0.
    bits: u64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("pid", &self.pid())
            .field("start_tag", &self.start_tag())
            .finish()
    }
}

impl Identity {
    /// The process id part.
    pub fn pid(self) -> Pid {
        Pid::from_u32(self.bits as u32).expect("an identity's pid is not 0")
    }

    /// The start tag part (see [`Identity`]).
    pub fn start_tag(self) -> u32 {
        (self.bits >> 32) as u32
    }

    /// The identity as one word for shared memory; never 0.
    pub fn to_bits(self) -> u64 {
        self.bits
    }

    /// The identity of process `pid` with `start_tag`; `None` for pid 0.
    pub fn from_parts(pid: u32, start_tag: u32) -> Option<Identity> {
        Identity::from_bits(u64::from(pid) | u64::from(start_tag) << 32)
    }

    /// The identity stored by [`to_bits`](Identity::to_bits); `None` for a
    /// word with no pid (0, a free slot) or a pid no Linux process can have
    /// (at or above `PID_MAX_LIMIT`, 2^22): the bits above it are the lock
    /// words' flags, which an identity must never set.
    pub fn from_bits(bits: u64) -> Option<Identity> {
        let pid = bits as u32;
        (pid != 0 && pid < PID_MAX_LIMIT).then_some(Identity { bits })
    }
}

/// Linux's `PID_MAX_LIMIT`: no pid reaches it (`pid_max` is at most this).
const PID_MAX_LIMIT: u32 = 1 << 22;

/// A process id, as every procsync crate takes and returns it: positive,
/// and on Linux below 2^22 (`PID_MAX_LIMIT`). One type instead of `u32`
/// here and `i32` (`pid_t`) there; [`Pid::as_raw`] is the `pid_t` for a
/// system call, [`Pid::get`] the number.
///
/// A pid names a process only while that process (or its zombie) exists:
/// pids are reused once it is reaped (see [`Identity`] for what names a
/// process for the whole boot).
///
/// # Example
///
/// ```
/// use shm::pid::{self, Pid};
///
/// let me = pid::current();
/// assert_eq!(me.get(), std::process::id());
/// assert_eq!(Pid::from_raw(me.as_raw()), Some(me));
/// assert_eq!(Pid::from_raw(0), None); // no process has pid 0
/// assert_eq!(me.to_string(), std::process::id().to_string());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Pid(std::num::NonZeroU32);

impl Pid {
    /// The pid `raw` (a `pid_t`); `None` unless it is positive.
    pub const fn from_raw(raw: i32) -> Option<Pid> {
        if raw > 0 {
            Pid::from_u32(raw as u32)
        } else {
            None
        }
    }

    /// The pid numbered `n`; `None` for 0 or a number above `i32::MAX`
    /// (no `pid_t` has it).
    pub const fn from_u32(n: u32) -> Option<Pid> {
        if n > i32::MAX as u32 {
            return None;
        }
        match std::num::NonZeroU32::new(n) {
            Some(n) => Some(Pid(n)),
            None => None,
        }
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The `pid_t` a system call takes.
    pub const fn as_raw(self) -> i32 {
        self.0.get() as i32
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Pid> for u32 {
    fn from(pid: Pid) -> u32 {
        pid.get()
    }
}

impl From<Pid> for i32 {
    fn from(pid: Pid) -> i32 {
        pid.as_raw()
    }
}

impl PartialEq<u32> for Pid {
    /// A pid equals its number: `pid == std::process::id()`.
    fn eq(&self, other: &u32) -> bool {
        self.get() == *other
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Pid {
    /// As its number.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Pid {
    /// From its number; 0 and numbers above `i32::MAX` are refused.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pid, D::Error> {
        let n = <u32 as serde::Deserialize>::deserialize(d)?;
        Pid::from_u32(n).ok_or_else(|| serde::de::Error::custom(format!("{n} is not a pid")))
    }
}
