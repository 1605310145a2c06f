//! The cleanup of named segments whose creator died: a small process per
//! user, the *tracker* (Python's `resource_tracker`, done with pidfds).
//!
//! A process that creates a named segment tells its user's tracker, right
//! after the file exists: over one `SOCK_SEQPACKET` connection per process
//! (an abstract Unix socket, `procsync-tracker-UID`), the first message
//! carrying a pidfd of the process itself, then one message per name with
//! the file's device and inode. A name the creator removes or makes
//! persistent is withdrawn. The tracker polls every creator's pidfd; when a
//! creator ends, by any signal, SIGKILL included, each of its names that
//! still stands for the same file, is not persistent, and that no process
//! maps or holds open is removed at once (well within 100 ms: a scan of
//! `/proc`). A name that is still used is watched through its users'
//! pidfds and removed when the last lets go (and looked at again every
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
//! and gives it all its names again; the new tracker first removes every
//! abandoned name of its user (names whose creator died while none ran).
//!
//! A tracker only accepts connections of its own user (`SO_PEERCRED`), and
//! only removes names that are abandoned by the rules of
//! [`inventory::SegmentInfo::abandoned`](crate::inventory::SegmentInfo::abandoned):
//! it never removes a name a live process maps or holds open (as far as
//! this user can see in `/proc`), nor one whose creator still runs.
//! Telling the tracker costs a `sendmsg` per `create` (and a connection per
//! process); nothing on any other path. Set `PROCSYNC_NO_TRACKER=1` to
//! create names without it (they then stay until removed, as before).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::inventory::{self, Verdict};
use crate::pid::{self, Pid};
use crate::region::FileId;
use crate::sys;

/// How long a tracker with nothing to watch and no connection waits for a
/// new one before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(2);
/// How often a name kept because someone used it is looked at again.
pub const RECHECK: Duration = Duration::from_millis(500);
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
struct Client {
    /// The process that made the connection: a forked child finds its
    /// parent's here, and makes its own.
    owner: Pid,
    socket: Option<OwnedFd>,
    names: HashMap<String, FileId>,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// This process's client state, its own (a parent's, inherited across
/// fork, is dropped: the names are the parent's to watch).
fn client() -> std::sync::MutexGuard<'static, Option<Client>> {
    let mut client = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
    let me = pid::current();
    if client.as_ref().is_none_or(|c| c.owner != me) {
        *client = Some(Client {
            owner: me,
            socket: None,
            names: HashMap::new(),
        });
    }
    client
}

/// Whether this process tells a tracker about the names it creates.
pub(crate) fn enabled() -> bool {
    !DISABLED.load(Ordering::Relaxed)
        && std::env::var_os(DISABLE_VAR).is_none_or(|v| v.is_empty() || v == "0")
}

/// Asks the tracker to remove `name` (the file `file`) if this process
/// dies without removing it. Best effort: a name that cannot be tracked
/// still works, and is left for `procsync gc` if its creator dies.
pub(crate) fn track(name: &str, file: FileId) {
    if !enabled() {
        return;
    }
    let mut guard = client();
    let client = guard.as_mut().expect("client() fills it");
    client.names.insert(name.to_string(), file);
    let message = track_message(name, file);
    if let Some(socket) = &client.socket {
        match sys::send_message(socket.as_fd(), &message, None) {
            Ok(()) => return,
            // The tracker does not keep up (stopped?): this name goes
            // untold for now, never a wait; it is told again with the
            // others after a reconnect.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {}
        }
    }
    // No connection yet, or the tracker went away: (re)connect and tell
    // the (new) tracker every name.
    client.socket = connect_or_start().ok();
    if let Some(socket) = &client.socket {
        let all_sent = client.names.iter().all(|(name, &file)| {
            sys::send_message(socket.as_fd(), &track_message(name, file), None).is_ok()
        });
        if !all_sent {
            client.socket = None;
        }
    }
}

/// Withdraws `name`: its creator removed it, or made it persistent.
pub(crate) fn untrack(name: &str) {
    let mut guard = client();
    let client = guard.as_mut().expect("client() fills it");
    if client.names.remove(name).is_none() {
        return;
    }
    if let Some(socket) = &client.socket {
        let mut message = vec![UNTRACK];
        message.extend_from_slice(name.as_bytes());
        let _ = sys::send_message(socket.as_fd(), &message, None);
    }
}

fn track_message(name: &str, file: FileId) -> Vec<u8> {
    let mut message = Vec::with_capacity(17 + name.len());
    message.push(TRACK);
    message.extend_from_slice(&file.dev().to_le_bytes());
    message.extend_from_slice(&file.ino().to_le_bytes());
    message.extend_from_slice(name.as_bytes());
    message
}

/// A connection to this user's tracker, which says hello with this
/// process's pidfd; forks the tracker first if none runs.
fn connect_or_start() -> std::io::Result<OwnedFd> {
    let uid = sys::getuid();
    let socket = match sys::tracker_connect(uid) {
        Ok(socket) => socket,
        Err(_) => {
            match sys::tracker_listen(uid) {
                Ok(listener) => start(listener)?,
                // Another process started one just now.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::ADDRINUSE.raw_os_error()) => {
                }
                Err(e) => return Err(e),
            }
            sys::tracker_connect(uid)?
        }
    };
    // Someone else's process may listen at our address: only our own
    // user's tracker is told anything.
    if sys::peer_uid(socket.as_fd())? != uid {
        return Err(std::io::Error::other(
            "the tracker's address belongs to another user",
        ));
    }
    let me = sys::pidfd_open(pid::current().get())
        .unwrap_or_else(|| Err(std::io::Error::other("no pidfd of this process")))?;
    sys::send_message(socket.as_fd(), &[HELLO], Some(me.as_fd()))?;
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
                    sys::become_daemon(listener.as_fd(), "procsync-track");
                    serve(listener);
                    sys::exit_now(0)
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
    let mut creators = adopt();
    let mut kept: Vec<Kept> = Vec::new();
    let mut idle_since = Instant::now();
    loop {
        let busy = !creators.is_empty() || !kept.is_empty();
        if busy {
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= IDLE_EXIT {
            return;
        }
        let timeout = if kept.is_empty() { IDLE_EXIT } else { RECHECK };
        // What to poll: the listener, then each creator's socket and
        // pidfd, then each kept name's users.
        let mut fds: Vec<BorrowedFd<'_>> = vec![listener.as_fd()];
        let mut owners: Vec<(usize, Role)> = vec![(0, Role::Listener)];
        for (i, creator) in creators.iter().enumerate() {
            if let Some(socket) = &creator.socket {
                fds.push(socket.as_fd());
                owners.push((i, Role::Socket));
            }
            if let Some(pidfd) = &creator.pidfd {
                fds.push(pidfd.as_fd());
                owners.push((i, Role::CreatorEnded));
            }
        }
        for (i, name) in kept.iter().enumerate() {
            for user in &name.users {
                fds.push(user.as_fd());
                owners.push((i, Role::UserEnded));
            }
        }
        let ready = sys::poll_readable(&fds, timeout);
        drop(fds);
        let mut ended_creators = Vec::new();
        let mut look_again = Vec::new();
        for (&(i, role), _) in owners.iter().zip(&ready).filter(|(_, &r)| r) {
            match role {
                Role::Listener => {
                    if let Ok(socket) = sys::accept(listener.as_fd()) {
                        if sys::peer_uid(socket.as_fd()).ok() == Some(sys::getuid()) {
                            creators.push(Creator {
                                socket: Some(socket),
                                pidfd: None,
                                names: HashMap::new(),
                            });
                        }
                    }
                }
                Role::Socket => read_messages(&mut creators[i]),
                Role::CreatorEnded => ended_creators.push(i),
                Role::UserEnded => look_again.push(i),
            }
        }
        // A connection closed before its hello names nobody: forget it.
        creators.retain(|c| c.socket.is_some() || c.pidfd.is_some());
        // Creators that ended: read what they sent last, then judge
        // their names.
        ended_creators.sort_unstable();
        ended_creators.dedup();
        for &i in ended_creators.iter().rev() {
            let mut creator = creators.swap_remove(i);
            read_messages(&mut creator);
            for (name, file) in creator.names {
                if let Some(still_used) = judge(&name, file) {
                    kept.push(still_used);
                }
            }
        }
        let now = Instant::now();
        look_again.sort_unstable();
        look_again.dedup();
        let due: Vec<usize> = (0..kept.len())
            .filter(|i| look_again.contains(i) || kept[*i].next_look <= now)
            .collect();
        for &i in due.iter().rev() {
            let name = kept.swap_remove(i);
            if let Some(still_used) = judge(&name.name, name.file) {
                kept.push(still_used);
            }
        }
    }
}

/// What a new tracker finds: this user's names whose creator died while no
/// tracker ran are removed (if abandoned), and those whose creator still
/// runs are watched as if it had told us (it tells again at its next
/// create, if it makes one).
fn adopt() -> Vec<Creator> {
    let me = sys::getuid();
    let mut creators = Vec::new();
    let Ok(names) = inventory::list() else {
        return creators;
    };
    for (name, info) in names {
        let Ok(info) = info else { continue };
        if info.uid != me {
            continue;
        }
        let Some(creator) = info.creator.filter(|_| info.creator_alive) else {
            let _ = inventory::remove_if_abandoned(&name, false);
            continue;
        };
        if info.persistent || info.untracked {
            continue;
        }
        // The pidfd first, then the creator's identity once more: if it
        // still runs now, the pidfd is of that very process.
        let Some(Ok(pidfd)) = sys::pidfd_open(creator.get()) else {
            continue;
        };
        if !inventory::inspect(&name)
            .is_ok_and(|again| again.creator_alive && again.file == info.file)
        {
            continue;
        }
        let file = FileId::new(info.file.0, info.file.1);
        creators.push(Creator {
            socket: None,
            pidfd: Some(pidfd),
            names: HashMap::from([(name, file)]),
        });
    }
    creators
}

#[derive(Clone, Copy)]
enum Role {
    Listener,
    Socket,
    CreatorEnded,
    UserEnded,
}

/// Reads every message waiting on a creator's socket; closes it at its end.
fn read_messages(creator: &mut Creator) {
    let Some(socket) = creator.socket.take() else {
        return;
    };
    let mut buf = [0u8; MESSAGE_MAX];
    loop {
        match sys::recv_message(socket.as_fd(), &mut buf) {
            // The other end closed: the socket is dropped.
            Ok((0, _)) => return,
            Ok((n, passed)) => apply(creator, socket.as_fd(), &buf[..n], passed),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return,
        }
    }
    creator.socket = Some(socket);
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

/// Removes `name` if abandoned; if it is still used, what to watch.
fn judge(name: &str, file: FileId) -> Option<Kept> {
    match inventory::remove_checked(name, Some(file), true, false) {
        Ok(Verdict::Kept(users)) if !users.is_empty() => Some(Kept {
            name: name.to_string(),
            file,
            users: users
                .iter()
                .filter_map(|user| sys::pidfd_open(user.get())?.ok())
                .collect(),
            next_look: Instant::now() + RECHECK,
        }),
        // Removed, gone, or persistent: nothing more to do.
        _ => None,
    }
}

/// The pid of this user's tracker, if one runs (for tests and tools).
pub fn running() -> Option<Pid> {
    let uid = sys::getuid();
    let socket = sys::tracker_connect(uid).ok()?;
    if sys::peer_uid(socket.as_fd()).ok()? != uid {
        return None;
    }
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
}

/// Turns the tracker off for this process and the children it forks from
/// now on: the names they create stay after they die, until removed (the
/// behaviour before the tracker; for tests of what a dead creator leaves).
/// [`DISABLE_VAR`] does the same for a whole program.
pub fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

static DISABLED: AtomicBool = AtomicBool::new(false);
