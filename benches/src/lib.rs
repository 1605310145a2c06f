//! Shared pieces of the procsync benches: the baselines a user would
//! otherwise reach for, written over `libc`, and the harness that runs a
//! workload in several pinned processes and times it.
//!
//! Workload ids (W1, W2, ...) are those of `shared/design/BENCHMARKS.md`,
//! summarised in `docs/benchmarks.md`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use shm::{Futex, Segment, Shared, ShmSafe};
use testkit::monotonic_ns;

/// A lock as the lock benches see it: run a critical section under it.
pub trait BenchLock: Sync {
    /// Takes the lock, runs `critical`, releases the lock.
    fn locked(&self, critical: impl FnOnce());
}

impl BenchLock for sync_lock::Lock {
    #[inline]
    fn locked(&self, critical: impl FnOnce()) {
        let _guard = self.lock().unwrap_or_else(|died| died.into_inner());
        critical();
    }
}

impl BenchLock for sync_lock::Mutex<u64> {
    /// Also increments the guarded `u64`: a `Mutex<T>` exists to be used.
    #[inline]
    fn locked(&self, critical: impl FnOnce()) {
        let mut guard = self.lock().unwrap_or_else(|died| died.into_inner());
        *guard += 1;
        critical();
    }
}

impl BenchLock for sync_lock::RLock {
    #[inline]
    fn locked(&self, critical: impl FnOnce()) {
        let _guard = self.lock().unwrap_or_else(|died| died.into_inner());
        critical();
    }
}

/// The physical floor of a lock: a test-and-set spinlock (one compare and
/// swap to take it, one release store to drop it). It cannot sleep and does
/// not survive a dead holder.
#[repr(C)]
#[derive(Default)]
pub struct AtomicFloor {
    held: AtomicU32,
}

// SAFETY: one atomic.
unsafe impl ShmSafe for AtomicFloor {}

impl AtomicFloor {
    /// Takes the lock if it is free.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.held
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

impl AtomicFloor {
    /// Takes the lock, yielding while it is held.
    #[inline]
    fn take(&self) {
        while self
            .held
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.held.load(Ordering::Relaxed) != 0 {
                // Oversubscribed processes must let the holder run.
                std::thread::yield_now();
            }
        }
    }
}

impl BenchLock for AtomicFloor {
    #[inline]
    fn locked(&self, critical: impl FnOnce()) {
        self.take();
        critical();
        self.held.store(0, Ordering::Release);
    }
}

/// The least a lock that can park a waiter does uncontended: one
/// compare-and-swap to take the word and a second read-modify-write to
/// release it (the release must learn, atomically, whether a sleeper asked
/// to be woken). Not a lock anyone should use: it never parks. It shows in
/// the same run what [`AtomicFloor`]'s plain release store saves, which is
/// what W1's 2.0x goal allows for.
#[repr(C)]
#[derive(Default)]
pub struct TwoRmwProbe {
    word: AtomicFloor,
}

// SAFETY: one atomic.
unsafe impl ShmSafe for TwoRmwProbe {}

impl BenchLock for TwoRmwProbe {
    #[inline]
    fn locked(&self, critical: impl FnOnce()) {
        self.word.take();
        critical();
        // The sleepers bit a parking lock would test here.
        if self.word.held.swap(0, Ordering::Release) & (1 << 31) != 0 {
            unreachable!("nobody sleeps on the probe");
        }
    }
}

/// A C object initialised in place in shared memory (pthread and semaphore
/// objects may not be moved after initialisation).
pub struct InPlace<T> {
    segment: Segment,
    _t: std::marker::PhantomData<T>,
}

// SAFETY: the process-shared C objects used here are made for concurrent use.
unsafe impl<T> Sync for InPlace<T> {}

impl<T> InPlace<T> {
    /// Zeroed shared memory for a `T`, initialised by `init`.
    pub fn new(init: impl FnOnce(*mut T)) -> InPlace<T> {
        let segment = Segment::anonymous(size_of::<T>().max(1)).expect("shared memory");
        init(segment.as_ptr().cast::<T>());
        InPlace {
            segment,
            _t: std::marker::PhantomData,
        }
    }

    /// The object.
    pub fn ptr(&self) -> *mut T {
        self.segment.as_ptr().cast::<T>()
    }
}

/// A process-shared pthread mutex, robust or not.
pub type PthreadMutex = InPlace<libc::pthread_mutex_t>;

/// `PTHREAD_PROCESS_SHARED` mutex, with `PTHREAD_MUTEX_ROBUST` if `robust`.
pub fn pthread_mutex(robust: bool) -> PthreadMutex {
    InPlace::new(|m| {
        // SAFETY: attr is initialised before use and destroyed after; `m`
        // points to zeroed shared memory the size of a pthread_mutex_t.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            if robust {
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            }
            assert_eq!(libc::pthread_mutex_init(m, &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
    })
}

impl BenchLock for PthreadMutex {
    #[inline]
    fn locked(&self, critical: impl FnOnce()) {
        // SAFETY: an initialised process-shared mutex.
        let rc = unsafe { libc::pthread_mutex_lock(self.ptr()) };
        if rc == libc::EOWNERDEAD {
            // SAFETY: we hold it; mark it usable again.
            unsafe { libc::pthread_mutex_consistent(self.ptr()) };
        }
        critical();
        // SAFETY: held by us.
        unsafe { libc::pthread_mutex_unlock(self.ptr()) };
    }
}

/// A process-shared POSIX semaphore.
pub type PosixSem = InPlace<libc::sem_t>;

/// `sem_init(pshared = 1, value)`.
pub fn posix_sem(value: u32) -> PosixSem {
    InPlace::new(|s| {
        // SAFETY: zeroed shared memory the size of a sem_t.
        assert_eq!(unsafe { libc::sem_init(s, 1, value) }, 0);
    })
}

impl PosixSem {
    /// `sem_wait`, retried on EINTR.
    #[inline]
    pub fn wait(&self) {
        // SAFETY: an initialised semaphore.
        while unsafe { libc::sem_wait(self.ptr()) } != 0 {}
    }
    /// `sem_post`.
    #[inline]
    pub fn post(&self) {
        // SAFETY: an initialised semaphore.
        unsafe { libc::sem_post(self.ptr()) };
    }
}

impl BenchLock for PosixSem {
    #[inline]
    fn locked(&self, critical: impl FnOnce()) {
        self.wait();
        critical();
        self.post();
    }
}

/// Pins the calling process to `cpu` (modulo the CPUs there are).
pub fn pin_to_cpu(cpu: usize) {
    let cpus = cpus();
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Number of CPUs online (not just those this process may run on:
/// `available_parallelism` would shrink after a `pin_to_cpu`).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Start line and finish times of a cross-process run.
#[repr(C)]
pub struct Race {
    ready: AtomicU32,
    /// 0 until the parent releases every worker at once.
    go: Futex,
    /// Latest finish, CLOCK_MONOTONIC ns.
    finished: AtomicU64,
    /// A counter the workload increments non-atomically under its lock.
    pub counter: Counter,
}

// SAFETY: atomics and a counter cell of plain data.
unsafe impl ShmSafe for Race {}

/// A `u64` changed with a plain load and store, so only mutual exclusion
/// keeps it exact.
#[repr(transparent)]
pub struct Counter(UnsafeCell<u64>);

// SAFETY: plain data.
unsafe impl ShmSafe for Counter {}
// SAFETY: callers change it only under a lock (that is what is checked).
unsafe impl Sync for Counter {}

impl Counter {
    /// `+= 1`, not atomically: callers hold a lock.
    #[inline]
    pub fn bump(&self) {
        // SAFETY: the benchmark holds a lock around every bump; a volatile
        // read/write pair keeps the compiler from merging bumps.
        unsafe {
            let v = std::ptr::read_volatile(self.0.get());
            std::ptr::write_volatile(self.0.get(), v + 1);
        }
    }

    /// The value (read after every worker finished).
    pub fn get(&self) -> u64 {
        // SAFETY: read when no worker runs.
        unsafe { std::ptr::read_volatile(self.0.get()) }
    }
}

/// Runs `work(worker_index)` in `workers` forked processes pinned round
/// robin to the CPUs (or all to CPU 0 when `same_cpu`), released together,
/// and returns the time from the release to the last finish.
pub fn race(workers: usize, same_cpu: bool, work: impl Fn(usize, &Race) + Sync) -> (Duration, u64) {
    let race = Shared::new(Race {
        ready: AtomicU32::new(0),
        go: Futex::new(0),
        finished: AtomicU64::new(0),
        counter: Counter(UnsafeCell::new(0)),
    })
    .expect("shared memory");
    let children: Vec<_> = (0..workers)
        .map(|i| {
            let race = &race;
            let work = &work;
            daemon::Process::new(move || {
                pin_to_cpu(if same_cpu { 0 } else { i });
                race.ready.fetch_add(1, Ordering::SeqCst);
                // Sleep, not spin: with more workers than CPUs, spinners
                // would steal the time slices the released ones need.
                while race.go.load(Ordering::Acquire) == 0 {
                    race.go.wait(0, None);
                }
                work(i, race);
                race.finished.fetch_max(monotonic_ns(), Ordering::SeqCst);
            })
            .start()
            .expect("fork a bench worker")
        })
        .collect();
    while race.ready.load(Ordering::SeqCst) < workers as u32 {
        std::thread::yield_now();
    }
    let start = monotonic_ns();
    race.go.store(1, Ordering::Release);
    race.go.wake_all();
    for child in children {
        child.join().expect("bench worker");
    }
    let elapsed = race.finished.load(Ordering::SeqCst).saturating_sub(start);
    (Duration::from_nanos(elapsed), race.counter.get())
}

/// Splits `total` operations over `workers`: worker `i`'s share.
pub fn share(total: u64, workers: usize, i: usize) -> u64 {
    let workers = workers as u64;
    total / workers + u64::from((i as u64) < total % workers)
}

/// The fewest operations a cross-process sample runs: forking, releasing
/// and joining the workers costs milliseconds with more workers than CPUs,
/// which must not be what a sample measures.
pub const MIN_BATCH: u64 = 200_000;

/// Runs `measure(ops)` on at least [`MIN_BATCH`] operations and scales the
/// time back to `iters` operations, for criterion's `iter_custom`.
pub fn scaled(iters: u64, measure: impl FnOnce(u64) -> Duration) -> Duration {
    let ops = iters.max(MIN_BATCH);
    let elapsed = measure(ops);
    Duration::from_secs_f64(elapsed.as_secs_f64() * iters as f64 / ops as f64)
}

/// The criterion settings every bench group uses: few samples, a short
/// warm-up, `measurement` per contender (the whole suite stays near five
/// minutes on two cores).
pub fn criterion_config(samples: usize, measurement: Duration) -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(samples)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(measurement)
}
