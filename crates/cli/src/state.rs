//! `procsync inspect`: a segment's header, and the state of the procsync
//! primitive it holds.
//!
//! # How a primitive is recognised and read
//!
//! By the header: its kind and the element type's name, which the creator
//! recorded without module paths (`shm::layout::short_type_name`).
//!
//! Everything is read from a private copy of the file, never through a
//! mapping: a file that another process shrinks while it is read gives an
//! error (truncated), not a SIGBUS. What is shown is a snapshot: each word
//! as it was at some moment during the read.
//!
//! - `Lock`, `RLock`, `Condvar`, `Semaphore`, `RobustSemaphore`, `Event`,
//!   `Barrier` (a value): the file is copied (`shm::inventory::Snapshot`)
//!   and the copy's value taken as that very type, which checks the layout
//!   fingerprint, so a user's own type that happens to be called `Lock` is
//!   refused (and said so) rather than misread. Then read through the
//!   type's read-only accessors, on the copy.
//! - `Mutex<T>` (a value, with the default raw lock): generic over a `T`
//!   this program does not know, so it cannot be checked as its type, and
//!   its type name is no proof (any crate may have a `Mutex<T>`). It is
//!   recognised by its layout description instead: a struct whose first
//!   field, `raw` at offset 0, is described as `RawLock` is, by its
//!   protocol's name and version (`SegmentInfo::first_field_is`), which only
//!   procsync's lock word carries. The
//!   `Mutex` is `repr(C)` with its `RawLock` first, so the lock word is the
//!   first 8 bytes of the data; they are read from the file at the header's
//!   data offset ([`SegmentInfo::data_offset`]) and decoded by `RawLock`
//!   itself (`RawLock::at` over a copy of the word). A `Mutex<T, R>` with
//!   another raw lock is not read.
//! - A queue (a slice of `Line`, the queue's cache lines): read by
//!   `queue::inspect`, which reads a copy of the file likewise and its
//!   words without knowing its message type; words that contradict each
//!   other are shown as `state: corrupt: ...`.
//!
//! Names and type names are shown escaped (`shm::inventory::escape`), every
//! other value [`printable`](crate::printable): no line can be forged, and
//! nothing reaches the terminal raw.
//!
//! Nothing here takes a lock, attaches an endpoint, maps or writes: the
//! primitives are only read. Opening the file to copy it makes this process
//! one of its users for that moment.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use shm::inventory::{self, SegmentInfo, Snapshot};
use shm::lockword::RawLock;
use shm::pid::Identity;
use shm::{Futex64, ShmSafe};

use crate::owner::Users;
use crate::Failure;

/// `procsync inspect NAME`.
pub(crate) fn inspect(name: &OsStr) -> Result<(), Failure> {
    let info = inventory::inspect(name)?;
    let users = inventory::users(&info.name).unwrap_or_default();
    let mut out = Vec::new();
    header(&info, &users, &mut out);
    match primitive_state(&info) {
        Some(Ok(state)) => out.extend(state),
        Some(Err(state)) => out.push(("state".into(), state)),
        None => {}
    }
    let width = out.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let text: String = out
        .into_iter()
        .map(|(key, value)| {
            let value = crate::printable(&value);
            format!("{:<width$} {value}\n", format!("{key}:"), width = width)
        })
        .collect();
    crate::emit(&text)
}

type Lines = Vec<(String, String)>;

fn line(out: &mut Lines, key: &str, value: impl ToString) {
    out.push((key.to_string(), value.to_string()));
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The header's facts.
fn header(info: &SegmentInfo, users: &[shm::pid::Pid], out: &mut Lines) {
    line(out, "name", inventory::escape(info.name.as_bytes()));
    line(out, "kind", info.kind.unwrap_or("unknown"));
    line(out, "type", inventory::escape(info.type_name.as_bytes()));
    line(out, "element size", info.element_size);
    line(out, "length", info.len);
    line(out, "file size", info.file_size);
    line(out, "mode", format!("{:04o}", info.mode));
    let owner = Users::load().name(info.uid);
    line(out, "owner", format!("{owner} (uid {})", info.uid));
    line(
        out,
        "creator",
        match info.creator {
            Some(pid) => match info.creator_alive {
                Some(alive) => format!("{pid} ({})", alive_word(alive)),
                None => format!("{pid} (unknown whether it runs: no identity recorded)"),
            },
            None => "not recorded".to_string(),
        },
    );
    line(
        out,
        "persistent",
        info.persistent
            .map_or("unknown (another layout version)", yes_no),
    );
    line(out, "ready", yes_no(info.ready));
    line(out, "layout version", info.layout_version);
    line(out, "age", format!("{:.1} s", info.age.as_secs_f64()));
    let pids: Vec<String> = users.iter().map(ToString::to_string).collect();
    line(
        out,
        "mapped by",
        if pids.is_empty() {
            "nobody".to_string()
        } else {
            format!("{} (pids {})", pids.len(), pids.join(", "))
        },
    );
}

fn alive_word(alive: bool) -> &'static str {
    if alive {
        "alive"
    } else {
        "dead"
    }
}

/// "pid 1234 (alive)", or "none".
fn holder(identity: Option<Identity>) -> String {
    match identity {
        Some(who) => format!("pid {} ({})", who.pid(), alive_word(who.is_running())),
        None => "none".to_string(),
    }
}

/// The state of the primitive `info` holds: `None` if it holds none this
/// program knows, `Some(Err)` with the `state:` line's value if it could
/// not be read ("not read: why") or is impossible ("corrupt: why").
fn primitive_state(info: &SegmentInfo) -> Option<Result<Lines, String>> {
    if !info.ready {
        return Some(Err(not_read("its creator has not finished making it")));
    }
    let mut out = Lines::new();
    let o = &mut out;
    let read: Result<(), String> = match (info.kind?, info.type_name.as_str()) {
        ("value", "Lock") => with_value::<sync_lock::Lock>(info, |lock| {
            line(o, "primitive", "Lock");
            line(o, "locked", yes_no(lock.is_locked()));
            line(o, "holder", holder(lock.owner_identity()));
            line(o, "sleepers", yes_no(lock.has_waiters()));
        }),
        ("value", "RLock") => with_value::<sync_lock::RLock>(info, |lock| {
            line(o, "primitive", "RLock");
            line(o, "locked", yes_no(lock.is_locked()));
            line(o, "holder", holder(lock.owner_identity()));
            line(o, "depth", lock.depth());
            line(o, "sleepers", yes_no(lock.has_waiters()));
        }),
        ("value", "Condvar") => with_value::<sync_lock::Condvar>(info, |cv| {
            line(o, "primitive", "Condvar");
            line(o, "waiting", cv.n_waiting());
        }),
        ("value", "Semaphore") => with_value::<sync_sem::Semaphore>(info, |sem| {
            line(o, "primitive", "Semaphore");
            line(o, "permits", sem.value());
            line(o, "bound", bound(sem.bound()));
            line(o, "sleepers", yes_no(sem.has_sleepers()));
        }),
        ("value", "RobustSemaphore") => with_value::<sync_sem::RobustSemaphore>(info, |sem| {
            line(o, "primitive", "RobustSemaphore");
            line(o, "permits", sem.value());
            line(o, "bound", bound(sem.bound()));
            let holders: Vec<String> = sem
                .holders()
                .into_iter()
                .map(|(who, n)| format!("{} x{n}", holder(Some(who))))
                .collect();
            line(
                o,
                "holders",
                if holders.is_empty() {
                    "none".to_string()
                } else {
                    holders.join(", ")
                },
            );
            line(o, "sleepers", yes_no(sem.has_sleepers()));
        }),
        ("value", "Event") => with_value::<sync_event::Event>(info, |event| {
            line(o, "primitive", "Event");
            line(o, "flag", if event.is_set() { "set" } else { "clear" });
            line(o, "sleepers", yes_no(event.has_sleepers()));
        }),
        ("value", "Barrier") => with_value::<sync_event::Barrier>(info, |barrier| {
            line(o, "primitive", "Barrier");
            line(o, "parties", barrier.parties());
            line(o, "waiting", barrier.n_waiting());
            line(o, "generation", barrier.generation());
            line(o, "broken", yes_no(barrier.is_broken()));
        }),
        ("value", ty) if is_default_mutex(ty) && info.first_field_is::<RawLock>("raw") => {
            mutex_word(info).map_err(not_read).map(|word| {
                let word = Futex64::new(word);
                let raw = RawLock::at(&word);
                line(o, "primitive", "Mutex");
                line(o, "locked", yes_no(raw.is_locked()));
                line(o, "holder", holder(raw.owner_identity()));
                line(o, "sleepers", yes_no(raw.has_waiters()));
            })
        }
        ("slice", "Line") => queue::inspect(&info.name)
            .map_err(|e| match e {
                queue::QueueError::Corrupt { reason, .. } => format!("corrupt: {reason}"),
                other => not_read(other),
            })
            .map(|q| {
                line(o, "primitive", "Queue");
                line(
                    o,
                    "message type",
                    inventory::escape(q.message_type.as_bytes()),
                );
                line(o, "messages", format!("{} of {}", q.len, q.capacity));
                line(o, "max message bytes", q.max_message_bytes);
                line(o, "joinable", yes_no(q.joinable));
                line(o, "producers", q.producers);
                line(o, "consumers", q.consumers);
                if q.joinable {
                    line(o, "lost", q.lost);
                }
                line(o, "producer lock", holder(q.producer_lock));
                line(o, "consumer lock", holder(q.consumer_lock));
            }),
        _ => return None,
    };
    Some(read.map(|()| out))
}

/// Runs `show` on the value of type `T` in a private copy of the
/// segment's file (`shm::inventory::Snapshot`: read with `pread`, never
/// mapped, so a file shrunk meanwhile is an error, not a SIGBUS), if the
/// segment's header says it holds a `T` (layout fingerprint, size, align).
fn with_value<T: ShmSafe>(info: &SegmentInfo, show: impl FnOnce(&T)) -> Result<(), String> {
    let snapshot = Snapshot::read(&info.name).map_err(not_read)?;
    show(snapshot.value::<T>().map_err(not_read)?);
    Ok(())
}

/// The `state:` value of a primitive that could not be read.
fn not_read(why: impl std::fmt::Display) -> String {
    format!("not read: {why}")
}

fn bound(bound: Option<u32>) -> String {
    bound.map_or_else(|| "none".to_string(), |b| b.to_string())
}

/// Whether `ty` names `Mutex<T>` with the default raw lock: one generic
/// argument at the top level (`std::any::type_name` leaves a defaulted
/// parameter out).
fn is_default_mutex(ty: &str) -> bool {
    let Some(inner) = ty.strip_prefix("Mutex<").and_then(|t| t.strip_suffix('>')) else {
        return false;
    };
    let mut depth = 0i32;
    for c in inner.chars() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => return false,
            _ => {}
        }
    }
    depth == 0
}

/// The lock word of a `Mutex<T>`: the data's first 8 bytes, read from the
/// file (a copy; the lock itself is left alone).
fn mutex_word(info: &SegmentInfo) -> Result<u64, String> {
    let offset = info
        .data_offset()
        .ok_or("the header does not say where the data starts")?;
    let path = std::path::Path::new(inventory::SHM_DIR).join(&info.name);
    let shown = inventory::escape(path.as_os_str().as_bytes());
    let file = std::fs::File::open(&path).map_err(|e| format!("opening {shown}: {e}"))?;
    let mut bytes = [0u8; 8];
    file.read_exact_at(&mut bytes, offset)
        .map_err(|e| format!("reading {shown}: {e}"))?;
    Ok(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::is_default_mutex;

    #[test]
    fn mutexes_with_the_default_raw_lock_are_recognised() {
        assert!(is_default_mutex("Mutex<u32>"));
        assert!(is_default_mutex("Mutex<(u32, u64)>"));
        assert!(is_default_mutex("Mutex<[u8; 4]>"));
        assert!(is_default_mutex("Mutex<Pair<u8, u16>>"));
        assert!(!is_default_mutex("Mutex<u32, TicketLock>"));
        assert!(!is_default_mutex("Mutexes"));
        assert!(!is_default_mutex("Lock"));
    }
}
