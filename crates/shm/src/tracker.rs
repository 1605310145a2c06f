//! The cleanup of named segments whose creator died: a small process per
//! user, the *tracker* (Python's `resource_tracker`, done with pidfds).
//!
//! A process that creates a named segment tells its user's tracker, right
//! after the file exists: over one `SOCK_SEQPACKET` connection per process
//! (an abstract Unix socket, `procsync-tracker-UID`, or the next of its
//! [`SLOTS`] if another user's process holds that one), the first message
//! carrying a pidfd of the process itself, then one message per name with
//! the file's device and inode. A name the creator removes or makes
//! persistent is withdrawn. The tracker polls every creator's pidfd; when a
//! creator ends, by any signal, SIGKILL included, each of its names that
//! still stands for the same file, is not persistent, and that nobody has
//! open or mapped is removed at once (well within 100 ms). "Nobody" is
//! decided by a write lease on the file, which the kernel grants only while
//! no other open file or mapping of it exists, of any process or user. A
//! name that is still used is watched through its users' pidfds (found in
//! `/proc`) and removed when the last lets go (and looked at again every
//! [`RECHECK`]).
//!
//! The first creator that finds no tracker forks one (twice, so that it
//! is nobody's child; in a session of its own, so that Ctrl-C on the
//! terminal does not reach it), after binding the listening socket itself,
//! so that its own connection can never find the address empty. The
//! tracker sheds everything it was forked with (descriptors, shared
//! mappings) and calls itself `procsync-track` in `ps`. It ends when it has
//! had nothing to watch and no connection for [`IDLE_EXIT`]. If it is
//! killed, each process reconnects at its next create, forking a new one,
//! and gives it all its names again; a new tracker first removes every
//! abandoned name of its user (names whose creator died while none ran) and
//! watches the names of creators that still run. A busy tracker looks
//! through `/dev/shm` the same way every [`SWEEP_EVERY`] (and at once after
//! a long backlog), for names whose message found the socket full.
//!
//! A tracker only accepts connections of its own user (`SO_PEERCRED`). A
//! `create` never waits for it (the client's socket is non-blocking).
//! Telling the tracker costs a `sendmsg` per `create` and per removal by
//! the creator (and a connection per process); nothing on any other path.
//! [`disable`] or `PROCSYNC_NO_TRACKER=1` create names without it (they
//! then stay until removed, and no tracker adopts them).
//!
//! ```
//! use shm::{inventory, tracker, Shared};
//! use std::sync::atomic::AtomicU64;
//!
//! let name = format!("procsync-doc-tracker-{}", std::process::id());
//! let counter = Shared::create(&name, AtomicU64::new(0))?;
//! // The create told this user's tracker (starting it if none ran).
//! assert!(tracker::running().is_some());
//! assert!(!inventory::inspect(&name)?.untracked);
//! drop(counter);
//! # Ok::<(), shm::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::inventory::{self, Verdict};
use crate::pid::{self, Pid};
use crate::process_local::ProcessLocal;
use crate::region::FileId;
use crate::sys;

/// How long a tracker with nothing to watch and no connection waits for a
/// new one before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(2);
/// How often a name kept because someone used it is looked at again.
pub const RECHECK: Duration = Duration::from_millis(500);
/// How often a busy tracker looks through `/dev/shm` for names of live
/// creators it was not told about (a creator's message that found the
/// socket full is not sent again: see [`LAG_SUSPECT`]).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Messages read from one connection at once that suggest its queue was
/// full (a socket holds a few hundred): look through `/dev/shm` at once.
const LAG_SUSPECT: usize = 64;
/// The environment variable that turns the tracker off for a process.
pub const DISABLE_VAR: &str = "PROCSYNC_NO_TRACKER";

/// A message's first byte: the connection's process, its pidfd attached.
const HELLO: u8 = b'H';
/// ... a name to watch: device and inode (16 bytes), then the name.
const TRACK: u8 = b'T';
/// ... a name no longer to watch (removed by its creator, or persistent).
const UNTRACK: u8 = b'U';
/// ... which process is the tracker: it answers with its pid (four bytes).
/// (`SO_PEERCRED` would name the process that bound the address: the one
/// that forked the tracker.)
const WHO: u8 = b'?';
/// Room for the longest message.
const MESSAGE_MAX: usize = 1 + 16 + crate::MAX_NAME_LEN + 1;

/// This process's connection to its tracker, and the names it told it.
#[derive(Default)]
struct Client {
    socket: Option<OwnedFd>,
    names: HashMap<String, FileId>,
}

/// This process's client state (a fork-aware lock: a child forked while
/// another thread of its parent told the tracker something can still
/// create names).
static CLIENT: ProcessLocal<Client> = ProcessLocal::new();

/// Runs `f` with this process's client state, its own (a parent's,
/// inherited across fork, is dropped by `ProcessLocal`: the names are the
/// parent's to watch).
fn with_client<R>(f: impl FnOnce(&mut Client) -> R) -> R {
    CLIENT.with(|client| f(client.get_or_insert_with(Client::default)))
}

/// Whether this process tells a tracker about the names it creates.
fn enabled() -> bool {
    !DISABLED.load(Ordering::Relaxed)
        && std::env::var_os(DISABLE_VAR).is_none_or(|v| v.is_empty() || v == "0")
}

/// Asks the tracker to remove `name` (the file `file`) if this process
/// dies without removing it; returns whether the tracker is on for this
/// process (off: the name is to be marked untracked). Best effort: a name
/// that cannot be tracked still works, and is left for `procsync gc` if
/// its creator dies.
pub(crate) fn track(name: &str, file: FileId) -> bool {
    if !enabled() {
        return false;
    }
    with_client(|client| {
        client.names.insert(name.to_string(), file);
        let message = track_message(name, file);
        if let Some(socket) = &client.socket {
            match sys::send_message(socket.as_fd(), &message, None) {
                Ok(()) => return,
                // The tracker does not keep up (stopped?): this name goes
                // untold, never a wait; the tracker finds it in /dev/shm
                // (it looks when it reads a long backlog, and every
                // SWEEP_EVERY), and it is told again after a reconnect.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {}
            }
        }
        // No connection yet, or the tracker went away: (re)connect and
        // tell the (new) tracker every name.
        client.socket = connect_or_start().ok();
        if let Some(socket) = &client.socket {
            let all_sent = client.names.iter().all(|(name, &file)| {
                sys::send_message(socket.as_fd(), &track_message(name, file), None).is_ok()
            });
            if !all_sent {
                client.socket = None;
            }
        }
    });
    true
}

/// Withdraws `name`: its creator removed it, or made it persistent.
pub(crate) fn untrack(name: &str) {
    with_client(|client| {
        if client.names.remove(name).is_none() {
            return;
        }
        if let Some(socket) = &client.socket {
            let mut message = vec![UNTRACK];
            message.extend_from_slice(name.as_bytes());
            let _ = sys::send_message(socket.as_fd(), &message, None);
        }
    })
}

fn track_message(name: &str, file: FileId) -> Vec<u8> {
    let mut message = Vec::with_capacity(17 + name.len());
    message.push(TRACK);
    message.extend_from_slice(&file.dev().to_le_bytes());
    message.extend_from_slice(&file.ino().to_le_bytes());
    message.extend_from_slice(name.as_bytes());
    message
}

/// Addresses a user's tracker may listen at: the first, and others to go
/// to when it is taken by a process of another user (abstract addresses
/// have no permissions: anyone may bind any name) or will not accept.
pub const SLOTS: u32 = 16;

/// A connection to this user's tracker, which says hello with this
/// process's pidfd; forks the tracker first if none runs. Tries the
/// [`SLOTS`] in turn, passing over an address another user holds or that
/// does not accept (its backlog full).
fn connect_or_start() -> std::io::Result<OwnedFd> {
    let uid = sys::getuid();
    let mut last_error = std::io::Error::other("every tracker address is taken");
    for slot in 0..SLOTS {
        match connect_at(uid, slot) {
            Ok(socket) => {
                let me = sys::pidfd_open(pid::current().get())
                    .unwrap_or_else(|| Err(std::io::Error::other("no pidfd of this process")))?;
                sys::send_message(socket.as_fd(), &[HELLO], Some(me.as_fd()))?;
                return Ok(socket);
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// A connection to this user's own tracker at `slot`, started there first
/// if the address is free.
fn connect_at(uid: u32, slot: u32) -> std::io::Result<OwnedFd> {
    match connect_own(uid, slot) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::CONNREFUSED.raw_os_error()) => {
            match sys::tracker_listen(uid, slot) {
                Ok(listener) => start(listener)?,
                // Another process started one just now (or holds the
                // address without listening: the connect below fails).
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::ADDRINUSE.raw_os_error()) => {
                }
                Err(e) => return Err(e),
            }
            connect_own(uid, slot)
        }
        connected => connected,
    }
}

/// A connection to this user's own tracker at `slot`: `ECONNREFUSED` if
/// none listens there, an error too if another user's process does (only
/// our own user's tracker is told anything).
fn connect_own(uid: u32, slot: u32) -> std::io::Result<OwnedFd> {
    let socket = sys::tracker_connect(uid, slot)?;
    if sys::peer_uid(socket.as_fd())? != uid {
        return Err(std::io::Error::other(
            "a tracker address held by another user",
        ));
    }
    Ok(socket)
}

/// Forks the tracker (twice: the middle process exits at once and is
/// reaped here, so the tracker is nobody's child and never a zombie of
/// ours), giving it `listener`.
fn start(listener: OwnedFd) -> std::io::Result<()> {
    match sys::fork()? {
        Some(middle) => {
            drop(listener);
            sys::reap(middle);
            Ok(())
        }
        None => {
            sys::new_session();
            match sys::fork() {
                Ok(None) => {
                    // Whatever happens in the tracker, it never unwinds
                    // into the copy of its forker's stack (whose drops
                    // would act for the forker: unlink its names).
                    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let listener = sys::become_daemon(listener, "procsync-track");
                        serve(listener);
                    }));
                    sys::exit_now(i32::from(served.is_err()))
                }
                _ => sys::exit_now(0),
            }
        }
    }
}

/// One connected process, as the tracker knows it.
struct Creator {
    socket: Option<OwnedFd>,
    /// Its pidfd, from its hello; `None` until then.
    pidfd: Option<OwnedFd>,
    names: HashMap<String, FileId>,
}

/// A name whose creator died while others still used it.
struct Kept {
    name: String,
    file: FileId,
    /// Pidfds of the processes that used it when last looked at.
    users: Vec<OwnedFd>,
    next_look: Instant,
}

/// The tracker's loop: accept connections, read their messages, and act on
/// creators' and users' ends; return after [`IDLE_EXIT`] of nothing.
fn serve(listener: OwnedFd) {
    let mut creators = adopt(&HashSet::new());
    let mut kept: Vec<Kept> = Vec::new();
    let mut sweep_at = Instant::now() + SWEEP_EVERY;
    let mut idle_since = Instant::now();
    // While out of descriptors, the listener is left alone for a while
    // (polling it would only spin on connections it cannot accept).
    let mut listener_rests_until: Option<Instant> = None;
    loop {
        let busy = !creators.is_empty() || !kept.is_empty();
        if busy {
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= IDLE_EXIT {
            return;
        }
        let now = Instant::now();
        let listening = listener_rests_until.is_none_or(|until| now >= until);
        let timeout = if kept.is_empty() && listening {
            IDLE_EXIT
        } else {
            RECHECK
        }
        .min(sweep_at.saturating_duration_since(now));
        // What to poll: the listener, then each creator's socket and
        // pidfd, then each kept name's users.
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        let mut roles: Vec<Role> = Vec::new();
        if listening {
            fds.push(listener.as_fd());
            roles.push(Role::Listener);
        }
        for (i, creator) in creators.iter().enumerate() {
            if let Some(socket) = &creator.socket {
                fds.push(socket.as_fd());
                roles.push(Role::Socket(i));
            }
            if let Some(pidfd) = &creator.pidfd {
                fds.push(pidfd.as_fd());
                roles.push(Role::CreatorEnded(i));
            }
        }
        for (i, name) in kept.iter().enumerate() {
            for user in &name.users {
                fds.push(user.as_fd());
                roles.push(Role::UserEnded(i));
            }
        }
        let ready = sys::poll_readable(&fds, timeout);
        drop(fds);
        let mut ended = vec![false; creators.len()];
        let mut look_again = vec![false; kept.len()];
        for (role, _) in roles.iter().zip(&ready).filter(|(_, &ready)| ready) {
            match *role {
                Role::Listener => match sys::accept(listener.as_fd()) {
                    Ok(socket) => {
                        if sys::peer_uid(socket.as_fd()).ok() == Some(sys::getuid()) {
                            creators.push(Creator {
                                socket: Some(socket),
                                pidfd: None,
                                names: HashMap::new(),
                            });
                            ended.push(false);
                        }
                    }
                    Err(e) if sys::out_of_descriptors(&e) => {
                        listener_rests_until = Some(Instant::now() + RECHECK);
                    }
                    Err(_) => {}
                },
                Role::Socket(i) => {
                    if read_messages(&mut creators[i]) >= LAG_SUSPECT {
                        sweep_at = Instant::now();
                    }
                }
                Role::CreatorEnded(i) => ended[i] = true,
                Role::UserEnded(i) => look_again[i] = true,
            }
        }
        // Creators that ended: read what they sent last, then judge all
        // their names together (one look at /proc).
        let mut orphaned = Vec::new();
        let mut still = Vec::with_capacity(creators.len());
        for (mut creator, ended) in creators.into_iter().zip(ended) {
            if ended {
                let _ = read_messages(&mut creator);
                orphaned.extend(creator.names);
            } else if creator.socket.is_some() || creator.pidfd.is_some() {
                // (A connection closed before its hello names nobody.)
                still.push(creator);
            }
        }
        creators = still;
        let now = Instant::now();
        let mut waiting = Vec::with_capacity(kept.len());
        for (name, again) in kept.into_iter().zip(look_again) {
            if again || name.next_look <= now {
                orphaned.push((name.name, name.file));
            } else {
                waiting.push(name);
            }
        }
        kept = waiting;
        if !orphaned.is_empty() {
            kept.extend(judge(orphaned));
        }
        if !creators.is_empty() && Instant::now() >= sweep_at {
            let known: HashSet<FileId> = creators
                .iter()
                .flat_map(|c| c.names.values().copied())
                .chain(kept.iter().map(|k| k.file))
                .collect();
            creators.extend(adopt(&known));
            sweep_at = Instant::now() + SWEEP_EVERY;
        }
    }
}

/// What a new tracker finds (and a busy one, every [`SWEEP_EVERY`]): this
/// user's names whose creator died while no tracker knew of them are
/// removed (if abandoned), and those whose creator still runs are watched
/// as if it had told us. Names of `known` files are already watched.
fn adopt(known: &HashSet<FileId>) -> Vec<Creator> {
    let me = sys::getuid();
    let mut creators = Vec::new();
    let Ok(names) = inventory::list() else {
        return creators;
    };
    for (name, info) in names {
        let Ok(info) = info else { continue };
        if info.uid != me || known.contains(&FileId::new(info.file.0, info.file.1)) {
            continue;
        }
        // Made with the tracker off: left to its maker and to `gc`.
        if info.persistent == Some(true) || info.untracked {
            continue;
        }
        let Some(creator) = info.creator.filter(|_| info.creator_alive == Some(true)) else {
            let _ = inventory::remove_inspected(&info, false);
            continue;
        };
        // Not UTF-8: renamed by hand (`create` takes text), so its creator
        // does not know it by this name; left to `gc` once it dies.
        let Ok(name) = name.into_string() else {
            continue;
        };
        // The pidfd first, then the creator's identity once more: if it
        // still runs now, the pidfd is of that very process. If it ended
        // meanwhile, its name is judged now like the others'.
        let pidfd = match sys::pidfd_open(creator.get()) {
            Some(Ok(pidfd)) => Some(pidfd),
            Some(Err(_)) => continue,
            None => None,
        };
        let confirmed = pidfd.filter(|_| {
            inventory::inspect(&name)
                .is_ok_and(|again| again.creator_alive == Some(true) && again.file == info.file)
        });
        let Some(pidfd) = confirmed else {
            // (Read again: `info` saw the creator alive.)
            let _ = inventory::remove_if_abandoned(&name, false);
            continue;
        };
        let file = FileId::new(info.file.0, info.file.1);
        creators.push(Creator {
            socket: None,
            pidfd: Some(pidfd),
            names: HashMap::from([(name, file)]),
        });
    }
    creators
}

/// What a polled descriptor is: the listener, creator `i`'s socket or
/// pidfd, or a user of kept name `i`.
#[derive(Clone, Copy)]
enum Role {
    Listener,
    Socket(usize),
    CreatorEnded(usize),
    UserEnded(usize),
}

/// Reads every message waiting on a creator's socket (closing it at its
/// end); returns how many.
fn read_messages(creator: &mut Creator) -> usize {
    let Some(socket) = creator.socket.take() else {
        return 0;
    };
    let mut buf = [0u8; MESSAGE_MAX];
    let mut read = 0;
    loop {
        match sys::recv_message(socket.as_fd(), &mut buf) {
            // The other end closed: the socket is dropped.
            Ok((0, _)) => return read,
            Ok((n, passed)) => {
                read += 1;
                apply(creator, socket.as_fd(), &buf[..n], passed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return read,
        }
    }
    creator.socket = Some(socket);
    read
}

fn apply(creator: &mut Creator, socket: BorrowedFd<'_>, message: &[u8], passed: Option<OwnedFd>) {
    let Some((&tag, rest)) = message.split_first() else {
        return;
    };
    match tag {
        HELLO if creator.pidfd.is_none() => creator.pidfd = passed,
        TRACK if rest.len() > 16 => {
            let dev = u64::from_le_bytes(rest[..8].try_into().expect("eight bytes"));
            let ino = u64::from_le_bytes(rest[8..16].try_into().expect("eight bytes"));
            if let Ok(name) = std::str::from_utf8(&rest[16..]) {
                creator
                    .names
                    .insert(name.to_string(), FileId::new(dev, ino));
            }
        }
        UNTRACK => {
            if let Ok(name) = std::str::from_utf8(rest) {
                creator.names.remove(name);
            }
        }
        WHO => {
            let me = pid::current().get().to_le_bytes();
            let _ = sys::send_message(socket, &me, None);
        }
        _ => {}
    }
}

/// Removes each of `names` (of creators that ended) that is not persistent
/// and that nobody has open or mapped (a write lease each: no `/proc`
/// pass); returns those still used, with pidfds of their users (one pass
/// over `/proc` for all of them) to watch. A name that could not be judged
/// (an error) is looked at again after [`RECHECK`].
fn judge(names: Vec<(String, FileId)>) -> Vec<Kept> {
    let in_use: Vec<(String, FileId)> = names
        .into_iter()
        .filter(|(name, file)| {
            matches!(
                inventory::remove_if_unused(name, *file),
                Ok(Verdict::Kept(_)) | Err(_)
            )
        })
        .collect();
    if in_use.is_empty() {
        return Vec::new();
    }
    let files: Vec<FileId> = in_use.iter().map(|(_, file)| *file).collect();
    let users = inventory::users_of_all(&files).unwrap_or_default();
    let next_look = Instant::now() + RECHECK;
    in_use
        .into_iter()
        .map(|(name, file)| Kept {
            users: users
                .get(&file)
                .into_iter()
                .flatten()
                .filter_map(|user| sys::pidfd_open(user.get())?.ok())
                .collect(),
            name,
            file,
            next_look,
        })
        .collect()
}

/// The pid of this user's tracker, if one runs (for tests and tools): the
/// one at the first of the [`SLOTS`] this user holds.
pub fn running() -> Option<Pid> {
    let uid = sys::getuid();
    (0..SLOTS).find_map(|slot| {
        let socket = connect_own(uid, slot).ok()?;
        sys::send_message(socket.as_fd(), &[WHO], None).ok()?;
        let mut answer = [0u8; 4];
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if !sys::poll_readable(&[socket.as_fd()], Duration::from_millis(100))[0] {
                continue;
            }
            return match sys::recv_message(socket.as_fd(), &mut answer) {
                Ok((4, _)) => Pid::from_u32(u32::from_le_bytes(answer)),
                _ => None,
            };
        }
        None
    })
}

/// Turns the tracker off for this process and the children it forks from
/// now on: the names they create stay after they die, until removed (the
/// behaviour before the tracker; for tests of what a dead creator leaves).
/// [`DISABLE_VAR`] does the same for a whole program.
pub fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

static DISABLED: AtomicBool = AtomicBool::new(false);
