//! Review 2: RobustSemaphore permits moved into a child, and adopted there
//! (`Permit::adopt`).

use std::sync::atomic::{AtomicU32, Ordering};

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_sem::{AcquireError, AdoptError, RobustSemaphore};
use testkit::{park_until_killed, process_state, raise, wait_for, wait_until};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    robust: RobustSemaphore,
    /// Raised by the grandchild once it holds the moved permit (adopted,
    /// or about to adopt).
    handed: Futex,
    /// Raised by the test once it has checked, while the grandchild holds.
    checked: Futex,
    /// Raised by the grandchild once it has adopted and dropped the permit.
    done: Futex,
    /// The grandchild's pid.
    holder: AtomicU32,
    /// What the grandchild's adopt returned (see `outcome`).
    adopted: AtomicU32,
}

fn arena() -> Shared<Arena> {
    Shared::new(Arena {
        robust: RobustSemaphore::new(1),
        handed: Futex::new(0),
        checked: Futex::new(0),
        done: Futex::new(0),
        holder: AtomicU32::new(0),
        adopted: AtomicU32::new(0),
    })
    .unwrap()
}

/// An adopt's result as a number the grandchild can leave in the arena.
fn outcome(result: Result<(), AdoptError>) -> u32 {
    match result {
        Ok(()) => 1,
        Err(AdoptError::Reclaimed) => 2,
        Err(_) => 3,
    }
}

/// Waits until the grandchild (not this process's child: it cannot be
/// joined) has ended.
fn wait_ended(pid: shm::pid::Pid) {
    wait_until("the grandchild ends", || {
        matches!(process_state(pid), None | Some(b'Z') | Some(b'X'))
    });
}

/// A permit moved into a child is counted on the acquirer's row until the
/// child adopts it. Without `adopt` (the test as first written, `#[ignore]`d
/// then), when the acquirer died any contender's sweep took the permit back
/// from the dead acquirer's row although the live child still held it: a
/// `RobustSemaphore(1)` admitted a second holder. The child adopts first
/// thing (the documented usage), and then the acquirer's death takes
/// nothing back.
#[test]
fn a_permit_moved_into_a_child_is_not_taken_back_when_its_acquirer_dies() {
    let arena = arena();
    let a = &*arena;
    // P acquires, moves the permit into its child C, and is killed once C
    // has adopted it.
    let p = Process::new(move || {
        let permit = a.robust.acquire().unwrap();
        let _c = Process::new(move || {
            let mut permit = permit;
            // SAFETY: moved into this closure; the parent never drops it.
            a.adopted
                .store(outcome(unsafe { permit.adopt() }), Ordering::SeqCst);
            a.holder.store(std::process::id(), Ordering::SeqCst);
            raise(&a.handed);
            wait_for(&a.checked, 1);
        })
        .start()
        .unwrap();
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&a.handed, 1);
    assert_eq!(a.adopted.load(Ordering::SeqCst), 1, "C adopted the permit");
    p.kill().unwrap();
    assert!(p.join().is_err());
    let c_pid = shm::pid::Pid::from_u32(a.holder.load(Ordering::SeqCst)).expect("the holder's pid");
    assert!(
        matches!(process_state(c_pid), Some(s) if s != b'Z'),
        "C still runs, holding the permit"
    );
    // C still holds the only permit: nobody else may get in, and a sweep
    // takes nothing back.
    let second = a.robust.try_acquire();
    let got_in = second.is_ok();
    drop(second);
    let reclaimed = a.robust.reclaim();
    let held_by_c = a.robust.held_by(c_pid);
    raise(&a.checked);
    wait_ended(c_pid);
    assert!(
        !got_in,
        "a second holder got in while the child (pid {c_pid}) held the only permit"
    );
    assert_eq!(reclaimed, 0, "the sweep took back the child's permit");
    assert_eq!(held_by_c, 1, "the permit counted under the child");
    // C's drop released it, under its own name, once.
    assert_eq!(a.robust.value(), 1);
    assert_eq!(a.robust.held_by(c_pid), 0);
}

/// The race `adopt` cannot close: the acquirer dies and its permit is swept
/// before the child adopts. The adopt says so (`Reclaimed`), and the
/// child's drop of the spent permit releases nothing (the permit is the
/// test's now): the count stays exact.
#[test]
fn a_permit_reclaimed_before_the_child_adopts_it_is_reported_and_released_by_nobody() {
    let arena = arena();
    let a = &*arena;
    let p = Process::new(move || {
        let permit = a.robust.acquire().unwrap();
        let _c = Process::new(move || {
            let mut permit = permit;
            a.holder.store(std::process::id(), Ordering::SeqCst);
            raise(&a.handed);
            // Too late: the acquirer is killed and swept before this.
            wait_for(&a.checked, 1);
            // SAFETY: moved into this closure; the parent never drops it.
            a.adopted
                .store(outcome(unsafe { permit.adopt() }), Ordering::SeqCst);
            drop(permit);
            raise(&a.done);
        })
        .start()
        .unwrap();
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&a.handed, 1);
    p.kill().unwrap();
    assert!(p.join().is_err());
    let c_pid = shm::pid::Pid::from_u32(a.holder.load(Ordering::SeqCst)).expect("the holder's pid");
    assert_eq!(
        a.robust.reclaim(),
        1,
        "the dead acquirer's permit came back"
    );
    let mine = a.robust.try_acquire().expect("the reclaimed permit");
    raise(&a.checked);
    wait_for(&a.done, 1);
    assert_eq!(
        a.adopted.load(Ordering::SeqCst),
        2,
        "adopt reported Reclaimed"
    );
    // The child dropped its spent permit while this process held the only
    // one: nothing was released.
    assert_eq!(a.robust.value(), 0, "the spent permit released one");
    assert_eq!(a.robust.held_by(c_pid), 0);
    assert!(matches!(
        a.robust.try_acquire(),
        Err(AcquireError::WouldBlock)
    ));
    wait_ended(c_pid);
    drop(mine);
    assert_eq!(a.robust.reclaim(), 0);
    assert_eq!(a.robust.value(), 1);
}
