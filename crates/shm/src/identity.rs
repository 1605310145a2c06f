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
    pub fn pid(self) -> u32 {
        self.bits as u32
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
    /// word with no pid (0, a free slot).
    pub fn from_bits(bits: u64) -> Option<Identity> {
        (bits as u32 != 0).then_some(Identity { bits })
    }
}
