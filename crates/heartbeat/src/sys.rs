//! The OS layer: every system call of this crate, each wrapped once. All
//! through `rustix`, but for signal dispositions and datagrams with their
//! arrival time (`libc`, each `unsafe` block argued where it is).

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags, Timespec};

/// A monitor of many reporters receives bursts; the default buffer (about
/// 200 KiB) drops datagrams, which would read as false silence. Asks for 8
/// MiB, beyond the system's limit if privileged (`SO_RCVBUFFORCE`), within
/// it (`net.core.rmem_max`) otherwise (`SO_RCVBUF`); best effort: what was
/// obtained is [`receive_buffer`]'s to tell.
pub(crate) fn enlarge_receive_buffer(socket: &UdpSocket) {
    const SIZE: usize = 8 << 20;
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, SIZE).is_err() {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, SIZE);
    }
}

/// A random number from the kernel (`getrandom(2)`), or, should that
/// fail, one mixed from the time and the pid: distinct per call either way.
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_ne_bytes(bytes),
        _ => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one((
                std::time::SystemTime::now(),
                rustix::process::getpid().as_raw_nonzero().get(),
            ))
        }
    }
}

/// Fills `bytes` from the kernel's random source (`getrandom(2)`), for a
/// key: an error rather than anything weaker.
pub(crate) fn fill_random(mut bytes: &mut [u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::rand::getrandom(&mut *bytes, rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => bytes = &mut bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Opens `path` for reading with `O_NONBLOCK`: the open of a FIFO returns
/// at once instead of waiting for a writer (the caller then refuses it).
pub(crate) fn open_for_reading_without_waiting(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The receive buffer `socket` has, in bytes (`SO_RCVBUF`: on Linux twice
/// what was asked, the kernel's bookkeeping included).
pub(crate) fn receive_buffer(socket: &UdpSocket) -> io::Result<usize> {
    Ok(rustix::net::sockopt::socket_recv_buffer_size(socket)?)
}

/// Asks for a receive buffer of `bytes` (`SO_RCVBUF`, within
/// `net.core.rmem_max`).
pub(crate) fn set_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_recv_buffer_size(
        socket, bytes,
    )?)
}

/// This machine's name (`uname(2)`'s node name, which is what
/// `gethostname(2)` returns).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Waits until `socket` has a datagram to read, or `timeout` has passed
/// (`None`: no limit). Interrupted waits count as timeouts (the caller
/// loops on its own deadline).
pub(crate) fn wait_readable(socket: &UdpSocket, timeout: Option<Duration>) -> io::Result<()> {
    let timespec = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let mut fds = [PollFd::new(socket, PollFlags::IN)];
    match rustix::event::poll(&mut fds, timespec.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pidfd of this process's parent `parent` (`pidfd_open(2)`), for a
/// daemon that lives exactly as long as that process. `Ok(None)`: the
/// parent is gone already (this process has been re-parented). An error:
/// no pidfds here (before Linux 5.3).
pub(crate) fn parent_pidfd(parent: shm::pid::Pid) -> io::Result<Option<OwnedFd>> {
    let raw = rustix::process::Pid::from_raw(parent.get() as i32)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())?;
    // Opened while it was still our parent: then the pidfd names it, not
    // a process that reused its pid.
    let still_parent = rustix::process::Pid::as_raw(rustix::process::getppid()) == raw.as_raw_pid();
    Ok(still_parent.then_some(pidfd))
}

/// Stops the parent-death signal (`PR_SET_PDEATHSIG` 0): it follows the
/// *thread* that forked this process, not the process.
pub(crate) fn outlive_the_forking_thread() {
    let _ = rustix::process::set_parent_process_death_signal(None);
}

/// Waits until the process of `pidfd` has ended (true) or `timeout` has
/// passed (false; `None`: no limit). A signal ends the wait early (false).
pub(crate) fn wait_for_exit(pidfd: BorrowedFd<'_>, timeout: Option<Duration>) -> bool {
    let timeout = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let mut fds = [PollFd::from_borrowed_fd(pidfd, PollFlags::IN)];
    matches!(rustix::event::poll(&mut fds, timeout.as_ref()), Ok(n) if n > 0)
}

/// How many threads this process has (the entries of `/proc/self/task`).
#[cfg(feature = "sqlite")]
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Ignores the signals a terminal or a shell sends a whole process group:
/// SIGINT (Ctrl-C, `kill -INT -PGID`), SIGQUIT (Ctrl-\\) and SIGHUP (the
/// terminal closed). The reporting daemon is in its main process's group:
/// with the default action it died of a Ctrl-C that main ignores or
/// handles, and main was SILENT while it worked on. It ends with main
/// anyway (main's pidfd, or the parent-death signal), so main's own
/// answer to the signal decides for both. Best effort: should
/// signal(2) fail, the default action stays.
#[allow(unsafe_code)]
pub(crate) fn ignore_group_signals() {
    for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP] {
        // SAFETY: SIG_IGN installs no handler, so no code of ours ever runs
        // in signal context; signal(2) takes no pointer and has no memory
        // precondition. Called in the forked daemon before it makes its
        // writer thread, though a disposition is per process anyway.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

/// Asks the kernel to stamp each datagram `socket` receives with its
/// arrival time (`SO_TIMESTAMPNS`), which [`recv_stamped`] returns.
#[allow(unsafe_code)]
pub(crate) fn enable_receive_timestamps(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) reads `size_of::<c_int>()` bytes from `&on`,
    // which lives across the call; the descriptor is `socket`'s, open while
    // it is borrowed.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receives one datagram into `buf` (without waiting if `socket` is
/// non-blocking): its length, and the wall-clock time the kernel received
/// it (`None` unless [`enable_receive_timestamps`] was called).
#[allow(unsafe_code)]
pub(crate) fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SystemTime>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a timestamp's control message (CMSG_SPACE of a timespec is
    // 32 bytes on 64-bit Linux), aligned for `cmsghdr` (u64s).
    let mut control = [0u64; 8];
    // SAFETY: `msghdr` is plain data (pointers and integers): all zeroes is
    // a valid value (no name, no iovec, no control buffer yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec over `buf` (writable, `buf.len()`
    // bytes) and at `control` (writable, `msg_controllen` bytes), all of
    // which outlive the call; the descriptor is `socket`'s, open while
    // borrowed. The kernel writes within those bounds.
    let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control messages the
    // kernel wrote into `control` (`msg.msg_controllen` now says how many
    // bytes), returning null past the last; each header they return lies
    // within `control`. The timestamp's data is a `timespec` (the kernel's
    // SCM_TIMESTAMPNS), read unaligned as CMSG_DATA need not be aligned
    // for it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = u64::try_from(ts.tv_sec).ok().and_then(|secs| {
                    UNIX_EPOCH
                        .checked_add(Duration::new(secs, ts.tv_nsec.clamp(0, 999_999_999) as u32))
                });
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((received as usize, stamp))
}

/// Whether another process holds a lock (fcntl, POSIX record lock) on byte
/// `offset` of `file`: `F_GETLK` asks for a write lock there and reports
/// the first that conflicts, taking none. False if the call fails.
#[cfg(feature = "sqlite")]
#[allow(unsafe_code)]
pub(crate) fn byte_locked(file: &std::fs::File, offset: i64) -> bool {
    // SAFETY: `flock` is plain data; all zeroes is a valid value, its
    // fields set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = offset;
    lock.l_len = 1;
    // SAFETY: fcntl(F_GETLK) reads and writes the one `flock` it is given,
    // which lives across the call; the descriptor is `file`'s, open while
    // borrowed.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    result == 0 && i32::from(lock.l_type) != libc::F_UNLCK
}

/// Whether a process `pid` exists on this machine (`kill(pid, 0)`: no
/// signal is sent; a process of another user exists too).
#[cfg(feature = "sqlite")]
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// A random offset in [0, `interval`).
pub(crate) fn random_phase(interval: Duration) -> Duration {
    let nanos = u128::from(random_u64()) % interval.as_nanos().max(1);
    // Below `interval`, so it fits.
    Duration::new(
        u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
        (nanos % 1_000_000_000) as u32,
    )
}
