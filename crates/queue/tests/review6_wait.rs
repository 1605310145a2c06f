//! Review 6 of `wait`: what a wait with nothing ready costs, and that it
//! reports exactly the ready objects, between real processes.

use std::time::{Duration, Instant};

use daemon::Process;
use queue::{pipe, wait, Waitable};
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise, wait_for, GENEROUS};

/// CPU time this thread has used (user and system).
fn thread_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` fills the `rusage` it is given; it is read only
    // after the call succeeded.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A one-second `wait` on a connection whose peer lives and a child that
/// runs, nothing ready and no object without a descriptor: it sleeps in
/// `poll(2)` (a busy loop would cost a whole second of CPU), and returns
/// empty after the second, not before, not much after.
#[test]
fn a_wait_with_nothing_ready_sleeps_instead_of_spinning() {
    let announced = Shared::new(Futex::new(0)).unwrap();
    let announced_ref = &announced;
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || -> () {
        // Announces itself: the parent watches this process from now on.
        assert!(!child_end.poll(Some(Duration::ZERO)));
        raise(announced_ref);
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&announced, 1);
    // The announcement is applied by the first look, outside the measure.
    assert!(!parent_end.poll(Some(Duration::ZERO)));
    let objects: [&dyn Waitable; 2] = [&parent_end, &child];
    let second = Duration::from_secs(1);
    let cpu = thread_cpu_time();
    let started = Instant::now();
    let ready = wait(&objects, Some(second));
    let waited = started.elapsed();
    let spent = thread_cpu_time() - cpu;
    assert!(ready.is_empty(), "ready: {ready:?}");
    assert!(waited >= second, "returned after {waited:?}");
    assert!(waited < second + GENEROUS / 10, "returned after {waited:?}");
    assert!(
        spent < Duration::from_millis(50),
        "{spent:?} of CPU in {waited:?}"
    );
    child.kill().unwrap();
    // The child's death makes both ready: its sentinel, and the connection
    // (the peer's owner is gone).
    let limit = testkit::deadline(GENEROUS);
    let mut ready = wait(&objects, Some(GENEROUS));
    while ready != [0, 1] {
        assert!(Instant::now() < limit, "only {ready:?} ready");
        ready = wait(&objects, Some(GENEROUS));
    }
    assert!(child.join().is_err());
}

/// A child's sentinel polls readable once it has exited and stays so after
/// its status is collected (`exit_code` collects it): `wait` reports it every
/// time, and never a running child.
#[test]
fn a_reaped_child_stays_ready_and_a_running_one_never_is() {
    let gate = Shared::new(Futex::new(0)).unwrap();
    let gate_ref = &gate;
    let mut done = Process::new(|| 1u8).start().unwrap();
    let running = Process::new(move || wait_for(gate_ref, 1)).start().unwrap();
    let objects: [&dyn Waitable; 2] = [&running, &done];
    assert_eq!(wait(&objects, Some(GENEROUS)), [1]);
    testkit::wait_until("the child is collected", || done.exit_code().is_some());
    for _ in 0..3 {
        let objects: [&dyn Waitable; 2] = [&running, &done];
        assert_eq!(wait(&objects, Some(Duration::ZERO)), [1]);
    }
    raise(&gate);
    running.join().unwrap();
    assert!(matches!(done.exit_code(), Some(0)));
}
