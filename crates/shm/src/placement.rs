//! Debug builds: a procsync primitive used in a forked child must live in
//! shared memory.
//!
//! `sync_lock::Mutex::new(0)` compiles anywhere, and a `Mutex` kept in
//! ordinary memory (a local variable, a `Box`, a static) is *copied* by
//! `fork`: each child then locks its own copy, which excludes nobody, and
//! a counter it guards counts in each process apart (every worker did all
//! the jobs). Nothing fails; the program is just wrong.
//!
//! So in debug builds (`debug_assertions`), the primitives call [`check`]
//! on their public operations. In a process started by
//! `daemon::Process` (which calls [`entered_forked_child`] in the child),
//! the first use of a primitive at an address that is not in a shared
//! mapping (`/proc/self/maps`: the mapping's flags end in `s`) panics with
//! what to do instead. The main process is never checked (a primitive
//! there may serve its threads; it is the children that show the mistake).
//! Release builds compile the check away; a debug build pays, in forked
//! children only, one relaxed load per operation, and the first time each
//! address is used there one read of `/proc/self/maps`.
//!
//! A child that makes a primitive in its own ordinary memory for its own
//! threads is refused too: use `std::sync` there (procsync's primitives
//! are for sharing between processes).
//!
//! # Example
//!
//! ```
//! // Checked, and fine: the lock is in shared memory.
//! let lock = shm::Shared::new(shm::lockword::RawLock::new())?;
//! let child = daemon::Process::new(|| lock.try_lock().is_some()).start()?;
//! assert!(child.join()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set in a child started by `daemon::Process`, right after the fork.
static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);

/// Addresses found in shared mappings in this process (or in a process it
/// was forked from: a shared mapping is inherited as shared). A small
/// cache filled round-robin; 0 is no address.
static KNOWN_SHARED: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Marks this process as a forked child, whose primitives [`check`]
/// judges. Called by `daemon::Process` in each new child; only stores to
/// an atomic (async-signal-safe).
pub fn entered_forked_child() {
    IN_FORKED_CHILD.store(true, Ordering::Relaxed);
}

/// In a debug build, in a forked child: panics if `primitive` is not in
/// shared memory, naming it (`what`, e.g. `"sync_lock::Mutex"`) and the
/// shared form to use instead (`instead`, e.g. `"Mutex::shared(value)"`).
/// Nothing in release builds.
///
/// # Panics
///
/// As above: the primitive is in this process's private memory, so other
/// processes each have their own copy.
#[inline(always)]
pub fn check<T>(primitive: &T, what: &'static str, instead: &'static str) {
    #[cfg(all(debug_assertions, not(loom)))]
    if IN_FORKED_CHILD.load(Ordering::Relaxed) {
        check_address(std::ptr::from_ref(primitive) as usize, what, instead);
    }
    #[cfg(not(all(debug_assertions, not(loom))))]
    let _ = (primitive, what, instead);
}

#[cold]
#[inline(never)]
#[cfg_attr(not(all(debug_assertions, not(loom))), allow(dead_code))]
fn check_address(address: usize, what: &str, instead: &str) {
    if KNOWN_SHARED
        .iter()
        .any(|known| known.load(Ordering::Relaxed) == address)
    {
        return;
    }
    match in_shared_mapping(address) {
        Some(true) => {
            let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % KNOWN_SHARED.len();
            KNOWN_SHARED[slot].store(address, Ordering::Relaxed);
        }
        Some(false) => panic!(
            "procsync: {what} at {address:#x} is in this process's private memory (a local \
             variable, a Box or Arc, a static), and this process was forked from the one that \
             made it: each process now has its own copy, which no other process sees, so it \
             synchronises nobody. Make it in shared memory before forking: {instead}, or \
             shm::Shared::new(...) of a #[derive(ShmSafe)] struct holding it. (A check of \
             debug builds, in processes started by daemon::Process.)"
        ),
        // No /proc: say nothing rather than guess.
        None => {}
    }
}

/// Whether the mapping holding `address` is shared (`MAP_SHARED`), from
/// `/proc/self/maps`; `None` if it cannot be read or holds no such line.
#[cfg_attr(not(all(debug_assertions, not(loom))), allow(dead_code))]
fn in_shared_mapping(address: usize) -> Option<bool> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    maps.split(|&b| b == b'\n').find_map(|line| {
        // "start-end perms offset dev inode path", in hex.
        let mut fields = line.split(|&b| b == b' ');
        let range = fields.next()?;
        let perms = fields.next()?;
        let dash = range.iter().position(|&b| b == b'-')?;
        let parse = |hex: &[u8]| usize::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok();
        let (start, end) = (parse(&range[..dash])?, parse(&range[dash + 1..])?);
        (start <= address && address < end).then(|| perms.get(3) == Some(&b's'))
    })
}
