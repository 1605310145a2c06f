//! Review 13 (issue #18): reproducers for broken promises of `Condition`
//! and of the debug-build placement check (`shm::placement`), between real
//! processes, fixed since: regression tests now.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use daemon::Process;
use shm::{Shared, SharedSlice, ShmSafe};
use sync_lock::{Condition, Lock};
use testkit::GENEROUS;

#[derive(ShmSafe)]
#[repr(C)]
struct Flag {
    set: AtomicBool,
    cond: Condition,
}

/// `Condition::wait` promises (its source comment, and the brief of #18):
/// waiting with a guard inherited through fork panics and never releases
/// anything. The check is "does this thread hold the lock", not "was this
/// guard taken here": a child that inherited a guard and also holds the
/// lock itself (it locked it after the parent let go) waits with the
/// inherited guard without a panic, giving up and retaking its own levels.
#[test]
fn an_inherited_guard_is_refused_even_when_the_child_holds_the_lock() {
    let f = Shared::new(Flag {
        set: AtomicBool::new(false),
        cond: Condition::new(),
    })
    .unwrap();
    let guard = f.cond.lock().unwrap();
    let shared = &f;
    let child = Process::new(move || {
        let f = shared;
        // The child's own level, once the parent has let go of its own.
        let _mine = f.cond.lock_timeout(GENEROUS).expect("the parent let go");
        catch_unwind(AssertUnwindSafe(|| {
            // `guard` is the parent's, copied by fork: it stands for no
            // level of this process.
            let _ = f.cond.wait_timeout(guard, Duration::from_millis(20));
        }))
        .is_err()
    })
    .start()
    .unwrap();
    // The guard went into the child (the parent never drops its copy):
    // undo the parent's level by hand.
    f.cond.release().unwrap();
    assert!(
        child.join().unwrap(),
        "Condition::wait with a guard inherited through fork did not panic \
         (the child held the lock itself, so the is_held_by_current_thread check passed)"
    );
}

/// How many times this process has read `/proc/self/maps` is not counted by
/// the kernel; what it read in all is (`rchar` of `/proc/self/io`).
fn bytes_read_so_far() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|line| line.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `shm::placement` promises that a debug build pays, in a forked child,
/// "the first time each address is used there one read of
/// `/proc/self/maps`". Its cache is 64 addresses filled round-robin: a
/// child that uses 65 locks in turn (a slice of per-item locks) misses it
/// every time and reads `/proc/self/maps` on *every* lock.
#[test]
fn the_placement_check_reads_the_maps_once_per_address() {
    const LOCKS: usize = 65;
    const ROUNDS: usize = 20;
    let locks = SharedSlice::from_fn(LOCKS, |_| Lock::new()).unwrap();
    let child = Process::new(|| {
        let maps = std::fs::read("/proc/self/maps").unwrap().len() as u64;
        let before = bytes_read_so_far();
        for _ in 0..ROUNDS {
            for lock in locks.iter() {
                drop(lock.lock().unwrap());
            }
        }
        let read = bytes_read_so_far() - before;
        // Whole reads of the maps (the two reads of /proc/self/io above are
        // a few hundred bytes).
        read / maps
    })
    .start()
    .unwrap();
    let reads = child.join().unwrap();
    assert!(
        reads <= 2 * LOCKS as u64,
        "{} lock operations on {LOCKS} addresses read /proc/self/maps about {reads} times \
         (the docs promise one read per address)",
        LOCKS * ROUNDS
    );
}

/// The cache of shared addresses is never invalidated: once a shared
/// mapping is unmapped in the child, a *private* primitive later placed at
/// the same address (mmap reuses addresses freely) passes the check, and
/// the child synchronises nobody without a word.
#[test]
fn a_private_lock_at_a_reused_address_is_refused() {
    let child = Process::new(|| {
        let shared = Lock::shared().unwrap();
        drop(shared.lock().unwrap()); // checked: shared, so cached
        let address = std::ptr::from_ref::<Lock>(&shared) as usize;
        drop(shared); // unmapped
        let page = address & !4095;
        // SAFETY: a fresh private anonymous page at an address nothing is
        // mapped at (MAP_FIXED_NOREPLACE fails otherwise); it is never
        // unmapped before the child exits.
        let mapped = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(mapped as usize, page, "the page could not be mapped again");
        let private = address as *mut Lock;
        // SAFETY: inside the page just mapped, aligned as the Lock was.
        unsafe { private.write(Lock::new()) };
        // SAFETY: initialised just above; the page stays mapped.
        let private = unsafe { &*private };
        catch_unwind(AssertUnwindSafe(|| drop(private.lock()))).is_err()
    })
    .start()
    .unwrap();
    assert!(
        child.join().unwrap(),
        "a Lock in a private mapping was accepted by the placement check \
         (its address was cached from a shared mapping since unmapped)"
    );
}
