//! Review: a guard copied into a forked child is checked against the lock
//! word's *process*, not against the acquisition it stands for. Once the
//! child locks the same mutex itself, the inherited copy passes the check
//! and its drop releases the child's own acquisition: a third locker gets
//! in while the child still holds a live guard.

use std::sync::atomic::{AtomicU32, Ordering};

use shm::{Futex, Shared, ShmSafe};
use sync_lock::Mutex;
use testkit::{raise, wait_for, GENEROUS};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    data: Mutex<u32>,
    /// 1: the child holds its own guard; 2: it dropped the inherited copy;
    /// 3: the parent has looked.
    step: Futex,
    /// Set by the child if it could write through the inherited copy while
    /// holding its own guard (two `&mut` to the data at once).
    aliased: AtomicU32,
}

#[test]
fn an_inherited_guard_copy_does_not_release_the_childs_own_lock() {
    let arena = Shared::new(Arena {
        data: Mutex::new(0),
        step: Futex::new(0),
        aliased: AtomicU32::new(0),
    })
    .unwrap();
    let inherited = arena.data.lock().unwrap();
    // SAFETY: the child below runs only this crate's primitives and then
    // `_exit`s; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Waits until the parent drops its own guard.
            let mut mine = match arena.data.lock_timeout(GENEROUS) {
                Ok(g) => g,
                Err(e) => panic!("child could not lock: {e:?}"),
            };
            *mine += 1;
            raise(&arena.step); // 1
                                // The inherited copy stands for the parent's acquisition, not
                                // this process's: reaching the data through it must panic, and
                                // dropping it (in the unwinding) must leave the lock alone.
            let copy = inherited;
            let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let mut copy = copy;
                *copy += 100;
            }))
            .is_err();
            if !refused || *mine != 1 {
                arena.aliased.store(1, Ordering::SeqCst);
            }
            raise(&arena.step); // 2
            wait_for(&arena.step, 3);
            drop(mine);
        }));
        // SAFETY: leaves the forked child at once.
        unsafe { libc::_exit(if ok.is_ok() { 0 } else { 1 }) };
    }
    drop(inherited);
    wait_for(&arena.step, 2);
    let second = arena.data.try_lock().is_ok();
    raise(&arena.step); // 3
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let aliased = arena.aliased.load(Ordering::SeqCst) == 1;
    assert!(
        !second && !aliased,
        "two holders: the parent locked the mutex ({second}) while the child still held its \
         guard, after the child's inherited guard copy reached the data ({aliased}) and \
         released the child's own acquisition"
    );
}

#[derive(ShmSafe)]
#[repr(C)]
struct Arena2 {
    data: Mutex<u32>,
    started: Futex,
    m_dead: Futex,
    c_holds: Futex,
    checked: Futex,
    c_pid: AtomicU32,
}

/// The same hole in safe code only: the guard is moved into a
/// `daemon::Process` closure by a process M that then dies. The child C
/// takes the lock over (`OwnerDied`), drops the moved-in guard, and that
/// drop releases C's own acquisition.
#[test]
fn a_moved_guard_does_not_release_the_childs_own_takeover() {
    use daemon::Process;
    let arena = Shared::new(Arena2 {
        data: Mutex::new(0),
        started: Futex::new(0),
        m_dead: Futex::new(0),
        c_holds: Futex::new(0),
        checked: Futex::new(0),
        c_pid: AtomicU32::new(0),
    })
    .unwrap();
    let a = &*arena;
    let m = Process::new(move || {
        let moved = a.data.lock().unwrap();
        let c = Process::new(move || {
            wait_for(&a.m_dead, 1);
            let mut mine = a.data.lock().unwrap_or_else(|died| died.into_inner());
            *mine += 1;
            drop(moved); // the guard M moved in: releases `mine`'s lock
            raise(&a.c_holds);
            wait_for(&a.checked, 1);
            drop(mine);
        })
        .start()
        .unwrap();
        a.c_pid.store(c.pid().get(), Ordering::SeqCst);
        raise(&a.started);
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&a.started, 1);
    m.kill().unwrap();
    let _ = m.join();
    raise(&a.m_dead);
    wait_for(&a.c_holds, 1);
    let second = a.data.try_lock().is_ok();
    raise(&a.checked);
    let c_pid = shm::pid::Pid::from_u32(a.c_pid.load(Ordering::SeqCst)).expect("C's pid");
    testkit::wait_until("C exits", || {
        matches!(testkit::process_state(c_pid), None | Some(b'Z'))
    });
    assert!(
        !second,
        "two holders: this process locked the mutex while C held the guard of its own \
         takeover, released by the drop of the guard M had moved into C"
    );
}
