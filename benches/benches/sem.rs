//! W3 and W4: procsync's semaphores against a process-shared POSIX
//! semaphore, with the atomic floor for scale.

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use benches::{posix_sem, race, scaled, share, AtomicFloor, BenchLock, PosixSem};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shm::Shared;
use sync_sem::{RobustSemaphore, Semaphore};

/// A semaphore as these benches see it: hold one permit around `critical`.
trait BenchSem: Sync {
    fn with_permit(&self, critical: impl FnOnce());
}

impl BenchSem for Semaphore {
    #[inline]
    fn with_permit(&self, critical: impl FnOnce()) {
        let _permit = self.acquire();
        critical();
    }
}

impl BenchSem for RobustSemaphore {
    #[inline]
    fn with_permit(&self, critical: impl FnOnce()) {
        let _permit = self.acquire().expect("fewer than MAX_HOLDERS holders");
        critical();
    }
}

impl BenchSem for PosixSem {
    #[inline]
    fn with_permit(&self, critical: impl FnOnce()) {
        self.wait();
        critical();
        self.post();
    }
}

/// The floor: a one-permit spinlock (a semaphore can do no better).
impl BenchSem for AtomicFloor {
    #[inline]
    fn with_permit(&self, critical: impl FnOnce()) {
        self.locked(critical);
    }
}

/// W3: one process, Semaphore(2): acquire then release.
fn sem_uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("W3_sem_uncontended");
    let floor = Shared::new(AtomicFloor::default()).unwrap();
    group.bench_function("atomic-floor", |b| b.iter(|| floor.with_permit(|| {})));
    let plain = Shared::new(Semaphore::new(2)).unwrap();
    group.bench_function("procsync-Semaphore", |b| {
        b.iter(|| plain.with_permit(|| {}))
    });
    let robust = Shared::new(RobustSemaphore::new(2)).unwrap();
    group.bench_function("procsync-RobustSemaphore", |b| {
        b.iter(|| robust.with_permit(|| {}))
    });
    let posix = posix_sem(2);
    group.bench_function("posix-sem", |b| b.iter(|| posix.with_permit(|| {})));
    group.finish();
}

const WORKERS: usize = 4;
const PERMITS: u32 = 2;

/// `total` acquire/release pairs by four processes; checks that never more
/// than two are inside.
fn contended<S: BenchSem>(sem: &S, total: u64) -> Duration {
    let inside = Shared::new(AtomicU32::new(0)).unwrap();
    let most = Shared::new(AtomicU32::new(0)).unwrap();
    let (elapsed, _) = race(WORKERS, false, |i, _| {
        for _ in 0..share(total, WORKERS, i) {
            sem.with_permit(|| {
                let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                most.fetch_max(now, Ordering::Relaxed);
                inside.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    assert!(
        most.load(Ordering::SeqCst) <= PERMITS,
        "more inside than permits"
    );
    elapsed
}

fn add<S: BenchSem>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    sem: &S,
) {
    group.bench_function(BenchmarkId::new(name, WORKERS), |b| {
        b.iter_custom(|n| scaled(n, |ops| contended(sem, ops)))
    });
}

/// W4: Semaphore(2), four processes on two CPUs.
fn sem_contended_4p(c: &mut Criterion) {
    let mut group = c.benchmark_group("W4_sem_contended_4p");
    group.throughput(Throughput::Elements(1));
    add(
        &mut group,
        "procsync-Semaphore",
        &*Shared::new(Semaphore::new(PERMITS)).unwrap(),
    );
    add(
        &mut group,
        "procsync-RobustSemaphore",
        &*Shared::new(RobustSemaphore::new(PERMITS)).unwrap(),
    );
    add(&mut group, "posix-sem", &posix_sem(PERMITS));
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::criterion_config(10, Duration::from_secs(1));
    targets = sem_uncontended, sem_contended_4p
}
criterion_main!(benches);
