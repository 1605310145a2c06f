//! Owner identity: a holder is a process, named by pid *and* start tag, so
//! a new process that reuses a dead holder's pid is never taken for it.
//! Pids are forced as root through `ns_last_pid` (testkit::start_with_pid);
//! without root these tests say they were skipped.

use std::sync::atomic::{AtomicBool, Ordering};

use daemon::Process;
use shm::Shared;
use sync_lock::{Lock, Mutex, RLock, TryLockError};
use testkit::{start_with_pid, GENEROUS};

/// How a `try_lock` went, as plain data a child can send back.
fn outcome<G>(result: Result<G, TryLockError<G>>) -> String {
    match result {
        Ok(_) => "clean",
        Err(TryLockError::OwnerDied(_)) => "owner-died",
        Err(TryLockError::WouldBlock) => "would-block",
        Err(TryLockError::TimedOut) => "timed-out",
    }
    .to_string()
}

/// Runs `hold` in a child that then exits holding what it took, reaps it,
/// and returns its (now free) pid.
fn pid_of_dead_holder(hold: impl Fn()) -> shm::pid::Pid {
    let holder = Process::new(hold).start().unwrap();
    let pid = holder.pid();
    holder.join().expect("the holder exits normally");
    pid
}

fn skip() -> bool {
    testkit::skip_unless_pids_can_be_forced()
}

#[test]
fn lock_a_new_process_with_a_dead_holders_pid_is_not_the_holder() {
    if skip() {
        return;
    }
    let lock = Shared::new(Lock::new()).unwrap();
    let dead = pid_of_dead_holder(|| std::mem::forget(lock.lock().unwrap()));
    assert_eq!(lock.owner(), Some(dead));
    let reuser = start_with_pid(dead, || {
        // The word names a process with this very pid; it is not this one.
        outcome(lock.try_lock())
    });
    assert_eq!(reuser.join().unwrap(), "owner-died");
}

#[test]
fn lock_a_waiter_with_a_dead_holders_pid_takes_over_instead_of_waiting() {
    if skip() {
        return;
    }
    let lock = Shared::new(Lock::new()).unwrap();
    let dead = pid_of_dead_holder(|| std::mem::forget(lock.lock().unwrap()));
    let reuser = start_with_pid(dead, || outcome(lock.lock_timeout(GENEROUS)));
    assert_eq!(reuser.join().unwrap(), "owner-died");
}

#[test]
fn mutex_a_new_process_with_a_dead_holders_pid_cannot_unlock_it() {
    if skip() {
        return;
    }
    let m = Shared::new(Mutex::new(0u64)).unwrap();
    let dead = pid_of_dead_holder(|| std::mem::forget(m.lock().unwrap()));
    // The reuser locks for real (taking over), so the dead holder's
    // acquisition is over, then a third process must find it held.
    let reuser = start_with_pid(dead, || {
        let held = m.try_lock();
        let taken = match &held {
            Err(TryLockError::OwnerDied(_)) => "owner-died".to_string(),
            _ => format!("{held:?}"),
        };
        let third = Process::new(|| outcome(m.try_lock())).start().unwrap();
        let third = third.join().unwrap();
        drop(held);
        (taken, third)
    });
    let (taken, third) = reuser.join().unwrap();
    assert_eq!(
        (taken.as_str(), third.as_str()),
        ("owner-died", "would-block")
    );
}

/// Issue 11, defect 8: thread keys were a per-process counter, so the dead
/// holder's key (inherited from this test thread through fork) matched this
/// thread while another thread of this process took the lock over: for a
/// moment this thread counted as the holder and would have re-entered
/// beside the taker.
#[test]
fn rlock_a_dead_holders_thread_key_never_matches_a_thread_of_the_taker() {
    let lock = Shared::new(RLock::new()).unwrap();
    // This thread takes its key now; each dead holder is forked from it and
    // so, under the old per-process counter, had this very key.
    drop(lock.lock().unwrap());
    let mut seen_as_holder = 0u32;
    for _ in 0..200 {
        let _ = pid_of_dead_holder(|| std::mem::forget(lock.lock().unwrap()));
        let taken = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let guard = match lock.lock_timeout(GENEROUS) {
                    Err(TryLockError::OwnerDied(died)) => died.into_inner(),
                    other => panic!("the taker must take over: {other:?}"),
                };
                taken.store(true, Ordering::SeqCst);
                drop(guard);
            });
            // Watch while the other thread takes over.
            while !taken.load(Ordering::SeqCst) {
                if lock.is_held_by_current_thread() {
                    seen_as_holder += 1;
                }
            }
        });
    }
    assert_eq!(
        seen_as_holder, 0,
        "a thread that never locked counted as the holder"
    );
}

#[test]
fn rlock_a_new_process_with_a_dead_holders_pid_is_not_the_holder() {
    if skip() {
        return;
    }
    let lock = Shared::new(RLock::new()).unwrap();
    let dead = pid_of_dead_holder(|| std::mem::forget(lock.lock().unwrap()));
    let reuser = start_with_pid(dead, || {
        let reentered = lock.is_held_by_current_thread();
        (reentered, outcome(lock.try_lock()))
    });
    assert_eq!(reuser.join().unwrap(), (false, "owner-died".to_string()));
}

#[test]
fn the_identity_of_a_reused_pid_differs() {
    if skip() {
        return;
    }
    let first = Process::new(|| shm::pid::current_identity().to_bits())
        .start()
        .unwrap();
    let dead = first.pid();
    let first_identity = shm::pid::Identity::from_bits(first.join().unwrap()).unwrap();
    let second = start_with_pid(dead, || shm::pid::current_identity().to_bits());
    let second_identity = second.join().unwrap();
    assert_eq!(first_identity.pid(), dead);
    assert_ne!(first_identity.to_bits(), second_identity);
    assert!(!first_identity.is_running());
}

/// Issue 11, defect 7: a process in another pid namespace misjudged every
/// holder (the holder's pid means another process there, or none) and took
/// a live holder's lock. A forked child that moved to a new pid namespace
/// must refuse to use what it inherited, saying why.
#[test]
fn a_process_in_another_pid_namespace_refuses_an_inherited_lock() {
    if skip() {
        return;
    }
    let lock = Shared::new(Lock::new()).unwrap();
    let held = lock.lock().unwrap();
    let outsider = Process::new(|| {
        // SAFETY: unshare changes only which namespace this process's
        // future children are born in.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWPID) }, 0);
        let in_new_namespace = Process::new(|| outcome(lock.try_lock())).start().unwrap();
        match in_new_namespace.join() {
            Ok(outcome) => outcome,
            Err(daemon::JoinError::Panicked { message, .. }) => message,
            Err(other) => format!("{other}"),
        }
    })
    .start()
    .unwrap();
    let said = outsider.join().unwrap();
    assert!(said.contains("another pid namespace"), "{said}");
    assert!(lock.is_locked(), "the live holder still holds it");
    drop(held);
}

/// Defect 7 for unrelated programs: a named segment records its creator's
/// pid namespace, and a process in another one is refused at `open`.
#[test]
fn a_named_lock_is_refused_in_another_pid_namespace() {
    if skip() {
        return;
    }
    let name = testkit::unique_name("pidns");
    let _lock = Shared::create(&name, Lock::new()).unwrap();
    let outsider = Process::new(|| {
        // SAFETY: as above: only future children change namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWPID) }, 0);
        Process::new(|| match Shared::<Lock>::open(&name) {
            Ok(_) => "opened".to_string(),
            Err(e) => e.to_string(),
        })
        .start()
        .unwrap()
        .join()
        .unwrap()
    })
    .start()
    .unwrap();
    let said = outsider.join().unwrap();
    assert!(said.contains("another pid namespace"), "{said}");
}
