//! W5 and W5s: an event ping-pong between two processes, procsync's Event
//! against a raw futex and a process-shared pthread condition variable, on
//! two CPUs and on one.

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use benches::{race, InPlace};
use criterion::{criterion_group, criterion_main, Criterion};
use shm::{Futex, Shared};
use sync_event::Event;

/// An event as the ping-pong sees it.
trait BenchEvent: Sync {
    fn set(&self);
    fn wait(&self);
    fn clear(&self);
}

impl BenchEvent for Event {
    fn set(&self) {
        Event::set(self);
    }
    fn wait(&self) {
        Event::wait(self);
    }
    fn clear(&self) {
        Event::clear(self);
    }
}

/// The raw-futex baseline: a flag word, FUTEX_WAKE on every set, FUTEX_WAIT
/// while clear; no spinning.
impl BenchEvent for Futex {
    fn set(&self) {
        self.store(1, Ordering::Release);
        self.wake_all();
    }
    fn wait(&self) {
        while self.load(Ordering::Acquire) == 0 {
            Futex::wait(self, 0, None);
        }
    }
    fn clear(&self) {
        self.store(0, Ordering::Release);
    }
}

/// The pthread baseline: a process-shared mutex, condition variable and flag.
#[repr(C)]
struct CondEvent {
    mutex: libc::pthread_mutex_t,
    cond: libc::pthread_cond_t,
    flag: bool,
}

fn cond_event() -> InPlace<CondEvent> {
    InPlace::new(|e: *mut CondEvent| {
        // SAFETY: zeroed shared memory for the struct; attributes are
        // initialised before use and destroyed after.
        unsafe {
            let mut mattr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut mattr);
            libc::pthread_mutexattr_setpshared(&mut mattr, libc::PTHREAD_PROCESS_SHARED);
            assert_eq!(libc::pthread_mutex_init(&mut (*e).mutex, &mattr), 0);
            libc::pthread_mutexattr_destroy(&mut mattr);
            let mut cattr: libc::pthread_condattr_t = std::mem::zeroed();
            libc::pthread_condattr_init(&mut cattr);
            libc::pthread_condattr_setpshared(&mut cattr, libc::PTHREAD_PROCESS_SHARED);
            assert_eq!(libc::pthread_cond_init(&mut (*e).cond, &cattr), 0);
            libc::pthread_condattr_destroy(&mut cattr);
        }
    })
}

impl BenchEvent for InPlace<CondEvent> {
    fn set(&self) {
        let e = self.ptr();
        // SAFETY: an initialised process-shared mutex and condvar; `flag` is
        // only touched with the mutex held.
        unsafe {
            libc::pthread_mutex_lock(&mut (*e).mutex);
            (*e).flag = true;
            libc::pthread_cond_broadcast(&mut (*e).cond);
            libc::pthread_mutex_unlock(&mut (*e).mutex);
        }
    }
    fn wait(&self) {
        let e = self.ptr();
        // SAFETY: as in `set`.
        unsafe {
            libc::pthread_mutex_lock(&mut (*e).mutex);
            while !(*e).flag {
                libc::pthread_cond_wait(&mut (*e).cond, &mut (*e).mutex);
            }
            libc::pthread_mutex_unlock(&mut (*e).mutex);
        }
    }
    fn clear(&self) {
        let e = self.ptr();
        // SAFETY: as in `set`.
        unsafe {
            libc::pthread_mutex_lock(&mut (*e).mutex);
            (*e).flag = false;
            libc::pthread_mutex_unlock(&mut (*e).mutex);
        }
    }
}

/// `rounds` round trips: worker 0 pings and waits for the pong, worker 1
/// answers.
fn ping_pong<E: BenchEvent>(ping: &E, pong: &E, rounds: u64, same_cpu: bool) -> Duration {
    let (elapsed, _) = race(2, same_cpu, |i, _| {
        for _ in 0..rounds {
            if i == 0 {
                ping.set();
                pong.wait();
                pong.clear();
            } else {
                ping.wait();
                ping.clear();
                pong.set();
            }
        }
    });
    elapsed
}

/// Round trips per sample: enough to hide forking the two workers.
const MIN_ROUNDS: u64 = 2_000;

fn contenders(c: &mut Criterion, group_name: &str, same_cpu: bool) {
    let mut group = c.benchmark_group(group_name);
    let run = |ping: &dyn Fn(u64) -> Duration, iters: u64| {
        let rounds = iters.max(MIN_ROUNDS);
        ping(rounds).mul_f64(iters as f64 / rounds as f64)
    };
    let (a, b) = (
        Shared::new(Event::new()).unwrap(),
        Shared::new(Event::new()).unwrap(),
    );
    group.bench_function("procsync-Event", |bench| {
        bench.iter_custom(|n| run(&|r| ping_pong(&*a, &*b, r, same_cpu), n))
    });
    let (a, b) = (
        Shared::new(Futex::new(0)).unwrap(),
        Shared::new(Futex::new(0)).unwrap(),
    );
    group.bench_function("futex", |bench| {
        bench.iter_custom(|n| run(&|r| ping_pong(&*a, &*b, r, same_cpu), n))
    });
    let (a, b) = (cond_event(), cond_event());
    group.bench_function("pthread-cond", |bench| {
        bench.iter_custom(|n| run(&|r| ping_pong(&a, &b, r, same_cpu), n))
    });
    group.finish();
}

/// W5: the two processes on different CPUs.
fn event_pingpong(c: &mut Criterion) {
    contenders(c, "W5_event_pingpong", false);
}

/// W5s: both on one CPU.
fn event_pingpong_samecpu(c: &mut Criterion) {
    contenders(c, "W5s_event_pingpong_samecpu", true);
}

criterion_group! {
    name = benches;
    config = benches::criterion_config(10, Duration::from_secs(2));
    targets = event_pingpong, event_pingpong_samecpu
}
criterion_main!(benches);
