//! `Condvar` across processes: producer/consumer, timeouts, killed waiters.

use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Shared, ShmSafe};
use sync_lock::{Condvar, Mutex};
use testkit::GENEROUS;

#[derive(ShmSafe)]
#[repr(C)]
struct Queue {
    items: [u64; 4],
    head: u32,
    len: u32,
    /// Processes inside `wait`, counted by the tests that need it.
    waiting: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Channel {
    queue: Mutex<Queue>,
    not_empty: Condvar,
    not_full: Condvar,
}

fn channel() -> Shared<Channel> {
    Shared::new(Channel {
        queue: Mutex::new(Queue {
            items: [0; 4],
            head: 0,
            len: 0,
            waiting: 0,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    })
    .unwrap()
}

#[test]
fn a_producer_and_a_consumer_pass_every_item_through_a_small_queue() {
    const ITEMS: u64 = 5_000;
    let ch = channel();
    let producer = Process::new(|| {
        for item in 1..=ITEMS {
            let q = ch.queue.lock().unwrap();
            let (mut q, timeout) = ch
                .not_full
                .wait_timeout_while(q, GENEROUS, |q| q.len == 4)
                .unwrap();
            assert!(!timeout.timed_out(), "consumer stalled");
            let slot = ((q.head + q.len) % 4) as usize;
            q.items[slot] = item;
            q.len += 1;
            drop(q);
            ch.not_empty.notify_one();
        }
    })
    .start()
    .unwrap();
    let consumer = Process::new(|| {
        let mut sum = 0;
        for _ in 0..ITEMS {
            let q = ch.queue.lock().unwrap();
            let (mut q, timeout) = ch
                .not_empty
                .wait_timeout_while(q, GENEROUS, |q| q.len == 0)
                .unwrap();
            assert!(!timeout.timed_out(), "producer stalled");
            sum += q.items[q.head as usize];
            q.head = (q.head + 1) % 4;
            q.len -= 1;
            drop(q);
            ch.not_full.notify_one();
        }
        sum
    })
    .start()
    .unwrap();
    producer.join().unwrap();
    assert_eq!(consumer.join().unwrap(), ITEMS * (ITEMS + 1) / 2);
}

#[test]
fn wait_timeout_returns_after_the_timeout_not_before() {
    let ch = channel();
    let q = ch.queue.lock().unwrap();
    let timeout = Duration::from_millis(20);
    let started = Instant::now();
    let (q, result) = ch
        .not_empty
        .wait_timeout_while(q, timeout, |q| q.len == 0)
        .unwrap();
    assert!(result.timed_out());
    assert!(started.elapsed() >= timeout);
    assert_eq!(q.len, 0);
}

#[test]
fn a_killed_waiter_blocks_neither_notifiers_nor_other_waiters() {
    let ch = channel();
    let waiter = || {
        Process::new(|| {
            let mut q = ch.queue.lock().unwrap();
            q.waiting += 1;
            let (q, timeout) = ch
                .not_empty
                .wait_timeout_while(q, GENEROUS, |q| q.len == 0)
                .unwrap();
            !timeout.timed_out() && q.len == 1
        })
        .start()
        .unwrap()
    };
    let doomed = waiter();
    let survivor = waiter();
    // Both are inside wait once both have counted themselves (the count is
    // taken under the lock that wait releases).
    let limit = Instant::now() + GENEROUS;
    while ch.queue.lock().unwrap().waiting < 2 {
        assert!(Instant::now() < limit, "waiters never arrived");
        std::thread::yield_now();
    }
    doomed.kill().unwrap();
    let _ = doomed.join();

    let started = Instant::now();
    ch.queue.lock().unwrap().len = 1;
    ch.not_empty.notify_all();
    ch.not_empty.notify_one();
    assert!(started.elapsed() < GENEROUS / 2, "notify blocked");
    assert!(survivor.join().unwrap(), "the surviving waiter was woken");
}

#[test]
fn a_bare_mutex_and_condvar_work_like_pythons_condition() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Condition {
        lock: Mutex<()>,
        changed: Condvar,
        ready: std::sync::atomic::AtomicBool,
    }
    let c = Shared::new(Condition {
        lock: Mutex::new(()),
        changed: Condvar::new(),
        ready: std::sync::atomic::AtomicBool::new(false),
    })
    .unwrap();
    let waiter = Process::new(|| {
        let guard = c.lock.lock().unwrap();
        let (_guard, result) = c
            .changed
            .wait_timeout_while(guard, GENEROUS, |_| {
                !c.ready.load(std::sync::atomic::Ordering::SeqCst)
            })
            .unwrap();
        !result.timed_out()
    })
    .start()
    .unwrap();
    {
        let _guard = c.lock.lock().unwrap();
        c.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    c.changed.notify_all();
    assert!(waiter.join().unwrap());
}
