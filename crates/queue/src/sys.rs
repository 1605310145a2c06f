//! The OS layer of [`Pipe`](crate::pipe): every system call the pipe and
//! [`wait`](crate::wait()) make, each wrapped once, through `rustix`.
//!
//! The one `unsafe` block is in [`FdSlot::replace`], argued there.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::{DupFlags, Errno};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::process::{Pid, PidfdFlags};

/// A connected pair of Unix stream sockets, close-on-exec.
pub(crate) fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A pidfd for process `pid` (`pidfd_open(2)`), close-on-exec (pidfds
/// always are).
pub(crate) fn pidfd_open(pid: i32) -> rustix::io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or(Errno::SRCH)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty())
}

/// A second descriptor for the same open file, close-on-exec.
pub(crate) fn dup(fd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

/// `shutdown(SHUT_RDWR)`: ends the stream both ways for the socket
/// itself, not just this descriptor, so the peer reads EOF (after what was
/// sent) and its sends fail with `EPIPE`, whatever copies of the
/// descriptor live on in other processes. Errors are ignored (the socket
/// is closed next anyway).
pub(crate) fn shutdown(socket: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
}

/// One `sendmsg(2)` of `iov` without waiting and without SIGPIPE, passing
/// `pass` (if any) along with the first byte (`SCM_RIGHTS`). Returns the
/// bytes sent; a full buffer is `EAGAIN`.
pub(crate) fn send(
    socket: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    pass: Option<BorrowedFd<'_>>,
) -> rustix::io::Result<usize> {
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let passed;
    if let Some(fd) = pass {
        passed = [fd];
        // The space is sized for exactly this one message.
        let pushed = control.push(SendAncillaryMessage::ScmRights(&passed));
        debug_assert!(pushed);
    }
    rustix::net::sendmsg(socket, iov, &mut control, flags)
}

/// One `recvmsg(2)` into `buf` without waiting: the bytes read (0: the
/// other end is shut down or every copy of it closed). Descriptors passed
/// along (`SCM_RIGHTS`) are appended to `fds`, close-on-exec; a descriptor
/// the kernel could not give us (we are out of descriptors: `MSG_CTRUNC`)
/// is appended as `None`, so that the others keep their places. Nothing
/// there yet is `EAGAIN`.
pub(crate) fn recv(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut VecDeque<Option<OwnedFd>>,
) -> rustix::io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    let before = fds.len();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = message {
            fds.extend(passed.map(Some));
        }
    }
    // One message carries at most one descriptor, and a read stops after
    // it: a truncation lost exactly that one.
    if got.flags.contains(ReturnFlags::CTRUNC) && fds.len() == before {
        fds.push_back(None);
    }
    Ok(got.bytes)
}

/// How many bytes are waiting to be read in `socket` (`FIONREAD`); 0 if
/// that cannot be told.
pub(crate) fn queued(socket: BorrowedFd<'_>) -> usize {
    rustix::io::ioctl_fionread(socket).map_or(0, |n| n as usize)
}

/// `poll(2)` on `fds` for at most `timeout` (`None`: no limit). Returns how
/// many have events; each entry's `revents` says which.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> rustix::io::Result<usize> {
    let timeout = timeout.map(|t| Timespec {
        // A timeout past what the kernel takes is as good as none: ~292 years.
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: t.subsec_nanos().into(),
    });
    rustix::event::poll(fds, timeout.as_ref())
}

/// Whether `fd` polls readable (or hung up, or in error) right now.
pub(crate) fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(Duration::ZERO)) {
            Ok(_) => return !fds[0].revents().is_empty(),
            Err(Errno::INTR) => continue,
            // Cannot tell: say ready, so the caller looks and gets the error.
            Err(_) => return true,
        }
    }
}

/// A descriptor number that stays the same while what it refers to is
/// replaced: a [`Connection`](crate::Connection) hands out its number to
/// [`wait`](crate::wait()) by `&self`, and the process it watches changes
/// when the peer end moves to another process.
#[derive(Debug)]
pub(crate) struct FdSlot(OwnedFd);

impl FdSlot {
    /// A slot holding `fd`.
    pub(crate) fn new(fd: OwnedFd) -> FdSlot {
        FdSlot(fd)
    }

    /// Makes the slot's number refer to what `fd` refers to
    /// (`dup3(2)`, close-on-exec), atomically: the number is never closed
    /// or free in between, so a poll on it elsewhere sees the old or the
    /// new file, never an unrelated one.
    pub(crate) fn replace(&self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        // SAFETY: `from_raw_fd` wants a descriptor nobody else owns; this
        // one is owned by `self.0`, so `alias` is a second owner, and the
        // contract is kept in substance only: `alias` is never dropped
        // (ManuallyDrop), so the number is closed once, by `self.0`, and it
        // is used for nothing but the `dup3` call, which needs the target
        // as `&mut OwnedFd`. `dup3` replaces what the number refers to in
        // one atomic step and leaves the number open, so `self.0` owns an
        // open descriptor before, during and after; a concurrent `dup3` on
        // the same slot from another thread would also leave it open
        // (either file), and a concurrent poll sees the old or the new one.
        let mut alias = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(self.0.as_raw_fd()) });
        Ok(rustix::io::dup3(fd, &mut alias, DupFlags::CLOEXEC)?)
    }
}

impl AsFd for FdSlot {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
