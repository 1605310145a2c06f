//! [`Child`]: the parent's handle on a started child: join (with or
//! without a timeout), status, signals.

use shm::pid::Pid;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::Signal;
use serde::de::DeserializeOwned;

use crate::wire::{Outcome, Received};
use crate::{lifetime, sys, ExitStatus, JoinError};

/// A running (or finished) child process started by
/// [`Process::start`](crate::Process::start).
///
/// Dropping a `Child` does not stop the process: it runs on, detached, and
/// its exit status is collected by nobody until this process exits.
#[derive(Debug)]
pub struct Child<T> {
    pid: Pid,
    name: String,
    daemon: bool,
    pidfd: OwnedFd,
    results: OwnedFd,
    /// Readable once the child announces a result too big for the socket
    /// buffer; from then on the parent reads while the child writes.
    streaming: OwnedFd,
    /// Whether the parent reads `results` while waiting (see `streaming`).
    reading: bool,
    received: Received,
    results_closed: bool,
    status: Option<ExitStatus>,
    joined: bool,
    _result: PhantomData<fn() -> T>,
}

impl<T> Child<T> {
    /// The handle on a child just forked by [`Process::start`](crate::Process::start).
    pub(crate) fn new(
        pid: Pid,
        name: String,
        daemon: bool,
        pidfd: OwnedFd,
        results: OwnedFd,
        streaming: OwnedFd,
    ) -> Child<T> {
        Child {
            pid,
            name,
            daemon,
            pidfd,
            results,
            streaming,
            reading: false,
            received: Received::default(),
            results_closed: false,
            status: None,
            joined: false,
            _result: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Child<T> {
    /// Waits for the child to finish and returns what its closure returned.
    ///
    /// Fails with [`JoinError::Failed`] (a
    /// [`Process::try_new`](crate::Process::try_new) closure returned an
    /// `Err`: its message and causes), [`JoinError::Panicked`] (carrying
    /// the panic message),
    /// [`JoinError::Exited`] (it called [`exit`](crate::exit) or
    /// `std::process::exit` with a code) or [`JoinError::Signaled`] (it was
    /// killed).
    pub fn join(mut self) -> Result<T, JoinError> {
        self.wait_until(None)?;
        self.take_result()
    }

    /// [`join`](Child::join), giving up after `timeout` with
    /// [`JoinError::Timeout`]; the child is untouched then and may be joined
    /// again. Never returns before `timeout` has passed unless the child
    /// finished.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<T, JoinError> {
        if self.joined {
            return Err(JoinError::AlreadyJoined {
                pid: self.pid,
                name: self.name.clone(),
            });
        }
        // `Duration::MAX` (or any timeout past the clock's end): no limit.
        if !self.wait_until(Instant::now().checked_add(timeout))? {
            return Err(JoinError::Timeout {
                pid: self.pid,
                name: self.name.clone(),
                timeout,
            });
        }
        self.take_result()
    }

    fn take_result(&mut self) -> Result<T, JoinError> {
        self.joined = true;
        let status = self.status.expect("waited for exit");
        let received = std::mem::take(&mut self.received);
        result_of(received.as_slice(), self.pid, &self.name)
            .unwrap_or_else(|| Err(ended_without_result(status, self.pid, &self.name)))
    }
}

/// What a child sent before it ended (`received`, not empty), as `join`
/// returns it; `None` if it sent nothing.
pub(crate) fn result_of<T: DeserializeOwned>(
    received: &[u8],
    pid: Pid,
    name: &str,
) -> Option<Result<T, JoinError>> {
    if received.is_empty() {
        return None;
    }
    let name = name.to_string();
    Some(match Outcome::<T>::decode(received) {
        Some(Outcome::Returned(value)) => Ok(value),
        Some(Outcome::Panicked(message)) => Err(JoinError::Panicked { pid, name, message }),
        Some(Outcome::Failed(message, causes)) => Err(JoinError::Failed {
            pid,
            name,
            message,
            causes,
        }),
        None => Err(JoinError::BadResult {
            pid,
            name,
            reason: format!(
                "{} bytes that do not decode as `{}`",
                received.len(),
                std::any::type_name::<T>()
            ),
        }),
    })
}

/// The error of a child that ended with `status` and sent nothing.
pub(crate) fn ended_without_result(status: ExitStatus, pid: Pid, name: &str) -> JoinError {
    let name = name.to_string();
    match status {
        ExitStatus::Exited(code) => JoinError::Exited { pid, name, code },
        ExitStatus::Signaled(signal) => JoinError::Signaled { pid, name, signal },
    }
}

impl<T> Child<T> {
    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The process's name (Python's `name`): the one given with
    /// [`Process::name`](crate::Process::name), or `Process-N` (see there).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's sentinel (Python's `Process.sentinel`): a descriptor (a
    /// pidfd) that polls readable once the child has exited, whether or
    /// not its status has been collected, and stays readable. It names this
    /// child for ever (never a process that reused its pid) and is closed
    /// with the `Child`. For `poll(2)`, `epoll(7)` or
    /// `queue::wait`; reading from it or closing it is not allowed.
    ///
    /// # Example
    ///
    /// ```
    /// use rustix::event::{poll, PollFd, PollFlags, Timespec};
    ///
    /// let child = daemon::Process::new(|| 7u8).start()?;
    /// let mut fds = [PollFd::from_borrowed_fd(child.sentinel(), PollFlags::IN)];
    /// let ten_seconds = Timespec { tv_sec: 10, tv_nsec: 0 };
    /// assert_eq!(poll(&mut fds, Some(&ten_seconds))?, 1, "readable once it exits");
    /// assert_eq!(child.join()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether the child was started as a daemon (Python's `p.daemon`):
    /// see [`Process::daemon`](crate::Process::daemon).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Whether the child is still running (Python's `is_alive()`).
    ///
    /// Looks without waiting and without collecting anything: it asks
    /// whether the [`sentinel`](Child::sentinel) is readable, so a child
    /// that has exited stays a zombie until [`join`](Child::join),
    /// [`exit_code`](Child::exit_code) or [`status`](Child::status)
    /// collects it, and what `join` returns is unchanged. Hence `&self`: it
    /// can be asked through a shared reference, of a child that
    /// [`wait_first`](crate::wait_first) is also watching.
    pub fn is_alive(&self) -> bool {
        self.status.is_none() && !sys::exited_now(self.pidfd.as_fd())
    }

    /// Python's `exitcode`: `None` while the child runs, its exit code once
    /// it exited, or minus the signal number that killed it.
    pub fn exit_code(&mut self) -> Option<i32> {
        let _ = self.wait_until(Some(Instant::now()));
        self.status.map(ExitStatus::code)
    }

    /// The exit status, once the child has finished (`None` before).
    pub fn status(&mut self) -> Option<ExitStatus> {
        let _ = self.wait_until(Some(Instant::now()));
        self.status
    }

    /// Sends SIGTERM (Python's `terminate()`). Does nothing if the child has
    /// already been collected.
    pub fn terminate(&self) -> io::Result<()> {
        self.signal(Signal::TERM.as_raw())
    }

    /// Sends SIGKILL (Python's `kill()`). Does nothing if the child has
    /// already been collected.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL.as_raw())
    }

    /// Sends `signal` to the child. Goes through a pidfd, so it can never
    /// reach an unrelated process that reused the pid.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        match sys::pidfd_send_signal(self.pidfd.as_fd(), signal) {
            // ESRCH: it has exited and is waiting to be collected.
            Err(err) if err.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => Ok(()),
            sent => sent,
        }
    }

    /// Reads results and waits for the exit until `deadline`. Returns whether
    /// the child has finished (and its status is collected).
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool, JoinError> {
        while self.status.is_none() {
            let timeout_ms = deadline.map(poll_ms_until);
            // Small results wait in the socket buffer until the child has
            // exited, so the parent wakes once, not once for the data and
            // again for the exit (measured: 1.5x a bare fork + waitpid
            // with two wake-ups, 1.1x with one).
            let second = if !self.reading {
                Some(self.streaming.as_fd())
            } else if self.results_closed {
                None
            } else {
                Some(self.results.as_fd())
            };
            let (exited, second_ready) =
                match sys::poll_readable(self.pidfd.as_fd(), second, timeout_ms) {
                    Ok(ready) => ready,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(JoinError::Os { op: "poll", source }),
                };
            if second_ready {
                if self.reading {
                    self.read_results(false)
                        .map_err(|source| JoinError::Os { op: "recv", source })?;
                } else {
                    self.reading = true;
                }
            }
            if exited {
                self.reap()?;
            } else if !second_ready && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
        // The child has exited: everything it sent is buffered. Take it without
        // waiting (a grandchild that inherited the socket may keep it open).
        self.read_results(true)
            .map_err(|source| JoinError::Os { op: "recv", source })?;
        Ok(true)
    }

    /// Reads what is available. Without `drain`, one read (poll said there
    /// is something); with it, until there is nothing more right now.
    fn read_results(&mut self, drain: bool) -> io::Result<()> {
        while !self.results_closed {
            match self.received.recv(self.results.as_fd(), self.reading) {
                Ok(0) => self.results_closed = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
            if !drain {
                return Ok(());
            }
        }
        Ok(())
    }

    fn reap(&mut self) -> Result<(), JoinError> {
        // Collected and forgotten under the registry's lock, so the exit
        // handler never signals a pid that was collected and reused.
        let mut children = lifetime::registry();
        match sys::waitpid(self.pid, false) {
            Ok(Some(status)) => {
                lifetime::forget(&mut children, self.pid);
                self.status = Some(status);
            }
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(JoinError::Os {
                    op: "waitpid",
                    source,
                })
            }
        }
        Ok(())
    }
}

/// The time left until `deadline`, in whole milliseconds for `poll(2)`,
/// rounded up so that poll never returns before the deadline.
pub(crate) fn poll_ms_until(deadline: Instant) -> u32 {
    let left = deadline.saturating_duration_since(Instant::now());
    u32::try_from(left.as_micros().div_ceil(1000))
        .unwrap_or(u32::MAX)
        .min(i32::MAX as u32)
}

/// Waits until the first of `children` has ended, for at most `timeout`
/// (`None`: no limit), and returns its index; `Ok(None)` once `timeout`
/// has passed with all of them running. Python's
/// `multiprocessing.connection.wait(sentinels, timeout)`, for children
/// alone and giving one index (the lowest, when several have ended).
///
/// Polls the children's [`sentinel`](Child::sentinel)s (pidfds): it wakes
/// when one exits, not by looking at intervals. Like
/// [`is_alive`](Child::is_alive) it collects nothing, so the child found is
/// then joined as usual, and a child already joined counts as ended (it
/// is returned at once: leave joined children out). Never returns `None`
/// before `timeout` has passed; an empty slice is `Ok(None)` at once.
/// Errors are those of `poll(2)` (interruptions are retried).
///
/// For children with different result types, or together with pipes and
/// queues, `queue::wait` takes any mix.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use daemon::{wait_first, Process};
///
/// let (tx, rx) = std::sync::mpsc::channel::<()>(); // keeps `slow` waiting
/// let slow = Process::new(move || { let _ = rx.recv(); 1u8 }).start()?;
/// let quick = Process::new(|| 2u8).start()?;
/// let first = wait_first(&[&slow, &quick], Some(Duration::from_secs(10)))?;
/// assert_eq!(first, Some(1));
/// assert_eq!(quick.join()?, 2);
/// slow.kill()?;
/// assert!(slow.join().is_err(), "killed");
/// # drop(tx);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait_first<T>(
    children: &[&Child<T>],
    timeout: Option<Duration>,
) -> io::Result<Option<usize>> {
    // A timeout past the clock's end: no limit, as in `join_timeout`.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let fds: Vec<BorrowedFd<'_>> = children.iter().map(|c| c.sentinel()).collect();
    loop {
        if let Some(ended) = children.iter().position(|c| !c.is_alive()) {
            return Ok(Some(ended));
        }
        if children.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        // Which is ready is looked at above, by each child's own state.
        match sys::poll_which(&fds, deadline.map(poll_ms_until)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
