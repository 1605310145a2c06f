//! The OS layer: every system call `daemon` makes, each in one small
//! wrapper, each `unsafe` argued once, here.
//!
//! [`rustix`] makes the calls it offers: raw system calls (no libc in
//! between, nothing that could take a lock in a forked child), errors as
//! `io::Error`, descriptors as `OwnedFd`/`BorrowedFd`. `libc` is used where
//! glibc itself must take part: [`fork`] (glibc's, so that the
//! `pthread_atfork` handlers run: malloc's locks are reset in the child),
//! [`exit_now`] (`_exit`) and [`at_exit`] (`atexit`, a glibc list), and for
//! the one signal number rustix cannot name (see [`pidfd_send_signal`]).

use std::ffi::CStr;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions, WaitStatus};

use shm::pid::Pid as ProcessId;

use crate::ExitStatus;

/// This process's id.
pub(crate) fn getpid() -> ProcessId {
    ProcessId::from_raw(rustix::process::getpid().as_raw_pid()).expect("a pid is positive")
}

/// The parent's id; `None` if it is outside this pid namespace.
pub(crate) fn getppid() -> Option<ProcessId> {
    ProcessId::from_raw(Pid::as_raw(rustix::process::getppid()))
}

/// rustix's view of one of our pids.
fn raw(pid: ProcessId) -> Pid {
    Pid::from_raw(pid.as_raw()).expect("a Pid is positive")
}

/// Which side of a [`fork`] this is.
pub(crate) enum Forked {
    /// The new child.
    Child,
    /// The parent, with the child's pid.
    Parent(ProcessId),
}

/// `fork(2)`, glibc's: its `pthread_atfork` handlers run (malloc's locks
/// are taken around the fork and reset in the child), which a raw system
/// call would skip.
///
/// The child has one thread, the caller's; what another thread held at
/// that instant stays held there (see [`Process`](crate::Process)).
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions: the child is a copy
    // of this process with the calling thread alone; what it may then do is
    // the caller's rule (only the closure and async-signal-safe calls
    // before `_exit`, see `Process`).
    match unsafe { libc::fork() } {
        pid if pid < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            ProcessId::from_raw(pid).expect("fork returns a positive pid"),
        )),
    }
}

/// `_exit(2)`: ends this process at once with `code`, running no exit
/// handler, destructor or stdio flush.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing runs after it, so no
    // invariant of this process can be observed broken.
    unsafe { libc::_exit(code) }
}

/// `atexit(3)`: runs `handler` when this process leaves through `exit`. A
/// failure (no room left) is ignored: the handler just never runs.
pub(crate) fn at_exit(handler: extern "C" fn()) {
    // SAFETY: registers a plain `extern "C" fn()` with no arguments, which
    // is what atexit takes; atexit has no other preconditions.
    unsafe { libc::atexit(handler) };
}

/// Names the calling thread (`PR_SET_NAME`: what `ps -L` and `top -H`
/// show), cut to 15 bytes or at a NUL. Allocates nothing.
pub(crate) fn set_thread_name(name: &str) {
    let mut comm = [0u8; 16];
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name.as_bytes()[..n]);
    // `comm[15]` is always 0, so there is a NUL.
    if let Ok(comm) = CStr::from_bytes_until_nul(&comm) {
        let _ = rustix::thread::set_name(comm);
    }
}

/// Asks for SIGKILL when the thread that forked this process ends
/// (`PR_SET_PDEATHSIG`).
pub(crate) fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
}

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_pid()
}

/// `/proc/<pid>/task/<tid>/children` as a C string, in `buf`. Allocates
/// nothing.
fn children_path(buf: &mut [u8; 64], pid: i32, tid: i32) -> Option<&CStr> {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    let mut digits = [0u8; 10];
    let mut number = |n: i32, put: &mut dyn FnMut(&[u8])| {
        let mut n = n.unsigned_abs();
        let mut k = digits.len();
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        put(&digits[k..]);
    };
    put(b"/proc/");
    number(pid, &mut put);
    put(b"/task/");
    number(tid, &mut put);
    put(b"/children\0");
    CStr::from_bytes_until_nul(&buf[..]).ok()
}

/// Whether `child` is listed in `/proc/<pid>/task/<tid>/children`, read in
/// one go: `Some(false)` also when that thread has ended (its directory is
/// gone while this process's own is there); `None` when `/proc` cannot
/// tell (not mounted, another pid namespace's, a kernel without
/// `CONFIG_PROC_CHILDREN`, a list longer than one read). Allocates nothing.
pub(crate) fn listed_as_child_of_thread(
    pid: ProcessId,
    tid: i32,
    child: ProcessId,
) -> Option<bool> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let mut path = [0u8; 64];
    let fd = match rustix::fs::open(
        children_path(&mut path, pid.as_raw(), tid)?,
        flags,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::SRCH) => {
            // Gone, or no such file here: this very thread's tells which.
            let mut own = [0u8; 64];
            let own = children_path(&mut own, getpid().as_raw(), gettid())?;
            return rustix::fs::open(own, flags, Mode::empty())
                .ok()
                .map(|_| false);
        }
        Err(_) => return None,
    };
    let mut list = [0u8; 4096];
    let n = loop {
        match rustix::io::read(&fd, &mut list) {
            Err(Errno::INTR) => continue,
            Err(_) => return None,
            // Maybe more than one read holds: cannot tell.
            Ok(n) if n == list.len() => return None,
            Ok(n) => break n,
        }
    };
    let wanted = child.as_raw().unsigned_abs();
    Some(
        list[..n]
            .split(|b| !b.is_ascii_digit())
            .filter(|number| !number.is_empty())
            .any(|number| {
                number.iter().try_fold(0u32, |v, d| {
                    v.checked_mul(10)?.checked_add(u32::from(d - b'0'))
                }) == Some(wanted)
            }),
    )
}

/// A connected pair of Unix stream sockets, close-on-exec.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// `shutdown(SHUT_RDWR)`: ends the stream both ways for the socket
/// itself, not just this descriptor, so the peer reads EOF whatever copies
/// of the descriptor live on in other processes. Errors are ignored.
pub(crate) fn shutdown(socket: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
}

/// A new eventfd at 0, close-on-exec.
pub(crate) fn event_fd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(0, EventfdFlags::CLOEXEC)?)
}

/// Adds 1 to an eventfd's counter, making it readable. Best effort.
pub(crate) fn event_fd_signal(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Sends all of `bytes` on a socket. A closed peer is `EPIPE`, never a
/// SIGPIPE; an interrupted send is resumed.
pub(crate) fn send_all(socket: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(socket, bytes, SendFlags::NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One `recv` into `buf` without waiting: the bytes read (0: the peer has
/// closed). Nothing there yet is `WouldBlock`.
pub(crate) fn recv_now(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(socket, buf, RecvFlags::DONTWAIT)?.0)
}

/// [`recv_now`] into the spare capacity of `buf`, which grows by the bytes
/// read.
pub(crate) fn recv_now_appending(socket: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    Ok(rustix::net::recv(
        socket,
        rustix::buffer::spare_capacity(buf),
        RecvFlags::DONTWAIT,
    )?
    .0)
}

/// A poll timeout of `ms` milliseconds (`None`: no limit).
fn timespec_of(ms: Option<u32>) -> Option<Timespec> {
    ms.map(|ms| Timespec {
        tv_sec: (ms / 1000).into(),
        tv_nsec: ((ms % 1000) * 1_000_000).into(),
    })
}

/// `poll(2)` for readability of `first` and, if given, `second`, for at
/// most `timeout_ms` (`None`: no limit). Returns which are ready (hung up
/// or in error counts as ready).
pub(crate) fn poll_readable(
    first: BorrowedFd<'_>,
    second: Option<BorrowedFd<'_>>,
    timeout_ms: Option<u32>,
) -> io::Result<(bool, bool)> {
    let timeout = timespec_of(timeout_ms);
    let mut fds = [
        PollFd::from_borrowed_fd(first, PollFlags::IN),
        // Replaced below, or left out of the call.
        PollFd::from_borrowed_fd(first, PollFlags::IN),
    ];
    let count = match second {
        Some(second) => {
            fds[1] = PollFd::from_borrowed_fd(second, PollFlags::IN);
            2
        }
        None => 1,
    };
    rustix::event::poll(&mut fds[..count], timeout.as_ref())?;
    Ok((
        !fds[0].revents().is_empty(),
        count == 2 && !fds[1].revents().is_empty(),
    ))
}

/// Whether the process behind `pidfd` has exited (its pidfd polls
/// readable), without waiting and without collecting it. An error of
/// `poll` other than an interruption (none is possible on a valid pidfd)
/// counts as exited, so that a loop on it cannot spin for ever.
pub(crate) fn exited_now(pidfd: BorrowedFd<'_>) -> bool {
    loop {
        match poll_readable(pidfd, None, Some(0)) {
            Ok((exited, _)) => return exited,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// A pidfd for `pid` (`pidfd_open(2)`): it names that process for ever,
/// even once the pid is reused.
pub(crate) fn pidfd_open(pid: ProcessId) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(raw(pid), PidfdFlags::empty())?)
}

/// Sends `signal` through a pidfd (`pidfd_send_signal(2)`): it can never
/// reach an unrelated process that reused the pid.
///
/// A named signal goes through rustix; any other number (0, which only
/// checks; a real-time signal; an invalid one, which the kernel refuses
/// with `EINVAL`) has no safe rustix `Signal` and is passed as it is.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    if let Some(named) = Signal::from_named_raw(signal) {
        return Ok(rustix::process::pidfd_send_signal(pidfd, named)?);
    }
    // SAFETY: pidfd_send_signal with a pidfd borrowed for the call, any
    // signal number (the kernel checks it), no siginfo and no flags: it
    // reads and writes no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `kill(2)`. Only for our own uncollected children, whose pids cannot be
/// reused.
pub(crate) fn kill(pid: ProcessId, signal: Signal) -> io::Result<()> {
    Ok(rustix::process::kill_process(raw(pid), signal)?)
}

/// `waitpid(2)` for our child `pid`: its status once collected, `None` if
/// it still runs (only without `block`).
pub(crate) fn waitpid(pid: ProcessId, block: bool) -> io::Result<Option<ExitStatus>> {
    let pid = raw(pid);
    let options = if block {
        WaitOptions::empty()
    } else {
        WaitOptions::NOHANG
    };
    Ok(rustix::process::waitpid(Some(pid), options)?.map(|(_, status)| exit_status(status)))
}

/// Whether our uncollected child `pid` has exited, without collecting it
/// (`waitid(2)` with `WNOWAIT`): its status stays for whoever waits for it.
/// An error (it is not our child, or no longer: `ECHILD`) counts as exited;
/// an interruption is retried.
pub(crate) fn exited_uncollected(pid: ProcessId) -> bool {
    use rustix::process::{WaitId, WaitIdOptions};
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match rustix::process::waitid(WaitId::Pid(raw(pid)), options) {
            Ok(status) => return status.is_some(),
            Err(Errno::INTR) => continue,
            Err(_) => return true,
        }
    }
}

/// A wait status as [`ExitStatus`]: killed by a signal, or exited with a
/// code (`WEXITSTATUS`).
fn exit_status(status: WaitStatus) -> ExitStatus {
    match status.terminating_signal() {
        Some(signal) => ExitStatus::Signaled(signal),
        None => ExitStatus::Exited((status.as_raw() >> 8) & 0xff),
    }
}

/// `close_range(2)` of the descriptors `first..=last`, with no flags.
/// `ENOSYS` before Linux 5.9.
///
/// Only for a new child that owns nothing yet (see
/// [`close_descriptors`](crate::Process::close_descriptors)): every
/// descriptor in the range must be one nothing in this process will use or
/// close again.
pub(crate) fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range takes no pointers; the caller promises that no
    // owner of a descriptor in the range will use or close it again (a
    // forked child before its closure runs, whose copies of the parent's
    // handles are never dropped: it leaves through `_exit`).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `close(2)` of one descriptor number, ignoring errors (`EBADF`: not
/// open). The fallback of [`close_range`], under the same promise.
pub(crate) fn close_raw(fd: i32) {
    // SAFETY: as for `close_range`: the caller promises nothing owns `fd`
    // any more; close takes no pointers.
    unsafe { libc::close(fd) };
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`): every open
/// descriptor is below it, unless it was lowered after opening them.
pub(crate) fn descriptor_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
}

/// How many threads this process has: field 20 (`num_threads`) of
/// `/proc/self/stat`, read in one go into a stack buffer; `None` when
/// `/proc` cannot tell. Allocates nothing.
pub(crate) fn thread_count() -> Option<usize> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        c"/proc/self/stat",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut stat = [0u8; 1024];
    let n = loop {
        match rustix::io::read(&fd, &mut stat) {
            Err(Errno::INTR) => continue,
            Err(_) => return None,
            Ok(n) => break n,
        }
    };
    parse_thread_count(&stat[..n])
}

/// `num_threads` in the text of a `/proc/<pid>/stat`: the 18th field after
/// the command name, which is in parentheses and may hold spaces and
/// parentheses itself (so the fields start after the *last* `)`).
fn parse_thread_count(stat: &[u8]) -> Option<usize> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let field = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        // Fields 3 (state) .. : num_threads is field 20, the 18th here.
        .nth(17)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// `sendmsg(2)` of `bytes` passing `fds` along with them (`SCM_RIGHTS`,
/// up to [`MAX_PASSED`]), without SIGPIPE; without waiting if `wait` is
/// false (a full buffer is then `WouldBlock`). Returns the bytes sent
/// (the descriptors went with the first of them).
pub(crate) fn send_with_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    wait: bool,
) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
    let mut flags = SendFlags::NOSIGNAL;
    if !wait {
        flags |= SendFlags::DONTWAIT;
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        let fds = &fds[..fds.len().min(MAX_PASSED)];
        // The space is sized for up to `MAX_PASSED` descriptors.
        let pushed = control.push(SendAncillaryMessage::ScmRights(fds));
        debug_assert!(pushed);
    }
    loop {
        match rustix::net::sendmsg(socket, &[IoSlice::new(bytes)], &mut control, flags) {
            Err(Errno::INTR) => continue,
            sent => return Ok(sent?),
        }
    }
}

/// The most descriptors one [`send_with_fds`] passes or one
/// [`recv_with_fds`] takes.
pub(crate) const MAX_PASSED: usize = 2;

/// One `recvmsg(2)` into `buf`, waiting for data: the bytes read (0: the
/// peer has closed). Descriptors passed along (`SCM_RIGHTS`, up to
/// [`MAX_PASSED`]) are appended to `fds`, close-on-exec. An interrupted
/// call is resumed.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED))];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(got) => {
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(passed) = message {
                        fds.extend(passed);
                    }
                }
                return Ok(got.bytes);
            }
        }
    }
}

/// Fills `buf` from a socket, waiting: `Ok(false)` if the peer closed
/// before the first byte, `UnexpectedEof` if it closed part-way.
pub(crate) fn recv_exact(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match rustix::net::recv(socket, &mut buf[at..], RecvFlags::empty()) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok((0, _)) if at == 0 => return Ok(false),
            Ok((0, _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok((n, _)) => at += n,
        }
    }
    Ok(true)
}

/// `poll(2)` for `socket` writable or `other` readable (hung up or in
/// error counts as ready), for at most `timeout_ms` (`None`: no limit).
/// Returns (socket writable, other readable).
pub(crate) fn poll_writable_or_readable(
    socket: BorrowedFd<'_>,
    other: BorrowedFd<'_>,
    timeout_ms: Option<u32>,
) -> io::Result<(bool, bool)> {
    let timeout = timespec_of(timeout_ms);
    let mut fds = [
        PollFd::from_borrowed_fd(socket, PollFlags::OUT),
        PollFd::from_borrowed_fd(other, PollFlags::IN),
    ];
    rustix::event::poll(&mut fds, timeout.as_ref())?;
    Ok((!fds[0].revents().is_empty(), !fds[1].revents().is_empty()))
}

/// `poll(2)` for readability of every descriptor in `fds`, for at most
/// `timeout_ms` (`None`: no limit): which are ready (hung up or in error
/// counts as ready).
pub(crate) fn poll_which(fds: &[BorrowedFd<'_>], timeout_ms: Option<u32>) -> io::Result<Vec<bool>> {
    let timeout = timespec_of(timeout_ms);
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    rustix::event::poll(&mut polled, timeout.as_ref())?;
    Ok(polled.iter().map(|p| !p.revents().is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child is listed under the thread that started it, and under no
    /// thread that has ended.
    #[test]
    fn a_child_is_listed_under_its_forking_thread_only() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let pid = ProcessId::from_raw(child.id() as i32).expect("pid");
        let listed = listed_as_child_of_thread(getpid(), gettid(), pid);
        let ended = std::thread::spawn(gettid).join().expect("thread");
        let under_ended = listed_as_child_of_thread(getpid(), ended, pid);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(listed, Some(true));
        assert_eq!(under_ended, Some(false));
    }

    #[test]
    fn the_thread_count_is_read_past_a_command_name_with_parentheses() {
        let stat = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 7 0 99 1000 200";
        assert_eq!(parse_thread_count(stat), Some(7));
        // Other tests start and end threads meanwhile: only the range.
        assert!(thread_count().is_some_and(|n| n >= 1));
    }

    #[test]
    fn the_children_path_is_written_in_place() {
        let mut buf = [0u8; 64];
        let path = children_path(&mut buf, 2_147_483_647, 1).expect("path");
        assert_eq!(path.to_bytes(), b"/proc/2147483647/task/1/children");
    }
}
