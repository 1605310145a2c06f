//! W7, W8 and W11: outcomes, not timings. Prints one JSON object per line:
//! `{"workload":"W7","contender":"...","outcome":"recovered","micros":42}`
//! or `"outcome":"deadlock"` / `"gone"` / `"orphan survives"`.
//!
//! W7: a child holding the lock is SIGKILLed; the parent locks with a 2 s
//! timeout. W8: a parent with a daemon child is SIGKILLed; is the child gone
//! 1 s later? W11: a pool of 4 workers runs 4 tasks; one worker is SIGKILLed
//! mid-task: what becomes of the tasks and the pool, and how long after the
//! kill the dead task's outcome comes (`micros`).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benches::{posix_sem, pthread_mutex, AtomicFloor, PosixSem, PthreadMutex};
use daemon::Process;
use shm::{Futex, Shared};
use testkit::monotonic_ns;

const W7_TIMEOUT: Duration = Duration::from_secs(2);
const W8_WAIT: Duration = Duration::from_secs(1);

/// A lock as W7 needs it: take it (and keep it), or take it with a timeout.
trait DeathLock: Sync {
    fn hold(&self);
    /// True if acquired within `timeout`.
    fn acquire_within(&self, timeout: Duration) -> bool;
}

impl DeathLock for sync_lock::Lock {
    fn hold(&self) {
        std::mem::forget(self.lock().unwrap_or_else(|d| d.into_inner()));
    }
    fn acquire_within(&self, timeout: Duration) -> bool {
        match self.lock_timeout(timeout) {
            Ok(_) => true,
            Err(sync_lock::TryLockError::OwnerDied(_)) => true,
            Err(_) => false,
        }
    }
}

impl DeathLock for AtomicFloor {
    fn hold(&self) {
        while !self.try_acquire() {
            std::hint::spin_loop();
        }
    }
    fn acquire_within(&self, timeout: Duration) -> bool {
        // `None`: no limit (a timeout past the end of the clock).
        let deadline = Instant::now().checked_add(timeout);
        while deadline.is_none_or(|d| Instant::now() < d) {
            if self.try_acquire() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }
}

fn realtime_deadline(timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let total = now.tv_nsec as u64 + timeout.subsec_nanos() as u64;
    libc::timespec {
        tv_sec: now.tv_sec
            + timeout.as_secs() as libc::time_t
            + (total / 1_000_000_000) as libc::time_t,
        tv_nsec: (total % 1_000_000_000) as libc::c_long,
    }
}

impl DeathLock for PthreadMutex {
    fn hold(&self) {
        // SAFETY: an initialised process-shared mutex.
        unsafe { libc::pthread_mutex_lock(self.ptr()) };
    }
    fn acquire_within(&self, timeout: Duration) -> bool {
        let deadline = realtime_deadline(timeout);
        // SAFETY: as above; a valid timespec.
        let rc = unsafe { libc::pthread_mutex_timedlock(self.ptr(), &deadline) };
        if rc == libc::EOWNERDEAD {
            // SAFETY: we hold it now.
            unsafe { libc::pthread_mutex_consistent(self.ptr()) };
        }
        rc == 0 || rc == libc::EOWNERDEAD
    }
}

impl DeathLock for PosixSem {
    fn hold(&self) {
        self.wait();
    }
    fn acquire_within(&self, timeout: Duration) -> bool {
        let deadline = realtime_deadline(timeout);
        // SAFETY: an initialised semaphore; a valid timespec.
        unsafe { libc::sem_timedwait(self.ptr(), &deadline) == 0 }
    }
}

fn w7<L: DeathLock>(name: &str, lock: &L) {
    let holding = Shared::new(Futex::new(0)).expect("shared memory");
    let holder = Process::new(|| -> u8 {
        lock.hold();
        holding.store(1, Ordering::SeqCst);
        holding.wake_all();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .start()
    .expect("fork");
    while holding.load(Ordering::SeqCst) == 0 {
        holding.wait(0, Some(Instant::now() + Duration::from_secs(5)));
    }
    holder.kill().expect("kill");
    let killed = monotonic_ns();
    let recovered = lock.acquire_within(W7_TIMEOUT);
    let micros = (monotonic_ns() - killed) / 1000;
    let _ = holder.join();
    if recovered {
        println!(
            r#"{{"workload":"W7","contender":"{name}","outcome":"recovered","micros":{micros}}}"#
        );
    } else {
        println!(r#"{{"workload":"W7","contender":"{name}","outcome":"deadlock"}}"#);
    }
}

/// W8: a parent starts a child (daemon or plain fork), is SIGKILLed; we poll
/// the child for up to a second.
fn w8(name: &str, as_daemon: bool) {
    let child_pid = Shared::new(AtomicI32::new(0)).expect("shared memory");
    let parent = Process::new(|| -> u8 {
        let pid = if as_daemon {
            let child = Process::new(|| -> u8 {
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .daemon(true)
            .start()
            .expect("fork");
            let pid = child.pid().as_raw();
            std::mem::forget(child);
            pid
        } else {
            // What Python's daemon=True amounts to when the parent is killed:
            // a plain forked child with no parent-death signal.
            // SAFETY: the child only sleeps, then leaves with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                std::thread::sleep(Duration::from_secs(30));
                // SAFETY: ends the orphan.
                unsafe { libc::_exit(0) };
            }
            pid
        };
        child_pid.store(pid, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .start()
    .expect("fork");
    while child_pid.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let raw_pid = child_pid.load(Ordering::SeqCst);
    let pid = shm::pid::Pid::from_raw(raw_pid).expect("a child's pid");
    parent.kill().expect("kill");
    let killed = Instant::now();
    while killed.elapsed() < W8_WAIT && shm::pid::is_running(pid) {
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = parent.join();
    if shm::pid::is_running(pid) {
        // SAFETY: the orphan we made; clean it up.
        unsafe { libc::kill(raw_pid, libc::SIGKILL) };
        println!(r#"{{"workload":"W8","contender":"{name}","outcome":"orphan survives"}}"#);
    } else {
        let micros = killed.elapsed().as_micros();
        println!(r#"{{"workload":"W8","contender":"{name}","outcome":"gone","micros":{micros}}}"#);
    }
}

/// W11: how long each task runs: all four are still running when one is
/// killed, and the others end well after the dead one's outcome is due.
const W11_TASK: Duration = Duration::from_millis(500);
/// Where W11's task `i` writes the pid of the worker running it.
static W11_PIDS: std::sync::OnceLock<shm::SharedSlice<AtomicU64>> = std::sync::OnceLock::new();

/// W11's task: says which worker runs it, then works for [`W11_TASK`].
fn w11_task(i: u64) -> u64 {
    if let Some(slot) = W11_PIDS.get().and_then(|pids| pids.get(i as usize)) {
        slot.store(u64::from(shm::pid::current().get()), Ordering::SeqCst);
    }
    std::thread::sleep(W11_TASK);
    i
}

fn w11() {
    let pids = W11_PIDS.get_or_init(|| {
        shm::SharedSlice::from_fn(4, |_| AtomicU64::new(0)).expect("shared memory")
    });
    let pool = pool::Pool::new(4).expect("a pool of 4");
    let pending: Vec<_> = (0..4).map(|i| pool.apply_async(w11_task, i)).collect();
    let started = Instant::now();
    while pids.iter().any(|p| p.load(Ordering::SeqCst) == 0) {
        if started.elapsed() > Duration::from_secs(10) {
            println!(
                r#"{{"workload":"W11","contender":"procsync-Pool","outcome":"the 4 tasks never all started"}}"#
            );
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let victim = pids[0].load(Ordering::SeqCst) as libc::pid_t;
    // SAFETY: kill(2) on a pid read from the pool's worker that runs task 0,
    // which cannot have been reaped yet: it sleeps for W11_TASK.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let killed = Instant::now();
    let dead = pending[0].get();
    let micros = killed.elapsed().as_micros();
    let ok = pending[1..].iter().filter(|p| p.get().is_ok()).count();
    let died = usize::from(matches!(dead, Err(pool::TaskError::WorkerDied { .. })));
    let usable = if pool.apply(w11_task, 3) == Ok(3) {
        "usable"
    } else {
        "unusable"
    };
    println!(
        r#"{{"workload":"W11","contender":"procsync-Pool","outcome":"{died} task WorkerDied, {ok} ok, pool {usable}","micros":{micros}}}"#
    );
}

fn main() {
    w7(
        "procsync-Lock",
        &*Shared::new(sync_lock::Lock::new()).expect("shared memory"),
    );
    w7("pthread-robust", &pthread_mutex(true));
    w7("pthread-pshared", &pthread_mutex(false));
    w7("posix-sem", &posix_sem(1));
    w7(
        "atomic-floor",
        &*Shared::new(AtomicFloor::default()).expect("shared memory"),
    );
    w8("procsync-daemon", true);
    w8("fork (no parent-death signal)", false);
    w11();
}
