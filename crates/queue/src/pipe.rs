//! [`pipe`] and [`Connection`]: Python's `multiprocessing.Pipe`, over a Unix
//! stream socket pair, with whole frames and peer death as an error.
//!
//! # Wire format
//!
//! Every message is one frame: a 4-byte little-endian length, then that many
//! bytes. Values are encoded with `postcard`. A length with its top bit set
//! is a control frame of this crate (the only one: a process announcing that
//! it now owns the other end, see [`Connection`]), never shown to the user.
//! So the largest message is [`MAX_FRAME_LEN`] bytes (2 GiB - 1).
//!
//! # Example
//!
//! Python's
//!
//! ```python
//! parent_conn, child_conn = Pipe()
//! p = Process(target=lambda c: c.send([42, None, "hello"]), args=(child_conn,))
//! p.start()
//! print(parent_conn.recv())
//! p.join()
//! ```
//!
//! is, here:
//!
//! ```
//! use daemon::Process;
//!
//! let (parent_conn, child_conn) = queue::pipe()?;
//! let p = Process::new(move || child_conn.send(&(42, None::<u8>, "hello")).expect("sent"))
//!     .start()?;
//! assert_eq!(parent_conn.recv::<(i32, Option<u8>, String)>()?, (42, None, "hello".into()));
//! p.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! with no `close()` to forget: see [`Connection`] for why the parent's
//! `recv` cannot wait for ever on a child that has gone.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::sys::{self, FdSlot};

/// The largest message, in bytes, [`Connection::send_bytes`] and
/// [`Connection::send`] accept (its encoding): `2^31 - 1`. Longer ones are
/// refused with [`PipeError::TooLarge`], and nothing is sent.
pub const MAX_FRAME_LEN: usize = 0x7FFF_FFFF;

/// The top bit of a length word: a control frame.
const CONTROL: u32 = 0x8000_0000;
/// The control frame "the process `pid` (4 bytes LE) now owns the end that
/// sent this"; a pidfd of it travels along (`SCM_RIGHTS`).
const ANNOUNCE: u32 = CONTROL | 1;
/// [`ANNOUNCE`] without a pidfd (the announcer was out of descriptors):
/// the receiver looks the pid up.
const ANNOUNCE_PID: u32 = CONTROL | 3;
/// The length of every control frame, its length word included.
const CONTROL_LEN: usize = 8;
/// How many bytes one read asks for at least.
const READ_CHUNK: usize = 64 << 10;
/// How much buffer one read grows at most while a large frame arrives.
const READ_CHUNK_MAX: usize = 16 << 20;
/// How much a blocked send reads ahead of the user's `recv`, looking for
/// the peer's announcements.
const SEND_READ_AHEAD: usize = 1 << 20;

/// What went wrong on a [`Connection`].
///
/// # Example
///
/// ```
/// use queue::PipeError;
///
/// let (a, b) = queue::pipe()?;
/// a.send_bytes(&[0xff])?;
/// match b.recv::<String>() {
///     Err(PipeError::Decode { bytes, .. }) => assert_eq!(bytes, [0xff]),
///     other => panic!("unexpected: {other:?}"),
/// }
/// drop(a);
/// assert!(matches!(b.recv::<String>(), Err(PipeError::PeerClosed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipeError {
    /// The other end is gone: it was closed (dropped), or the process that
    /// owns it exited or was killed (see [`Connection`]). Every message it
    /// sent before has been received.
    #[error("the other end of the pipe is closed (its process exited, was killed or closed it)")]
    PeerClosed,
    /// The other end went away in the middle of a message: the part that
    /// arrived is dropped, never returned as a message.
    #[error("the other end of the pipe went away in the middle of a message: {received} of its {expected} bytes arrived")]
    TornFrame {
        /// The length the frame announced (without the 4-byte prefix).
        expected: usize,
        /// How many of those bytes arrived.
        received: usize,
    },
    /// The message is longer than [`MAX_FRAME_LEN`]; nothing was sent.
    #[error("a message of {len} bytes is longer than a pipe frame may be ({max} bytes); nothing was sent")]
    TooLarge {
        /// The message's length in bytes.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// No message arrived in time.
    #[error("no message arrived within {0:?}")]
    Timeout(Duration),
    /// The value could not be encoded; nothing was sent.
    #[error("a `{type_name}` could not be encoded for the pipe: {reason}; nothing was sent")]
    Encode {
        /// The value's type.
        type_name: &'static str,
        /// What `postcard` said.
        reason: String,
    },
    /// A message arrived whole but is not a value of the expected type. It
    /// is consumed: the next `recv` reads the next message.
    #[error("a message of {} bytes does not decode as `{type_name}`: {reason}", bytes.len())]
    Decode {
        /// The expected type.
        type_name: &'static str,
        /// What `postcard` said.
        reason: String,
        /// The message's bytes.
        bytes: Vec<u8>,
    },
    /// An earlier send stopped part-way through a frame (the peer went away
    /// or the system refused); nothing more can be sent on this connection.
    #[error("an earlier send was cut off in the middle of a message; nothing more can be sent on this connection")]
    Broken,
    /// A frame this crate does not expect arrived (an unknown control
    /// word): the peer does not speak this crate's wire format. Nothing
    /// more can be received.
    #[error("the other end sent a frame this crate does not expect (length word {word:#010x}); not a procsync pipe?")]
    Protocol {
        /// The length word.
        word: u32,
    },
    /// A system call failed.
    #[error("{op} failed on a pipe: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl PipeError {
    fn os(op: &'static str, errno: Errno) -> PipeError {
        PipeError::Os {
            op,
            source: errno.into(),
        }
    }
}

/// Opens a duplex pipe: two connected [`Connection`]s, each of which can
/// send to and receive from the other (Python's `Pipe()` or
/// `Pipe(duplex=True)`).
///
/// Uses four descriptors: a Unix stream socket pair
/// (`socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`) and, per end, a
/// pidfd of the process its peer belongs to (see [`Connection`]).
///
/// # Example
///
/// ```
/// let (a, b) = queue::pipe()?;
/// a.send(&("hello", 1u32))?;
/// assert_eq!(b.recv::<(String, u32)>()?, ("hello".to_string(), 1));
/// b.send_bytes(b"raw")?;
/// assert_eq!(a.recv_bytes()?, b"raw");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe() -> io::Result<(Connection, Connection)> {
    let (left, right) = sys::socket_pair()?;
    let me = shm::pid::current().as_raw();
    let creator = sys::pidfd_open(me)?;
    let creator_again = sys::dup(creator.as_fd())?;
    Ok((
        Connection::new(left, creator, me),
        Connection::new(right, creator_again, me),
    ))
}

/// Opens a one-way pipe: `(receiver, sender)`, in Python's order
/// (`Pipe(duplex=False)` returns `(reader, writer)`).
///
/// The halves are distinct types, [`Receiver`] and [`Sender`], rather than
/// two [`Connection`]s of which one must not be used for sending: sending
/// on the reading end is a compile error instead of Python's `OSError` at
/// run time. Underneath is the same socket pair as [`pipe`] (the receiving
/// end still writes one control frame, announcing its owner, when it moves
/// to another process), with the same guarantees.
///
/// # Example
///
/// ```
/// let (rx, tx) = queue::pipe_oneway()?;
/// tx.send(&[1u8, 2, 3])?;
/// assert_eq!(rx.recv::<[u8; 3]>()?, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe_oneway() -> io::Result<(Receiver, Sender)> {
    let (receiver, sender) = pipe()?;
    Ok((Receiver(receiver), Sender(sender)))
}

/// One end of a [`pipe`]: Python's `multiprocessing.connection.Connection`.
///
/// Messages are whole: a message is received entirely or not at all, values
/// are `serde` types encoded with `postcard`, and raw bytes go through
/// [`send_bytes`](Connection::send_bytes) and
/// [`recv_bytes`](Connection::recv_bytes). A send that the system cuts
/// short (a full buffer, a signal) is completed before `send` returns; if
/// it cannot be (the peer is gone) the connection is marked broken and
/// never sends again, so the peer never reads half a frame followed by
/// something else. A peer that dies in the middle of a frame is
/// [`PipeError::TornFrame`] to the reader, never a value.
///
/// # The other end's death is an error, not a hang
///
/// A receive whose peer has closed its end, or whose peer's process exited
/// or was killed, returns every message sent before and then
/// [`PipeError::PeerClosed`]; a send blocked on a full buffer returns
/// `PeerClosed` too.
///
/// The socket's own end-of-stream is not enough, because of `fork`: a
/// forked child inherits a copy of every descriptor (of every thread's
/// pipes), and [`daemon::Process`](https://docs.rs/procsync-daemon) never
/// drops, in the parent, the closure it moved into the child (the child
/// owns it), so a `Connection` moved into a child stays open in the parent
/// for ever, and the parent's end stays open in the child. (Python has the
/// same trap and asks its users to `close()` the unused ends.) So:
///
/// - **Closing ends the stream.** Dropping or
///   [`close`](Connection::close)-ing an end shuts the socket down
///   (`shutdown(2)` acts on the socket, not on one descriptor): the other
///   end's `recv` reports `PeerClosed` once it has taken the messages sent
///   before, and its `send` fails with `PeerClosed`, whatever copies of
///   the descriptor live on.
/// - **Each end has an owner process, and the other end watches it.** A
///   new `Connection` belongs to the process that called [`pipe`]. The
///   first time it is used (any method but `close` and drop) in
///   another process, that process takes it over and tells the other end,
///   with a control frame that carries a pidfd of itself. The other end
///   from then on watches that process: its exit, however it happens
///   (SIGKILL included), ends the other end's `recv`, `poll`, blocked
///   `send` and [`wait`](crate::wait()) with `PeerClosed` once the
///   messages it sent are taken. Until an announcement, the other end
///   watches the process that called `pipe` (which, in that process
///   itself, never fires). A receive (`recv`, `recv_timeout`, `poll`,
///   `wait`) does not wait for room for the announcement: if this end's
///   outgoing buffer is full (what was sent on it is not read yet), the
///   announcement goes out as soon as there is room while `recv`,
///   `recv_timeout` or `poll` waits, or at the next use (a `wait` only
///   tries when it looks at the connection); a send waits for room as for
///   its message.
///
/// So the usual pattern is safe with nothing to close: the parent keeps
/// `a`, moves `b` into a child, the child uses `b`; when the child ends
/// (returns, panics, is killed), the parent's `a.recv()` returns what it
/// sent, then `PeerClosed`. And if the parent dies, the child's `b.recv()`
/// returns `PeerClosed`, though the child holds a copy of `a`.
///
/// # What remains
///
/// - **A child that dies before it first used or dropped its end** (a
///   SIGKILL, or [`daemon::exit`](https://docs.rs/procsync-daemon), which
///   runs no destructor) never announced itself: the other end still
///   watches the pipe's creator, the parent (alive), and the parent's
///   forgotten copy keeps the socket open, so the parent's `recv` waits for
///   ever. Wait on the child too: [`wait(&[&conn, &child],
///   ...)`](crate::wait()) (Python's `wait([conn, p.sentinel])`), or use a
///   timeout, or have the child call
///   [`poll(Some(Duration::ZERO))`](Connection::poll) first thing.
///   (That poll announces it only if the end's outgoing buffer has room,
///   see above; a child whose receives found it full and that dies before
///   there was room has not announced itself either.)
/// - **One owner at a time**: the process watched is the last one that
///   announced. A `Connection` used by two processes (borrowed by a
///   child's closure while the parent still uses it) makes the other end
///   report `PeerClosed` when the last announcer exits, though the other
///   process still has it. (Frames of two writers could also interleave:
///   don't share an end.) Likewise a process that moves its end on to a
///   grandchild and exits before the grandchild first uses it makes the
///   other end report `PeerClosed`; and so does the process that called
///   `pipe` if it moves both ends into two children and exits before one
///   of them has used its end (each child watches it until the other
///   announces itself).
/// - Dropping ends the stream for every copy: a fork copy must not be
///   dropped by a process that does not own the end (`daemon::Process`
///   never does: the child drops only what it owns, the parent forgets what
///   it moved). A raw `fork` whose child drops its copies of the parent's
///   ends closes them for the parent too.
/// - A send blocked on a full buffer learns of a new owner only from the
///   first 1 MiB of what the peer sent and this end
///   has not received yet; beyond that it watches the previous owner.
/// - Out of descriptors: an announcement whose pidfd could not be opened
///   or passed (by the announcer: `ETOOMANYREFS`, too many descriptors in
///   flight) or received (by this end) goes by pid, looked up on
///   arrival: were the announcer dead by then and its pid reused, the
///   wrong process would be watched. If this end cannot open a pidfd
///   either (or put it in place: a descriptor limit lowered below the
///   number of the pidfd it holds), it goes on watching the previous
///   owner. Messages flow on in every case.
/// - Each pipe takes four descriptors (two sockets, two pidfds), Python's
///   two. An end moved into a child keeps its two open in the parent for
///   the parent's life (the parent never drops the closure, and has no
///   way to close its copy alone): a parent that starts many children with
///   an end moved into each runs out of descriptors. Lend the end to the
///   child's closure instead, and drop it once the child has exited.
///
/// A `Connection` is `Send` but not `Sync`: one thread at a time (put it in
/// a `Mutex` to share it), as Python's is not thread-safe either.
///
/// # Example
///
/// ```
/// use daemon::Process;
///
/// let (parent_end, child_end) = queue::pipe()?;
/// let child = Process::new(move || {
///     // The child owns `child_end` now; its first use announces it.
///     let n: u64 = child_end.recv().expect("a number");
///     child_end.send(&(n * 2)).expect("sent");
/// })
/// .start()?;
/// parent_end.send(&21u64)?;
/// assert_eq!(parent_end.recv::<u64>()?, 42);
/// child.join()?;
/// // The child has exited: its copy of the end is gone, though this process
/// // still holds the one it moved into the child's closure.
/// assert!(matches!(parent_end.recv::<u64>(), Err(queue::PipeError::PeerClosed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection {
    socket: OwnedFd,
    /// A pidfd of the process that owns the other end, as far as known.
    peer: FdSlot,
    /// The process that owns this end (the last one that used it).
    owner: Cell<i32>,
    /// Set once a send stopped part-way through a frame.
    send_broken: Cell<bool>,
    inbox: RefCell<Inbox>,
}

/// What was read from the socket and not yet taken as messages.
#[derive(Default)]
struct Inbox {
    /// `buf[start..end]` holds the bytes read and not consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Descriptors that came along (pidfds of announcements), in order;
    /// `None` for one the kernel could not give us.
    fds: VecDeque<Option<OwnedFd>>,
    /// An error `poll` found, for the next `recv` to return.
    pending: Option<PipeError>,
    /// The stream is done: once the whole frames in the inbox are taken,
    /// every receive returns `PeerClosed` (after `pending`, and a torn
    /// frame or `unknown_word` once).
    finished: bool,
    /// The last announcement named a process that was gone by the time it
    /// was read (by pid: no such process any more): the owner is dead, as
    /// if its pidfd polled readable. What it sent is still taken.
    owner_gone: bool,
    /// The stream was cut at a control word this crate does not know
    /// (`end` is where it was): reported as `Protocol` once the frames
    /// before it are taken.
    unknown_word: Option<u32>,
}

/// What one read from the socket did.
enum Read {
    Bytes,
    Nothing,
    Eof,
}

impl Inbox {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn word_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Room for at least `want` more bytes after `end`.
    fn make_room(&mut self, want: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // A large message's buffer is not kept for the small ones.
            if self.buf.len() > READ_CHUNK_MAX && want <= READ_CHUNK {
                self.buf = Vec::new();
            }
        }
        if self.buf.len() - self.end >= want {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
    }

    /// How many more bytes the frame at the head needs (0 if unknown).
    fn missing(&self) -> usize {
        if self.len() < 4 {
            return 0;
        }
        let word = self.word_at(self.start);
        let total = if word & CONTROL != 0 {
            CONTROL_LEN
        } else {
            4 + word as usize
        };
        total.saturating_sub(self.len())
    }

    /// Whether the rest of the frame at the head is in `socket` already
    /// (reading it waits for nothing).
    fn rest_queued(&self, socket: BorrowedFd<'_>) -> bool {
        let queued = sys::queued(socket);
        queued > 0 && queued >= self.missing()
    }

    /// Reads once from `socket` into the buffer.
    fn read(&mut self, socket: BorrowedFd<'_>) -> Result<Read, PipeError> {
        let want = self.missing().clamp(READ_CHUNK, READ_CHUNK_MAX);
        self.make_room(want);
        loop {
            match sys::recv(socket, &mut self.buf[self.end..], &mut self.fds) {
                Ok(0) => return Ok(Read::Eof),
                Ok(n) => {
                    self.end += n;
                    return Ok(Read::Bytes);
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(Read::Nothing),
                // A reset is the peer gone, like EOF.
                Err(Errno::CONNRESET) => return Ok(Read::Eof),
                Err(e) => return Err(PipeError::os("recvmsg", e)),
            }
        }
    }

    /// The length of the whole data frame at the head, if one is there,
    /// applying the control frames before it.
    fn head(&mut self, peer: &FdSlot) -> Result<Option<usize>, PipeError> {
        loop {
            if self.len() < 4 {
                return Ok(None);
            }
            let word = self.word_at(self.start);
            if word & CONTROL != 0 {
                if !self.control(self.start, word, peer)? {
                    return Ok(None);
                }
                self.start += CONTROL_LEN;
                continue;
            }
            let len = word as usize;
            return Ok((self.len() >= 4 + len).then_some(len));
        }
    }

    /// Consumes the whole data frame at the head, if there is one: its
    /// payload's range in `buf`, valid until the inbox is next read into.
    fn take_frame(&mut self, peer: &FdSlot) -> Result<Option<Range<usize>>, PipeError> {
        Ok(self.head(peer)?.map(|len| {
            let payload = self.start + 4..self.start + 4 + len;
            self.start += 4 + len;
            payload
        }))
    }

    /// Handles every complete control frame in the buffer, including those
    /// behind complete data frames (which stay, in order).
    fn scan_controls(&mut self, peer: &FdSlot) -> Result<(), PipeError> {
        let mut at = self.start;
        while self.end - at >= 4 {
            let word = self.word_at(at);
            if word & CONTROL == 0 {
                let next = at + 4 + word as usize;
                if next > self.end {
                    return Ok(());
                }
                at = next;
                continue;
            }
            if !self.control(at, word, peer)? {
                return Ok(());
            }
            // Cut it out of the stream.
            self.buf.copy_within(at + CONTROL_LEN..self.end, at);
            self.end -= CONTROL_LEN;
        }
        Ok(())
    }

    /// Applies the control frame at `at` if it is complete (returns whether
    /// it was).
    fn control(&mut self, at: usize, word: u32, peer: &FdSlot) -> Result<bool, PipeError> {
        if word != ANNOUNCE && word != ANNOUNCE_PID {
            // The stream ends here: the frames before it are still
            // received (this may be a look ahead, behind them), then
            // `Protocol`.
            self.finished = true;
            self.end = at;
            self.unknown_word = Some(word);
            return Ok(false);
        }
        if self.end - at < CONTROL_LEN {
            return Ok(false);
        }
        let pid = self.word_at(at + 4) as i32;
        // The pidfd sent along names the process for sure (it arrived no
        // later than the frame's first byte, in order with the others).
        // Without one (the announcer or this process was out of
        // descriptors) the pid is looked up, which a reused pid could fool
        // only if the announcer has died since.
        let passed = if word == ANNOUNCE {
            self.fds.pop_front().flatten()
        } else {
            None
        };
        let pidfd = match passed {
            Some(fd) => Ok(fd),
            None => sys::pidfd_open(pid),
        };
        match pidfd {
            // If `dup3` onto the slot fails (its number is above a
            // descriptor limit lowered since, `EBADF`), the previous owner
            // stays watched, as when out of descriptors: the frame is
            // consumed all the same, the messages flow on.
            Ok(fd) => {
                if peer.replace(fd.as_fd()).is_ok() {
                    self.owner_gone = false;
                }
            }
            // ESRCH: that process is already gone: so is the end it owned,
            // once what it sent (perhaps still in the socket) is taken.
            Err(Errno::SRCH) => self.owner_gone = true,
            // Out of descriptors here too: the previous owner stays
            // watched; the messages flow on.
            Err(_) => {}
        }
        Ok(true)
    }

    /// The error for a stream that has ended: a torn frame if part of one
    /// is here, else `PeerClosed`.
    fn ended(&mut self) -> PipeError {
        self.finished = true;
        if let Some(word) = self.unknown_word.take() {
            self.start = self.end;
            return PipeError::Protocol { word };
        }
        let len = self.len();
        if len == 0 {
            return PipeError::PeerClosed;
        }
        let expected = if len >= 4 {
            let word = self.word_at(self.start);
            if word & CONTROL != 0 {
                CONTROL_LEN - 4
            } else {
                word as usize
            }
        } else {
            // Not even the length arrived whole.
            4
        };
        self.start = self.end;
        PipeError::TornFrame {
            expected,
            received: len.saturating_sub(4),
        }
    }
}

impl Connection {
    fn new(socket: OwnedFd, peer: OwnedFd, owner: i32) -> Connection {
        Connection {
            socket,
            peer: FdSlot::new(peer),
            owner: Cell::new(owner),
            send_broken: Cell::new(false),
            inbox: RefCell::new(Inbox::default()),
        }
    }

    /// Sends `value`, encoded with `postcard`, as one message.
    ///
    /// Returns once the whole message is in the socket (the peer need not
    /// have read it). Blocks while the socket's buffer is full, until the
    /// peer reads or goes away ([`PipeError::PeerClosed`]). Fails with
    /// [`PipeError::Encode`] or [`PipeError::TooLarge`] without sending
    /// anything.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), PipeError> {
        let frame = postcard::to_extend(value, vec![0u8; 4]).map_err(|e| PipeError::Encode {
            type_name: std::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
        let mut frame = frame;
        let len = frame.len() - 4;
        check_len(len)?;
        frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.claim(true);
        self.write_frame(&[&frame], None, true)
    }

    /// Sends `bytes` as one message (Python's `send_bytes`), received whole
    /// by [`recv_bytes`](Connection::recv_bytes). At most
    /// [`MAX_FRAME_LEN`] bytes ([`PipeError::TooLarge`] otherwise, with
    /// nothing sent); blocks as [`send`](Connection::send) does.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), PipeError> {
        check_len(bytes.len())?;
        let word = (bytes.len() as u32).to_le_bytes();
        self.claim(true);
        self.write_frame(&[&word, bytes], None, true)
    }

    /// Receives the next message as a `T` (Python's `recv`), waiting for it
    /// as long as it takes; the other end's death ends the wait with
    /// [`PipeError::PeerClosed`] (see the type's docs), or
    /// [`PipeError::TornFrame`] if it died part-way through a message.
    ///
    /// A message that is not a `T` is [`PipeError::Decode`], carrying its
    /// bytes; it is consumed.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, PipeError> {
        self.recv_until(None)
    }

    /// [`recv`](Connection::recv), giving up with [`PipeError::Timeout`]
    /// after `timeout` (never earlier) if no message has arrived; nothing
    /// is consumed then.
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, PipeError> {
        match self.recv_until(Some(deadline(timeout))) {
            Err(PipeError::Timeout(_)) => Err(PipeError::Timeout(timeout)),
            got => got,
        }
    }

    /// Receives the next message's bytes (Python's `recv_bytes`): whatever
    /// the peer sent with [`send_bytes`](Connection::send_bytes) or
    /// [`send`](Connection::send). Errors as [`recv`](Connection::recv).
    pub fn recv_bytes(&self) -> Result<Vec<u8>, PipeError> {
        let mut bytes = Vec::new();
        self.recv_bytes_into(&mut bytes)?;
        Ok(bytes)
    }

    /// [`recv_bytes`](Connection::recv_bytes) into `buf` (Python's
    /// `recv_bytes_into`): replaces `buf`'s contents with the message,
    /// reusing its allocation, and returns the message's length.
    pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize, PipeError> {
        self.claim(false);
        let mut inbox = self.inbox.borrow_mut();
        let payload = self.next_frame(&mut inbox, None)?;
        buf.clear();
        buf.extend_from_slice(&inbox.buf[payload]);
        Ok(buf.len())
    }

    /// Whether a message is ready to be received, waiting up to `timeout`
    /// for one (`None`: as long as it takes; Python's `poll(timeout)`).
    ///
    /// `true` means the next `recv` returns at once: with a whole message,
    /// or with an error (the peer is gone, say). Unlike Python's, a message
    /// of which only part has arrived is not ready. Never returns `false`
    /// before `timeout` has passed.
    pub fn poll(&self, timeout: Option<Duration>) -> bool {
        self.claim(false);
        let mut inbox = self.inbox.borrow_mut();
        match self.wait_frame(&mut inbox, timeout.map(deadline)) {
            Ok(ready) => ready,
            Err(e) => {
                inbox.pending = Some(e);
                true
            }
        }
    }

    /// Closes this end (Python's `close()`); the same as dropping it. The
    /// peer's `recv` returns [`PipeError::PeerClosed`] once it has taken
    /// what was sent before, and its `send` fails with `PeerClosed`, even
    /// if copies of this end's descriptor are open in other processes.
    pub fn close(self) {
        drop(self);
    }

    fn recv_until<T: DeserializeOwned>(&self, deadline: Option<Instant>) -> Result<T, PipeError> {
        self.claim(false);
        let mut inbox = self.inbox.borrow_mut();
        let payload = self.next_frame(&mut inbox, deadline)?;
        let bytes = &inbox.buf[payload];
        let failed = |reason: String| PipeError::Decode {
            type_name: std::any::type_name::<T>(),
            reason,
            bytes: bytes.to_vec(),
        };
        match postcard::take_from_bytes::<T>(bytes) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(failed(format!(
                "{} bytes left over after the value",
                rest.len()
            ))),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// Waits for the next data frame and consumes it: its payload's range in
    /// `inbox.buf`, valid until the inbox is next used.
    fn next_frame(
        &self,
        inbox: &mut Inbox,
        deadline: Option<Instant>,
    ) -> Result<Range<usize>, PipeError> {
        if !self.wait_frame(inbox, deadline)? {
            return Err(PipeError::Timeout(Duration::ZERO));
        }
        Ok(inbox
            .take_frame(&self.peer)?
            .expect("wait_frame saw a whole frame"))
    }

    /// Waits until a whole data frame is at the head of the inbox (true), or
    /// `deadline` passes (false), or the stream fails.
    fn wait_frame(&self, inbox: &mut Inbox, deadline: Option<Instant>) -> Result<bool, PipeError> {
        if let Some(e) = inbox.pending.take() {
            return Err(e);
        }
        loop {
            // A whole frame? (Announcements before it are applied.)
            if inbox.head(&self.peer)?.is_some() {
                return Ok(true);
            }
            if inbox.finished {
                return Err(inbox.ended());
            }
            let past = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
            match inbox.read(self.socket.as_fd())? {
                // Read on while bytes come, but past the deadline only
                // what completes the message at the head from what is
                // there already: a large message may stream in for longer
                // than the timeout. (The peer's death is still looked at
                // once, below.)
                Read::Bytes if !past(deadline) || inbox.rest_queued(self.socket.as_fd()) => {
                    continue
                }
                Read::Bytes | Read::Nothing => {}
                Read::Eof => return Err(inbox.ended()),
            }
            // An owner known dead (announced by the pid of a process gone
            // since): its pidfd is not there to poll readable.
            if inbox.owner_gone && self.peer_gone(inbox, usize::MAX)? {
                inbox.finished = true;
                continue;
            }
            // Nothing more for now: wait for bytes or the owner's exit,
            // until the deadline. (Looked at once even when the deadline
            // has passed: `poll(Some(ZERO))` must see a dead owner.)
            // An announcement that found no room is sent once there is.
            let announcing = self.unclaimed();
            let events = if announcing {
                PollFlags::IN | PollFlags::OUT
            } else {
                PollFlags::IN
            };
            let mut fds = [
                PollFd::new(&self.socket, events),
                PollFd::new(&self.peer, PollFlags::IN),
            ];
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match sys::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(PipeError::os("poll", e)),
            }
            if announcing && fds[0].revents().contains(PollFlags::OUT) {
                self.claim(false);
            }
            if !fds[1].revents().is_empty() && self.peer_gone(inbox, usize::MAX)? {
                // Everything the dead owner sent is in the socket already:
                // the loop takes whole frames first, then reports the end.
                inbox.finished = true;
                continue;
            }
            if past(deadline) {
                // Whole frames already read count, however much more is
                // coming.
                return Ok(inbox.head(&self.peer)?.is_some());
            }
            if !(fds[0].revents() - PollFlags::OUT).is_empty() {
                continue;
            }
        }
    }

    /// Whether the process watched as the peer's owner has exited, once
    /// every announcement of a new owner already sent (up to `read_ahead`
    /// bytes in the inbox) has been applied.
    fn peer_gone(&self, inbox: &mut Inbox, read_ahead: usize) -> Result<bool, PipeError> {
        loop {
            inbox.scan_controls(&self.peer)?;
            if inbox.finished {
                return Ok(true);
            }
            if !self.owner_dead(inbox) {
                return Ok(false);
            }
            if inbox.len() >= read_ahead {
                return Ok(true);
            }
            match inbox.read(self.socket.as_fd())? {
                Read::Bytes => continue,
                Read::Nothing | Read::Eof => {
                    inbox.scan_controls(&self.peer)?;
                    return Ok(inbox.finished || self.owner_dead(inbox));
                }
            }
        }
    }

    /// Whether the process last known to own the peer end has exited (as
    /// far as the announcements applied so far tell).
    fn owner_dead(&self, inbox: &Inbox) -> bool {
        inbox.owner_gone || sys::readable_now(self.peer.as_fd())
    }

    /// On the first use in a new process: take this end over and announce
    /// it to the peer (see the type's docs). Best effort: if the peer is
    /// gone, the operation that follows says so.
    ///
    /// Without `wait` (a receive), an announcement for which the socket has
    /// no room now is not waited for (the receive keeps its timeout, and
    /// the peer need not read first): the end stays unclaimed, and the
    /// next use, or the receive's own wait once the socket has room, tries
    /// again.
    fn claim(&self, wait: bool) {
        let me = shm::pid::current().as_raw();
        if self.owner.get() == me {
            return;
        }
        let frame = |word: u32| {
            let mut frame = [0u8; CONTROL_LEN];
            frame[..4].copy_from_slice(&word.to_le_bytes());
            frame[4..].copy_from_slice(&(me as u32).to_le_bytes());
            frame
        };
        let with_pidfd = sys::pidfd_open(me).ok().and_then(|pidfd| {
            match self.write_frame(&[&frame(ANNOUNCE)], Some(pidfd.as_fd()), wait) {
                // Nothing went out because the kernel refused the
                // descriptor (`ETOOMANYREFS`: too many in flight, say):
                // announce by pid instead.
                Err(PipeError::Os { .. }) if !self.send_broken.get() => None,
                sent => Some(sent),
            }
        });
        // The frame is sent even without a pidfd (out of descriptors): the
        // peer then looks the pid up.
        let sent =
            with_pidfd.unwrap_or_else(|| self.write_frame(&[&frame(ANNOUNCE_PID)], None, wait));
        // `Timeout`: no room, and not to be waited for: not claimed yet.
        if !matches!(sent, Err(PipeError::Timeout(_))) {
            self.owner.set(me);
        }
    }

    /// Whether this end still has to announce that this process owns it
    /// (a receive found no room for the announcement).
    fn unclaimed(&self) -> bool {
        self.owner.get() != shm::pid::current().as_raw()
    }

    /// Writes one whole frame (the concatenation of `parts`), passing `pass`
    /// along with its first byte. Completes short writes; if the frame
    /// cannot be finished, marks the connection broken.
    ///
    /// Without `wait`, a frame of which nothing fits now is not written:
    /// `Timeout` (and the inbox is not touched: the caller may hold it).
    fn write_frame(
        &self,
        parts: &[&[u8]],
        pass: Option<BorrowedFd<'_>>,
        wait: bool,
    ) -> Result<(), PipeError> {
        if self.send_broken.get() {
            return Err(PipeError::Broken);
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut sent = 0;
        let result = loop {
            // The parts not yet sent (at most two).
            let mut skip = sent;
            let mut iov: [IoSlice<'_>; 2] = [IoSlice::new(&[]), IoSlice::new(&[])];
            let mut count = 0;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                iov[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
            }
            let pass = if sent == 0 { pass } else { None };
            match sys::send(self.socket.as_fd(), &iov[..count], pass) {
                Ok(n) => {
                    sent += n;
                    if sent == total {
                        break Ok(());
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if !wait && sent == 0 => {
                    break Err(PipeError::Timeout(Duration::ZERO))
                }
                Err(Errno::AGAIN) => {
                    let writable = if wait {
                        self.wait_writable()
                    } else {
                        self.wait_writable_unread()
                    };
                    if let Err(e) = writable {
                        break Err(e);
                    }
                }
                Err(Errno::PIPE) | Err(Errno::CONNRESET) => break Err(PipeError::PeerClosed),
                Err(e) => break Err(PipeError::os("sendmsg", e)),
            }
        };
        if result.is_err() && sent > 0 {
            self.send_broken.set(true);
        }
        result
    }

    /// Waits until the socket takes more bytes, or the peer's owner is gone
    /// (`PeerClosed`). Meanwhile reads ahead (up to [`SEND_READ_AHEAD`]
    /// bytes) what the peer sent, to learn of a new owner: the process that
    /// announced itself may be the one that died, and the one this end
    /// watched (the pipe's creator, perhaps this process) may live on.
    fn wait_writable(&self) -> Result<(), PipeError> {
        loop {
            let read_more = {
                let mut inbox = self.inbox.borrow_mut();
                let more = match self.read_ahead(&mut inbox) {
                    Ok(more) => more,
                    // The receiving side's error: keep it for `recv`.
                    Err(e) => {
                        inbox.pending = Some(e);
                        false
                    }
                };
                if inbox.finished || inbox.owner_gone {
                    // The peer closed its end (or broke the stream), or its
                    // owner was gone when it announced itself.
                    return Err(PipeError::PeerClosed);
                }
                more
            };
            let events = if read_more {
                PollFlags::OUT | PollFlags::IN
            } else {
                PollFlags::OUT
            };
            let mut fds = [
                PollFd::new(&self.socket, events),
                PollFd::new(&self.peer, PollFlags::IN),
            ];
            match sys::poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(PipeError::os("poll", e)),
            }
            // Writable, or hung up or in error (the send then says so).
            if !(fds[0].revents() - PollFlags::IN).is_empty() {
                return Ok(());
            }
            if !fds[1].revents().is_empty() {
                let mut inbox = self.inbox.borrow_mut();
                match self.peer_gone(&mut inbox, SEND_READ_AHEAD) {
                    Ok(false) => {}
                    Ok(true) => return Err(PipeError::PeerClosed),
                    Err(e) => {
                        inbox.pending = Some(e);
                        return Err(PipeError::PeerClosed);
                    }
                }
            }
        }
    }

    /// [`wait_writable`](Connection::wait_writable) without reading ahead
    /// (the caller may hold the inbox): for the rest of an announcement
    /// begun without waiting, which in practice never happens (a Unix
    /// stream socket takes a frame of 8 bytes whole or not at all).
    fn wait_writable_unread(&self) -> Result<(), PipeError> {
        loop {
            let mut fds = [
                PollFd::new(&self.socket, PollFlags::OUT),
                PollFd::new(&self.peer, PollFlags::IN),
            ];
            match sys::poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(PipeError::os("poll", e)),
            }
            if !fds[0].revents().is_empty() {
                return Ok(());
            }
            if !fds[1].revents().is_empty() {
                return Err(PipeError::PeerClosed);
            }
        }
    }

    /// Reads what the peer sent, while the inbox holds less than
    /// [`SEND_READ_AHEAD`] bytes, and applies the announcements in it.
    /// Returns whether there is room to read more later.
    fn read_ahead(&self, inbox: &mut Inbox) -> Result<bool, PipeError> {
        let room = loop {
            if inbox.finished || inbox.len() >= SEND_READ_AHEAD {
                break false;
            }
            match inbox.read(self.socket.as_fd())? {
                Read::Bytes => continue,
                Read::Nothing => break true,
                // The end of the stream: a receive will say so.
                Read::Eof => break false,
            }
        };
        inbox.scan_controls(&self.peer)?;
        Ok(room)
    }
}

fn check_len(len: usize) -> Result<(), PipeError> {
    if len > MAX_FRAME_LEN {
        return Err(PipeError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

/// `now + timeout`; a timeout past the clock's end is none at all (a
/// century away).
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

impl Drop for Connection {
    /// Shuts the socket down (`shutdown(2)`) before closing it: the other
    /// end's `recv` returns `PeerClosed` once it has taken what was sent,
    /// and its `send` fails with `PeerClosed`, even while copies of the
    /// descriptor stay open in other processes (children forked meanwhile,
    /// by any thread; the copy `daemon::Process` leaves the parent).
    fn drop(&mut self) {
        sys::shutdown(self.socket.as_fd());
    }
}

impl AsFd for Connection {
    /// The socket: it polls readable when bytes (perhaps only part of a
    /// message) or the end of the stream arrive. It does not see the peer
    /// owner's death; [`wait`](crate::wait()) and
    /// [`poll`](Connection::poll) do.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("socket", &self.socket)
            .field("owner", &self.owner.get())
            .field("send_broken", &self.send_broken.get())
            .finish_non_exhaustive()
    }
}

/// The receiving half of [`pipe_oneway`]: a [`Connection`] that can only
/// receive.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use daemon::Process;
///
/// let (rx, tx) = queue::pipe_oneway()?;
/// let child = Process::new(move || {
///     for n in 1..=3u32 {
///         tx.send(&n).expect("sent");
///     }
/// })
/// .start()?;
/// let mut total = 0;
/// while rx.poll(Some(Duration::from_secs(10))) {
///     match rx.recv::<u32>() {
///         Ok(n) => total += n,
///         Err(queue::PipeError::PeerClosed) => break,
///         Err(e) => return Err(e.into()),
///     }
/// }
/// assert_eq!(total, 6);
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Receiver(Connection);

/// The sending half of [`pipe_oneway`]: a [`Connection`] that can only
/// send.
///
/// # Example
///
/// ```
/// use daemon::Process;
///
/// let (rx, tx) = queue::pipe_oneway()?;
/// let child = Process::new(move || rx.recv::<Vec<String>>().expect("a list").len())
///     .start()?;
/// tx.send(&vec!["a".to_string(), "b".to_string()])?;
/// assert_eq!(child.join()?, 2);
/// // The child has exited: sending to its end fails.
/// assert!(matches!(tx.send(&1u8), Err(queue::PipeError::PeerClosed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Sender(Connection);

impl Receiver {
    /// [`Connection::recv`].
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, PipeError> {
        self.0.recv()
    }

    /// [`Connection::recv_timeout`].
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, PipeError> {
        self.0.recv_timeout(timeout)
    }

    /// [`Connection::recv_bytes`].
    pub fn recv_bytes(&self) -> Result<Vec<u8>, PipeError> {
        self.0.recv_bytes()
    }

    /// [`Connection::recv_bytes_into`].
    pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize, PipeError> {
        self.0.recv_bytes_into(buf)
    }

    /// [`Connection::poll`].
    pub fn poll(&self, timeout: Option<Duration>) -> bool {
        self.0.poll(timeout)
    }

    /// [`Connection::close`].
    pub fn close(self) {
        self.0.close()
    }
}

impl Sender {
    /// [`Connection::send`].
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), PipeError> {
        self.0.send(value)
    }

    /// [`Connection::send_bytes`].
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), PipeError> {
        self.0.send_bytes(bytes)
    }

    /// [`Connection::close`].
    pub fn close(self) {
        self.0.close()
    }
}

impl AsFd for Receiver {
    /// [`Connection::as_fd`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsFd for Sender {
    /// [`Connection::as_fd`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Receiver {
    pub(crate) fn connection(&self) -> &Connection {
        &self.0
    }
}

impl Connection {
    /// The pidfd slot of the peer's owner (for [`wait`](crate::wait())).
    pub(crate) fn peer_fd(&self) -> BorrowedFd<'_> {
        self.peer.as_fd()
    }
}
