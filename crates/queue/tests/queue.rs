//! `Queue` between real processes: exactly-once delivery, FIFO per
//! producer, the capacity bound, timeouts, disconnection, task accounting,
//! and a named queue between two separately started programs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use daemon::Process;
use queue::{GetError, PutErrorKind, Queue, QueueError};
use serde::{Deserialize, Serialize};
use testkit::{helper_args, helper_report, reported, run_helper, unique_name, GENEROUS};

/// A message that says who sent it, its place in that producer's stream,
/// and a payload whose bytes derive from both (so a torn message shows).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Stamped {
    producer: u32,
    seq: u64,
    payload: Vec<u8>,
}

impl Stamped {
    fn new(producer: u32, seq: u64, len: usize) -> Stamped {
        let payload = (0..len)
            .map(|i| {
                (seq as usize)
                    .wrapping_mul(31)
                    .wrapping_add(i + producer as usize) as u8
            })
            .collect();
        Stamped {
            producer,
            seq,
            payload,
        }
    }

    fn is_whole(&self) -> bool {
        *self == Stamped::new(self.producer, self.seq, self.payload.len())
    }
}

/// What a consumer saw: per producer, the sequence numbers in order.
type Seen = HashMap<u32, Vec<u64>>;

fn consume_until_disconnected(rx: &queue::Receiver<'_, Stamped>) -> (Seen, u64) {
    let mut seen = Seen::new();
    let mut torn = 0;
    loop {
        match rx.get_timeout(GENEROUS) {
            Ok(m) => {
                if !m.is_whole() {
                    torn += 1;
                }
                seen.entry(m.producer).or_default().push(m.seq);
            }
            Err(GetError::Disconnected) => return (seen, torn),
            Err(e) => panic!("get failed: {e}"),
        }
    }
}

#[test]
fn four_producers_four_consumers_deliver_every_message_exactly_once_in_order() {
    const PRODUCERS: u32 = 4;
    const CONSUMERS: usize = 4;
    const PER_PRODUCER: u64 = 250_000;
    let q = Queue::<Stamped>::builder()
        .capacity(256)
        .max_message_bytes(64)
        .anonymous()
        .unwrap();
    let receivers: Vec<_> = (0..CONSUMERS).map(|_| q.receiver().unwrap()).collect();
    let senders: Vec<_> = (0..PRODUCERS).map(|_| q.sender().unwrap()).collect();
    let consumers: Vec<_> = receivers
        .into_iter()
        .map(|rx| {
            Process::new(move || {
                let (seen, torn) = consume_until_disconnected(&rx);
                (seen, torn)
            })
            .start()
            .unwrap()
        })
        .collect();
    let producers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(p, tx)| {
            Process::new(move || {
                for seq in 0..PER_PRODUCER {
                    tx.put(Stamped::new(p as u32, seq, 16)).unwrap();
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: HashMap<u32, Vec<u64>> = HashMap::new();
    for c in consumers {
        let (seen, torn) = c.join().unwrap();
        assert_eq!(torn, 0, "a torn message was delivered");
        for (producer, seqs) in seen {
            // FIFO per producer, as each consumer sees it.
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "producer {producer}'s messages out of order at one consumer"
            );
            all.entry(producer).or_default().extend(seqs);
        }
    }
    for p in 0..PRODUCERS {
        let mut seqs = all.remove(&p).unwrap_or_default();
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..PER_PRODUCER).collect();
        assert_eq!(
            seqs.len(),
            expected.len(),
            "producer {p}: messages lost or duplicated"
        );
        assert!(seqs == expected, "producer {p}: not exactly once");
    }
    assert!(q.is_empty());
}

#[test]
fn a_full_queue_holds_exactly_its_capacity() {
    let q = Queue::<u32>::new(3).unwrap();
    let tx = q.sender().unwrap();
    let child = Process::new(|| {
        let tx = q.sender().unwrap();
        (0..3).for_each(|i| tx.put(i).unwrap());
        let refused = tx.try_put(99).unwrap_err();
        let full = refused.kind() == &PutErrorKind::Full;
        (full, refused.into_inner(), q.len())
    })
    .start()
    .unwrap();
    let (full, value, len) = child.join().unwrap();
    assert!(full);
    assert_eq!(value, 99, "the refused value comes back");
    assert_eq!(len, 3);
    assert!(q.is_full());
    assert_eq!(tx.try_put(4).unwrap_err().kind(), &PutErrorKind::Full);
}

#[test]
fn timeouts_are_never_early() {
    let q = Queue::<u8>::new(1).unwrap();
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    let wait = Duration::from_millis(30);
    let start = Instant::now();
    assert_eq!(rx.get_timeout(wait), Err(GetError::TimedOut));
    assert!(start.elapsed() >= wait);
    tx.put(1).unwrap();
    let start = Instant::now();
    let err = tx.put_timeout(2, wait).unwrap_err();
    assert_eq!(err.kind(), &PutErrorKind::TimedOut);
    assert!(start.elapsed() >= wait);
}

#[test]
fn a_get_waits_for_a_put_from_another_process() {
    let q = Queue::<String>::new(4).unwrap();
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    let gate = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let child = Process::new(|| {
        // Put only once the parent waits (it raises the gate just before
        // its get); whichever comes first, the get must return the value.
        testkit::wait_for(&gate, 1);
        tx.put("late".to_string()).unwrap();
    })
    .start()
    .unwrap();
    testkit::raise(&gate);
    assert_eq!(rx.get_timeout(GENEROUS).unwrap(), "late");
    child.join().unwrap();
}

#[test]
fn a_get_on_an_empty_queue_whose_producers_died_is_disconnected() {
    let q = Queue::<u64>::new(8).unwrap();
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    let producer = Process::new(move || {
        tx.put(1).unwrap();
        tx.put(2).unwrap();
        // Dies holding its sender: no drop, no close.
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    assert_eq!(rx.get_timeout(GENEROUS), Ok(1));
    assert_eq!(rx.get_timeout(GENEROUS), Ok(2));
    producer.kill().unwrap();
    let start = Instant::now();
    assert_eq!(rx.get(), Err(GetError::Disconnected));
    assert!(start.elapsed() < GENEROUS);
    let _ = producer.join();
}

#[test]
fn a_closed_sender_disconnects_only_after_the_queue_is_drained() {
    let q = Queue::<u64>::new(8).unwrap();
    let rx = q.receiver().unwrap();
    {
        let tx = q.sender().unwrap();
        tx.put(10).unwrap();
    }
    assert!(q.producers_gone());
    assert_eq!(rx.try_get(), Ok(10));
    assert_eq!(rx.try_get(), Err(GetError::Disconnected));
    // A new producer reconnects the queue.
    let tx = q.sender().unwrap();
    assert_eq!(rx.try_get(), Err(GetError::Empty));
    drop(tx);
}

#[test]
fn a_queue_without_producers_yet_waits_rather_than_disconnects() {
    let q = Queue::<u64>::new(8).unwrap();
    let rx = q.receiver().unwrap();
    assert_eq!(rx.try_get(), Err(GetError::Empty));
    assert_eq!(
        rx.get_timeout(Duration::from_millis(20)),
        Err(GetError::TimedOut)
    );
}

#[test]
fn a_put_that_requires_consumers_fails_when_they_are_gone() {
    let q = Queue::<u64>::new(1).unwrap();
    let rx = q.receiver().unwrap();
    let mut tx = q.sender().unwrap();
    tx.require_consumers(true);
    let attached = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let consumer = Process::new(|| {
        // The receiver's first use here makes it this process's.
        let _ = rx.try_get();
        testkit::raise(&attached);
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    testkit::wait_for(&attached, 1);
    tx.put(1).unwrap();
    consumer.kill().unwrap();
    let _ = consumer.join();
    let err = tx.put(2).unwrap_err();
    assert_eq!(err.kind(), &PutErrorKind::Disconnected);
    assert_eq!(err.into_inner(), 2);
}

#[test]
fn a_message_larger_than_a_slot_is_refused_and_handed_back() {
    let q = Queue::<Vec<u8>>::builder()
        .capacity(2)
        .max_message_bytes(100)
        .anonymous()
        .unwrap();
    let tx = q.sender().unwrap();
    let big = vec![7u8; 200];
    let err = tx.put(big.clone()).unwrap_err();
    assert!(matches!(
        err.kind(),
        PutErrorKind::TooLarge {
            size: 202,
            max: 100
        }
    ));
    assert_eq!(err.into_inner(), big);
    assert!(q.is_empty());
    tx.put(vec![1u8; 98]).unwrap();
    assert_eq!(q.receiver().unwrap().try_get().unwrap(), vec![1u8; 98]);
}

#[test]
fn a_zero_capacity_is_a_clear_error() {
    let err = Queue::<u8>::new(0).unwrap_err();
    assert!(matches!(err, QueueError::InvalidSize { capacity: 0, .. }));
    assert!(err.to_string().contains("at least 1"));
}

#[test]
fn join_waits_for_task_done_and_counts_a_dead_consumers_messages_as_lost() {
    let q = Queue::<u32>::builder()
        .capacity(8)
        .joinable()
        .anonymous()
        .unwrap();
    let tx = q.sender().unwrap();
    for i in 0..4 {
        tx.put(i).unwrap();
    }
    let rx = q.receiver().unwrap();
    let worker = Process::new(move || {
        // Finishes one task, takes another, dies before finishing it.
        rx.get().unwrap();
        rx.task_done().unwrap();
        rx.get().unwrap();
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    testkit::wait_until("the worker takes two messages", || q.len() == 2);
    assert!(matches!(
        q.join_timeout(Duration::from_millis(20)),
        Err(QueueError::TimedOut)
    ));
    worker.kill().unwrap();
    let _ = worker.join();
    let rx = q.receiver().unwrap();
    for _ in 0..2 {
        rx.get().unwrap();
        rx.task_done().unwrap();
    }
    assert!(matches!(
        rx.task_done(),
        Err(QueueError::TaskDoneTooManyTimes)
    ));
    let report = q.join_timeout(GENEROUS).unwrap();
    assert_eq!(report.lost, 1, "the dead worker's unfinished message");
    assert_eq!(q.lost(), 1);
}

#[test]
fn task_done_on_a_plain_queue_says_what_to_do() {
    let q = Queue::<u8>::new(2).unwrap();
    let err = q.receiver().unwrap().task_done().unwrap_err();
    assert!(err.to_string().contains("joinable"));
    assert!(matches!(q.join(), Err(QueueError::NotJoinable)));
}

#[test]
fn a_sender_moved_into_a_child_counts_for_the_child() {
    // The parent never drops what it moved into the child; still, once
    // the child has put and exited, the queue is disconnected.
    let q = Queue::<u8>::new(4).unwrap();
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    let child = Process::new(move || tx.put(5).unwrap()).start().unwrap();
    child.join().unwrap();
    assert_eq!(rx.get_timeout(GENEROUS), Ok(5));
    assert_eq!(rx.get_timeout(GENEROUS), Err(GetError::Disconnected));
}

const NAMED_PRODUCER: &str = "named_queue_producer_program";

/// Runs as a separate program: opens the queue by name and puts.
#[test]
fn named_queue_producer_program() {
    let Some(args) = helper_args() else { return };
    let q = Queue::<Stamped>::open(&args[0]).unwrap();
    let tx = q.sender().unwrap();
    for seq in 0..1000 {
        tx.put(Stamped::new(9, seq, 40)).unwrap();
    }
    helper_report("put", 1000);
}

#[test]
fn a_named_queue_joins_two_separately_started_programs() {
    let name = unique_name("queue-named");
    let q = Queue::<Stamped>::builder()
        .capacity(64)
        .create(&name)
        .unwrap();
    let rx = q.receiver().unwrap();
    let reader = std::thread::scope(|s| {
        let reader = s.spawn(|| consume_until_disconnected(&rx));
        let out = run_helper(NAMED_PRODUCER, &[&name], GENEROUS);
        assert_eq!(reported(&out, "put").as_deref(), Some("1000"), "{out:?}");
        reader.join().unwrap()
    });
    let (seen, torn) = reader;
    assert_eq!(torn, 0);
    assert_eq!(seen[&9], (0..1000).collect::<Vec<u64>>());
}

#[test]
fn a_named_queue_of_another_type_does_not_open() {
    let name = unique_name("queue-type");
    let _q = Queue::<u64>::builder().capacity(4).create(&name).unwrap();
    let err = Queue::<String>::open(&name).unwrap_err();
    match err {
        QueueError::TypeMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, "String");
            assert_eq!(found, "u64");
        }
        other => panic!("expected a type mismatch, got {other}"),
    }
}

#[test]
fn a_segment_that_is_not_a_queue_does_not_open() {
    let name = unique_name("queue-foreign");
    let _other =
        shm::SharedSlice::create(&name, 300, |_| std::sync::atomic::AtomicU64::new(0)).unwrap();
    assert!(Queue::<u8>::open(&name).is_err());
}
