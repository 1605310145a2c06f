//! Process ids without system calls on hot paths, and a liveness check that
//! counts zombies as dead.
//!
//! The lock and semaphore record *which process* holds them in shared memory
//! so that a waiter can tell when the holder died. Recording must not cost a
//! `getpid(2)` call on every acquisition, so [`current`] caches the pid and a
//! `pthread_atfork(3)` child handler forgets it in every forked child.
//!
//! A pid alone does not name a process for long: this machine's `pid_max`
//! is 32,768 (the kernel default), so pids wrap after that many process
//! starts, and a dead holder's pid may belong to a new, live process by the
//! time anyone looks. [`Identity`] names one process for the whole boot: its
//! pid plus a *start tag* that a new process with the same pid never shares
//! (see [`Identity`] for where the tag comes from). Primitives record
//! identities, not pids, wherever a liveness check decides who may enter.
//!
//! All processes sharing a primitive must live in one pid namespace: a pid
//! from another namespace names a different process here.
//!
//! Under `cfg(loom)`, [`current`], [`current_identity`], [`is_running`] and
//! [`Identity::is_running`] answer from the model instead (each loom thread
//! plays a process; see `crate::sync::model`).

// Under loom the real look-ups below are not called.
#![cfg_attr(loom, allow(dead_code))]

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use crate::identity::{Identity, Pid};

static CACHED_PID: AtomicU32 = AtomicU32::new(0);
static CACHED_IDENTITY: AtomicU64 = AtomicU64::new(0);
/// Whether the `pthread_atfork` handler that empties the caches in every
/// child is registered: [`NOT_REGISTERED`], [`REGISTERED`], or the pid of
/// the process whose thread is registering it. Nothing is cached before it
/// is registered: a fork before that would hand the child a cache nobody
/// empties.
static FORGET_IN_CHILDREN: AtomicU32 = AtomicU32::new(NOT_REGISTERED);
const NOT_REGISTERED: u32 = 0;
const REGISTERED: u32 = u32::MAX;

/// This process's id, from a cache after the first call.
///
/// Correct in children made by `fork(3)` (including `daemon::Process` and
/// `nix::unistd::fork`), which run the `pthread_atfork` handlers. A child
/// made by a raw `clone(2)` system call skips them and would see its
/// parent's pid; procsync never does that.
#[cfg(not(loom))]
#[inline]
pub fn current() -> Pid {
    match Pid::from_u32(CACHED_PID.load(Ordering::Relaxed)) {
        Some(pid) => pid,
        None => refresh(),
    }
}

/// The pid of the process the calling loom thread plays.
#[cfg(loom)]
pub fn current() -> Pid {
    current_identity().pid()
}

#[cold]
fn refresh() -> Pid {
    let pid = crate::sys::getpid();
    if may_cache(pid) {
        CACHED_PID.store(pid, Ordering::Relaxed);
    }
    Pid::from_u32(pid).expect("getpid returns a pid")
}

/// Registers the handler that empties the caches in every forked child, if
/// no thread of this process has yet; returns whether it is registered, so
/// that caching is safe. Never blocks: a thread that finds another one of
/// its process registering just does not cache this time. (A `Once` would
/// make it wait, and a child forked while another thread ran the `Once`
/// would wait for ever: the registering thread is not copied.) A child
/// forked in the middle of a registration finds its parent's pid in the
/// state and registers again (a second registration of the handler only
/// empties the caches twice).
fn may_cache(me: u32) -> bool {
    let mut state = FORGET_IN_CHILDREN.load(Ordering::Acquire);
    loop {
        match state {
            REGISTERED => return true,
            registrant if registrant == me => return false,
            stale_or_none => {
                match FORGET_IN_CHILDREN.compare_exchange(
                    stale_or_none,
                    me,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => state = now,
                }
            }
        }
    }
    extern "C" fn forget() {
        CACHED_PID.store(0, Ordering::Relaxed);
        CACHED_IDENTITY.store(0, Ordering::Relaxed);
    }
    // `forget` only stores to atomics, which is async-signal-safe and so
    // fine in a just-forked child.
    crate::sys::at_fork_in_child(forget);
    FORGET_IN_CHILDREN.store(REGISTERED, Ordering::Release);
    true
}

/// Whether process `pid` is still running. A zombie (exited, not yet reaped
/// by its parent) is *not* running: it holds nothing any more.
///
/// Errs towards `true`: a process that exists but cannot be inspected
/// counts as running, because declaring a live holder dead would let two
/// processes into a lock at once. If `pid` died and its number was reused
/// before the check, the answer is `true` for the newcomer: that is why
/// primitives record an [`Identity`] and ask [`Identity::is_running`].
///
/// Costs three system calls (`pidfd_open(2)`, a zero-timeout `poll(2)`, and
/// `close`): a pidfd polls readable once its process has terminated, zombie
/// or not.
#[cfg(not(loom))]
pub fn is_running(pid: Pid) -> bool {
    let pid = pid.get();
    match PidFd::open(pid) {
        None => false,
        Some(Ok(pidfd)) => !pidfd.has_terminated(),
        // Too old a kernel, or out of descriptors: ask /proc instead.
        Some(Err(_)) => exists_and_not_zombie(pid),
    }
}

/// Whether some process of the loom model with this pid runs.
#[cfg(loom)]
pub fn is_running(pid: Pid) -> bool {
    crate::sync::model::pid_is_running(pid.get())
}

/// Whether the identity stored in a shared word as `bits`
/// ([`Identity::to_bits`]; 0 for none) names a process that still runs:
/// what every primitive asks of the holder, waiter or party a word records.
pub fn is_running_bits(bits: u64) -> bool {
    Identity::from_bits(bits).is_some_and(Identity::is_running)
}

fn exists_and_not_zombie(pid: u32) -> bool {
    if !crate::sys::process_exists(pid) {
        return false;
    }
    let stat = match crate::sys::proc_stat(pid) {
        Ok(Some(stat)) => stat,
        Ok(None) => return false,
        // Cannot look: errs towards running.
        Err(_) => return true,
    };
    // The command name may contain spaces and ')': the state follows the
    // last ')'.
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|close| stat.get(close + 2));
    !matches!(state, Some(b'Z') | Some(b'X'))
}

/// `statfs(2)`'s `f_type` of the pidfs file system (Linux 6.9 and later).
const PIDFS_MAGIC: i64 = 0x5049_4446;

impl Identity {
    /// Whether this very process still runs: a process with this pid exists,
    /// is not a zombie, and has this start tag. A new process that reuses
    /// the pid is *not* this one.
    ///
    /// Errs towards `true` only where it cannot look (out of file
    /// descriptors with no `/proc`), because declaring a live holder dead
    /// would let two processes in.
    #[cfg(not(loom))]
    pub fn is_running(self) -> bool {
        let pid = self.pid().get();
        match PidFd::open(pid) {
            None => false,
            Some(Ok(pidfd)) => {
                let running = pidfd.runs_as(self);
                drop(pidfd);
                // Descriptors to spare now: make sure one is in reserve for
                // when they run out (a daemon-style close-all loses it).
                crate::sys::reserve_spare_fd();
                running
            }
            // Out of descriptors: free the one held in reserve for this and
            // look properly, start tag included; a process that is out of
            // descriptors must not take a newcomer with a dead holder's pid
            // for the holder (review 3).
            Some(Err(err)) if crate::sys::out_of_descriptors(&err) => {
                crate::sys::with_spare_fd(|| match PidFd::open(pid) {
                    None => Some(false),
                    Some(Ok(pidfd)) => Some(pidfd.runs_as(self)),
                    Some(Err(_)) => None,
                })
                .flatten()
                .unwrap_or_else(|| exists_and_not_zombie(pid))
            }
            // Too old a kernel for pidfds: what /proc says.
            Some(Err(_)) => exists_and_not_zombie(pid),
        }
    }
}

impl Identity {
    /// Whether the loom model says this process runs: it has played and
    /// not died (see [`crate::sync::model`]).
    #[cfg(loom)]
    pub fn is_running(self) -> bool {
        crate::sync::model::is_running(self)
    }
}

/// The [`Identity`] the calling loom thread plays (see
/// [`crate::sync::model::play`]).
#[cfg(loom)]
pub fn current_identity() -> Identity {
    crate::sync::model::current_identity()
}

/// This process's [`Identity`] if it has been learnt already (by
/// [`current_identity`], in this process: a forked child starts without):
/// no system call, never fails. For a fast path that may skip a look when
/// it is there.
///
/// ```
/// let me = shm::pid::current_identity();
/// assert_eq!(shm::pid::known_identity(), Some(me));
/// ```
#[cfg(not(loom))]
#[inline]
pub fn known_identity() -> Option<Identity> {
    Identity::from_bits(CACHED_IDENTITY.load(Ordering::Relaxed))
}

/// Under loom: the identity the calling loom thread plays.
#[cfg(loom)]
pub fn known_identity() -> Option<Identity> {
    Some(crate::sync::model::current_identity())
}

/// This process's [`Identity`], from a cache after the first call in each
/// process (a forked child computes its own).
///
/// # Panics
///
/// The first call in a process needs one free file descriptor for a
/// moment (`pidfd_open(2)`); it panics, saying so, if there is none.
#[cfg(not(loom))]
#[inline]
pub fn current_identity() -> Identity {
    match Identity::from_bits(CACHED_IDENTITY.load(Ordering::Relaxed)) {
        Some(me) => me,
        None => refresh_identity(),
    }
}

#[cold]
fn refresh_identity() -> Identity {
    check_pid_namespace();
    let pid = current().get();
    let pidfd = match PidFd::open(pid) {
        Some(Ok(fd)) => fd,
        other => panic!(
            "procsync: cannot learn this process's identity: pidfd_open({pid}) failed \
             ({:?}); it needs one free file descriptor once per process",
            other.map(|r| r.err())
        ),
    };
    let start_tag = match pidfd.start_tag(pid) {
        Ok(Some(tag)) => tag,
        other => panic!("procsync: cannot read this process's own start tag ({other:?})"),
    };
    let me = Identity::from_parts(pid, start_tag).expect("a running process's pid is not 0");
    drop(pidfd);
    // One descriptor kept aside for judging other processes once this one
    // runs out (see `Identity::is_running`).
    crate::sys::reserve_spare_fd();
    if may_cache(pid) {
        CACHED_IDENTITY.store(me.to_bits(), Ordering::Relaxed);
    }
    me
}

/// The pid namespace this process's pids belong to, as the inode number of
/// `/proc/self/ns/pid` (0 if it cannot be read).
///
/// Processes that share a primitive must share this namespace: a pid from
/// another namespace names a different process here, so a live holder
/// would look dead. Named segments record it at creation and refuse to
/// open elsewhere.
pub fn pid_namespace() -> u64 {
    crate::sys::pid_namespace_inode()
}

/// The pid namespace of the nearest ancestor that learnt its identity
/// (this memory is inherited through fork and never reset in a child).
static INHERITED_PID_NAMESPACE: AtomicU64 = AtomicU64::new(0);

/// Refuses to go on in a forked child that lives in another pid namespace
/// than the ancestor whose memory (and so whose anonymous shared
/// primitives) it inherited: its pids mean other processes there, and a
/// live holder would look dead, letting two in.
fn check_pid_namespace() {
    let here = pid_namespace();
    let inherited = INHERITED_PID_NAMESPACE.swap(here, Ordering::Relaxed);
    if inherited != 0 && here != 0 && inherited != here {
        panic!(
            "procsync: this process is in another pid namespace than the process it was \
             forked from; primitives inherited from it would take live holders for dead \
             ones. Share procsync primitives only within one pid namespace"
        );
    }
}

/// A pidfd: a descriptor for one process that polls readable once that
/// process has terminated, and stays tied to it even if its pid is reused.
/// Closed on drop.
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    /// `None`: no process has this pid. `Some(Err)`: could not open one
    /// (too old a kernel, out of descriptors).
    fn open(pid: u32) -> Option<std::io::Result<PidFd>> {
        if pid == 0 {
            return None;
        }
        Some(crate::sys::pidfd_open(pid)?.map(PidFd))
    }

    /// Whether the process it names is `who` and still runs (not a
    /// zombie). Errs towards running when the start tag cannot be read for
    /// want of descriptors.
    fn runs_as(&self, who: Identity) -> bool {
        if self.has_terminated() {
            return false;
        }
        match self.start_tag(who.pid().get()) {
            Ok(Some(tag)) => tag == who.start_tag() && !self.has_terminated(),
            // The process ended while we read its tag.
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Whether the process has terminated (zombies included).
    fn has_terminated(&self) -> bool {
        crate::sys::readable_now(self.0.as_fd())
    }

    /// The process's start tag (see [`Identity`]); `Ok(None)` if the
    /// process is gone, `Err` if it could not be read (out of descriptors).
    fn start_tag(&self, pid: u32) -> std::io::Result<Option<u32>> {
        if on_pidfs(self.0.as_fd()) {
            if let Ok(st) = crate::sys::fstat(self.0.as_fd()) {
                return Ok(Some(st.ino as u32));
            }
        }
        // Older kernels: the start time. The pidfd keeps the pid from being
        // reused while the process is a zombie, and the caller re-polls it
        // afterwards, so what we read belongs to this process.
        let Some(stat) = crate::sys::proc_stat(pid)? else {
            return Ok(None);
        };
        Ok(start_time(&stat))
    }
}

/// Field 22 of `/proc/PID/stat` (the start time in clock ticks), low 32
/// bits; `None` if the text is not what the kernel writes.
fn start_time(stat: &[u8]) -> Option<u32> {
    let after_name = stat.iter().rposition(|&b| b == b')')? + 2;
    // Field 3 (state) starts after the name; starttime is field 22.
    let field = std::str::from_utf8(stat.get(after_name..)?)
        .ok()?
        .split(' ')
        .nth(22 - 3)?;
    field.parse::<u64>().ok().map(|ticks| ticks as u32)
}

/// Whether pidfds live on pidfs (their inode numbers are then unique for
/// the boot); the same answer for every process on this kernel.
fn on_pidfs(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    static ANSWER: AtomicU32 = AtomicU32::new(0); // 0 unknown, 1 no, 2 yes
    match ANSWER.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let yes = crate::sys::fs_type(fd).is_ok_and(|t| t == PIDFS_MAGIC);
            ANSWER.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}
