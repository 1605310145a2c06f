//! Loom models of the queue's ring protocol (`queue::model`, the words
//! under `Queue<T>`): a full queue wakes its producer and an empty one its
//! consumer, in every interleaving (no lost wake-up: a sleeper nobody wakes
//! is a deadlock loom reports); messages arrive once, in order; a dead
//! producer disconnects a sleeping consumer; a consumer that dies holding a
//! message it took is counted as lost, once. Built only under `cfg(loom)`;
//! see `shm::sync` for how to run.

#![cfg(loom)]

// The helpers of sync-lock's models, shared rather than copied.
#[path = "../../sync-lock/tests/loom_support/mod.rs"]
mod loom_support;

use loom::sync::Arc;
use loom::thread;
use queue::model::Lines;
use shm::sync::model;

use loom_support::{check, process};

/// Capacity 1, one producer putting 1 then 2, one consumer taking two:
/// each side must sleep at some point in most interleavings, and be woken.
#[test]
fn a_full_queue_wakes_its_producer_and_an_empty_one_its_consumer() {
    check("queue: 1p1c through a one-slot ring", 3, || {
        let q = Arc::new(Lines::new(1, false));
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                model::play(process(10, 1));
                let row = q.attach(true);
                q.put(1);
                q.put(2);
                q.detach(row);
            })
        };
        model::play(process(20, 1));
        let row = q.attach(false);
        let first = q.get(row);
        let second = q.get(row);
        producer.join().unwrap();
        assert_eq!((first, second), (Some(1), Some(2)));
        assert_eq!(q.get(row), None, "every producer closed: disconnected");
    });
}

/// A producer puts one message and dies (without closing) while the
/// consumer may be asleep: the consumer gets the message, then learns that
/// nobody is left instead of sleeping for ever.
#[test]
fn a_dead_producer_disconnects_a_sleeping_consumer() {
    check("queue: producer dies after one put", 3, || {
        let q = Arc::new(Lines::new(2, false));
        let who = process(10, 1);
        model::play(who);
        let row = q.attach(true);
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                model::play(who);
                q.put(7);
                model::die();
            })
        };
        model::play(process(20, 1));
        let consumer = q.attach(false);
        assert_eq!(q.get(consumer), Some(7));
        assert_eq!(q.get(consumer), None);
        let _ = producer.join();
        let _ = row;
    });
}

/// On a joinable queue, a consumer takes a message and dies before marking
/// it done; another consumer takes and finishes the second. `all_done`
/// then counts exactly one lost, whatever the interleaving.
#[test]
fn a_consumer_that_dies_with_a_message_counts_it_lost_once() {
    check("queue: joinable consumer dies holding one", 2, || {
        let q = Arc::new(Lines::new(2, true));
        let producer = q.attach(true);
        q.put(1);
        q.put(2);
        q.detach(producer);
        let dying = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                model::play(process(10, 1));
                let row = q.attach(false);
                let got = q.get(row);
                model::die();
                got
            })
        };
        model::play(process(20, 1));
        let row = q.attach(false);
        let mine = q.get(row);
        assert!(q.task_done(row));
        let theirs = dying.join().unwrap();
        let mut both = [mine, theirs];
        both.sort();
        assert_eq!(both, [Some(1), Some(2)], "each message taken once");
        assert_eq!(q.all_done(), (true, 1));
    });
}
