//! Review: RawLock's unlock clears WAITERS and wakes exactly one sleeper.
//! If that one is a timed waiter whose deadline passes before it runs, and
//! another process takes the lock through the fast path (no WAITERS bit)
//! meanwhile, the timed waiter returns `None` without passing the wake on.
//! A sleeper whose holder was a thread of its own process sleeps with no
//! owner check and no deadline: it is never woken again, though the lock is
//! free.
//!
//! The interleaving is forced with the scheduler, not with sleeps: the
//! timed waiter X shares CPU 0 with the unlocking thread A, which runs
//! SCHED_FIFO, so X cannot run between A's wake and X's deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::Mutex;
use testkit::{monotonic_ns, raise, wait_for, wait_until};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    data: Mutex<u32>,
    /// Raised by P once its thread A holds the lock.
    p_locked: Futex,
    /// Raised by C once it holds the lock.
    c_got: Futex,
    /// Raised by P to let C release.
    c_release: Futex,
}

fn pin_to(cpu: usize) {
    // SAFETY: a cpu_set_t we own, filled by the libc macros.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity"
        );
    }
}

fn become_fifo() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's policy; param is ours.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    assert_eq!(rc, 0, "SCHED_FIFO needs root / CAP_SYS_NICE");
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Whether thread `tid` of this process is asleep in futex(2).
fn in_futex(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .is_ok_and(|s| s.split(' ').next() == Some("202"))
}

#[test]
fn a_same_process_waiter_is_not_left_asleep_on_a_free_lock() {
    let arena = Shared::new(Arena {
        data: Mutex::new(0),
        p_locked: Futex::new(0),
        c_got: Futex::new(0),
        c_release: Futex::new(0),
    })
    .unwrap();
    let a = &*arena;
    // C: another process that takes the lock through the fast path as soon
    // as it is free.
    let c = Process::new(move || {
        pin_to(1);
        wait_for(&a.p_locked, 1);
        let limit = Instant::now() + Duration::from_secs(10);
        let guard = loop {
            if let Ok(g) = a.data.try_lock() {
                break g;
            }
            assert!(Instant::now() < limit, "C never got the lock");
        };
        raise(&a.c_got);
        wait_for(&a.c_release, 1);
        drop(guard);
    })
    .start()
    .unwrap();
    // P: thread A holds; thread X waits with a deadline; thread B waits
    // without one.
    let p = Process::new(move || {
        let guard = a.data.lock().unwrap();
        raise(&a.p_locked);
        let x_tid = AtomicU64::new(0);
        let x_start = AtomicU64::new(0);
        let b_tid = AtomicU64::new(0);
        let b_got = Futex::new(0);
        std::thread::scope::<_, ()>(|s| {
            let x = s.spawn(|| {
                pin_to(0);
                x_tid.store(gettid() as u64, Ordering::SeqCst);
                x_start.store(monotonic_ns(), Ordering::SeqCst);
                a.data.lock_timeout(Duration::from_millis(100)).is_ok()
            });
            wait_until("X sleeps", || {
                let tid = x_tid.load(Ordering::SeqCst) as i32;
                tid != 0 && in_futex(tid)
            });
            s.spawn(|| {
                b_tid.store(gettid() as u64, Ordering::SeqCst);
                let g = a.data.lock().unwrap_or_else(|d| d.into_inner());
                raise(&b_got);
                drop(g);
            });
            wait_until("B sleeps", || {
                let tid = b_tid.load(Ordering::SeqCst) as i32;
                tid != 0 && in_futex(tid)
            });
            // A: keep CPU 0 from X from the unlock until X's deadline has
            // passed and C holds the lock.
            become_fifo();
            pin_to(0);
            drop(guard); // wakes one sleeper: X, the first queued
            let x_deadline = x_start.load(Ordering::SeqCst) + 105_000_000;
            while a.c_got.load(Ordering::SeqCst) == 0 || monotonic_ns() < x_deadline {
                std::hint::spin_loop();
            }
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: back to the normal policy for this thread.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
            let x_got = x.join().unwrap();
            raise(&a.c_release);
            // The lock is free now (or will be as soon as C drops it): B
            // must get it.
            let limit = Instant::now() + Duration::from_secs(3);
            let b_ok = loop {
                if b_got.load(Ordering::SeqCst) != 0 {
                    break true;
                }
                if !b_got.wait(0, Some(limit)) {
                    break b_got.load(Ordering::SeqCst) != 0;
                }
            };
            let free = !a.data.is_locked();
            let code = if x_got {
                12 // X took the lock: the interleaving was not reached
            } else if b_ok {
                0
            } else if free {
                10
            } else {
                11
            };
            // B may be stuck for ever: leave without joining it.
            // SAFETY: ends this forked child; nothing else to clean.
            unsafe { libc::_exit(code) };
        })
    })
    .start()
    .unwrap();
    let p_result = p.join();
    c.join().unwrap();
    let message = format!("{p_result:?}");
    // P leaves with `_exit(code)` (B may be stuck): code 0 is success.
    assert!(
        matches!(p_result, Err(daemon::JoinError::Exited { code: 0, .. })),
        "lost wake-up: thread B of P did not get the lock within 3 s after it was freed \
         (exit 10: lock free and B still asleep; 11: lock still held; 12: interleaving not \
         reached): {message}"
    );
}
