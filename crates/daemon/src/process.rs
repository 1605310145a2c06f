//! [`Process`]: the builder, the fork, and the child's side of it, from the
//! fork to `_exit`.

use shm::pid::Pid;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::catch_unwind;
use std::sync::{Mutex, MutexGuard, Once, TryLockError};

use serde::Serialize;

use crate::output::{self, ChildError, Fallible, Returnable};
use crate::sys::{self, Forked};
use crate::wire::{run_catching, INLINE_RECEIVED, INLINE_RESULT_LIMIT};
use crate::{descriptors, lifetime, threads, Child, Error};

/// The names of a child's crash points (see `shm::crash`), in the order it
/// reaches them: just after the fork, once the closure's result is encoded,
/// after announcing a large result (one too big for the socket buffer),
/// after the whole result is sent, and just before `_exit`.
pub const PROCESS_CRASH_POINTS: &[&str] = &[
    "process: forked",
    "process: result encoded",
    "process: streaming announced",
    "process: result sent",
    "process: exiting",
];
/// A child process to be started: Python's `multiprocessing.Process`, with
/// the closure as its `target`.
///
/// [`start`](Process::start) forks. The child runs the closure in a copy of
/// this process's memory (so the closure may borrow anything, no `'static`
/// or `Send` needed), sends its return value back over a socket pair, and
/// leaves with `_exit`, never running this process's exit handlers or
/// destructors. [`Child::join`] returns the value.
///
/// # Ownership
///
/// As with `thread::spawn`, what the closure owns (what was moved into it)
/// belongs to the child once `start` succeeds: the child drops it, once,
/// when the closure returns; this process never does. A semaphore permit,
/// a lock guard or an owning [`shm::Shared`] handle moved in is released by
/// the child alone. (This process's copy of that memory is left as it was,
/// never freed: move in handles, and borrow large data instead.) The return
/// value is moved to the parent: it is serialized and sent, and the
/// child's copy is not dropped. If the fork itself fails, there is no
/// child and the closure is dropped here.
///
/// A panic in the child, in the closure, in the drop of what it captured or
/// in the result's `Serialize`, comes back as [`JoinError::Panicked`](crate::JoinError::Panicked)
/// (exit code [`PANIC_EXIT_CODE`]); the child never returns from `start`.
/// (A destructor that panics while a panic unwinds aborts the child, as
/// anywhere in Rust: [`JoinError::Signaled`](crate::JoinError::Signaled) with `SIGABRT`.)
///
/// # Threads and fork
///
/// A forked child has one thread: the one that called `start`. Locks held by
/// other threads at that instant (inside `malloc` of a non-glibc allocator,
/// a `std::sync::Mutex` of yours) stay held forever in the child. If this
/// process has other threads, the closure should touch only what the
/// forking thread owns and what is async-signal-safe; glibc's `malloc` is
/// safe after fork. procsync's own fork path takes nothing another thread
/// may hold: `start` takes the stdout lock and flushes stdout *before*
/// forking (so nothing buffered prints twice; stderr is unbuffered) and
/// holds the lock across the fork, so the child's copy is its own and the
/// child may print, and flushes what it printed on its way out. After the
/// fork it uses only the closure, the socket, stdout and `_exit`.
///
/// [`start`](Process::start) notices when this process has other threads
/// and says so once on stderr ([`MULTITHREADED_WARNING`](crate::MULTITHREADED_WARNING));
/// [`threads_ok`](Process::threads_ok) silences it for a child that is
/// safe. For a task that needs the program's locks, start a
/// [`ForkServer`](crate::ForkServer) early in `main`, while it has one
/// thread: its children are forks of that single-threaded copy.
///
/// # Example
///
/// ```
/// use daemon::Process;
///
/// let numbers = vec![3, 4, 5];
/// let child = Process::new(|| numbers.iter().map(|n| n * n).sum::<i32>())
///     .name("squares")
///     .start()?;
/// assert_eq!(child.join()?, 50);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a Process does nothing until started"]
pub struct Process<F> {
    body: F,
    name: Option<String>,
    daemon: bool,
    /// `Some`: the child closes every other descriptor (see
    /// [`close_descriptors`](Process::close_descriptors)).
    keep: Option<Vec<RawFd>>,
    /// Set by [`threads_ok`](Process::threads_ok).
    threads_ok: bool,
}

impl<F, T, E> Process<F>
where
    F: FnOnce() -> Result<T, E>,
{
    /// A process whose closure may fail, as a Python target may raise: it
    /// returns `Result<T, E>`, so `?` works in it. An `Ok` value is sent
    /// back as with [`new`](Process::new); an `Err` ends the child with
    /// [`FAILED_EXIT_CODE`](crate::FAILED_EXIT_CODE) and comes back as
    /// [`JoinError::Failed`](crate::JoinError::Failed), with the error's
    /// `Display` and those of its `source()` chain.
    ///
    /// `E` may be any `std::error::Error`, `Box<dyn Error>` (also
    /// `+ Send` and `+ Send + Sync`), a type that derefs to one
    /// (`anyhow::Error`), `String` or `&str` (see [`ChildError`]).
    ///
    /// (A `Result` whose both sides are serde types can also be returned
    /// through [`new`](Process::new): `join` then gives `Ok(Err(e))`, the
    /// error itself, deserialized.)
    ///
    /// ```
    /// use daemon::{JoinError, Process};
    ///
    /// let child = Process::try_new(|| -> Result<u32, Box<dyn std::error::Error>> {
    ///     let n: u32 = "12x".parse()?;
    ///     Ok(n * 2)
    /// })
    /// .name("parser")
    /// .start()?;
    /// let pid = child.pid();
    /// match child.join() {
    ///     Err(error @ JoinError::Failed { .. }) => assert_eq!(
    ///         error.to_string(),
    ///         format!("process \"parser\" (pid {pid}) failed: invalid digit found in string")
    ///     ),
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_new<M>(body: F) -> Process<impl FnOnce() -> Fallible<T, E, M>>
    where
        T: Serialize,
        E: ChildError<M>,
    {
        Process {
            body: move || Fallible::new(body()),
            name: None,
            daemon: false,
            keep: None,
            threads_ok: false,
        }
    }
}

impl<F, T> Process<F>
where
    F: FnOnce() -> T,
    T: Returnable,
{
    /// A process that will run `body` and send back what it returns: any
    /// `serde::Serialize` type (see [`Returnable`]).
    ///
    /// For a closure that uses `?`, see [`try_new`](Process::try_new).
    /// Returning a type that is not `Serialize` (a `Result` with a
    /// `Box<dyn Error>`, say) is refused at compile time, with this error:
    ///
    /// ```text
    /// error[E0277]: a child process's closure must return a value serde can send;
    ///               `Result<u32, Box<dyn std::error::Error>>` is not `serde::Serialize`
    ///   = note: to use `?` in the child, use `Process::try_new` instead of
    ///           `Process::new`: ...
    /// ```
    ///
    /// ```compile_fail,E0277
    /// let child = daemon::Process::new(|| -> Result<u32, Box<dyn std::error::Error>> {
    ///     Ok("12".parse::<u32>()?)
    /// });
    /// ```
    pub fn new(body: F) -> Process<F> {
        Process {
            body,
            name: None,
            daemon: false,
            keep: None,
            threads_ok: false,
        }
    }

    /// Says that forking from a multithreaded process is fine for this
    /// child: `start` then prints no [`MULTITHREADED_WARNING`](crate::MULTITHREADED_WARNING).
    ///
    /// Only when the closure touches nothing another thread may hold at
    /// the fork: no lock of the program's (a `std::sync::Mutex`, a
    /// logger's), only what the forking thread owns (see the section on
    /// threads above). Otherwise start a [`ForkServer`](crate::ForkServer)
    /// early in `main` and run the task there.
    pub fn threads_ok(mut self, ok: bool) -> Process<F> {
        self.threads_ok = ok;
        self
    }

    /// Makes the child a daemon (Python's `p.daemon = True`): it is
    /// terminated when this process's main code ends, instead of being
    /// waited for, and it dies at once if this process is killed (a
    /// parent-death signal, so no daemon outlives its parent as an orphan).
    ///
    /// The parent-death signal follows the *thread* that started the child:
    /// start daemons from a thread that lives as long as the process (the
    /// main thread, normally), or they die when that thread ends. A child
    /// whose starting thread ended before it could ask for the signal (the
    /// parent `exec`ed from another thread, which ends every other thread;
    /// or it exited) leaves at once: it checks, once the signal is asked
    /// for, that the starting thread still lists it among its children
    /// (`/proc/<pid>/task/<tid>/children`; where `/proc` cannot tell, only
    /// a change of parent process is caught).
    ///
    /// A daemon may itself start only daemons, which die with it; asking
    /// for a non-daemon child there is [`Error::DaemonChild`] (Python
    /// refuses any child of a daemon).
    pub fn daemon(mut self, daemon: bool) -> Process<F> {
        self.daemon = daemon;
        self
    }

    /// Whether the child will be a daemon (Python's `p.daemon`, read):
    /// what [`daemon`](Process::daemon) last set, `false` by default.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Names the process (Python's `Process(name=...)`): its thread name in
    /// the child (what `ps -L` and `top -H` show, at most 15 bytes), the
    /// start of its panic report (`process "worker-3" (pid 123): `, then
    /// the panic hook's own report, which `std`'s default hook starts on a
    /// new line: `thread 'main' panicked at ...`; Python prints
    /// `Process worker-3:` before the traceback) and every
    /// [`JoinError`](crate::JoinError)'s message
    /// (`process "worker-3" (pid 123) panicked: ...`).
    ///
    /// Unnamed, a process is called as in Python: `Process-N` for the N-th
    /// child this process starts (from 1), `Process-N:M` for the M-th child
    /// that one starts; its thread name is left as it was.
    ///
    /// The panic line's prefix comes from a panic hook the first
    /// [`start`](Process::start) installs in this process, around the hook
    /// in place then (so a hook set earlier still runs, after the prefix); a
    /// hook set after the first `start` replaces it, and with it the name
    /// in the panic report. The prefix is written to stderr itself: under
    /// the test harness's output capture, where the hook's report goes to
    /// the (forked, never printed) capture buffer, the prefix alone shows.
    ///
    /// ```
    /// use daemon::Process;
    ///
    /// let child = Process::new(|| -> u32 { panic!("sold out") }).name("worker-3").start()?;
    /// assert_eq!(child.name(), "worker-3");
    /// let error = child.join().unwrap_err();
    /// assert!(error.to_string().starts_with("process \"worker-3\" (pid "));
    /// assert!(error.to_string().ends_with(") panicked: sold out"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Process<F> {
        self.name = Some(name.into());
        self
    }

    /// Makes the child close, before its closure runs, every descriptor it
    /// inherited except stdin, stdout, stderr, its own channel to this
    /// process, and `keep`.
    ///
    /// For a long-lived child, a daemon above all: a forked child holds a
    /// copy of every descriptor open here at the fork, so as long as it
    /// lives, a pipe this process closes reaches no EOF at the other end, a
    /// listening socket stays bound and a closed connection sends no FIN.
    /// (Descriptors opened with close-on-exec do not help: the child does
    /// not exec.)
    ///
    /// The descriptors in `keep` must stay open here until `start` returns.
    /// In the child, a handle the closure captured that owns any *other*
    /// descriptor must be neither used nor dropped: its number is closed
    /// and may already name something the child opened since.
    pub fn close_descriptors(mut self, keep: impl IntoIterator<Item = RawFd>) -> Process<F> {
        self.keep = Some(keep.into_iter().collect());
        self
    }

    /// Forks and runs the closure in the child. Returns at once in the
    /// parent with a handle to the running child.
    ///
    /// Returns only in the parent: the child never comes back from this
    /// call, whatever panics there.
    ///
    /// If this process has more than one thread, it still forks, and
    /// prints [`MULTITHREADED_WARNING`](crate::MULTITHREADED_WARNING) to
    /// stderr the first time (see [`threads_ok`](Process::threads_ok)).
    pub fn start(self) -> Result<Child<T::Value>, Error> {
        if lifetime::is_daemon_process() && !self.daemon {
            return Err(Error::DaemonChild);
        }
        threads::check_before_fork(self.threads_ok);
        let (parent_end, child_end) = sys::socket_pair().map_err(|source| Error::Os {
            op: "socketpair",
            source,
        })?;
        let streaming = sys::event_fd().map_err(|source| Error::Os {
            op: "eventfd",
            source,
        })?;
        let Process {
            body,
            name: thread_name,
            daemon,
            keep,
            ..
        } = self;
        install_panic_prefix();
        // Held across the fork, as the registry below (and taken before
        // it): the child sets its own copy without allocating.
        let mut naming = naming();
        naming.started += 1;
        let number = naming.started;
        let identity = if naming.identity.is_empty() {
            naming.started.to_string()
        } else {
            format!("{}:{}", naming.identity, naming.started)
        };
        let name = thread_name
            .clone()
            .unwrap_or_else(|| format!("Process-{identity}"));
        // The child's copies, made here: the child allocates nothing.
        let for_child = (name.clone(), identity);
        // Sorted, with the child's own channel, before the fork: the child
        // allocates nothing.
        let keep = keep.map(|mut keep| {
            keep.extend([child_end.as_raw_fd(), streaming.as_raw_fd()]);
            keep.sort_unstable();
            keep.dedup();
            keep
        });
        // Once the fork succeeds the closure belongs to the child, as with
        // `thread::spawn`: the parent must never drop its copy, or whatever
        // was moved in (a permit, a guard, an owning handle) would be
        // released twice, once by each process.
        let body = ManuallyDrop::new(body);
        // The stdout lock is held across the fork, so that in the child it
        // is held by the child's own thread (and released just below), never
        // by a parent thread that does not exist there: the child can print
        // and flush on its way out without waiting for ever. Anything still
        // buffered is flushed first, or both processes would print it.
        // (Rust's stderr is unbuffered: nothing to flush there.)
        let mut stdout = io::stdout().lock();
        let _ = stdout.flush();
        let parent_pid = sys::getpid();
        let parent_tid = sys::gettid();
        // Held across the fork: no other thread can be half-way through a
        // change of it, and the child clears its copy.
        let mut children = lifetime::registry();
        // The child below runs only the closure and async-signal-safe calls
        // before `_exit` (see the type's documentation for the rule on
        // threads).
        let pid = match sys::fork() {
            Err(source) => {
                drop(children);
                drop(naming);
                drop(stdout);
                // No child: the closure is still ours to drop.
                drop(ManuallyDrop::into_inner(body));
                return Err(Error::Os { op: "fork", source });
            }
            Ok(Forked::Parent(pid)) => pid,
            Ok(Forked::Child) => {
                shm::crash_point!(PROCESS_CRASH_POINTS, "process: forked");
                // Debug builds: primitives used here must be in shared memory.
                shm::placement::entered_forked_child();
                // The parent's children are not ours to end or join. (Their
                // names are forgotten, not freed: no heap page is written.)
                std::mem::forget(std::mem::take(&mut *children));
                drop(children);
                // This process is now the child: its name, and the numbers
                // of the children it will start; its parent is the process
                // that was named so far.
                let parent_name = naming.name.take();
                naming.parent = Some(Parent {
                    pid: parent_pid,
                    name: parent_name,
                });
                naming.started_as = Some(sys::getpid());
                naming.name = Some(for_child.0);
                naming.identity = for_child.1;
                naming.started = 0;
                drop(naming);
                drop(stdout);
                drop(parent_end);
                run_child(
                    body,
                    Setup {
                        name: thread_name.as_deref(),
                        daemon,
                        parent_pid,
                        parent_tid,
                        keep: keep.as_deref(),
                    },
                    child_end,
                    &streaming,
                );
            }
        };
        drop(naming);
        drop(for_child);
        drop(stdout);
        children.push(lifetime::Registered {
            pid,
            daemon,
            parent: parent_pid,
            name: name.clone(),
            number,
        });
        drop(children);
        drop(child_end);
        let pidfd = sys::pidfd_open(pid).map_err(|source| Error::Os {
            op: "pidfd_open",
            source,
        })?;
        Ok(Child::new(pid, name, daemon, pidfd, parent_end, streaming))
    }
}

/// This process's place in the naming of processes (Python's `name` and
/// `_identity`), and its parent's.
pub(crate) struct Naming {
    /// This process's own name if it is a child started by [`Process`].
    pub(crate) name: Option<String>,
    /// Its numbers from the main process down (`"2:1"`), empty there.
    pub(crate) identity: String,
    /// The children it has started so far.
    started: u64,
    /// The process that started this one, if [`Process`] did.
    pub(crate) parent: Option<Parent>,
    /// The pid of the process [`Process::start`] started with this state
    /// (`None` in the main process). A process forked by other means
    /// inherits the state of its forker, with that forker's pid here.
    pub(crate) started_as: Option<Pid>,
}

/// The parent of a process started by [`Process`], as its child saw it at
/// the fork.
pub(crate) struct Parent {
    pub(crate) pid: Pid,
    /// Its name; `None` for the main process.
    pub(crate) name: Option<String>,
}

static NAMING: Mutex<Naming> = Mutex::new(Naming {
    name: None,
    identity: String::new(),
    started: 0,
    parent: None,
    started_as: None,
});
static INSTALL_PANIC_PREFIX: Once = Once::new();

/// The naming state, locked (nothing panics while holding it, but a poison
/// would change nothing in it anyway).
/// In a fork server's `number`th served child, right after the fork: its
/// name (`served-N`, as its handle says), numbers (the server's, then N),
/// and the server as its parent. The server is single-threaded: nobody
/// else can hold the naming state at the fork.
pub(crate) fn name_served_child(number: u64) {
    let mut naming = naming();
    let server = Parent {
        pid: sys::getppid().expect("a served child of a live server"),
        name: naming.name.take(),
    };
    naming.name = Some(format!("served-{number}"));
    naming.identity = if naming.identity.is_empty() {
        number.to_string()
    } else {
        format!("{}:{number}", naming.identity)
    };
    naming.started = 0;
    naming.parent = Some(server);
    naming.started_as = Some(sys::getpid());
}

pub(crate) fn naming() -> MutexGuard<'static, Naming> {
    NAMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wraps the panic hook in place, once, so that a panic in a child started
/// by [`Process`] starts with the process's name and pid. Installed in the
/// parent, before any fork: a child taking the hook's lock could find it
/// held by a thread of the parent that does not exist in the child.
fn install_panic_prefix() {
    // `set_hook` panics when called from a panicking thread: try again at
    // the next start.
    if std::thread::panicking() {
        return;
    }
    INSTALL_PANIC_PREFIX.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            announce_panicking_process();
            previous(info);
        }));
    });
}

/// In a child started by [`Process`]: writes `process "name" (pid N): `
/// to stderr, the start of the panic hook's line. Nothing in the main
/// process, or if the naming state is busy (a fork in progress on another
/// thread): never waits in a panic.
fn announce_panicking_process() {
    let naming = match NAMING.try_lock() {
        Ok(naming) => naming,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    if let Some(name) = &naming.name {
        let _ = write!(io::stderr(), "process {name:?} (pid {}): ", sys::getpid());
    }
}

/// What a new child sets up before running its closure.
struct Setup<'a> {
    /// The name given with [`Process::name`], its thread name.
    name: Option<&'a str>,
    daemon: bool,
    parent_pid: Pid,
    /// The thread that forked this child (its parent-death signal follows
    /// that thread).
    parent_tid: i32,
    keep: Option<&'a [RawFd]>,
}

impl Setup<'_> {
    fn apply(&self) {
        if let Some(name) = self.name {
            // No allocation in the child (see `run_child`). A NUL inside
            // the name ends it there.
            sys::set_thread_name(name);
        }
        if self.daemon {
            become_daemon(self.parent_pid, self.parent_tid);
        }
        if let Some(keep) = self.keep {
            descriptors::close_all_except(keep);
        }
    }
}

/// In a new daemon child: die with the parent (the thread that forked it).
fn become_daemon(parent_pid: Pid, parent_tid: i32) {
    lifetime::mark_daemon_process();
    sys::die_with_parent();
    // The parent may have died before the line above: then nobody will send
    // the signal, and the parent id has already changed. Nothing of the
    // child's own can be buffered yet: leave at once.
    if sys::getppid() != Some(parent_pid) {
        sys::exit_now(0);
    }
    // Or only the forking thread ended (an `exec` of the parent from another
    // thread ends all the others; or that thread returned): the child was
    // handed to another thread of the same process, so the parent id is
    // unchanged, and the signal went out before it was asked for. The
    // forking thread's list of children tells (the kernel moves the child
    // off it, under the lock that also sends the signal: either the signal
    // comes or the child is no longer listed). Where `/proc` cannot tell,
    // the check above is all there is.
    //
    // A child can also be missing from one read of that list while its
    // thread lives: the kernel walks it a record at a time, and a sibling
    // that exits meanwhile shifts the positions ("we might miss some
    // children here if children are exited", fs/proc/array.c). The CI saw
    // it: a daemon started while its elder siblings were being reaped left
    // at once. So only a miss seen again and again, for about
    // 10 ms, means the thread is gone (a dead thread's file is gone too:
    // `Some(false)` at once then, every time).
    for attempt in 0..CHILDREN_READS {
        if sys::listed_as_child_of_thread(parent_pid, parent_tid, sys::getpid()) != Some(false) {
            return;
        }
        if attempt + 1 < CHILDREN_READS {
            // nanosleep(2): no allocation, safe in a forked child.
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }
    sys::exit_now(0);
}

/// Reads of the forking thread's list of children before a daemon decides
/// that thread is gone (see `become_daemon`).
const CHILDREN_READS: u32 = 20;

/// The child side: never returns, whatever panics.
///
/// Everything the child does after the fork runs inside one
/// `catch_unwind`: the closure, the drop of what it captured, the result's
/// `Serialize`. A panic in any of them is reported to the parent as the
/// child's panic; nothing can unwind back into `start` and run the
/// parent's code a second time in the child.
fn run_child<F: FnOnce() -> T, T: Returnable>(
    body: ManuallyDrop<F>,
    setup: Setup<'_>,
    results: OwnedFd,
    streaming: &OwnedFd,
) -> ! {
    // Small results are encoded on the stack: every heap page the child
    // writes to is a copy-on-write fault, which the parent's side of a
    // start-and-join pays for in time (W6).
    let mut small = [0u8; INLINE_RECEIVED];
    let mut large = Vec::new();
    let (bytes, code) = run_catching(&mut small, &mut large, |small| {
        setup.apply();
        // The child's one drop of the closure: calling it by value drops
        // its captures when it returns (or unwinds).
        let value = ManuallyDrop::into_inner(body)();
        output::encode(value, small)
    });
    shm::crash_point!(PROCESS_CRASH_POINTS, "process: result encoded");
    if bytes.len() > INLINE_RESULT_LIMIT {
        // Too big to leave in the socket buffer: ask the parent to read
        // while we write.
        sys::event_fd_signal(streaming.as_fd());
        shm::crash_point!(PROCESS_CRASH_POINTS, "process: streaming announced");
    }
    // If the parent is gone or dropped its handle, nobody wants the result.
    let _ = sys::send_all(results.as_fd(), bytes);
    shm::crash_point!(PROCESS_CRASH_POINTS, "process: result sent");
    // `_exit` closes it; a `close` call here would only cost time.
    std::mem::forget(results);
    // What the closure printed and left buffered. The stdout lock cannot be
    // held by a thread of the parent (`start` held it across the fork and
    // the child released it); a panic here changes nothing any more.
    let _ = catch_unwind(|| io::stdout().flush());
    shm::crash_point!(PROCESS_CRASH_POINTS, "process: exiting");
    // Running none of the parent's exit handlers or destructors.
    sys::exit_now(code)
}
