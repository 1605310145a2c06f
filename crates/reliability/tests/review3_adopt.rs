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
/// non-`'static` closures) holds a fork-copy of it. Review 3 had the child
/// adopt that copy (one unit moved from the parent's row to the child's),
/// after which the parent's drop of its original released a unit standing
/// for its *other* permit: three holders in a `RobustSemaphore(2)`. Now
/// `adopt` is `unsafe` (its contract: the permit was moved, not copied; a
/// compile_fail doctest shows safe code cannot call it), and what safe code
/// can do with a copy, forget it, does nothing: the parent's permits stay
/// counted, and come back exactly once, when the parent drops them.
#[test]
fn a_childs_copy_of_a_permit_can_neither_be_forgotten_nor_adopted_in_safe_code() {
    let arena = Shared::new(Arena {
        robust: RobustSemaphore::new(2),
        adopted: Futex::new(0),
        release: Futex::new(0),
        outcome: AtomicU32::new(0),
    })
    .unwrap();
    let ar = &*arena;
    let mut a = Some(ar.robust.acquire().unwrap());
    let b = ar.robust.acquire().unwrap();
    let copy = &mut a;
    let child = Process::new(move || {
        // Forgetting the copy must not disown the parent's permit.
        copy.take().expect("the copy").forget();
        ar.outcome.store(1, Ordering::SeqCst);
        raise(&ar.adopted);
        wait_for(&ar.release, 1);
    })
    .start()
    .unwrap();
    wait_for(&ar.adopted, 1);
    let me = shm::pid::current();
    assert_eq!(
        ar.robust.held_by(me),
        2,
        "the child's forget disowned a parent permit"
    );
    assert_eq!(ar.robust.held_by(child.pid()), 0);
    let third = Process::new(move || ar.robust.try_acquire().is_ok())
        .start()
        .unwrap()
        .join()
        .unwrap();
    raise(&ar.release);
    child.join().unwrap();
    assert!(
        !third,
        "a third process got in while this process held both permits"
    );
    drop(a);
    drop(b);
    assert_eq!(ar.robust.value(), 2, "each permit came back exactly once");
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
