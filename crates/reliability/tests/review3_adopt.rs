//! Review 3: `Permit::adopt` by a process that holds only a copy.

use std::sync::atomic::{AtomicU32, Ordering};

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_sem::RobustSemaphore;
use testkit::{raise, wait_for};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    robust: RobustSemaphore,
    adopted: Futex,
    release: Futex,
    /// What the child's adopt returned: 1 `Ok`, 2 an error.
    outcome: AtomicU32,
}

/// A child whose closure *borrows* the parent's permit (`Process::new` takes
/// non-`'static` closures) adopts its fork-copy: one unit moves from the
/// parent's row to the child's. The parent still holds the original and
/// drops it: that releases a unit of its row which stood for its *other*
/// permit. With a `RobustSemaphore(2)`: the parent still holds `b`, the
/// child holds its adopted `a`, and a third process gets in.
#[test]
#[ignore = "review3: adopting a fork-copy of a permit lets the acquirer's original drop release another permit's unit: 3 holders in a RobustSemaphore(2)"]
fn adopting_a_copy_of_a_permit_never_admits_more_than_the_count() {
    let arena = Shared::new(Arena {
        robust: RobustSemaphore::new(2),
        adopted: Futex::new(0),
        release: Futex::new(0),
        outcome: AtomicU32::new(0),
    })
    .unwrap();
    let ar = &*arena;
    let mut a = ar.robust.acquire().unwrap();
    let b = ar.robust.acquire().unwrap();
    let copy = &mut a;
    let child = Process::new(move || {
        let ok = copy.adopt().is_ok();
        ar.outcome.store(if ok { 1 } else { 2 }, Ordering::SeqCst);
        raise(&ar.adopted);
        // Holds its adopted permit until told; ends without dropping the
        // borrowed value (a child leaves with `_exit`).
        wait_for(&ar.release, 1);
    })
    .start()
    .unwrap();
    wait_for(&ar.adopted, 1);
    let child_pid = child.pid();
    let adopted = ar.outcome.load(Ordering::SeqCst) == 1;
    let held_by_child = ar.robust.held_by(child_pid);
    drop(a);
    // Held now: `b` (this process) and the child's adopted permit. A third
    // process must not get in.
    let third = Process::new(move || ar.robust.try_acquire().is_ok())
        .start()
        .unwrap()
        .join()
        .unwrap();
    let value_while_held = ar.robust.value();
    raise(&ar.release);
    child.join().unwrap();
    drop(b);
    ar.robust.reclaim();
    println!(
        "adopted={adopted} held_by_child={held_by_child} \
         value_while_b_and_the_adopted_permit_were_held={value_while_held} \
         third_got_in={third} final_value={}",
        ar.robust.value()
    );
    assert!(adopted && held_by_child == 1, "the child adopted its copy");
    assert!(
        !third,
        "a third process got in while this process held b and the child its adopted permit \
         (value {value_while_held} of 2)"
    );
}

#[derive(ShmSafe)]
#[repr(C)]
struct Both {
    plain: sync_sem::Semaphore,
    robust: RobustSemaphore,
}

/// What a third process's `try_acquire` of `which` (0 plain, 1 robust)
/// gives, and the value then.
fn third_gets_in(both: &Both, which: u32) -> bool {
    Process::new(move || match which {
        0 => both.plain.try_acquire().map(std::mem::forget).is_ok(),
        _ => both.robust.try_acquire().map(std::mem::forget).is_ok(),
    })
    .start()
    .unwrap()
    .join()
    .unwrap()
}

/// Not only `adopt`: a permit's drop does not ask which process it runs
/// in. A child whose closure borrows the parent's `Option<Permit>` (safe
/// code) takes its fork-copy out and drops it: the permit is released
/// while the parent still holds it, and a second holder gets into a
/// semaphore of one (plain and robust alike). Lock guards refuse this
/// (`RawLockGuard` records the acquiring process); permits do not.
#[test]
#[ignore = "review3: a fork-copy of a Permit dropped in a child releases the parent's live permit: two holders in a Semaphore(1) / RobustSemaphore(1)"]
fn a_childs_copy_of_a_permit_releases_nothing() {
    let both = Shared::new(Both {
        plain: sync_sem::Semaphore::new(1),
        robust: RobustSemaphore::new(1),
    })
    .unwrap();
    let both = &*both;
    let mut plain = Some(both.plain.acquire());
    let mut robust = Some(both.robust.acquire().unwrap());
    let (p, r) = (&mut plain, &mut robust);
    Process::new(move || {
        drop(p.take());
        drop(r.take());
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    // This process still holds both permits.
    let (plain_value, robust_value) = (both.plain.value(), both.robust.value());
    let plain_third = third_gets_in(both, 0);
    let robust_third = third_gets_in(both, 1);
    println!(
        "while this process held both permits: plain value {plain_value}, third got in: \
         {plain_third}; robust value {robust_value}, third got in: {robust_third}"
    );
    drop(plain);
    drop(robust);
    assert!(
        !plain_third && !robust_third,
        "a second holder got in while this process held the only permit \
         (plain: {plain_third}, robust: {robust_third})"
    );
}
