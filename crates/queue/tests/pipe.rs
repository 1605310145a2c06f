//! `pipe` / `Connection` between real processes: values both ways, whole
//! frames of every size, and the other end's death (exit, SIGKILL, half-way
//! through a frame, the parent's) as an error instead of a hang, although
//! `daemon::Process` leaves the parent a copy of every end it moved into a
//! child.

use std::time::{Duration, Instant};

use daemon::{JoinError, Process};
use queue::{pipe, pipe_oneway, PipeError, MAX_FRAME_LEN};
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise, sigkill_from_sibling, wait_for, wait_until, GENEROUS};

/// A pattern that tells one byte position from another.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

fn assert_peer_closed<T: std::fmt::Debug>(got: Result<T, PipeError>) {
    match got {
        Err(PipeError::PeerClosed) => {}
        other => panic!("expected PeerClosed, got {other:?}"),
    }
}

#[test]
fn values_cross_between_processes_both_ways() {
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || {
        for _ in 0..100 {
            let (n, text): (u32, String) = child_end.recv().expect("a request");
            child_end.send(&(n + 1, text.to_uppercase())).expect("sent");
        }
    })
    .start()
    .unwrap();
    for n in 0..100u32 {
        parent_end.send(&(n, format!("value {n}"))).unwrap();
        let (m, text): (u32, String) = parent_end.recv_timeout(GENEROUS).unwrap();
        assert_eq!((m, text), (n + 1, format!("VALUE {n}")));
    }
    child.join().unwrap();
    assert_peer_closed(parent_end.recv_timeout::<u32>(GENEROUS));
}

#[test]
fn a_child_that_exits_after_sending_gives_its_values_then_peer_closed() {
    let (parent_end, child_end) = pipe().unwrap();
    // The parent never drops the closure (and `child_end` in it): only the
    // child's exit can end the stream.
    let child = Process::new(move || {
        for i in 0..10u64 {
            child_end.send(&i).expect("sent");
        }
    })
    .start()
    .unwrap();
    for i in 0..10u64 {
        assert_eq!(parent_end.recv_timeout::<u64>(GENEROUS).unwrap(), i);
    }
    let started = Instant::now();
    assert_peer_closed(parent_end.recv_timeout::<u64>(GENEROUS));
    assert!(started.elapsed() < GENEROUS);
    // And it stays closed.
    assert_peer_closed(parent_end.recv::<u64>());
    assert!(parent_end.poll(Some(Duration::ZERO)));
    child.join().unwrap();
}

#[test]
fn a_child_sigkilled_while_the_parent_waits_in_recv_gives_its_values_then_peer_closed() {
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || {
        for i in 0..5u64 {
            child_end.send(&i).expect("sent");
        }
        park_until_killed();
    })
    .start()
    .unwrap();
    for i in 0..5u64 {
        assert_eq!(parent_end.recv_timeout::<u64>(GENEROUS).unwrap(), i);
    }
    // The parent blocks in `recv` while a sibling kills the child.
    let killer = sigkill_from_sibling(child.pid());
    assert_peer_closed(parent_end.recv_timeout::<u64>(GENEROUS));
    killer.join().unwrap();
    assert!(matches!(
        child.join(),
        Err(JoinError::Signaled { signal: 9, .. })
    ));
}

#[test]
fn a_writer_killed_half_way_through_a_large_frame_is_a_torn_frame_never_a_value() {
    const LEN: usize = 8 << 20; // far more than a socket buffer
    let sending = Shared::new(Futex::new(0)).unwrap();
    let (parent_end, child_end) = pipe().unwrap();
    let sending_ref = &sending;
    let mut child = Process::new(move || {
        let big = pattern(LEN, 1);
        raise(sending_ref);
        child_end
            .send_bytes(&big)
            .expect("killed before it returns");
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&sending, 1);
    // Nobody reads: the child blocks in send with part of the frame sent.
    wait_until("the writer blocks in send", || {
        testkit::process_state(child.pid()) == Some(b'S')
    });
    child.kill().unwrap();
    assert!(
        parent_end.poll(Some(GENEROUS)),
        "the writer's death is seen"
    );
    match parent_end.recv_bytes() {
        Err(PipeError::TornFrame { expected, received }) => {
            assert_eq!(expected, LEN);
            assert!(received < LEN, "{received}");
        }
        other => panic!("expected a torn frame, got {:?}", other.map(|b| b.len())),
    }
    assert_peer_closed(parent_end.recv_bytes());
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(JoinError::Signaled { signal: 9, .. })
    ));
}

#[test]
fn the_parents_death_ends_the_childs_recv_though_the_child_holds_a_copy_of_its_end() {
    // Test -> middle (killed) -> grandchild, which has both ends: `b`, moved
    // in, and a stray fork copy of the middle's `a`.
    let ready = Shared::new(Futex::new(0)).unwrap();
    let outcome = Shared::new(Futex::new(0)).unwrap();
    let (ready_ref, outcome_ref) = (&ready, &outcome);
    let middle = Process::new(move || {
        let (a, b) = pipe().expect("a pipe");
        a.send(&1u8).expect("sent");
        let _grandchild = Process::new(move || -> () {
            assert_eq!(b.recv::<u8>().expect("the first value"), 1);
            raise(ready_ref);
            let code = match b.recv_timeout::<u8>(GENEROUS) {
                Err(PipeError::PeerClosed) => 1,
                Err(PipeError::Timeout(_)) => 2,
                _ => 3,
            };
            outcome_ref.fetch_add(code, std::sync::atomic::Ordering::SeqCst);
            outcome_ref.wake_all();
        })
        .start()
        .expect("start the grandchild");
        park_until_killed();
        drop(a);
    })
    .start()
    .unwrap();
    wait_for(&ready, 1);
    middle.kill().unwrap();
    assert!(matches!(
        middle.join(),
        Err(JoinError::Signaled { signal: 9, .. })
    ));
    wait_for(&outcome, 1);
    assert_eq!(
        outcome.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "1 PeerClosed, 2 Timeout, 3 something else"
    );
}

#[test]
fn a_send_blocked_on_a_full_buffer_ends_when_the_reader_dies() {
    let ready = Shared::new(Futex::new(0)).unwrap();
    let ready_ref = &ready;
    let (writer_end, reader_end) = pipe().unwrap();
    let mut reader = Process::new(move || {
        // Its first use announces the reader as the owner of `reader_end`.
        assert!(!reader_end.poll(Some(Duration::ZERO)));
        raise(ready_ref);
        park_until_killed();
    })
    .start()
    .unwrap();
    // The writer is a process too, so that a send that never ends fails
    // the test (join_timeout) instead of hanging it. Both of its copies of
    // the reader's end (the pipe's creator's forgotten closure, and the
    // fork copy) stay open.
    let mut writer = Process::new(move || {
        // Far more than the buffer: blocks until the reader's death.
        let big = vec![0u8; 8 << 20];
        let first = writer_end.send_bytes(&big);
        // Part of the frame went out: nothing more is sent.
        let second = writer_end.send(&1u8);
        (
            matches!(first, Err(PipeError::PeerClosed)),
            matches!(second, Err(PipeError::Broken)),
        )
    })
    .start()
    .unwrap();
    wait_for(&ready, 1);
    wait_until("the writer blocks in send", || {
        testkit::process_state(writer.pid()) == Some(b'S')
    });
    reader.kill().unwrap();
    let outcome = writer.join_timeout(GENEROUS);
    if outcome.is_err() {
        let _ = writer.kill();
    }
    assert_eq!(outcome.unwrap(), (true, true), "(PeerClosed, then Broken)");
    assert!(reader.join_timeout(GENEROUS).is_err());
}

#[test]
fn a_child_that_drops_its_end_unused_gives_peer_closed() {
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || {
        // Never used, only dropped (its close frame ends the stream).
        child_end.close();
        park_until_killed();
    })
    .start()
    .unwrap();
    assert_peer_closed(parent_end.recv_timeout::<u8>(GENEROUS));
    child.kill().unwrap();
    assert!(child.join().is_err());
}

#[test]
fn frames_of_every_size_around_the_buffer_limits_cross_whole() {
    let sizes = [
        0usize,
        1,
        3,
        4,
        5,
        4095,
        4096,
        65_535,
        65_536,
        65_537,
        300_000,
        8 << 20,
    ];
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || {
        // Echoes each frame back, reversed: both sides send large frames
        // completed through many short writes.
        let mut buf = Vec::new();
        for _ in 0..sizes.len() {
            child_end.recv_bytes_into(&mut buf).expect("a frame");
            buf.reverse();
            child_end.send_bytes(&buf).expect("sent");
        }
    })
    .start()
    .unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        let bytes = pattern(len, i as u8);
        parent_end.send_bytes(&bytes).unwrap();
        let mut back = parent_end.recv_bytes().unwrap();
        back.reverse();
        assert!(back == bytes, "frame of {len} bytes came back changed");
    }
    child.join().unwrap();
}

#[test]
fn the_one_way_pipe_carries_values_then_peer_closed() {
    let (rx, tx) = pipe_oneway().unwrap();
    let child = Process::new(move || {
        for word in ["to", "be", "read"] {
            tx.send(word).expect("sent");
        }
    })
    .start()
    .unwrap();
    let words: Vec<String> = (0..3).map(|_| rx.recv_timeout(GENEROUS).unwrap()).collect();
    assert_eq!(words, ["to", "be", "read"]);
    assert_peer_closed(rx.recv_timeout::<String>(GENEROUS));
    child.join().unwrap();
}

#[test]
fn a_message_that_does_not_decode_is_consumed_and_its_bytes_returned() {
    let (a, b) = pipe().unwrap();
    a.send_bytes(&[0xff, 0xff, 0xff]).unwrap();
    match b.recv::<String>() {
        Err(PipeError::Decode {
            bytes, type_name, ..
        }) => {
            assert_eq!(bytes, [0xff, 0xff, 0xff]);
            assert!(type_name.contains("String"));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Bytes left over after the value are an error too.
    a.send(&(1u8, 2u8)).unwrap();
    assert!(matches!(b.recv::<u8>(), Err(PipeError::Decode { .. })));
    a.send("next").unwrap();
    assert_eq!(b.recv::<String>().unwrap(), "next");
}

#[test]
fn a_message_longer_than_a_frame_is_refused_and_nothing_is_sent() {
    let (a, b) = pipe().unwrap();
    // Zeroed by the kernel on first touch: the refusal touches none of it.
    let huge = vec![0u8; MAX_FRAME_LEN + 1];
    match a.send_bytes(&huge) {
        Err(PipeError::TooLarge { len, max }) => {
            assert_eq!((len, max), (MAX_FRAME_LEN + 1, MAX_FRAME_LEN));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    drop(huge);
    assert!(!b.poll(Some(Duration::ZERO)), "nothing was sent");
    a.send(&5u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 5);
}

#[test]
fn poll_and_recv_timeout_never_return_early() {
    let (a, b) = pipe().unwrap();
    let wait = Duration::from_millis(50);
    let started = Instant::now();
    assert!(!b.poll(Some(wait)));
    assert!(started.elapsed() >= wait);
    let started = Instant::now();
    assert!(matches!(
        b.recv_timeout::<u8>(wait),
        Err(PipeError::Timeout(t)) if t == wait
    ));
    assert!(started.elapsed() >= wait);
    a.send(&3u8).unwrap();
    assert!(b.poll(None));
    assert_eq!(b.recv::<u8>().unwrap(), 3);
}

#[test]
fn closing_an_end_in_the_same_process_is_peer_closed_after_the_values() {
    let (a, b) = pipe().unwrap();
    a.send(&1u8).unwrap();
    a.close();
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert_peer_closed(b.recv::<u8>());
}

#[test]
fn a_connection_moves_between_threads_but_is_not_shared_by_them() {
    fn send<T: Send>() {}
    send::<queue::Connection>();
    send::<queue::pipe::Receiver>();
    send::<queue::pipe::Sender>();
    // Not `Sync`: two threads sending at once would interleave frames
    // (checked by the compiler where it matters; here, by its absence).
    let (a, b) = pipe().unwrap();
    std::thread::spawn(move || a.send(&9u8).unwrap())
        .join()
        .unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 9);
}

#[test]
fn a_child_out_of_descriptors_still_announces_itself_by_pid() {
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || {
        // No pidfd can be opened for the announcement: it goes by pid.
        let _files = testkit::exhaust_descriptors();
        child_end.send(&1u8).expect("sent");
        park_until_killed();
    })
    .start()
    .unwrap();
    assert_eq!(parent_end.recv_timeout::<u8>(GENEROUS).unwrap(), 1);
    let killer = sigkill_from_sibling(child.pid());
    assert_peer_closed(parent_end.recv_timeout::<u8>(GENEROUS));
    killer.join().unwrap();
    assert!(child.join().is_err());
}

#[test]
fn a_send_to_an_end_its_child_dropped_is_peer_closed() {
    let dropped = Shared::new(Futex::new(0)).unwrap();
    let dropped_ref = &dropped;
    let (rx, tx) = pipe_oneway().unwrap();
    let child = Process::new(move || {
        rx.close();
        raise(dropped_ref);
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&dropped, 1);
    // This process still holds the copy of `rx` it moved into the child's
    // closure, and the child is alive: only the close itself can tell.
    assert_peer_closed(tx.send(&1u8));
    child.kill().unwrap();
    assert!(child.join().is_err());
}

#[test]
fn an_end_passed_on_to_a_grandchild_is_watched_there_once_it_announced_itself() {
    let announced = Shared::new(Futex::new(0)).unwrap();
    let gate = Shared::new(Futex::new(0)).unwrap();
    let (announced_ref, gate_ref) = (&announced, &gate);
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || {
        child_end.send("from the child").expect("sent");
        let _grandchild = Process::new(move || -> () {
            child_end.send("from the grandchild").expect("sent");
            raise(announced_ref);
            wait_for(gate_ref, 1);
            // Gone without closing anything (no destructor runs), while
            // this test process still holds a copy of the end.
            daemon::exit(0);
        })
        .start()
        .expect("start the grandchild");
        wait_for(announced_ref, 1);
        // The child exits now: its end lives on in the grandchild.
    })
    .start()
    .unwrap();
    child.join().unwrap();
    assert_eq!(
        parent_end.recv_timeout::<String>(GENEROUS).unwrap(),
        "from the child"
    );
    assert_eq!(
        parent_end.recv_timeout::<String>(GENEROUS).unwrap(),
        "from the grandchild"
    );
    // The child is dead, the grandchild owns the end: nothing yet.
    assert!(matches!(
        parent_end.recv_timeout::<String>(Duration::from_millis(50)),
        Err(PipeError::Timeout(_))
    ));
    raise(&gate);
    assert_peer_closed(parent_end.recv_timeout::<String>(GENEROUS));
}

#[test]
fn a_reader_out_of_descriptors_loses_an_announcements_pidfd_but_not_the_stream() {
    let gate = Shared::new(Futex::new(0)).unwrap();
    let gate_ref = &gate;
    let reader = Process::new(move || {
        let (parent_end, child_end) = pipe().expect("a pipe");
        let writer = Process::new(move || {
            wait_for(gate_ref, 1);
            child_end.send(&1u8).expect("sent");
            child_end.send(&2u8).expect("sent");
        })
        .start()
        .expect("start the writer");
        // The pidfd the writer's announcement carries cannot be received.
        let files = testkit::exhaust_descriptors();
        raise(gate_ref);
        let got: Vec<String> = (0..3)
            .map(|_| match parent_end.recv_timeout::<u8>(GENEROUS) {
                Ok(n) => n.to_string(),
                Err(e) => format!("{e:?}"),
            })
            .collect();
        drop(files);
        let _ = writer.join();
        got
    })
    .start()
    .unwrap();
    assert_eq!(reader.join().unwrap(), ["1", "2", "PeerClosed"]);
}
