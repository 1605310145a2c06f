//! [`ForkServer`]: Python's `forkserver` start method. A single-threaded
//! process, forked early, forks the children; the task is a plain `fn`
//! and a `serde` argument.
//!
//! # Why
//!
//! [`Process::start`](crate::Process::start) forks the calling process.
//! If another thread held a lock at that instant (a `std::sync::Mutex`, a
//! logger's, a non-glibc allocator's), the child's copy of the lock is held
//! for ever: the child hangs the first time it takes it (issue #18). Python
//! 3.14 made `forkserver` its Linux default for this reason. A fork server
//! is forked while the program still has one thread; every child is a fork
//! of that quiet copy, whatever threads the program has started since.
//!
//! # Design
//!
//! - **Starting.** [`ForkServer::start`] forks the server at once with
//!   [`Process`](crate::Process): a daemon (it dies with the thread that
//!   started it, by the parent-death signal, and is terminated when the
//!   main code ends, as every daemon is) that closes every descriptor it
//!   inherited but its request socket. Call it early in `main`. From a
//!   multithreaded process it still starts (the test harness runs every
//!   test on a thread; refusing would make it unusable there), but
//!   `Process::start` prints the one-time
//!   [`MULTITHREADED_WARNING`](crate::MULTITHREADED_WARNING), and
//!   [`ForkServer::started_multithreaded`] says so: such a server carries
//!   the very locks it is meant to avoid.
//! - **The task.** A process cannot send code, only data. Since the server
//!   is a fork of the starter (never an `exec`), the executable is mapped at
//!   the same address there: the `fn` travels as two code addresses (the
//!   function and a runner monomorphized for its types, see `call.rs`, the
//!   idea of the `pool` crate), the argument encoded with `postcard`. So
//!   the task is a plain `fn(A) -> R`, not a closure: a closure's captures
//!   would be pointers into the starter's memory as it is *now*, which the
//!   server's older copy does not have.
//! - **Shared memory.** A served child is a fork of the server, not of
//!   the caller: it has the anonymous shared memory (`shm::Shared::new`,
//!   `Mutex::shared`, ...) that existed when the *server* started, and
//!   none made since. Make what children share before
//!   [`ForkServer::start`], or give it a name (`shm::Shared::create` in
//!   the caller, `Shared::open` in the task), as Python's forkserver
//!   children, which inherit nothing, must too.
//! - **The request.** [`ForkServer::spawn`] makes two socket pairs, one for
//!   the child's result and one for the server's reports, and sends one end
//!   of each to the server with the request (`SCM_RIGHTS`), over the
//!   server's request socket, which a mutex shares between threads. The
//!   server forks; the child writes its result straight to the requester;
//!   the server reports the child's pid (with a pidfd, opened while the
//!   child cannot be reaped, so it names that child for ever) and, once it
//!   has reaped the child, its exit status. So several threads may spawn at
//!   once, each waiting on its own sockets.
//! - **The server** is single-threaded: one `poll(2)` on its request socket
//!   and its children's pidfds. It reaps every child as it ends (no
//!   zombies) and leaves when the request socket closes.
//! - **Lifetimes.** The served children are daemons of the server: each
//!   dies (SIGKILL, the parent-death signal) when the server ends. Python's
//!   forkserver children outlive their server; but here nobody could then
//!   join them (their exit status goes to the server) or end them when the
//!   program ends, so an ended server would leave orphans behind. The
//!   server ends when the [`ForkServer`] *and* every [`ServedChild`] are
//!   dropped (each handle keeps it alive; the last one shuts its request
//!   socket down, and the server kills and reaps its children, leaves, and
//!   is reaped), when the thread that started it ends, when the main code
//!   ends (the daemon rule), or when it is killed. Nothing is left running;
//!   only a server killed from outside leaves its children (killed with
//!   it) for `init` to reap.
//! - **Failures.** A dead server makes `spawn` fail at once (its pidfd is
//!   watched: a send to it, or the wait for its report, never hangs); a
//!   child's join then ends with an error instead of waiting for a report
//!   that will not come (the child itself was killed with the server). A
//!   child killed by a signal is reported as such by the server.
//!
//! `spawn` (Python's third start method: `exec` a fresh interpreter) is
//! not offered: Rust has no interpreter to start and no way to find a
//! closure or a `fn` in a freshly `exec`ed image short of a registry of
//! entry points; run a separate program with `std::process::Command`.

use std::fmt;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::Signal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shm::pid::Pid;

use crate::call::Call;
use crate::child::{ended_without_result, result_of};
use crate::sys::{self, Forked};
use crate::wire::{run_catching, INLINE_RECEIVED};
use crate::{descriptors, Child, Error, ExitStatus, JoinError, Process};

/// A request's header: the argument's length, the runner's address and
/// the function's, each a little-endian `u64`.
const HEADER: usize = 24;
/// A report of the server on a child's report socket: a tag, then an
/// `i32`, little-endian.
const REPORT: usize = 5;
/// Reported once the child is forked: its pid, with a pidfd of it.
const STARTED: u8 = 1;
/// Reported instead of [`STARTED`] when the fork failed: the `errno`.
const FAILED: u8 = 2;
/// Reported once the child has exited and been reaped: its exit code.
const EXITED: u8 = 3;
/// Reported once the child was killed and reaped: the signal.
const SIGNALED: u8 = 4;

/// How long dropping the last handle waits for the server to end (it
/// kills and reaps its children first: at once, unless the machine is
/// stalled), and then again after a SIGKILL.
const REAP_WAIT: Duration = Duration::from_secs(10);

/// A fork server (Python's `set_start_method('forkserver')`): a
/// single-threaded process, forked early, that forks the children.
///
/// Children started with [`Process`](crate::Process) are forks of the
/// calling process, with whatever locks its other threads hold at that
/// instant held for ever. A child [`spawn`](ForkServer::spawn)ed here is a
/// fork of the server, which was forked at [`start`](ForkServer::start),
/// before those threads existed. The task is a plain `fn` and a `serde`
/// argument (see the module's design notes in the crate's documentation);
/// its result comes back as a [`Process`](crate::Process)'s does.
///
/// Start it early in `main`, from the main thread (the server dies with
/// the thread that started it). The server lives as long as the
/// `ForkServer` or any [`ServedChild`] of it; its children die with it
/// (SIGKILL), so dropping everything leaves no process behind. Only the
/// process that started it may spawn (a fork of that process is refused).
///
/// Served children are daemon processes: they may themselves start only
/// daemon [`Process`](crate::Process) children. Each is named `served-N`
/// (the N-th spawn; [`ServedChild::name`] says the same): its panic report
/// starts with `process "served-N" (pid P): `, its
/// [`current_process`](crate::current_process) says so, and its
/// [`parent_process`](crate::parent_process) is the server.
///
/// # Example
///
/// ```
/// use std::sync::Mutex;
/// use daemon::ForkServer;
///
/// static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
///
/// fn shout(word: String) -> String {
///     LOG.lock().unwrap().push(word.clone()); // the server's copy: free
///     word.to_uppercase()
/// }
///
/// let server = ForkServer::start()?; // early, while single-threaded
/// // The lock is held at the fork (here by this thread; a plain fork would
/// // copy it held, and the child would wait for ever).
/// let guard = LOG.lock().unwrap();
/// let child = server.spawn(shout, "hello".to_string())?;
/// assert_eq!(child.join()?, "HELLO");
/// drop(guard);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ForkServer {
    server: Arc<Server>,
}

/// The server, shared by the [`ForkServer`] and its [`ServedChild`]ren:
/// the last one dropped kills it.
struct Server {
    process: Child<()>,
    /// The request socket, one request at a time.
    requests: Mutex<OwnedFd>,
    /// The process that started the server: the only one that may spawn.
    owner: Pid,
    spawned: AtomicU64,
    multithreaded: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A fork's copy (a child that captured a handle): the server is not
        // this process's to end.
        if sys::getpid() != self.owner {
            return;
        }
        // The server reads EOF (even if a fork of this process holds a copy
        // of the socket), kills and reaps its children and leaves: nothing
        // is left for `init` to reap. SIGKILL if it does not.
        sys::shutdown(
            self.requests
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_fd(),
        );
        if self.process.join_timeout(REAP_WAIT).is_err() {
            let _ = self.process.kill();
            let _ = self.process.join_timeout(REAP_WAIT);
        }
    }
}

impl fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkServer")
            .field("pid", &self.server.process.pid())
            .field("multithreaded", &self.server.multithreaded)
            .finish()
    }
}

impl ForkServer {
    /// Forks the server now. Call it early in `main`, while this process
    /// has one thread, and from the main thread (the server dies with the
    /// thread that started it, by its parent-death signal).
    ///
    /// From a multithreaded process it still starts, but prints the
    /// one-time [`MULTITHREADED_WARNING`](crate::MULTITHREADED_WARNING)
    /// (as [`Process::start`](crate::Process::start) does; silenced by
    /// [`THREADS_OK_ENV`](crate::THREADS_OK_ENV)), and
    /// [`started_multithreaded`](ForkServer::started_multithreaded) is
    /// true. Errors are those of `Process::start` ([`Error::DaemonChild`]
    /// never: the server is a daemon).
    pub fn start() -> Result<ForkServer, Error> {
        let multithreaded = sys::thread_count().is_some_and(|n| n > 1);
        let (requests, server_end) = sys::socket_pair().map_err(|source| Error::Os {
            op: "socketpair",
            source,
        })?;
        let end = server_end.as_fd();
        let process = Process::new(move || serve(end))
            .daemon(true)
            .name("forkserver")
            .close_descriptors([end.as_raw_fd()])
            .start()?;
        drop(server_end);
        Ok(ForkServer {
            server: Arc::new(Server {
                process,
                requests: Mutex::new(requests),
                owner: sys::getpid(),
                spawned: AtomicU64::new(0),
                multithreaded,
            }),
        })
    }

    /// The server process's pid.
    pub fn pid(&self) -> Pid {
        self.server.process.pid()
    }

    /// Whether the server process is still running.
    pub fn is_alive(&self) -> bool {
        self.server.process.is_alive()
    }

    /// Whether this process had more than one thread when the server was
    /// forked: then the server holds a copy of whatever locks those threads
    /// held, and so may its children (see the type's documentation).
    pub fn started_multithreaded(&self) -> bool {
        self.server.multithreaded
    }

    /// Runs `f(arg)` in a new child forked by the server, and returns at
    /// once with a handle to it. The child's result, or its panic, or how
    /// it ended, comes back through [`ServedChild::join`].
    ///
    /// `f` is a plain function (not a closure: it runs in the server's copy
    /// of this process, taken at [`start`](ForkServer::start), where
    /// nothing this process made since exists); `arg` travels encoded with
    /// `postcard`. Safe to call from several threads at once.
    ///
    /// Fails at once, never waiting, if the server has ended
    /// ([`Error::Os`] with `op` `"ForkServer::spawn"` and an
    /// `io::ErrorKind::BrokenPipe` error naming the server), when called
    /// from another process than the one that started the server
    /// (`io::ErrorKind::Unsupported`), or when `arg` cannot be encoded
    /// (`io::ErrorKind::InvalidInput`); a failed fork in the server is
    /// [`Error::Os`] with `op` `"fork (in the fork server)"`.
    ///
    /// Waits as long as the server needs to fork: a server that is stopped
    /// (SIGSTOP, a debugger, a frozen cgroup) holds it up until it runs
    /// again; [`spawn_timeout`](ForkServer::spawn_timeout) gives up.
    pub fn spawn<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<ServedChild<R>, Error>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.spawn_until(f, arg, None)
    }

    /// [`spawn`](ForkServer::spawn), giving up after `timeout` with
    /// [`Error::Os`] (`op` `"ForkServer::spawn"`, `io::ErrorKind::TimedOut`).
    ///
    /// A request the server has not wholly received by then cannot be
    /// taken back from its socket: the server is ended (it kills its
    /// children), and later spawns fail as on an ended server. A request it
    /// has received but not yet answered may still run once the server
    /// goes on; its child then finds nobody to send its result to.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn double(n: u32) -> u32 {
    ///     n * 2
    /// }
    ///
    /// let server = daemon::ForkServer::start()?;
    /// let child = server.spawn_timeout(double, 21, Duration::from_secs(10))?;
    /// assert_eq!(child.join()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_timeout<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        timeout: Duration,
    ) -> Result<ServedChild<R>, Error>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.spawn_until(f, arg, Instant::now().checked_add(timeout))
    }

    fn spawn_until<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        deadline: Option<Instant>,
    ) -> Result<ServedChild<R>, Error>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let server = &self.server;
        if sys::getpid() != server.owner {
            return Err(spawn_error(
                io::ErrorKind::Unsupported,
                "a ForkServer serves only the process that started it".to_string(),
            ));
        }
        let arg = postcard::to_stdvec(&arg).map_err(|e| {
            spawn_error(
                io::ErrorKind::InvalidInput,
                format!("the argument could not be encoded: {e}"),
            )
        })?;
        let call = Call::new(f);
        let os = |op| move |source| Error::Os { op, source };
        let (reports, reports_theirs) = sys::socket_pair().map_err(os("socketpair"))?;
        let (results, results_theirs) = sys::socket_pair().map_err(os("socketpair"))?;
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(&(arg.len() as u64).to_le_bytes());
        header[8..16].copy_from_slice(&(call.runner as u64).to_le_bytes());
        header[16..].copy_from_slice(&(call.func as u64).to_le_bytes());
        let n = {
            let requests = lock_until(&server.requests, deadline).ok_or_else(timed_out)?;
            let sentinel = server.process.sentinel();
            if sys::exited_now(sentinel) {
                return Err(server.gone());
            }
            let passed = [reports_theirs.as_fd(), results_theirs.as_fd()];
            send_while_alive(requests.as_fd(), &header, &passed, sentinel, deadline)
                .and_then(|()| send_while_alive(requests.as_fd(), &arg, &[], sentinel, deadline))
                .map_err(|e| match e.kind() {
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => server.gone(),
                    io::ErrorKind::TimedOut => {
                        // Part of a request may be in the socket: no later
                        // request could be read whole after it. End the
                        // server (it reads EOF once it runs).
                        sys::shutdown(requests.as_fd());
                        timed_out()
                    }
                    _ => Error::Os {
                        op: "sendmsg",
                        source: e,
                    },
                })?;
            // Counted under the request lock, in the order the server
            // reads the requests: the server names the child alike.
            server.spawned.fetch_add(1, Ordering::Relaxed) + 1
        };
        drop((reports_theirs, results_theirs));
        let mut fds = Vec::new();
        let report = loop {
            let wait = match deadline {
                None => None,
                Some(deadline) => match remaining_ms(deadline) {
                    0 => return Err(timed_out()),
                    ms => Some(ms),
                },
            };
            match next_report(reports.as_fd(), server.process.sentinel(), wait, &mut fds) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Os { op: "recv", source }),
                Ok(Next::Report(tag, value)) => break (tag, value),
                Ok(Next::Gone) if server_ends_soon(server) => return Err(server.gone()),
                // The server closed this request's report socket unanswered
                // and runs on: the descriptors sent with the request did not
                // reach it (the kernel drops them when the receiver has no
                // free descriptor). Not an ended server: a later spawn may
                // succeed once its children end.
                Ok(Next::Gone) => {
                    return Err(spawn_error(
                        io::ErrorKind::Other,
                        format!(
                            "the fork server (pid {}) could not take the request: its \
                             descriptors did not reach it (is it out of file descriptors? \
                             each running served child holds two)",
                            server.process.pid()
                        ),
                    ))
                }
                Ok(Next::Nothing) => {}
            }
        };
        match report {
            (STARTED, pid) => {
                let (Some(pid), Some(pidfd)) = (Pid::from_raw(pid), fds.pop()) else {
                    return Err(spawn_error(
                        io::ErrorKind::InvalidData,
                        "the fork server's report had no pidfd".to_string(),
                    ));
                };
                Ok(ServedChild {
                    server: Arc::clone(server),
                    pid,
                    name: format!("served-{n}"),
                    pidfd,
                    reports,
                    results,
                    received: Vec::new(),
                    results_closed: false,
                    server_gone: false,
                    status: None,
                    ended: false,
                    joined: false,
                    _result: PhantomData,
                })
            }
            (FAILED, errno) => Err(Error::Os {
                op: "fork (in the fork server)",
                source: io::Error::from_raw_os_error(errno),
            }),
            (tag, _) => Err(spawn_error(
                io::ErrorKind::InvalidData,
                format!("the fork server sent report {tag} first"),
            )),
        }
    }
}

impl Server {
    /// The error of a spawn on an ended server.
    fn gone(&self) -> Error {
        spawn_error(
            io::ErrorKind::BrokenPipe,
            format!("the fork server (pid {}) has ended", self.process.pid()),
        )
    }
}

/// Takes the request lock, waiting at most until `deadline`: another
/// thread's spawn holds it while it sends, which a stopped server can make
/// last (std's mutex has no timed lock: a try every millisecond, only
/// while contended and with a deadline).
fn lock_until<T>(lock: &Mutex<T>, deadline: Option<Instant>) -> Option<MutexGuard<'_, T>> {
    let Some(deadline) = deadline else {
        return Some(lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    };
    loop {
        match lock.try_lock() {
            Ok(guard) => return Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() >= deadline => return None,
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Whether the server has ended, or ends within a moment: a server that is
/// exiting closes its sockets before its pidfd turns readable.
fn server_ends_soon(server: &Server) -> bool {
    matches!(
        sys::poll_readable(server.process.sentinel(), None, Some(100)),
        Ok((true, _)) | Err(_)
    )
}

/// The error of a spawn that ran out of time.
fn timed_out() -> Error {
    spawn_error(
        io::ErrorKind::TimedOut,
        "the fork server did not answer in time (stopped?)".to_string(),
    )
}

/// Milliseconds left until `deadline`, rounded up (0 once it has passed).
fn remaining_ms(deadline: Instant) -> u32 {
    let left = deadline.saturating_duration_since(Instant::now());
    u32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u32::MAX)
}

/// An [`Error::Os`] of `ForkServer::spawn` itself.
fn spawn_error(kind: io::ErrorKind, message: String) -> Error {
    Error::Os {
        op: "ForkServer::spawn",
        source: io::Error::new(kind, message),
    }
}

/// Sends all of `bytes` (with `fds` along with the first of them) on the
/// request socket, waiting for room only while the server lives (its
/// `sentinel` is its pidfd): a dead server is `BrokenPipe`, even if some
/// other process holds a copy of the server's end; and only until
/// `deadline`: `TimedOut`.
fn send_while_alive(
    socket: BorrowedFd<'_>,
    mut bytes: &[u8],
    mut fds: &[BorrowedFd<'_>],
    sentinel: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match sys::send_with_fds(socket, bytes, fds, false) {
            Ok(n) => {
                bytes = &bytes[n..];
                fds = &[];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let wait = match deadline {
                    None => None,
                    Some(deadline) => match remaining_ms(deadline) {
                        0 => return Err(io::ErrorKind::TimedOut.into()),
                        ms => Some(ms),
                    },
                };
                let (_, ended) = loop {
                    match sys::poll_writable_or_readable(socket, sentinel, wait) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        ready => break ready?,
                    }
                };
                if ended {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What [`next_report`] found.
enum Next {
    /// A report: its tag and value (descriptors passed with it are in the
    /// `fds` given).
    Report(u8, i32),
    /// The server has ended: no report is coming.
    Gone,
    /// Nothing before the timeout.
    Nothing,
}

/// Waits up to `timeout_ms` (`None`: no limit) for the next report on
/// `reports`, while the server (its pidfd: `sentinel`) lives.
fn next_report(
    reports: BorrowedFd<'_>,
    sentinel: BorrowedFd<'_>,
    timeout_ms: Option<u32>,
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Next> {
    let (mut readable, ended) = sys::poll_readable(reports, Some(sentinel), timeout_ms)?;
    if ended && !readable {
        // The server sent anything it sent before it ended: if the socket
        // was looked at just before that, it is readable now.
        readable = sys::poll_readable(reports, None, Some(0))?.0;
        if !readable {
            return Ok(Next::Gone);
        }
    }
    if !readable {
        return Ok(Next::Nothing);
    }
    read_report(reports, fds)
}

/// Reads one report (it is there, or the socket is closed).
fn read_report(reports: BorrowedFd<'_>, fds: &mut Vec<OwnedFd>) -> io::Result<Next> {
    let mut report = [0u8; REPORT];
    let n = sys::recv_with_fds(reports, &mut report, fds)?;
    if n == 0 {
        return Ok(Next::Gone);
    }
    // Sent in one piece of five bytes; the rest, if ever split, follows.
    if n < REPORT && !sys::recv_exact(reports, &mut report[n..])? {
        return Ok(Next::Gone);
    }
    let value = i32::from_le_bytes(report[1..].try_into().expect("four bytes"));
    Ok(Next::Report(report[0], value))
}

/// A child started by [`ForkServer::spawn`]: its result, or how it ended.
///
/// Like a [`Child`](crate::Child), for a child this process did not fork
/// (the server did): it is watched through a pidfd the server sent, and its
/// exit status comes from the server. Dropping it leaves the child running
/// (until the server ends: the handle keeps the server alive meanwhile).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use daemon::{ForkServer, JoinError};
///
/// fn half(n: u32) -> u32 {
///     assert!(n % 2 == 0, "{n} is odd");
///     n / 2
/// }
///
/// let server = ForkServer::start()?;
/// let mut even = server.spawn(half, 10)?;
/// assert_eq!(even.join_timeout(Duration::from_secs(10))?, 5);
/// match server.spawn(half, 7)?.join() {
///     Err(JoinError::Panicked { message, .. }) => assert_eq!(message, "7 is odd"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ServedChild<R> {
    server: Arc<Server>,
    pid: Pid,
    name: String,
    pidfd: OwnedFd,
    /// The server's reports on this child.
    reports: OwnedFd,
    /// The child's result, written by the child itself.
    results: OwnedFd,
    received: Vec<u8>,
    results_closed: bool,
    /// The server ended before reporting the child's end.
    server_gone: bool,
    status: Option<ExitStatus>,
    /// The child has ended (reported, or dead after its server).
    ended: bool,
    joined: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for ServedChild<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedChild")
            .field("pid", &self.pid)
            .field("name", &self.name)
            .field("status", &self.status)
            .finish()
    }
}

impl<R: DeserializeOwned> ServedChild<R> {
    /// Waits for the child to finish and returns what its function
    /// returned.
    ///
    /// Fails with [`JoinError::Panicked`] (with the panic message),
    /// [`JoinError::Exited`] (it exited with a code without returning),
    /// [`JoinError::Signaled`] (it was killed), or, if the server ended
    /// first (killing the child with it: how it ended is unknown),
    /// [`JoinError::Os`] with `op` `"ForkServer"`.
    pub fn join(mut self) -> Result<R, JoinError> {
        self.wait_until(None)?;
        self.take_result()
    }

    /// [`join`](ServedChild::join), giving up after `timeout` with
    /// [`JoinError::Timeout`]; the child is untouched then and may be
    /// joined again.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, JoinError> {
        if self.joined {
            return Err(JoinError::AlreadyJoined {
                pid: self.pid,
                name: self.name.clone(),
            });
        }
        if !self.wait_until(Instant::now().checked_add(timeout))? {
            return Err(JoinError::Timeout {
                pid: self.pid,
                name: self.name.clone(),
                timeout,
            });
        }
        self.take_result()
    }

    fn take_result(&mut self) -> Result<R, JoinError> {
        self.joined = true;
        let received = std::mem::take(&mut self.received);
        // A served task is a plain `fn(A) -> R` whose `R` goes back as it
        // is: an `Err` of it is a value, never a `Failed` outcome.
        if let Some(result) = result_of(&received, self.pid, &self.name) {
            return result;
        }
        Err(match self.status {
            Some(status) => ended_without_result(status, self.pid, &self.name),
            None => JoinError::Os {
                op: "ForkServer",
                source: io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!(
                        "the fork server (pid {}) ended before process {:?} (pid {}), \
                         which it killed: how the child ended is unknown",
                        self.server.process.pid(),
                        self.name,
                        self.pid
                    ),
                ),
            },
        })
    }
}

impl<R> ServedChild<R> {
    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Its name: `served-N` for the N-th child of its server (in every
    /// [`JoinError`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pidfd of the child, as [`Child::sentinel`](crate::Child::sentinel):
    /// it polls readable once the child has exited.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether the child is still running (without waiting).
    pub fn is_alive(&self) -> bool {
        !self.ended && !sys::exited_now(self.pidfd.as_fd())
    }

    /// How the child ended, once the server has reported it (`None`
    /// before, and for ever if the server ended first).
    pub fn status(&mut self) -> Option<ExitStatus> {
        let _ = self.wait_until(Some(Instant::now()));
        self.status
    }

    /// Sends SIGKILL (Python's `kill()`), through the pidfd: it never
    /// reaches another process. Does nothing once the child has ended.
    pub fn kill(&self) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        match sys::pidfd_send_signal(self.pidfd.as_fd(), Signal::KILL.as_raw()) {
            Err(err) if err.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => Ok(()),
            sent => sent,
        }
    }

    /// Reads the result and the server's reports until the child has ended
    /// or `deadline` has passed. Returns whether it has ended.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool, JoinError> {
        let os = |op| move |source| JoinError::Os { op, source };
        while !self.ended {
            let timeout_ms = deadline.map(crate::child::poll_ms_until);
            // The server's reports and its pidfd while it lives; the
            // child's pidfd once it is gone (the child dies with it).
            let mut fds = Vec::with_capacity(3);
            if self.server_gone {
                fds.push(self.pidfd.as_fd());
            } else {
                fds.push(self.reports.as_fd());
                fds.push(self.server.process.sentinel());
            }
            if !self.results_closed {
                fds.push(self.results.as_fd());
            }
            let ready = match sys::poll_which(&fds, timeout_ms) {
                Ok(ready) => ready,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(JoinError::Os { op: "poll", source }),
            };
            drop(fds);
            let results_ready = !self.results_closed && ready[ready.len() - 1];
            if results_ready {
                self.read_results(false).map_err(os("recv"))?;
            }
            let mut progress = results_ready;
            if self.server_gone {
                if ready[0] {
                    self.ended = true;
                }
            } else if ready[0] || ready[1] {
                progress = true;
                let mut passed = Vec::new();
                let next = if ready[0] {
                    read_report(self.reports.as_fd(), &mut passed)
                } else {
                    next_report(
                        self.reports.as_fd(),
                        self.server.process.sentinel(),
                        Some(0),
                        &mut passed,
                    )
                };
                match next.map_err(os("recv"))? {
                    Next::Report(EXITED, code) => self.end(ExitStatus::Exited(code)),
                    Next::Report(SIGNALED, signal) => self.end(ExitStatus::Signaled(signal)),
                    Next::Report(..) | Next::Nothing => {}
                    Next::Gone => self.server_gone = true,
                }
            }
            if !self.ended && !progress && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
        // The child has ended: everything it sent is buffered. Take it
        // without waiting (a grandchild may keep the socket open).
        self.read_results(true).map_err(os("recv"))?;
        Ok(true)
    }

    fn end(&mut self, status: ExitStatus) {
        self.status = Some(status);
        self.ended = true;
    }

    /// Reads what is available: one read, or with `drain` until there is
    /// nothing more right now.
    fn read_results(&mut self, drain: bool) -> io::Result<()> {
        while !self.results_closed {
            self.received.reserve(64 * 1024);
            match sys::recv_now_appending(self.results.as_fd(), &mut self.received) {
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
}

/// A child of the server, until it is reaped.
struct Served {
    pid: Pid,
    pidfd: OwnedFd,
    /// Where its end is reported.
    reports: OwnedFd,
}

/// The server's loop: requests and reaping, until the request socket
/// closes (or fails).
fn serve(requests: BorrowedFd<'_>) {
    let me = sys::getpid();
    let mut children: Vec<Served> = Vec::new();
    // Requests taken so far: the number of the next child's name, counted
    // as the requesters count them (in the order of the request socket).
    let mut taken = 0u64;
    loop {
        let mut fds = vec![requests];
        fds.extend(children.iter().map(|c| c.pidfd.as_fd()));
        let ready = match sys::poll_which(&fds, None) {
            Ok(ready) => ready,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        drop(fds);
        let mut index = 0;
        children.retain(|child| {
            index += 1;
            if !ready[index] {
                return true;
            }
            match sys::waitpid(child.pid, false) {
                Ok(Some(status)) => {
                    let (tag, value) = match status {
                        ExitStatus::Exited(code) => (EXITED, code),
                        ExitStatus::Signaled(signal) => (SIGNALED, signal),
                    };
                    report(child.reports.as_fd(), tag, value, None);
                    false
                }
                Ok(None) => true,
                Err(e) => e.kind() == io::ErrorKind::Interrupted,
            }
        });
        if ready[0] && !take_request(requests, me, &mut taken, &mut children) {
            end_children(children);
            return;
        }
    }
}

/// When the server leaves on its own (its request socket closed: every
/// handle is dropped): kills its children and reaps them, rather than
/// leave them to the parent-death signal and to `init` to reap.
fn end_children(children: Vec<Served>) {
    for child in &children {
        // An unreaped child of ours: its pid cannot have been reused.
        let _ = sys::kill(child.pid, Signal::KILL);
    }
    for child in children {
        loop {
            match sys::waitpid(child.pid, true) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Some(ExitStatus::Signaled(signal))) => {
                    report(child.reports.as_fd(), SIGNALED, signal, None)
                }
                Ok(Some(ExitStatus::Exited(code))) => {
                    report(child.reports.as_fd(), EXITED, code, None)
                }
                _ => {}
            }
            break;
        }
    }
}

/// Sends a report (best effort: a requester that dropped its handle gets
/// none).
fn report(reports: BorrowedFd<'_>, tag: u8, value: i32, fd: Option<BorrowedFd<'_>>) {
    let mut bytes = [0u8; REPORT];
    bytes[0] = tag;
    bytes[1..].copy_from_slice(&value.to_le_bytes());
    let fds: &[BorrowedFd<'_>] = match &fd {
        Some(fd) => std::slice::from_ref(fd),
        None => &[],
    };
    if let Ok(n) = sys::send_with_fds(reports, &bytes, fds, true) {
        let _ = sys::send_all(reports, &bytes[n..]);
    }
}

/// Reads one request and forks its child. Returns false when the request
/// socket is closed or broken (the server then ends).
fn take_request(
    requests: BorrowedFd<'_>,
    me: Pid,
    taken: &mut u64,
    children: &mut Vec<Served>,
) -> bool {
    let mut header = [0u8; HEADER];
    let mut fds = Vec::new();
    let n = match sys::recv_with_fds(requests, &mut header, &mut fds) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    if n < HEADER && !matches!(sys::recv_exact(requests, &mut header[n..]), Ok(true)) {
        return false;
    }
    let word = |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().expect("8"));
    let Ok(len) = usize::try_from(word(0)) else {
        return false;
    };
    let mut arg = vec![0u8; len];
    if !matches!(sys::recv_exact(requests, &mut arg), Ok(true)) {
        return false;
    }
    let call = Call {
        runner: word(1) as usize,
        func: word(2) as usize,
    };
    *taken += 1;
    let Ok([reports, results]) = <[OwnedFd; 2]>::try_from(fds) else {
        // Not a request of `spawn`: nobody to answer.
        return true;
    };
    match sys::fork() {
        Err(e) => report(reports.as_fd(), FAILED, e.raw_os_error().unwrap_or(0), None),
        Ok(Forked::Child) => run_served(me, *taken, call, &arg, results),
        Ok(Forked::Parent(pid)) => {
            drop(results);
            match sys::pidfd_open(pid) {
                Ok(pidfd) => {
                    report(reports.as_fd(), STARTED, pid.as_raw(), Some(pidfd.as_fd()));
                    children.push(Served {
                        pid,
                        pidfd,
                        reports,
                    });
                }
                Err(e) => {
                    let _ = sys::kill(pid, Signal::KILL);
                    let _ = sys::waitpid(pid, true);
                    report(reports.as_fd(), FAILED, e.raw_os_error().unwrap_or(0), None);
                }
            }
        }
    }
    true
}

/// A served child: dies with the server, closes what it inherited but its
/// result socket, runs the call, sends the outcome, leaves with `_exit`.
/// Never returns, whatever panics.
fn run_served(server: Pid, number: u64, call: Call, arg: &[u8], results: OwnedFd) -> ! {
    sys::die_with_parent();
    // The server died before the line above: nobody will send the signal.
    if sys::getppid() != Some(server) {
        sys::exit_now(0);
    }
    crate::process::name_served_child(number);
    // The server's request socket and its other children's sockets: none
    // of them this child's (it never drops their owners: it `_exit`s).
    descriptors::close_all_except(&[results.as_raw_fd()]);
    let mut small = [0u8; INLINE_RECEIVED];
    let mut large = Vec::new();
    let (bytes, code) = run_catching(&mut small, &mut large, |small| call.run(arg, small));
    // If the requester is gone, nobody wants the result.
    let _ = sys::send_all(results.as_fd(), bytes);
    std::mem::forget(results);
    let _ = catch_unwind(|| io::stdout().flush());
    sys::exit_now(code)
}
