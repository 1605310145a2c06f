//! The operating-system layer of `shm`: every system call the crate makes,
//! each behind a small safe wrapper whose `unsafe` (if any) is argued once,
//! here.
//!
//! Calls go through [`rustix`] (raw Linux system calls, I/O-safe descriptor
//! types, `futex(2)` and `pidfd_open(2)`); `libc` only for what must pass
//! through glibc itself (`pthread_atfork(3)`, whose handlers glibc's `fork`
//! runs). Errors come back as `std::io::Error`.
//!
//! Nothing above this module names `libc` or `rustix`.

// Under loom the futex and liveness wrappers give way to the model's.
#![cfg_attr(loom, allow(dead_code))]
#![allow(unsafe_code)] // the one place that calls the kernel and maps memory

use std::ffi::OsStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Where glibc (and musl) keep POSIX shared memory: `shm_open("/name")`
/// opens `/dev/shm/name`.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// How [`shm_open`] opens a name.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ShmOpen {
    /// Make a new file (fail with `AlreadyExists` if the name is taken),
    /// with permission bits `mode` before the umask.
    CreateNew {
        /// Permission bits (at most `0o777`).
        mode: u32,
    },
    /// Open an existing file (fail with `NotFound` if there is none).
    Existing,
}

/// `shm_open(3)` of `/name` for reading and writing, as glibc does it: an
/// `open(2)` of `/dev/shm/name` with `O_NOFOLLOW | O_CLOEXEC`. (`rustix`'s
/// own `shm::open` leaves out `O_NOFOLLOW`, which glibc adds so that a
/// symbolic link planted in the shared `/dev/shm` is not followed.)
/// `name` is a single file name, checked by the caller.
///
/// Errors to tell apart by `ErrorKind`: `AlreadyExists`, `NotFound`,
/// `PermissionDenied` (`EACCES`, `EPERM`), `InvalidFilename`
/// (`ENAMETOOLONG`).
pub(crate) fn shm_open(name: &OsStr, how: ShmOpen) -> io::Result<OwnedFd> {
    let base = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let (flags, mode) = match how {
        ShmOpen::CreateNew { mode } => (
            base | OFlags::CREATE | OFlags::EXCL,
            Mode::from_bits_truncate(mode),
        ),
        ShmOpen::Existing => (base, Mode::empty()),
    };
    Ok(rustix::fs::open(shm_path(name), flags, mode)?)
}

/// What [`shm_lease_if_unused`] found.
pub(crate) enum Lease {
    /// A write lease on the file, held while this descriptor is open: no
    /// other open file (or mapping) of it exists, and opens wait.
    Held(OwnedFd),
    /// Another process (or a mapping) has the file open.
    InUse,
    /// The file system or the system refuses leases: the descriptor alone.
    Unsupported(OwnedFd),
}

/// `fcntl(2)`'s `F_SETSIG` on Linux (not in the `libc` crate).
const F_SETSIG: i32 = 10;

/// Opens `/dev/shm/name` read-only and takes a write lease on it
/// (`F_SETLEASE`, `F_WRLCK`), which the kernel grants only if no other open
/// file of it exists (a mapping holds one). Its break signal is set to
/// `SIGURG` (ignored unless handled), so an `open` by someone else while it
/// is held never kills this process with the default `SIGIO`.
pub(crate) fn shm_lease_if_unused(name: &OsStr) -> io::Result<Lease> {
    let fd = rustix::fs::open(
        shm_path(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor this function owns, with integer
    // arguments: F_SETSIG (the signal for a lease break) and F_SETLEASE.
    let taken = unsafe {
        libc::fcntl(fd.as_raw_fd(), F_SETSIG, libc::SIGURG);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK)
    };
    if taken == 0 {
        return Ok(Lease::Held(fd));
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(code) if code == libc::EAGAIN || code == libc::EBUSY => Ok(Lease::InUse),
        _ => Ok(Lease::Unsupported(fd)),
    }
}

/// `shm_unlink(3)` of `/name`: an `unlink(2)` of `/dev/shm/name`.
pub(crate) fn shm_unlink(name: &OsStr) -> io::Result<()> {
    Ok(rustix::fs::unlink(shm_path(name))?)
}

/// The path of shared-memory name `name` (a single file name, any bytes).
pub(crate) fn shm_path(name: &OsStr) -> std::path::PathBuf {
    std::path::Path::new(SHM_DIR).join(name)
}

/// What `fstat(2)`/`stat(2)` tell about a file that `shm` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStat {
    /// The device the file lives on.
    pub(crate) dev: u64,
    /// Its inode number (with `dev`, the file's identity).
    pub(crate) ino: u64,
    /// Its size in bytes.
    pub(crate) size: u64,
}

impl From<rustix::fs::Stat> for FileStat {
    fn from(st: rustix::fs::Stat) -> FileStat {
        FileStat {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
        }
    }
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    Ok(rustix::fs::fstat(fd)?.into())
}

/// `stat(2)` of the file that shared-memory name `name` stands for now.
pub(crate) fn shm_stat(name: &OsStr) -> io::Result<FileStat> {
    Ok(rustix::fs::stat(shm_path(name))?.into())
}

/// `fchmod(2)`: sets exactly the permission bits `mode` (no umask).
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_bits_truncate(mode))?)
}

/// `ftruncate(2)`: makes the file `len` bytes long (zero-filled).
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// `pread(2)` into `buf` from `offset`; 0 means the file ends there.
/// Interrupted calls come back as `ErrorKind::Interrupted` (callers retry).
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    Ok(rustix::io::pread(fd, buf, offset)?)
}

/// `pwrite(2)` of `data` at `offset` (a file shorter than that grows).
/// Interrupted calls come back as `ErrorKind::Interrupted` (callers retry).
pub(crate) fn pwrite(fd: BorrowedFd<'_>, data: &[u8], offset: u64) -> io::Result<usize> {
    Ok(rustix::io::pwrite(fd, data, offset)?)
}

/// The size of a memory page (from the auxiliary vector; no system call).
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// `mmap(2)` of `len` bytes, readable and writable, `MAP_SHARED`: of the
/// file `fd` from its start, or anonymous shared memory when `fd` is `None`
/// (inherited by children forked afterwards, unlike a `MAP_PRIVATE`
/// mapping, of which they would get a copy-on-write copy).
///
/// Safe to call: the kernel picks a fresh address that overlaps no Rust
/// object. Using the memory, and unmapping it with [`munmap`], is the
/// caller's business.
pub(crate) fn mmap_shared(fd: Option<BorrowedFd<'_>>, len: usize) -> io::Result<NonNull<u8>> {
    use rustix::mm::{MapFlags, ProtFlags};
    let prot = ProtFlags::READ | ProtFlags::WRITE;
    let ptr = match fd {
        // SAFETY: a null hint: the kernel places the mapping where nothing
        // is mapped, so no existing memory changes under anyone.
        Some(fd) => unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)
        },
        // SAFETY: as above.
        None => unsafe {
            rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, prot, MapFlags::SHARED)
        },
    }?;
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))
}

/// `munmap(2)`.
///
/// # Safety
///
/// `ptr` and `len` are exactly a mapping [`mmap_shared`] returned, not yet
/// unmapped, and no reference into it outlives this call.
pub(crate) unsafe fn munmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller's promise above.
    let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len) };
}

/// `FUTEX_WAIT` (shared, *not* `FUTEX_PRIVATE_FLAG`: the word is keyed by
/// its page, so a waker in another process that maps the same page at
/// another address reaches this sleeper) while `word` holds `expected`,
/// for at most `timeout` (`None`: no limit).
///
/// Returns `false` if the kernel says the timeout expired; `true` when
/// woken, when the word did not hold `expected`, on a signal, or spuriously.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    use rustix::thread::futex;
    let timeout = timeout.map(|d| futex::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    !matches!(
        futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()),
        Err(Errno::TIMEDOUT)
    )
}

/// `FUTEX_WAKE` (shared, as [`futex_wait`]) of at most `count` sleepers on
/// `word`, in any process. Returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) -> u32 {
    use rustix::thread::futex;
    let count = count.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), count).map_or(0, |n| n as u32)
}

/// The low 32 bits of a 64-bit word, as the 32-bit futex word the kernel
/// sees there.
///
/// Only for [`futex_wait`] and [`futex_wake`], which hand its address to
/// the kernel: Rust code keeps reading and writing the word as the whole
/// `AtomicU64`, never through the returned reference.
pub(crate) fn low_half(word: &AtomicU64) -> &AtomicU32 {
    #[cfg(target_endian = "little")]
    const LOW_HALF: usize = 0;
    #[cfg(target_endian = "big")]
    const LOW_HALF: usize = 1;
    let ptr = word.as_ptr().cast::<AtomicU32>().wrapping_add(LOW_HALF);
    // SAFETY: in bounds (half of the 8-byte word), 4-aligned (the word is
    // 8-aligned), and live as long as `word`. `AtomicU32` allows shared
    // access; the kernel reads it atomically, and no Rust code accesses the
    // memory through this reference (so no mixed-size atomic accesses are
    // made by Rust).
    unsafe { &*ptr }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock that every process of the
/// machine reads alike (what `Instant` measures, as a number that can be
/// stored in shared memory).
pub(crate) fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's id: `getpid(2)`.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// This process's real user id.
pub(crate) fn getuid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Whether a process with id `pid` exists (zombies included): `kill(pid,
/// 0)`. Errs towards `true`: only `ESRCH` says no.
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(pid) = to_pid(pid) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

fn to_pid(pid: u32) -> Option<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
}

/// `pidfd_open(2)`: `None` if no process has id `pid`; `Some(Err)` if a
/// descriptor could not be made (too old a kernel, out of descriptors).
pub(crate) fn pidfd_open(pid: u32) -> Option<io::Result<OwnedFd>> {
    let pid = to_pid(pid)?;
    match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(Ok(fd)),
        Err(Errno::SRCH) => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// Whether `fd` polls readable right now: a zero-timeout `poll(2)`. A
/// pidfd is readable once its process has terminated.
pub(crate) fn readable_now(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(1))
        && fds[0].revents().contains(PollFlags::IN)
}

/// `statfs(2)`'s `f_type` of the file system `fd` lives on.
pub(crate) fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let fs = rustix::fs::fstatfs(fd)?;
    // f_type is a 32-bit magic number whatever the width of the field.
    Ok(i64::from(fs.f_type as u32))
}

/// The bytes of `/proc/PID/stat`: `Ok(None)` if no such process, `Err`
/// if it could not be read for another reason (out of descriptors).
pub(crate) fn proc_stat(pid: u32) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `err` says this process (or the system) is out of file
/// descriptors.
pub(crate) fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if code == Errno::MFILE.raw_os_error() || code == Errno::NFILE.raw_os_error()
    )
}

/// One descriptor held in reserve (an empty memfd) for the liveness check
/// of a process that has run out: its number in the low half, the low 32
/// bits of its inode number in the high half (one word, so that racing
/// threads never pair one's descriptor with another's inode), or
/// [`NO_SPARE`].
static SPARE: AtomicU64 = AtomicU64::new(NO_SPARE);
const NO_SPARE: u64 = u64::MAX;

fn spare_word(fd: i32, ino: u64) -> u64 {
    (ino << 32) | u64::from(fd as u32)
}

/// Whether descriptor `raw` is still the reserve memfd whose inode's low
/// half is `ino`: the program may have closed it and the number may name
/// something else now, which we must never close.
fn is_our_spare(raw: i32, ino: u32) -> bool {
    // SAFETY: borrowed only for an fstat of whatever the number names now.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::fs::fstat(borrowed).is_ok_and(|st| st.st_ino as u32 == ino && st.st_nlink == 0)
}

/// Makes sure one descriptor is in reserve (see [`with_spare_fd`]): puts
/// one there if there is none, or if the one there is no longer ours (a
/// program that closed its descriptors daemon-style). Called on the slow
/// paths that judge other processes, so a reserve lost is soon replaced.
pub(crate) fn reserve_spare_fd() {
    let seen = SPARE.load(Ordering::Acquire);
    if seen != NO_SPARE {
        if is_our_spare(seen as u32 as i32, (seen >> 32) as u32) {
            return;
        }
        // Not ours any more: forget the number (never close it) and make
        // a new reserve below, unless another thread already did.
        if SPARE
            .compare_exchange(seen, NO_SPARE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
    }
    let Ok(fd) = rustix::fs::memfd_create("procsync-spare-fd", rustix::fs::MemfdFlags::CLOEXEC)
    else {
        return;
    };
    let Ok(st) = rustix::fs::fstat(&fd) else {
        return;
    };
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    if SPARE
        .compare_exchange(
            NO_SPARE,
            spare_word(raw, st.st_ino),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        // Another thread put one in reserve meanwhile.
        // SAFETY: `raw` came from `into_raw_fd` just above: ours alone.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
    }
}

/// Runs `look` with the reserve descriptor freed, for a process that is out
/// of descriptors, and puts one back in reserve afterwards; `None` if there
/// was none to free (another thread took it, or the program closed it).
pub(crate) fn with_spare_fd<R>(look: impl FnOnce() -> R) -> Option<R> {
    let word = SPARE.swap(NO_SPARE, Ordering::AcqRel);
    if word == NO_SPARE {
        return None;
    }
    let raw = word as u32 as i32;
    if !is_our_spare(raw, (word >> 32) as u32) {
        // The program closed our reserve and the number means something
        // else now: leave it alone.
        return None;
    }
    // SAFETY: `raw` is our reserve memfd (checked just above), taken out of
    // the reserve by the swap: this is its only owner.
    drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
    let answer = look();
    reserve_spare_fd();
    Some(answer)
}

/// The inode number of `/proc/self/ns/pid`: this process's pid namespace
/// (0 if it cannot be read).
pub(crate) fn pid_namespace_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Registers `handler` to run in every child that glibc's `fork(3)` makes
/// (`pthread_atfork(3)`'s child handler). Through libc: the handlers live
/// in glibc, which runs them.
///
/// The handler must be async-signal-safe (it runs in a just-forked child).
pub(crate) fn at_fork_in_child(handler: extern "C" fn()) {
    // SAFETY: registers a function pointer that lives for ever; glibc calls
    // it in each child after fork. The caller promises it is
    // async-signal-safe.
    unsafe { libc::pthread_atfork(None, None, Some(handler)) };
}

/// Sends `SIGKILL` to this process: it dies here.
#[cfg(feature = "crash-points")]
pub(crate) fn kill_self() {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
}

/// Sends `SIGSTOP` to this process: it stops here until `SIGCONT`.
#[cfg(feature = "crash-points")]
pub(crate) fn stop_self() {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
}

// The cleanup tracker's calls (`crate::tracker`): its socket, its fork,
// and what it sheds of the process it was forked from.

/// The tracker's address for user `uid` in slot `slot`: an abstract Unix
/// socket (no file that could itself be left behind).
fn tracker_address(uid: u32, slot: u32) -> io::Result<rustix::net::SocketAddrUnix> {
    let name = match slot {
        0 => format!("procsync-tracker-{uid}"),
        _ => format!("procsync-tracker-{uid}-{slot}"),
    };
    Ok(rustix::net::SocketAddrUnix::new_abstract_name(
        name.as_bytes(),
    )?)
}

fn seqpacket_socket(flags: rustix::net::SocketFlags) -> io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | flags,
        None,
    )?)
}

/// A connection to user `uid`'s tracker in slot `slot` (`ECONNREFUSED` if
/// none listens there).
/// Non-blocking: neither this connect nor any send on it waits for a
/// tracker that does not keep up (stopped, or its backlog full): they fail
/// with `EAGAIN` instead.
pub(crate) fn tracker_connect(uid: u32, slot: u32) -> io::Result<OwnedFd> {
    let socket = seqpacket_socket(rustix::net::SocketFlags::NONBLOCK)?;
    rustix::net::connect(&socket, &tracker_address(uid, slot)?)?;
    Ok(socket)
}

/// The listening socket of user `uid`'s tracker in slot `slot`
/// (`EADDRINUSE` if the address is taken).
pub(crate) fn tracker_listen(uid: u32, slot: u32) -> io::Result<OwnedFd> {
    let socket = seqpacket_socket(rustix::net::SocketFlags::empty())?;
    rustix::net::bind(&socket, &tracker_address(uid, slot)?)?;
    rustix::net::listen(&socket, 128)?;
    Ok(socket)
}

/// `accept4(2)`, close-on-exec and non-blocking.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use rustix::net::SocketFlags;
    Ok(rustix::net::accept_with(
        listener,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
    )?)
}

/// The user id of the process at the other end of a Unix socket
/// (`SO_PEERCRED`, as it was when it connected).
pub(crate) fn peer_uid(socket: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(socket)?.uid.as_raw())
}

/// One message on a `SOCK_SEQPACKET` socket, with descriptor `pass` if
/// any (`SCM_RIGHTS`); no `SIGPIPE` if the other end is gone, and no wait
/// (`EAGAIN` if the other end's queue is full).
pub(crate) fn send_message(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    pass: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let passed;
    if let Some(fd) = pass {
        passed = [fd];
        // The space is sized for exactly this one message.
        let pushed = control.push(SendAncillaryMessage::ScmRights(&passed));
        debug_assert!(pushed);
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?;
    if sent == bytes.len() {
        Ok(())
    } else {
        Err(io::Error::other("a message was sent in part"))
    }
}

/// One message from a `SOCK_SEQPACKET` socket without waiting: its length
/// (0: the other end closed), and the descriptor passed with it, if any.
pub(crate) fn recv_message(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        socket,
        &mut [io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut passed = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            passed = fds.next();
        }
    }
    Ok((got.bytes, passed))
}

/// `poll(2)` for readability (or hang-up) of `fds`, up to `timeout`:
/// which of them are ready.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    use rustix::event::{PollFd, PollFlags};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let timeout = rustix::event::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match rustix::event::poll(&mut polled, Some(&timeout)) {
        Ok(_) => polled.iter().map(|p| !p.revents().is_empty()).collect(),
        Err(_) => vec![false; fds.len()],
    }
}

/// `fork(2)`, glibc's (its `pthread_atfork` handlers run: malloc's locks
/// are reset in the child): `None` in the child, the child's pid in the
/// parent.
pub(crate) fn fork() -> io::Result<Option<u32>> {
    // SAFETY: fork has no memory-safety preconditions: the child is a copy
    // of this process with the calling thread alone. The tracker's child
    // (its only caller) uses only its own data and system calls.
    match unsafe { libc::fork() } {
        pid if pid < 0 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid as u32)),
    }
}

/// Waits for child `pid` to end (reaps it), retrying on `EINTR`.
pub(crate) fn reap(pid: u32) {
    if let Some(pid) = to_pid(pid) {
        while let Err(Errno::INTR) =
            rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        {}
    }
}

/// `_exit(2)`: ends this process at once, running no exit handler,
/// destructor or stdio flush.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing runs after it, so no
    // invariant of this process can be observed broken.
    unsafe { libc::_exit(code) }
}

/// `setsid(2)`: a session of its own, away from the terminal (no Ctrl-C).
pub(crate) fn new_session() {
    let _ = rustix::process::setsid();
}

/// Makes this freshly forked process a daemon that holds nothing of the
/// process it was forked from but `keep` (returned, moved to a descriptor
/// above 2 if it was 0, 1 or 2: a forker with its standard descriptors
/// closed gets the listener there): standard input, output and error on
/// `/dev/null`, every other descriptor closed, every shared mapping
/// unmapped (so that no segment's memory lives on in it, and it counts as
/// nobody's user), its descriptor limit raised to the hard limit (it holds
/// two per creator), terminal signals ignored, all signals unblocked, and
/// `name` as its command name (`ps`, `top`).
///
/// Only in a process forked for this that never returns to the code that
/// owned those descriptors and mappings: it runs its own loop, then
/// [`exit_now`].
pub(crate) fn become_daemon(keep: OwnedFd, name: &str) -> OwnedFd {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let mut keep = keep.into_raw_fd();
    if keep <= 2 {
        // SAFETY: F_DUPFD_CLOEXEC of a descriptor this function owns; the
        // old number is left to be replaced by /dev/null below.
        let moved = unsafe { libc::fcntl(keep, libc::F_DUPFD_CLOEXEC, 3) };
        if moved >= 3 {
            keep = moved;
        }
    }
    // SAFETY: dup2 onto 0, 1 and 2 of /dev/null's descriptor, then closing
    // every descriptor but `keep` and those three: the forked process owns
    // no Rust object that will use them again (it never returns to the code
    // that made them; see above), so no descriptor is used after close.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for std_fd in 0..3 {
                if std_fd != keep {
                    libc::dup2(null, std_fd);
                }
            }
            if null > 2 && null != keep {
                libc::close(null);
            }
        }
        if keep > 3 {
            libc::close_range(3, keep as u32 - 1, 0);
        }
        libc::close_range(keep.max(2) as u32 + 1, u32::MAX, 0);
    }
    for (start, len) in shared_mappings() {
        // SAFETY: only shared mappings (segments, anonymous shared memory)
        // are unmapped; this process's own code never touches them (see
        // above): its heap, stacks and the program's mappings are private.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
    }
    raise_descriptor_limit();
    for signal in [libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
        // SAFETY: SIG_IGN is a valid disposition for these signals.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    // SAFETY: an empty set, then unblocking it for this (the only) thread.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    if let Ok(name) = std::ffi::CString::new(name) {
        let _ = rustix::thread::set_name(&name);
    }
    // SAFETY: `keep` is the descriptor this function was given (or its
    // copy above 2), owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(keep) }
}

/// Raises this process's soft limit on open descriptors to its hard limit.
fn raise_descriptor_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// The shared mappings of this process (start, length), from
/// `/proc/self/maps`.
fn shared_mappings() -> Vec<(usize, usize)> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            if perms.as_bytes().get(3) != Some(&b's') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            Some((start, end.checked_sub(start)?))
        })
        .collect()
}
