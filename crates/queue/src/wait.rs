//! [`wait`]: Python's `multiprocessing.connection.wait`, over anything
//! [`Waitable`]: connections, child processes, queues.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use crate::pipe::{Connection, Receiver};
use crate::sys;

/// The first pause between two looks at objects without a descriptor.
pub const FDLESS_FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between two looks at objects without a descriptor.
pub const FDLESS_MAX_PAUSE: Duration = Duration::from_millis(10);

/// Something [`wait`] can wait for.
///
/// [`is_ready`](Waitable::is_ready) decides: `wait` returns an object only
/// when it says `true`. The descriptors only say when to ask again: `wait`
/// sleeps in `poll(2)` on [`ready_fd`](Waitable::ready_fd) and
/// [`also_fd`](Waitable::also_fd) of every object, and asks `is_ready` of
/// every object whenever one of them polls readable. An object with no
/// descriptor at all (`ready_fd` is `None`) is asked on a schedule instead:
/// after [`FDLESS_FIRST_PAUSE`] (1 ms), then after twice as long each time,
/// up to [`FDLESS_MAX_PAUSE`] (10 ms) between two looks.
///
/// # Example
///
/// ```
/// use std::os::fd::BorrowedFd;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// use queue::{wait, Waitable};
///
/// /// Ready once set; no descriptor, so `wait` looks every 1 to 10 ms.
/// struct Flag(AtomicBool);
///
/// impl Waitable for Flag {
///     fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
///         None
///     }
///     fn is_ready(&self) -> bool {
///         self.0.load(Ordering::SeqCst)
///     }
/// }
///
/// let flag = Flag(AtomicBool::new(false));
/// assert!(wait(&[&flag], Some(Duration::from_millis(20))).is_empty());
/// std::thread::scope(|s| {
///     s.spawn(|| flag.0.store(true, Ordering::SeqCst));
///     assert_eq!(wait(&[&flag], None), [0]);
/// });
/// ```
pub trait Waitable {
    /// A descriptor that polls readable (or hung up) whenever the object
    /// may have become ready, or `None` if there is none.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Whether the object is ready now: what `wait` reports. Must not
    /// block.
    fn is_ready(&self) -> bool;

    /// A second descriptor whose readability may make the object ready,
    /// if any (a [`Connection`] watches its peer's process with it). None
    /// by default.
    fn also_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` has passed
/// (`None`: as long as it takes), and returns the indices of those that are
/// ready, in order (Python's `multiprocessing.connection.wait`). Empty
/// means the timeout passed first; it never returns empty before. (With
/// no objects, it waits out the timeout; with no timeout either, for
/// ever, as Python's does.)
///
/// A [`Connection`] is ready when its `recv` would not wait: a whole
/// message is there, or the peer is gone (its process died, see
/// [`Connection`]). A [`daemon::Child`] is ready once it has exited (its
/// [`sentinel`](daemon::Child::sentinel)). Other types implement
/// [`Waitable`]; objects without a descriptor are looked at every 1 to 10 ms
/// (see [`Waitable`]).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use daemon::Process;
///
/// let (parent_end, child_end) = queue::pipe()?;
/// let child = Process::new(move || child_end.send(&"done").expect("sent")).start()?;
/// let mut seen = Vec::new();
/// while seen.len() < 2 {
///     for i in queue::wait(&[&parent_end, &child], Some(Duration::from_secs(10))) {
///         if i == 0 && !seen.contains(&"message") {
///             assert_eq!(parent_end.recv::<String>()?, "done");
///             seen.push("message");
///         }
///         if i == 1 && !seen.contains(&"exit") {
///             seen.push("exit");
///         }
///     }
/// }
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Vec<usize> {
    let start = Instant::now();
    let deadline = timeout.and_then(|t| start.checked_add(t));
    let fdless = objects.iter().any(|o| o.ready_fd().is_none());
    let mut pause = FDLESS_FIRST_PAUSE;
    loop {
        let ready: Vec<usize> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_ready())
            .map(|(i, _)| i)
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        let mut left = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return ready;
                }
                Some(d - now)
            }
        };
        if fdless {
            left = Some(left.map_or(pause, |l| l.min(pause)));
            pause = (pause * 2).min(FDLESS_MAX_PAUSE);
        }
        let mut fds: Vec<PollFd<'_>> = objects
            .iter()
            .flat_map(|o| [o.ready_fd(), o.also_fd()])
            .flatten()
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        match sys::poll(&mut fds, left) {
            Ok(_) | Err(Errno::INTR) => {}
            // Too many descriptors, or no memory: fall back to looking on
            // the schedule of objects without one.
            Err(_) => {
                let _ = sys::poll(&mut [], Some(left.map_or(pause, |l| l.min(pause))));
                pause = (pause * 2).min(FDLESS_MAX_PAUSE);
            }
        }
    }
}

impl Waitable for Connection {
    /// The socket.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }

    /// [`Connection::poll`] without waiting.
    fn is_ready(&self) -> bool {
        self.poll(Some(Duration::ZERO))
    }

    /// A pidfd of the process that owns the other end.
    fn also_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.peer_fd())
    }
}

impl Waitable for Receiver {
    /// The socket.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.connection().ready_fd()
    }

    /// [`Receiver::poll`] without waiting.
    fn is_ready(&self) -> bool {
        self.connection().is_ready()
    }

    /// A pidfd of the process that owns the sending end.
    fn also_fd(&self) -> Option<BorrowedFd<'_>> {
        self.connection().also_fd()
    }
}

/// A queue's [`Receiver`](crate::Receiver) is ready when a message is
/// there or every producer is gone ([`Receiver::is_ready`](crate::Receiver::is_ready)).
/// It has no descriptor: `wait` looks at it every 1 to 10 ms.
impl<T> Waitable for crate::Receiver<'_, T> {
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn is_ready(&self) -> bool {
        crate::Receiver::is_ready(self)
    }
}

impl<T> Waitable for daemon::Child<T> {
    /// The child's pidfd ([`daemon::Child::sentinel`]).
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sentinel())
    }

    /// Whether the child has exited (collected or not).
    fn is_ready(&self) -> bool {
        sys::readable_now(self.sentinel())
    }
}
