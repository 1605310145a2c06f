//! The queue's chaos test: producer and consumer processes stream messages
//! through one `Queue` while this test SIGKILLs a random one of them at a
//! random moment, round after round, and starts a replacement.
//!
//! Every message names the producer incarnation that sent it and its place
//! in that incarnation's stream, and its payload derives from both. The
//! invariants, checked at the end over everything delivered: no message
//! torn; none delivered twice; per producer incarnation, each consumer saw
//! its messages in order; nothing lost except what a killed consumer had
//! taken and not yet recorded (at most one per consumer kill); and after
//! the kills, the queue still carries messages and, once every producer is
//! gone, reports `Disconnected` instead of waiting. Quick by default (40
//! kills); set `PROCSYNC_CHAOS_KILLS` for the long run. The test holds a
//! sender of its own until the end: between a producer's death and its
//! replacement's attach the queue may have no producer, and a waiting
//! consumer would rightly be told `Disconnected`.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use daemon::{Child, Process};
use queue::{GetError, Queue};
use serde::{Deserialize, Serialize};
use shm::{Shared, SharedSlice, ShmSafe};
use testkit::{Rng, GENEROUS};

const PRODUCERS: usize = 2;
const CONSUMERS: usize = 2;
/// Producer incarnations the record has room for, and messages each.
const INCARNATIONS: usize = 2048;
const PER_INCARNATION: usize = 1024;

#[derive(Serialize, Deserialize)]
struct Message {
    incarnation: u32,
    seq: u32,
    payload: Vec<u8>,
}

fn payload(incarnation: u32, seq: u32) -> Vec<u8> {
    (0..24)
        .map(|i| (incarnation.wrapping_mul(7) ^ seq.wrapping_mul(13)).wrapping_add(i) as u8)
        .collect()
}

#[derive(ShmSafe)]
#[repr(C)]
struct Tally {
    /// The next producer incarnation's number.
    incarnations: AtomicU32,
    /// Messages recorded as received: the progress the killer waits for.
    received: AtomicU64,
    torn: AtomicU64,
    out_of_order: AtomicU64,
    /// Per incarnation: how many puts returned `Ok`.
    sent: [AtomicU32; INCARNATIONS],
}

fn producer(q: &Queue<Message>, tally: &Tally) {
    let tx = q.sender().unwrap();
    // Incarnation after incarnation (a fresh stream each), until the record
    // is full; then stays attached until killed.
    loop {
        let incarnation = tally.incarnations.fetch_add(1, Ordering::SeqCst);
        if incarnation as usize >= INCARNATIONS {
            testkit::park_until_killed();
        }
        for seq in 0..PER_INCARNATION as u32 {
            let m = Message {
                incarnation,
                seq,
                payload: payload(incarnation, seq),
            };
            tx.put(m).unwrap();
            tally.sent[incarnation as usize].store(seq + 1, Ordering::SeqCst);
        }
    }
}

fn consumer(q: &Queue<Message>, tally: &Tally, seen: &SharedSlice<AtomicU8>) {
    let rx = q.receiver().unwrap();
    // The last sequence number this consumer saw from each incarnation.
    let mut last = vec![None::<u32>; INCARNATIONS];
    loop {
        let m = match rx.get_timeout(GENEROUS) {
            Ok(m) => m,
            Err(GetError::Disconnected) => return,
            Err(e) => panic!("consumer: {e}"),
        };
        let i = m.incarnation as usize;
        if i >= INCARNATIONS
            || m.seq as usize >= PER_INCARNATION
            || m.payload != payload(m.incarnation, m.seq)
        {
            tally.torn.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        if last[i].is_some_and(|l| l >= m.seq) {
            tally.out_of_order.fetch_add(1, Ordering::SeqCst);
        }
        last[i] = Some(m.seq);
        seen[i * PER_INCARNATION + m.seq as usize].fetch_add(1, Ordering::SeqCst);
        tally.received.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn random_sigkills_never_tear_duplicate_or_wedge_the_queue() {
    let kills: u64 = std::env::var("PROCSYNC_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let q = Queue::<Message>::builder()
        .capacity(64)
        .max_message_bytes(64)
        .anonymous()
        .unwrap();
    let tally = Shared::new(Tally {
        incarnations: AtomicU32::new(0),
        received: AtomicU64::new(0),
        torn: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        sent: std::array::from_fn(|_| AtomicU32::new(0)),
    })
    .unwrap();
    let seen = SharedSlice::from_fn(INCARNATIONS * PER_INCARNATION, |_| AtomicU8::new(0)).unwrap();
    let start_producer = || {
        Process::new(|| producer(&q, &tally))
            .daemon(true)
            .start()
            .unwrap()
    };
    let start_consumer = || {
        Process::new(|| consumer(&q, &tally, &seen))
            .daemon(true)
            .start()
            .unwrap()
    };
    // Attached for the whole run: between a producer's death and its
    // replacement's attach, the queue may have no producer at all, and a
    // waiting consumer would rightly be told `Disconnected`. This one
    // keeps the queue connected until the end.
    let keeper = q.sender().unwrap();
    let mut producers: Vec<Child<()>> = (0..PRODUCERS).map(|_| start_producer()).collect();
    let mut consumers: Vec<Child<()>> = (0..CONSUMERS).map(|_| start_consumer()).collect();
    let mut rng = Rng::new(0x9e37_79b9 ^ std::process::id() as u64);
    let mut consumer_kills = 0;
    for _ in 0..kills {
        // Let some messages flow, then kill at a random moment.
        let before = tally.received.load(Ordering::SeqCst);
        let step = 50 + rng.below(500);
        testkit::wait_until("messages flow between kills", || {
            tally.received.load(Ordering::SeqCst) >= before + step
                || (tally.incarnations.load(Ordering::SeqCst) as usize) >= INCARNATIONS
        });
        let victim = rng.below((PRODUCERS + CONSUMERS) as u64) as usize;
        if victim < PRODUCERS {
            producers[victim].kill().unwrap();
            let _ = producers[victim].join_timeout(GENEROUS);
            producers[victim] = start_producer();
        } else {
            let c = victim - PRODUCERS;
            consumers[c].kill().unwrap();
            let _ = consumers[c].join_timeout(GENEROUS);
            consumer_kills += 1;
            consumers[c] = start_consumer();
        }
    }
    // The end: every producer goes; consumers drain and see Disconnected.
    for p in &producers {
        p.kill().unwrap();
    }
    for mut p in producers {
        let _ = p.join_timeout(GENEROUS);
    }
    drop(keeper);
    for mut c in consumers {
        c.join_timeout(GENEROUS)
            .expect("consumers end with Disconnected once every producer is dead");
    }
    assert!(q.is_empty(), "the consumers drained the queue");
    assert_eq!(tally.torn.load(Ordering::SeqCst), 0, "torn messages");
    assert_eq!(
        tally.out_of_order.load(Ordering::SeqCst),
        0,
        "FIFO per producer"
    );
    let mut lost = 0u64;
    for i in 0..(tally.incarnations.load(Ordering::SeqCst) as usize).min(INCARNATIONS) {
        let sent = tally.sent[i].load(Ordering::SeqCst) as usize;
        for seq in 0..PER_INCARNATION {
            let times = seen[i * PER_INCARNATION + seq].load(Ordering::SeqCst);
            assert!(
                times <= 1,
                "incarnation {i} message {seq} delivered {times} times"
            );
            if seq < sent && times == 0 {
                lost += 1;
            }
            // One past the recorded count may have been committed by a
            // producer killed before recording it; never more.
            assert!(
                times == 0 || seq <= sent,
                "incarnation {i} message {seq} delivered but never put (sent {sent})"
            );
        }
    }
    assert!(
        lost <= consumer_kills,
        "{lost} messages lost with only {consumer_kills} consumers killed"
    );
    eprintln!(
        "queue chaos: {kills} kills ({consumer_kills} consumers), {} messages received, {lost} lost in flight",
        tally.received.load(Ordering::SeqCst)
    );
    // The queue still works.
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    tx.put(Message {
        incarnation: 0,
        seq: 0,
        payload: vec![],
    })
    .unwrap();
    assert!(rx.get_timeout(Duration::from_secs(10)).is_ok());
}
