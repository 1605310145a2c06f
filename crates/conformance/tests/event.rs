//! CPython's `Event` tests, ported to `sync_event::Event` between processes.
//!
//! Sources: `Lib/test/lock_tests.py` (`EventTests`) and
//! `Lib/test/_test_multiprocessing.py` (`_TestEvent`), CPython 3.11.
//!
//! `wait()` is `wait()` (it returns nothing: it can only end with the flag
//! set) or `wait_timeout(GENEROUS)` where the test must not hang;
//! `wait(t)` is `wait_timeout(t)`, returning the flag as Python does.
//!
//! | Python case | why it is not ported |
//! |---|---|
//! | `EventTests::test_at_fork_reinit` | a private CPython hook on the event's internal condition; procsync's event is one futex word, with nothing to reinitialise after fork |
//! | `EventTests::test_repr`, `_TestEvent::test_repr` | `repr` is Python-only (`is_set()` carries the same information) |

mod common;

use std::time::{Duration, Instant};

use common::{assert_timeout, my_thread_stat, start, wait_until_asleep, Bunch, Log, SHORT};
use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_event::Event;
use testkit::{
    helper_args, helper_report, raise, reported, run_helper, unique_name, wait_for, GENEROUS,
};

#[derive(ShmSafe)]
#[repr(C)]
struct Waiters {
    event: Event,
    results1: Log,
    results2: Log,
}

fn new_waiters() -> Shared<Waiters> {
    Shared::new(Waiters {
        event: Event::new(),
        results1: Log::new(),
        results2: Log::new(),
    })
    .unwrap()
}

// EventTests::test_is_set
#[test]
fn lock_tests_event_is_set() {
    let evt = Shared::new(Event::new()).unwrap();
    assert!(!evt.is_set());
    evt.set();
    assert!(evt.is_set());
    evt.set();
    assert!(evt.is_set());
    evt.clear();
    assert!(!evt.is_set());
    evt.clear();
    assert!(!evt.is_set());
}

/// EventTests::_check_notify: all five waiters get through one set. The
/// logs are cumulative, so `round` says how many rounds came before.
fn check_notify(w: &Waiters, round: usize) {
    const N: usize = 5;
    let mut bunch = Bunch::start(N, |_| {
        w.results1.push(u32::from(w.event.wait_timeout(GENEROUS)));
        w.results2.push(u32::from(w.event.wait_timeout(GENEROUS)));
    });
    // Workers block on their first wait.
    bunch.wait_all_asleep();
    assert_eq!(w.results1.len(), N * round);
    assert_eq!(bunch.finished(), 0);
    // Workers unblocked.
    w.event.set();
    bunch.join();
    assert_eq!(w.results1.values(), vec![1; N * (round + 1)]);
    assert_eq!(w.results2.values(), vec![1; N * (round + 1)]);
}

// EventTests::test_notify
#[test]
fn lock_tests_event_notify() {
    let w = new_waiters();
    check_notify(&w, 0);
    // Another time, after an explicit clear().
    w.event.set();
    w.event.clear();
    check_notify(&w, 1);
}

// EventTests::test_timeout (0.5 s is SHORT here)
#[test]
fn lock_tests_event_timeout() {
    let evt = Shared::new(Event::new()).unwrap();
    let f = |_| {
        let r1 = evt.wait_timeout(Duration::ZERO);
        let started = Instant::now();
        let r2 = evt.wait_timeout(SHORT);
        (r1, r2, started.elapsed())
    };
    for (r1, r2, elapsed) in Bunch::start(5, f).join() {
        assert!(!r1);
        assert!(!r2);
        assert_timeout(elapsed, SHORT);
    }
    // The event is set.
    evt.set();
    for (r1, r2, _) in Bunch::start(5, f).join() {
        assert!(r1);
        assert!(r2);
    }
}

// EventTests::test_set_and_clear (CPython gh-57711): wait() returns true
// even when the event is cleared before the waiter is woken up.
#[test]
fn lock_tests_event_set_and_clear() {
    let evt = Shared::new(Event::new()).unwrap();
    let bunch = Bunch::start(5, |_| evt.wait_timeout(GENEROUS));
    // Workers block on wait().
    bunch.wait_all_asleep();
    // Workers unblocked.
    evt.set();
    evt.clear();
    assert_eq!(bunch.join(), [true; 5]);
}

// _TestEvent::test_event (TIMEOUT1, TIMEOUT2 are SHORT here). Python's
// child sleeps TIMEOUT2 before set() so that the parent's wait() blocks
// first; here the child sets once it sees the parent asleep.
#[test]
fn mp_event_event() {
    let event = Shared::new(Event::new()).unwrap();
    assert!(!event.is_set());
    let started = Instant::now();
    assert!(!event.wait_timeout(Duration::ZERO));
    assert!(started.elapsed() < GENEROUS);
    let started = Instant::now();
    assert!(!event.wait_timeout(SHORT));
    assert_timeout(started.elapsed(), SHORT);

    event.set();
    assert!(event.is_set());
    event.wait();
    let started = Instant::now();
    assert!(event.wait_timeout(SHORT));
    assert!(started.elapsed() < SHORT, "returned at once");

    event.clear();
    let me = my_thread_stat();
    let child = start(
        Process::new(|| {
            wait_until_asleep(&me);
            event.set();
        })
        .daemon(true),
    );
    assert!(event.wait_timeout(GENEROUS));
    common::join(child).unwrap();
}

#[derive(ShmSafe)]
#[repr(C)]
struct NamedEvent {
    event: Event,
    /// Raised by the helper just before it waits.
    waiting: Futex,
}

/// The unrelated process's side of `lock_tests_event_notify_named`.
#[test]
fn helper_wait_by_name() {
    let Some(args) = helper_args() else { return };
    let s = Shared::<NamedEvent>::open(&args[0]).expect("open by name");
    raise(&s.waiting);
    helper_report("woke", s.event.wait_timeout(GENEROUS));
}

// EventTests::test_notify, with the waiter an unrelated program that opens
// the event by name.
#[test]
fn lock_tests_event_notify_named() {
    let name = unique_name("conf-event");
    let s = Shared::create(
        &name,
        NamedEvent {
            event: Event::new(),
            waiting: Futex::new(0),
        },
    )
    .unwrap();
    let helper = {
        let name = name.clone();
        std::thread::spawn(move || run_helper("helper_wait_by_name", &[&name], GENEROUS))
    };
    wait_for(&s.waiting, 1);
    s.event.set();
    let out = helper.join().expect("the helper thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reported(&out, "woke").as_deref(), Some("true"));
}
