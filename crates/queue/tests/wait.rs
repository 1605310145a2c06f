//! `wait` over mixed objects between real processes: a connection that
//! becomes readable (then whose peer dies), a child that exits, and an
//! object without a descriptor that becomes ready; timeouts never early.

use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use daemon::Process;
use queue::{pipe, pipe_oneway, wait, PipeError, Waitable};
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise, wait_for, GENEROUS};

/// Ready once its word in shared memory is non-zero: no descriptor, so
/// `wait` looks at it on a schedule.
struct Flag<'a>(&'a Futex);

impl Waitable for Flag<'_> {
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }
}

/// `wait` with a `timeout` that must pass with nothing ready: returns
/// empty, and not before `timeout`.
fn assert_nothing_within(objects: &[&dyn Waitable], timeout: Duration) {
    let started = Instant::now();
    let ready = wait(objects, Some(timeout));
    let waited = started.elapsed();
    assert!(ready.is_empty(), "ready: {ready:?}");
    assert!(
        waited >= timeout,
        "returned after {waited:?} of {timeout:?}"
    );
}

#[test]
fn wait_reports_each_object_as_it_becomes_ready() {
    let gate = Shared::new(Futex::new(0)).unwrap();
    let flag = Shared::new(Futex::new(0)).unwrap();
    let gate_ref = &gate;
    let flag_ref = &flag;
    let (parent_end, child_end) = pipe().unwrap();
    let sender = Process::new(move || {
        wait_for(gate_ref, 1);
        child_end.send("hello").expect("sent");
        wait_for(gate_ref, 4);
    })
    .start()
    .unwrap();
    let exiting = Process::new(move || wait_for(gate_ref, 2)).start().unwrap();
    let flagger = Process::new(move || {
        wait_for(gate_ref, 3);
        raise(flag_ref);
    })
    .start()
    .unwrap();
    let flag_object = Flag(&flag);
    let objects: [&dyn Waitable; 3] = [&parent_end, &exiting, &flag_object];

    assert_nothing_within(&objects, Duration::from_millis(100));

    raise(&gate); // the sender sends
    assert_eq!(wait(&objects, Some(GENEROUS)), [0]);
    assert_eq!(parent_end.recv::<String>().unwrap(), "hello");
    assert_nothing_within(&objects, Duration::from_millis(30));

    raise(&gate); // the second child exits
    assert_eq!(wait(&objects, Some(GENEROUS)), [1]);

    raise(&gate); // the third raises the flag (no descriptor)
    let limit = testkit::deadline(GENEROUS);
    let mut ready = wait(&objects, Some(GENEROUS));
    while ready != [1, 2] {
        assert!(Instant::now() < limit, "the flag never seen: {ready:?}");
        assert_eq!(ready, [1], "only the exited child may be ready");
        // The exited child stays ready: look again until the flag is seen.
        ready = wait(&objects, Some(GENEROUS));
    }

    raise(&gate); // the sender exits: the connection is ready (PeerClosed)
    let objects: [&dyn Waitable; 1] = [&parent_end];
    assert_eq!(wait(&objects, Some(GENEROUS)), [0]);
    assert!(matches!(
        parent_end.recv::<String>(),
        Err(PipeError::PeerClosed)
    ));

    sender.join().unwrap();
    exiting.join().unwrap();
    flagger.join().unwrap();
}

#[test]
fn wait_sees_a_child_killed_before_it_used_its_end() {
    // The documented gap of `recv` alone, closed by waiting on the child
    // too (Python's `wait([conn, p.sentinel])`).
    let started = Shared::new(Futex::new(0)).unwrap();
    let started_ref = &started;
    let (rx, tx) = pipe_oneway().unwrap();
    let mut child = Process::new(move || {
        raise(started_ref);
        park_until_killed();
        tx.send(&1u8).expect("never reached");
    })
    .start()
    .unwrap();
    wait_for(&started, 1);
    assert_nothing_within(&[&rx, &child], Duration::from_millis(50));
    child.kill().unwrap();
    assert_eq!(wait(&[&rx, &child], Some(GENEROUS)), [1]);
    assert!(child.join_timeout(GENEROUS).is_err());
}

#[test]
fn wait_with_only_objects_without_descriptors_never_returns_early() {
    let flag = Futex::new(0);
    let object = Flag(&flag);
    assert_nothing_within(&[&object], Duration::from_millis(35));
    assert!(wait(&[], Some(Duration::from_millis(5))).is_empty());
    flag.store(1, Ordering::SeqCst);
    assert_eq!(wait(&[&object], None), [0]);
}

#[test]
fn wait_returns_every_ready_object_in_order() {
    let (a, b) = pipe().unwrap();
    let (c, d) = pipe().unwrap();
    b.send(&1u8).unwrap();
    d.send(&2u8).unwrap();
    assert_eq!(wait(&[&b, &a, &d, &c], Some(GENEROUS)), [1, 3]);
    assert_eq!(a.recv::<u8>().unwrap(), 1);
    assert_eq!(wait(&[&a, &c], None), [1]);
}

#[test]
fn wait_and_poll_see_a_connection_whose_peer_was_sigkilled() {
    // No "closed" frame from a SIGKILL: only the peer's pidfd tells.
    let (parent_end, child_end) = pipe().unwrap();
    let mut child = Process::new(move || {
        child_end.send(&7u8).expect("sent");
        park_until_killed();
    })
    .start()
    .unwrap();
    assert_eq!(parent_end.recv_timeout::<u8>(GENEROUS).unwrap(), 7);
    child.kill().unwrap();
    assert!(child.join_timeout(GENEROUS).is_err());
    assert_eq!(wait(&[&parent_end], Some(GENEROUS)), [0]);
    assert!(parent_end.poll(Some(Duration::ZERO)));
    assert!(matches!(
        parent_end.recv::<u8>(),
        Err(PipeError::PeerClosed)
    ));
}

#[test]
fn wait_sees_a_queue_receive_a_message_then_lose_its_producers() {
    let q = queue::Queue::<u32>::new(4).unwrap();
    let rx = q.receiver().unwrap();
    let (conn, _other_end) = pipe().unwrap();
    let go = Shared::new(Futex::new(0)).unwrap();
    let producer = Process::new(|| {
        let tx = q.sender().unwrap();
        wait_for(&go, 1);
        tx.put(42).unwrap();
        park_until_killed();
    })
    .start()
    .unwrap();
    let objects: [&dyn Waitable; 3] = [&conn, &rx, &producer];
    assert_nothing_within(&objects, Duration::from_millis(30));
    raise(&go);
    assert_eq!(
        wait(&objects, Some(GENEROUS)),
        [1],
        "the queue has a message"
    );
    assert_eq!(rx.try_get(), Ok(42));
    assert_nothing_within(&objects, Duration::from_millis(30));
    producer.kill().unwrap();
    // The producer's death makes both the child and the queue ready (the
    // queue: empty, and nobody left to put).
    let deadline = Instant::now() + GENEROUS;
    let ready = loop {
        let ready = wait(&objects, Some(GENEROUS));
        if ready == [1, 2] || Instant::now() >= deadline {
            break ready;
        }
    };
    assert_eq!(ready, [1, 2]);
    assert_eq!(rx.try_get(), Err(queue::GetError::Disconnected));
    let _ = producer.join();
}
