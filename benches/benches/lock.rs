//! W1, W2 and W2N: procsync's locks against the atomic floor, glibc's
//! process-shared mutexes (plain and robust) and a POSIX semaphore.

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::time::Duration;

use benches::{posix_sem, pthread_mutex, race, scaled, share, AtomicFloor, BenchLock};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shm::Shared;

/// W1: one process, lock then unlock.
fn lock_uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("W1_lock_uncontended");
    benches::pin_to_cpu(0);
    fn pair<L: BenchLock>(lock: &L) {
        lock.locked(|| {});
    }
    let floor = Shared::new(AtomicFloor::default()).unwrap();
    group.bench_function("atomic-floor", |b| b.iter(|| pair(&*floor)));
    let probe = Shared::new(benches::TwoRmwProbe::default()).unwrap();
    group.bench_function("two-rmw-probe", |b| b.iter(|| pair(&*probe)));
    let lock = Shared::new(sync_lock::Lock::new()).unwrap();
    group.bench_function("procsync-Lock", |b| b.iter(|| pair(&*lock)));
    let mutex = Shared::new(sync_lock::Mutex::new(0u64)).unwrap();
    group.bench_function("procsync-Mutex", |b| b.iter(|| pair(&*mutex)));
    let rlock = Shared::new(sync_lock::RLock::new()).unwrap();
    group.bench_function("procsync-RLock", |b| b.iter(|| pair(&*rlock)));
    let pshared = pthread_mutex(false);
    group.bench_function("pthread-pshared", |b| b.iter(|| pair(&pshared)));
    let robust = pthread_mutex(true);
    group.bench_function("pthread-robust", |b| b.iter(|| pair(&robust)));
    let sem = posix_sem(1);
    group.bench_function("posix-sem", |b| b.iter(|| pair(&sem)));
    group.finish();
}

/// `total` lock/increment/unlock operations shared by `workers` processes.
fn contended<L: BenchLock>(lock: &L, workers: usize, total: u64) -> Duration {
    let (elapsed, counter) = race(workers, false, |i, race| {
        for _ in 0..share(total, workers, i) {
            lock.locked(|| race.counter.bump());
        }
    });
    assert_eq!(counter, total, "the lock let two processes in at once");
    elapsed
}

fn contenders(group: &mut Group<'_>, workers: usize) {
    let floor = Shared::new(AtomicFloor::default()).unwrap();
    let lock = Shared::new(sync_lock::Lock::new()).unwrap();
    let mutex = Shared::new(sync_lock::Mutex::new(0u64)).unwrap();
    let rlock = Shared::new(sync_lock::RLock::new()).unwrap();
    let pshared = pthread_mutex(false);
    let robust = pthread_mutex(true);
    let sem = posix_sem(1);
    add(group, "atomic-floor", &*floor, workers);
    add(group, "procsync-Lock", &*lock, workers);
    add(group, "procsync-Mutex", &*mutex, workers);
    add(group, "procsync-RLock", &*rlock, workers);
    add(group, "pthread-pshared", &pshared, workers);
    add(group, "pthread-robust", &robust, workers);
    add(group, "posix-sem", &sem, workers);
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn add<L: BenchLock>(group: &mut Group<'_>, name: &str, lock: &L, workers: usize) {
    group.bench_function(BenchmarkId::new(name, workers), |b| {
        b.iter_custom(|n| scaled(n, |ops| contended(lock, workers, ops)))
    });
}

/// W2: two processes on different CPUs, each half of the operations.
fn lock_contended_2p(c: &mut Criterion) {
    let mut group = c.benchmark_group("W2_lock_contended_2p");
    group.throughput(Throughput::Elements(1));
    contenders(&mut group, 2);
    group.finish();
}

/// W2N: 2, 4, 8 and 16 processes sharing a fixed total of operations.
fn lock_contended_np(c: &mut Criterion) {
    let mut group = c.benchmark_group("W2N_lock_contended_Np");
    group.throughput(Throughput::Elements(1));
    for workers in [2, 4, 8, 16] {
        contenders(&mut group, workers);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::criterion_config(10, Duration::from_secs(1));
    targets = lock_uncontended, lock_contended_2p, lock_contended_np
}
criterion_main!(benches);
