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
//! children only, a relaxed load per operation and a look-up in the
//! process's list of shared mappings, read from `/proc/self/maps` again
//! only when an address is not in it (a mapping made since) or procsync
//! has unmapped shared memory since.
//!
//! What it misses: shared memory the program maps and unmaps itself
//! (`mmap`/`munmap` of its own, not procsync's), when private memory then
//! comes at the same address before anything procsync unmaps: the list of
//! shared mappings still holds the old range, and a primitive there passes
//! (`sync-lock/tests/review14.rs`, ignored: a known limit). Reading
//! `/proc/self/maps` at every operation would close it, at a cost even a
//! debug build should not pay.
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::process_local::ProcessLocal;

/// Set in a child started by `daemon::Process`, right after the fork.
static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);

/// Bumped whenever procsync unmaps shared memory: a snapshot taken before
/// may name a range that now holds private memory.
static UNMAPS: AtomicU64 = AtomicU64::new(0);

/// This process's shared mappings as last read from `/proc/self/maps`
/// (each process reads its own: a forked child starts from none).
static SHARED_RANGES: ProcessLocal<Snapshot> = ProcessLocal::new();

/// The shared mappings (start, end), sorted, and the [`UNMAPS`] count when
/// they were read.
struct Snapshot {
    unmaps: u64,
    ranges: Vec<(usize, usize)>,
}

impl Snapshot {
    /// Reads `/proc/self/maps`; `None` if it cannot.
    fn read() -> Option<Snapshot> {
        // Read first: a later unmap makes the snapshot stale, never one
        // that came before it.
        let unmaps = UNMAPS.load(Ordering::Acquire);
        let ranges = shared_mappings()?;
        Some(Snapshot { unmaps, ranges })
    }

    fn holds(&self, address: usize) -> bool {
        let after = self.ranges.partition_point(|&(start, _)| start <= address);
        after > 0 && address < self.ranges[after - 1].1
    }
}

/// Marks this process as a forked child, whose primitives [`check`]
/// judges. Called by `daemon::Process` in each new child; only stores to
/// an atomic (async-signal-safe).
pub fn entered_forked_child() {
    IN_FORKED_CHILD.store(true, Ordering::Relaxed);
}

/// Tells the check that procsync has unmapped shared memory (its ranges
/// are read again at the next check).
pub(crate) fn unmapped() {
    UNMAPS.fetch_add(1, Ordering::Release);
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
    // Whether the address is shared: from the snapshot if it is current
    // and holds it; else read again (a mapping made since, or an unmap).
    let shared = SHARED_RANGES.with(|snapshot| {
        let current = UNMAPS.load(Ordering::Acquire);
        if let Some(s) = snapshot.as_ref() {
            if s.unmaps == current && s.holds(address) {
                return Some(true);
            }
        }
        *snapshot = Snapshot::read();
        snapshot.as_ref().map(|s| s.holds(address))
    });
    if shared == Some(false) {
        panic!(
            "procsync: {what} at {address:#x} is in this process's private memory (a local \
             variable, a Box or Arc, a static), and this process was forked from the one that \
             made it: each process now has its own copy, which no other process sees, so it \
             synchronises nobody. Make it in shared memory before forking: {instead}, or \
             shm::Shared::new(...) of a #[derive(ShmSafe)] struct holding it. (A check of \
             debug builds, in processes started by daemon::Process.)"
        )
    }
    // `None`: no /proc; say nothing rather than guess.
}

/// The shared (`MAP_SHARED`) mappings of this process, sorted by start,
/// from `/proc/self/maps`; `None` if it cannot be read.
#[cfg_attr(not(all(debug_assertions, not(loom))), allow(dead_code))]
fn shared_mappings() -> Option<Vec<(usize, usize)>> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(
        crate::proc_maps::lines(&maps)
            .filter(|line| line.is_shared())
            .map(|line| (line.start, line.end))
            .collect(),
    )
}
