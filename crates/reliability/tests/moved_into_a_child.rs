//! What a closure owns belongs to the child it runs in (issue #11): the
//! parent never drops it after `Process::start`, so a permit or a guard
//! moved into a child is not released by the parent behind its back.

use std::sync::atomic::{AtomicU32, Ordering};

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::Mutex;
use sync_sem::{RobustSemaphore, Semaphore};
use testkit::{raise, wait_for};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    plain: Semaphore,
    robust: RobustSemaphore,
    data: Mutex<u32>,
    /// Raised by the parent once it has checked, while the child holds.
    checked: Futex,
}

fn arena() -> Shared<Arena> {
    Shared::new(Arena {
        plain: Semaphore::new(1),
        robust: RobustSemaphore::new(1),
        data: Mutex::new(0),
        checked: Futex::new(0),
    })
    .unwrap()
}

#[test]
fn a_semaphore_permit_moved_into_a_child_is_released_once() {
    let arena = arena();
    let permit = arena.plain.acquire();
    let checked = &arena.checked;
    let child = Process::new(move || {
        let mut permit = permit;
        // SAFETY: moved into this closure; the parent never drops it.
        unsafe { permit.adopt() }.expect("a plain permit adopts");
        wait_for(checked, 1);
    })
    .start()
    .unwrap();
    // The child still holds it: nobody else gets in.
    assert!(arena.plain.try_acquire().is_err());
    raise(&arena.checked);
    child.join().unwrap();
    assert_eq!(arena.plain.value(), 1);
}

#[test]
fn a_robust_semaphore_admits_no_second_holder_while_a_moved_permit_is_out() {
    let arena = arena();
    let permit = arena.robust.acquire();
    let checked = &arena.checked;
    let child = Process::new(move || {
        let mut permit = permit.expect("a free permit");
        // SAFETY: moved into this closure; the parent never drops it.
        unsafe { permit.adopt() }.expect("the acquirer (the test) lives");
        wait_for(checked, 1);
    })
    .start()
    .unwrap();
    assert!(
        arena.robust.try_acquire().is_err(),
        "a second holder got in while the first permit was in the child"
    );
    raise(&arena.checked);
    child.join().unwrap();
    // The child adopted it and dropped it: it is back, released exactly
    // once, and no row is left for this process.
    assert_eq!(
        arena.robust.value(),
        1,
        "the child's drop released the permit"
    );
    assert_eq!(arena.robust.held_by(shm::pid::current()), 0);
}

/// A guard moved into a child is not the child's to use: the lock is held
/// by the process that locked it (issue 11, defects 1 and 2). The parent
/// no longer unlocks it at `start()`; the child cannot reach the data
/// through it, and its drop there leaves the lock alone, still held by the
/// parent.
#[test]
fn a_mutex_guard_moved_into_a_child_is_not_unlocked_by_the_parent() {
    let arena = arena();
    let wrote = Shared::new(AtomicU32::new(0)).unwrap();
    let (checked, wrote) = (&arena.checked, &wrote);
    let mut guard = arena.data.lock().unwrap();
    let child = Process::new(move || {
        wait_for(checked, 1);
        *guard += 1;
        wrote.store(*guard, Ordering::SeqCst);
    })
    .start()
    .unwrap();
    assert!(
        arena.data.try_lock().is_err(),
        "the parent unlocked a guard it moved into the child"
    );
    raise(&arena.checked);
    let refused = child.join().expect_err("the child may not use the guard");
    assert!(
        refused
            .to_string()
            .contains("belongs to the process that locked it"),
        "{refused}"
    );
    assert_eq!(
        wrote.load(Ordering::SeqCst),
        0,
        "nothing written through it"
    );
    assert!(
        arena.data.try_lock().is_err(),
        "the child's drop left the lock with the parent"
    );
}

/// A permit moved into a child that does not adopt it is inert there: the
/// child's drop releases nothing (it cannot tell a moved permit from a
/// fork-copy of one its parent still holds). A robust permit then comes
/// back when its acquirer dies, as any permit of a dead process does; a
/// plain one stays taken (documented on `Permit`).
#[test]
fn a_moved_permit_the_child_does_not_adopt_is_released_by_nobody_there() {
    let arena = arena();
    let plain = arena.plain.acquire();
    let robust = arena.robust.acquire().unwrap();
    Process::new(move || drop((plain, robust)))
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        arena.plain.value(),
        0,
        "the child's drop released a plain permit"
    );
    assert_eq!(
        arena.robust.value(),
        0,
        "the child's drop released a robust permit"
    );
    assert_eq!(
        arena.robust.held_by(shm::pid::current()),
        1,
        "still this process's"
    );
    // This process (the acquirer) never dropped them: hand them back by hand.
    arena.plain.release().unwrap();
    arena.robust.reclaim();
    let _ = arena.robust.release();
}
