//! [`Child`]: the parent's handle on a started child: join (with or
//! without a timeout), status, signals.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::wire::{Outcome, Received};
use crate::{lifetime, ExitStatus, JoinError};

/// A running (or finished) child process started by
/// [`Process::start`](crate::Process::start).
///
/// Dropping a `Child` does not stop the process: it runs on, detached, and
/// its exit status is collected by nobody until this process exits.
#[derive(Debug)]
pub struct Child<T> {
    pid: i32,
    name: Option<String>,
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
        pid: i32,
        name: Option<String>,
        pidfd: OwnedFd,
        results: OwnedFd,
        streaming: OwnedFd,
    ) -> Child<T> {
        Child {
            pid,
            name,
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
    /// Fails with [`JoinError::Panicked`] (carrying the panic message),
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
            return Err(JoinError::AlreadyJoined { pid: self.pid });
        }
        // `Duration::MAX` (or any timeout past the clock's end): no limit.
        if !self.wait_until(Instant::now().checked_add(timeout))? {
            return Err(JoinError::Timeout {
                pid: self.pid,
                timeout,
            });
        }
        self.take_result()
    }

    fn take_result(&mut self) -> Result<T, JoinError> {
        self.joined = true;
        let status = self.status.expect("waited for exit");
        let received = std::mem::take(&mut self.received);
        let received = received.as_slice();
        if !received.is_empty() {
            match postcard::from_bytes::<Outcome<T>>(received) {
                Ok(Outcome::Returned(value)) => return Ok(value),
                Ok(Outcome::Panicked(message)) => {
                    return Err(JoinError::Panicked {
                        pid: self.pid,
                        message,
                    })
                }
                Err(_) => {
                    return Err(JoinError::BadResult {
                        pid: self.pid,
                        reason: format!(
                            "{} bytes that do not decode as `{}`",
                            received.len(),
                            std::any::type_name::<T>()
                        ),
                    })
                }
            }
        }
        Err(match status {
            ExitStatus::Exited(code) => JoinError::Exited {
                pid: self.pid,
                code,
            },
            ExitStatus::Signaled(signal) => JoinError::Signaled {
                pid: self.pid,
                signal,
            },
        })
    }
}

impl<T> Child<T> {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The name given with [`Process::name`](crate::Process::name), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the child is still running (Python's `is_alive()`). Collects
    /// its exit status if it has finished.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.wait_until(Some(Instant::now())), Ok(false))
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
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`). Does nothing if the child has
    /// already been collected.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `signal` to the child. Goes through a pidfd, so it can never
    /// reach an unrelated process that reused the pid.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            let err = io::Error::last_os_error();
            // ESRCH: it has exited and is waiting to be collected.
            if err.raw_os_error() == Some(libc::ESRCH) {
                Ok(())
            } else {
                Err(err)
            }
        }
    }

    /// Reads results and waits for the exit until `deadline`. Returns whether
    /// the child has finished (and its status is collected).
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool, JoinError> {
        while self.status.is_none() {
            let timeout_ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up so that poll never returns before the deadline.
                    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
                }
            };
            // Small results wait in the socket buffer until the child has
            // exited, so the parent wakes once, not once for the data and
            // again for the exit (measured: 1.5x a bare fork + waitpid
            // with two wake-ups, 1.1x with one).
            let second = if !self.reading {
                self.streaming.as_raw_fd()
            } else if self.results_closed {
                -1
            } else {
                self.results.as_raw_fd()
            };
            let mut fds = [poll_fd(self.pidfd.as_raw_fd()), poll_fd(second)];
            // SAFETY: two valid pollfd structs; a negative fd is ignored.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
            if rc < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(JoinError::Os {
                    op: "poll",
                    source: io::Error::last_os_error(),
                });
            }
            if fds[1].revents != 0 {
                if self.reading {
                    self.read_results(false)
                        .map_err(|source| JoinError::Os { op: "recv", source })?;
                } else {
                    self.reading = true;
                }
            }
            if fds[0].revents != 0 {
                self.reap()?;
            } else if rc == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
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
            let spare = self.received.spare(self.reading);
            // SAFETY: a valid socket; `spare` is writable for its length,
            // and recv writes at most that many bytes.
            let n = unsafe {
                libc::recv(
                    self.results.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => self.results_closed = true,
                // SAFETY: recv initialised the first n bytes of `spare`.
                n if n > 0 => unsafe { self.received.filled(n as usize) },
                _ => {
                    let err = io::Error::last_os_error();
                    match err.raw_os_error() {
                        Some(libc::EINTR) => continue,
                        Some(libc::EAGAIN) => return Ok(()),
                        _ => return Err(err),
                    }
                }
            }
            if !drain {
                return Ok(());
            }
        }
        Ok(())
    }

    fn reap(&mut self) -> Result<(), JoinError> {
        let mut raw = 0;
        // Collected and forgotten under the registry's lock, so the exit
        // handler never signals a pid that was collected and reused.
        let mut children = lifetime::registry();
        // SAFETY: our own child; a valid out-pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
        if rc == self.pid {
            lifetime::forget(&mut children, self.pid);
            self.status = Some(ExitStatus::from_raw(raw));
        } else if rc < 0 {
            let source = io::Error::last_os_error();
            if source.raw_os_error() != Some(libc::EINTR) {
                return Err(JoinError::Os {
                    op: "waitpid",
                    source,
                });
            }
        }
        Ok(())
    }
}

fn poll_fd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
