//! The queue's crash points, each in turn: a process is SIGKILLed right
//! after each shared store of `put`, `get`, attaching an endpoint and
//! folding a closed consumer's count, in every scenario that reaches it.
//! Then: no message torn, none delivered twice, none lost except the one
//! the dead consumer took; the task accounting counts that one exactly
//! once; the queue disconnects when the dead producer was the last; and
//! the queue works. A process stopped (SIGSTOP) inside the producers' lock
//! makes nobody wait past a deadline. The list of points comes from the
//! code (`QUEUE_CRASH_POINTS`); a point that no scenario reaches fails the
//! test.

use std::time::{Duration, Instant};

use daemon::{Child, JoinError, Process};
use queue::{GetError, PutErrorKind, Queue, QUEUE_CRASH_POINTS};
use shm::crash::{self, Action};
use testkit::{wait_stopped_or_exited, GENEROUS};

/// How late past its deadline a call may return on a loaded machine.
const SLACK: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// The armed process attaches a sender and puts messages 0 and 1.
    Producer,
    /// The test put messages 0 and 1; the armed process attaches a
    /// receiver and takes them, marking each done.
    Consumer,
    /// The test put message 0; the armed process takes it and drops its
    /// receiver without marking it done (its count is folded into the
    /// lost messages).
    Closer,
}

const SCENARIOS: [Scenario; 3] = [Scenario::Producer, Scenario::Consumer, Scenario::Closer];

fn new_queue() -> Queue<Vec<u8>> {
    Queue::builder()
        .capacity(4)
        .max_message_bytes(64)
        .joinable()
        .anonymous()
        .unwrap()
}

/// Message `i`: 40 bytes, every one of them `i`, so a torn one shows.
fn message(i: u8) -> Vec<u8> {
    vec![i; 40]
}

fn armed(point: &'static str, body: impl FnOnce()) -> Child<()> {
    Process::new(move || {
        crash::arm(point, Action::Kill);
        body();
    })
    .daemon(true)
    .start()
    .unwrap()
}

/// Whether the armed process died at its point (or finished without
/// reaching it).
fn killed(mut child: Child<()>, context: &str) -> bool {
    match child.join_timeout(GENEROUS) {
        Err(JoinError::Signaled { signal: 9, .. }) => true,
        Ok(()) => false,
        Err(e) => panic!("{context}: the armed process failed: {e}"),
    }
}

/// Takes every message left (with a fresh receiver, marking each done),
/// checking each is whole; returns their first bytes.
fn drain(q: &Queue<Vec<u8>>, context: &str) -> Vec<u8> {
    let rx = q.receiver().unwrap();
    let mut seen = Vec::new();
    loop {
        match rx.try_get() {
            Ok(m) => {
                assert!(
                    m.len() == 40 && m.iter().all(|&b| b == m[0]),
                    "{context}: a torn message {m:?}"
                );
                seen.push(m[0]);
                rx.task_done().unwrap();
            }
            Err(GetError::Empty | GetError::Disconnected) => return seen,
            Err(e) => panic!("{context}: get failed: {e}"),
        }
    }
}

/// The queue still carries messages both ways.
fn still_works(q: &Queue<Vec<u8>>, context: &str) {
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    tx.put_timeout(message(7), GENEROUS)
        .unwrap_or_else(|e| panic!("{context}: put after the death: {e}"));
    assert_eq!(
        rx.get_timeout(GENEROUS),
        Ok(message(7)),
        "{context}: get after the death"
    );
    rx.task_done().unwrap();
}

/// Runs `scenario` with `point` armed; returns whether it was hit.
fn run(scenario: Scenario, point: &'static str) -> bool {
    let context = format!("{point:?} in {scenario:?}");
    let q = new_queue();
    let hit = match scenario {
        Scenario::Producer => {
            let child = armed(point, || {
                let tx = q.sender().unwrap();
                tx.put(message(0)).unwrap();
                tx.put(message(1)).unwrap();
            });
            let hit = killed(child, &context);
            let seen = drain(&q, &context);
            // Whole messages, each once, a prefix of what it put.
            assert!(
                [&[][..], &[0], &[0, 1]].contains(&seen.as_slice()),
                "{context}: got {seen:?}"
            );
            let rx = q.receiver().unwrap();
            if point.starts_with("queue row:") {
                // Died half-way through attaching: no producer ever
                // attached, so the queue waits for one.
                assert_eq!(
                    rx.get_timeout(Duration::from_millis(20)),
                    Err(GetError::TimedOut),
                    "{context}"
                );
            } else {
                // The dead producer was the only one: nothing will come.
                assert_eq!(
                    rx.get_timeout(GENEROUS),
                    Err(GetError::Disconnected),
                    "{context}: the queue waits for a dead producer"
                );
            }
            assert_eq!(q.join_timeout(GENEROUS).unwrap().lost, 0, "{context}");
            hit
        }
        Scenario::Consumer => {
            let tx = q.sender().unwrap();
            tx.put(message(0)).unwrap();
            tx.put(message(1)).unwrap();
            let child = armed(point, || {
                let rx = q.receiver().unwrap();
                for _ in 0..2 {
                    rx.get().unwrap();
                    rx.task_done().unwrap();
                }
            });
            let hit = killed(child, &context);
            let seen = drain(&q, &context);
            assert!(
                [&[][..], &[1], &[0, 1]].contains(&seen.as_slice()),
                "{context}: got {seen:?}"
            );
            // Killed in its first get (points are hit once): it finished
            // nothing, so what it took is lost, and only that. Killed in
            // the fold as it closed, it had finished both.
            let taken_by_the_dead = 2 - seen.len() as u64;
            let expected_lost = if hit && !point.starts_with("queue fold:") {
                taken_by_the_dead
            } else {
                0
            };
            assert_eq!(
                q.join_timeout(GENEROUS).unwrap().lost,
                expected_lost,
                "{context}: lost messages"
            );
            hit
        }
        Scenario::Closer => {
            let tx = q.sender().unwrap();
            tx.put(message(0)).unwrap();
            let child = armed(point, || {
                let rx = q.receiver().unwrap();
                rx.get().unwrap();
                drop(rx);
            });
            let hit = killed(child, &context);
            let seen = drain(&q, &context);
            let expected_lost = if seen.is_empty() { 1 } else { 0 };
            assert!(
                [&[][..], &[0]].contains(&seen.as_slice()),
                "{context}: got {seen:?}"
            );
            // Counted once, whether the fold finished, was replayed, or
            // never began (the row of a dead process).
            assert_eq!(
                q.join_timeout(GENEROUS).unwrap().lost,
                expected_lost,
                "{context}: lost messages"
            );
            assert_eq!(q.lost(), expected_lost, "{context}");
            hit
        }
    };
    still_works(&q, &context);
    hit
}

#[test]
fn every_crash_point_leaves_the_queue_whole() {
    testkit::every_crash_point(QUEUE_CRASH_POINTS, &SCENARIOS, Action::Kill, run);
}

#[test]
fn a_producer_stopped_inside_its_lock_makes_nobody_wait_past_a_deadline() {
    let q = new_queue();
    let mut stopped = Process::new(|| {
        crash::arm("queue put: slot written", Action::Stop);
        q.sender().unwrap().put(message(0)).unwrap();
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(wait_stopped_or_exited(stopped.pid()), "the producer stops");
    let timeout = Duration::from_millis(50);
    // From another process, so that a call that waits for the stopped one
    // fails the test instead of hanging it.
    let mut checker = Process::new(|| {
        let tx = q.sender().unwrap();
        let started = Instant::now();
        let tried = tx.try_put(message(1)).unwrap_err().kind().clone();
        let tried_for = started.elapsed();
        let started = Instant::now();
        let timed = tx
            .put_timeout(message(1), timeout)
            .unwrap_err()
            .kind()
            .clone();
        let timed_for = started.elapsed();
        (
            tried == PutErrorKind::Full,
            tried_for,
            timed == PutErrorKind::TimedOut,
            timed_for,
        )
    })
    .daemon(true)
    .start()
    .unwrap();
    let checked = checker.join_timeout(GENEROUS);
    stopped.signal(libc::SIGCONT).unwrap();
    let (tried_full, tried_for, timed_out, timed_for) =
        checked.unwrap_or_else(|e| panic!("blocked by a stopped producer: {e}"));
    assert!(tried_full, "try_put while another producer holds the lock");
    assert!(tried_for < SLACK, "try_put took {tried_for:?}");
    assert!(timed_out, "put_timeout while the lock is held");
    assert!(
        timed_for >= timeout && timed_for < timeout + SLACK,
        "a {timeout:?} put_timeout took {timed_for:?}"
    );
    stopped.join_timeout(GENEROUS).unwrap();
    assert_eq!(drain(&q, "after the stop"), [0]);
}
