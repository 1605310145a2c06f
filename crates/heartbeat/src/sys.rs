//! The OS layer: every system call of this crate, each wrapped once. All
//! through `rustix`, so there is no `unsafe` code here either.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

/// A monitor of many reporters receives bursts; the default buffer (about
/// 200 KiB) drops datagrams, which would read as false silence. Asks for 8
/// MiB, beyond the system's limit if privileged (`SO_RCVBUFFORCE`), within
/// it otherwise (`SO_RCVBUF`); best effort.
pub(crate) fn enlarge_receive_buffer(socket: &UdpSocket) {
    const SIZE: usize = 8 << 20;
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, SIZE).is_err() {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, SIZE);
    }
}

/// This machine's name (`uname(2)`'s node name, which is what
/// `gethostname(2)` returns).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
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
