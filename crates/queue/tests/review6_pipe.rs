//! Review 6 of `pipe` / `Connection` / `wait`: each test here is a promise
//! of the module's docs, tried between real processes where a defect was
//! suspected.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use daemon::{JoinError, Process};
use queue::{pipe, wait, Connection, PipeError};
use rustix::io::Errno;
use rustix::net::SendFlags;
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise, sigkill_from_sibling, wait_for, GENEROUS};

/// A pattern that tells one byte position (and one message) from another.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

/// Fills the socket buffer of `conn`'s outgoing direction with empty
/// messages (the 4 bytes `conn.send_bytes(&[])` writes in the process that
/// owns it), without blocking: afterwards not even an 8-byte frame fits.
/// Returns how many were written.
fn fill_outgoing(conn: &Connection) -> usize {
    let empty_frame = 0u32.to_le_bytes();
    let mut frames = 0;
    loop {
        match rustix::net::send(
            conn.as_fd(),
            &empty_frame,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(4) => frames += 1,
            Err(Errno::AGAIN) => return frames,
            other => panic!("filling the socket: {other:?}"),
        }
    }
}

/// Says why a test that needs root does nothing here and returns `true`
/// when this process is not root (CI runs as root, where it runs).
fn skip_unless_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return false;
    }
    eprintln!("skipped: needs root");
    true
}

fn assert_peer_closed<T: std::fmt::Debug>(got: Result<T, PipeError>) {
    match got {
        Err(PipeError::PeerClosed) => {}
        other => panic!("expected PeerClosed, got {other:?}"),
    }
}

/// `poll(Some(ZERO))`, `wait` and `recv_timeout` in a process that uses an
/// end for the first time write its announcement; when the end's outgoing
/// buffer is full (the process that called `pipe` sent on it, the peer has
/// not read yet), that write waited for the peer to read: a zero-timeout
/// poll and a 50 ms `recv_timeout` blocked for as long as the peer did not
/// read (here: for ever). The announcement must still go out once there is
/// room, so that the new owner's death is seen.
#[test]
fn a_first_receive_in_a_new_process_keeps_its_timeout_when_the_announcement_does_not_fit() {
    // [done, poll was not ready, wait returned empty, recv_timeout timed
    // out, milliseconds the three took]
    let report = Shared::new([
        Futex::new(0),
        Futex::new(0),
        Futex::new(0),
        Futex::new(0),
        Futex::new(0),
    ])
    .unwrap();
    let received = Shared::new(Futex::new(0)).unwrap();
    let (report_ref, received_ref) = (&report, &received);
    let (parent_end, child_end) = pipe().unwrap();
    let filled = fill_outgoing(&child_end);
    assert!(filled > 0);
    let child = Process::new(move || -> () {
        let started = Instant::now();
        let ready = child_end.poll(Some(Duration::ZERO));
        let waited = wait(&[&child_end], Some(Duration::from_millis(10)));
        let got = child_end.recv_timeout::<u8>(Duration::from_millis(50));
        let took = started.elapsed().as_millis() as u32;
        report_ref[1].store(u32::from(!ready), Ordering::SeqCst);
        report_ref[2].store(u32::from(waited.is_empty()), Ordering::SeqCst);
        let timed_out = matches!(got, Err(PipeError::Timeout(_)));
        report_ref[3].store(u32::from(timed_out), Ordering::SeqCst);
        report_ref[4].store(took, Ordering::SeqCst);
        raise(&report_ref[0]);
        // Announces itself once the parent has read: its death is seen.
        assert_eq!(child_end.recv::<u8>().expect("a value"), 7);
        raise(received_ref);
        park_until_killed();
    })
    .start()
    .unwrap();
    let (done, took) = (&report[0], &report[4]);
    let limit = testkit::deadline(GENEROUS);
    while done.load(Ordering::SeqCst) == 0 && done.wait(0, Some(limit)) {}
    if done.load(Ordering::SeqCst) == 0 {
        child.kill().unwrap();
        let _ = child.join();
        panic!("poll(ZERO), wait(10 ms) and recv_timeout(50 ms) did not return in {GENEROUS:?}");
    }
    let flags: Vec<u32> = report[1..4]
        .iter()
        .map(|f| f.load(Ordering::SeqCst))
        .collect();
    assert_eq!(flags, [1, 1, 1], "not ready, nothing ready, timed out");
    let took = took.load(Ordering::SeqCst);
    assert!(
        (60..GENEROUS.as_millis() as u32 / 2).contains(&took),
        "took {took} ms"
    );
    for _ in 0..filled {
        assert_eq!(parent_end.recv_bytes().unwrap(), b"");
    }
    parent_end.send(&7u8).unwrap();
    wait_for(&received, 1);
    let killer = sigkill_from_sibling(child.pid());
    let got = parent_end.recv_timeout::<u8>(GENEROUS);
    killer.join().unwrap();
    let _ = child.join();
    assert_peer_closed(got);
}

/// An announcement that goes by pid (the announcer was out of descriptors)
/// and names a process already gone when it is read ended the stream at
/// once: the messages the dead process sent after it, still in the socket
/// beyond the first read, were lost (a torn frame instead of the third
/// message, though all of it had been sent).
#[test]
fn an_announcement_by_pid_of_a_dead_process_keeps_the_messages_behind_it() {
    const LEN: usize = 30_000;
    const COUNT: u8 = 4;
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || -> () {
        // No pidfd can be opened: the announcement goes by pid.
        let _files = testkit::exhaust_descriptors();
        for i in 0..COUNT {
            // 120 kB in all: fits in the socket buffer, no reader needed.
            child_end.send_bytes(&pattern(LEN, i)).expect("sent");
        }
        // Gone without closing (as if killed): only its exit can tell.
        daemon::exit(0);
    })
    .start()
    .unwrap();
    // Reaped: its pid is free when the announcement is read.
    assert!(matches!(
        child.join(),
        Err(JoinError::Exited { code: 0, .. })
    ));
    for i in 0..COUNT {
        match parent_end.recv_bytes() {
            Ok(bytes) => assert!(bytes == pattern(LEN, i), "message {i} changed"),
            Err(e) => panic!("message {i} of {COUNT}: {e:?}"),
        }
    }
    assert_peer_closed(parent_end.recv_bytes());
}

/// The announcement's `sendmsg` carries a pidfd (`SCM_RIGHTS`); when the
/// kernel refuses the descriptor (`ETOOMANYREFS`: the user has more
/// descriptors in flight than its descriptor limit), the announcement was
/// dropped, not sent by pid: the other end went on watching the pipe's
/// creator, and the new owner's SIGKILL left its `recv` waiting for ever.
#[test]
fn an_announcement_whose_pidfd_is_refused_still_goes_by_pid() {
    if skip_unless_root() {
        return;
    }
    let ready = Shared::new(Futex::new(0)).unwrap();
    let ready_ref = &ready;
    let (parent_end, child_end) = pipe().unwrap();
    let child = Process::new(move || -> () {
        refuse_passed_descriptors();
        child_end.send(&1u8).expect("sent");
        raise(ready_ref);
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&ready, 1);
    assert_eq!(parent_end.recv_timeout::<u8>(GENEROUS).unwrap(), 1);
    let killer = sigkill_from_sibling(child.pid());
    let started = Instant::now();
    let got = parent_end.recv_timeout::<u8>(GENEROUS);
    let _ = child.kill();
    killer.join().unwrap();
    let _ = child.join();
    assert_peer_closed(got);
    assert!(started.elapsed() < GENEROUS);
}

/// In this (child) process, makes every further `SCM_RIGHTS` send fail with
/// `ETOOMANYREFS`: drops root (and so every capability) for `nobody`, and
/// puts more descriptors in flight than the descriptor limit.
fn refuse_passed_descriptors() {
    let (a, _b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .expect("a socket pair");
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 16,
        rlim_max: open + 16,
    };
    // SAFETY: plain system calls on values owned here.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        assert_eq!(libc::setgid(65534), 0, "setgid nobody");
        assert_eq!(libc::setuid(65534), 0, "setuid nobody");
    }
    for _ in 0..10_000 {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        let passed = [a.as_fd()];
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&passed)));
        match rustix::net::sendmsg(
            &a,
            &[std::io::IoSlice::new(&[0])],
            &mut control,
            SendFlags::DONTWAIT,
        ) {
            Ok(_) => {}
            Err(Errno::TOOMANYREFS) => {
                // Keep them in flight for the rest of this process.
                std::mem::forget((a, _b));
                return;
            }
            Err(e) => panic!("putting descriptors in flight: {e}"),
        }
    }
    panic!("the kernel never refused a descriptor in flight");
}

/// Descriptors open in this process.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Many pipes whose far end a child uses (announcing itself, a pidfd
/// passed in) and then exits or is killed, with messages both ways: once
/// both ends are dropped, no descriptor is left open. (The child borrows
/// the far end, and this process drops it after the child's death: an end
/// moved into a child is never dropped here, see the next test.) Counted
/// in a child process of its own, where no other test opens descriptors
/// meanwhile.
#[test]
fn pipes_and_their_announcements_leave_no_descriptor_behind() {
    let counts = Process::new(|| {
        let before = open_descriptors();
        for round in 0..30u32 {
            let (near, far) = pipe().expect("a pipe");
            let announced = Shared::new(Futex::new(0)).expect("a futex");
            let (announced_ref, far_ref) = (&announced, &far);
            let child = Process::new(move || -> () {
                assert_eq!(far_ref.recv::<u32>().expect("a value"), round);
                far_ref.send(&round).expect("sent");
                if round % 2 == 1 {
                    raise(announced_ref);
                    park_until_killed();
                }
            })
            .start()
            .expect("a child");
            near.send(&round).expect("sent");
            assert_eq!(near.recv_timeout::<u32>(GENEROUS).expect("a value"), round);
            if round % 2 == 1 {
                wait_for(&announced, 1);
                child.kill().expect("killed");
            }
            assert_peer_closed(near.recv_timeout::<u32>(GENEROUS));
            let _ = child.join();
            drop((near, far));
        }
        (before, open_descriptors())
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(counts.0, counts.1, "(before, after)");
}

/// `daemon::Process` never drops, in the parent, what it moved into a
/// child, and dropping a `Connection` shuts the socket down for every
/// copy: so the parent can never close its copy of an end it moved into a
/// child. Its two descriptors (the socket and a pidfd) stay open for the
/// parent's life: a parent that starts one worker per task with a pipe end
/// runs out of descriptors (here, 40 to spare last 18 workers), though
/// every worker has exited and every end it kept was dropped. (Python's
/// parent can `close()` its copy; the way out here is to lend the end to
/// the child's closure and drop it once the child has exited, as the test
/// above does.)
#[test]
#[ignore = "defect: every end moved into a child leaks its two descriptors in the parent"]
fn a_parent_that_moves_ends_into_children_does_not_run_out_of_descriptors() {
    let failed_at = Process::new(|| {
        let open = open_descriptors() as u64;
        let limit = libc::rlimit {
            rlim_cur: open + 40,
            rlim_max: open + 40,
        };
        // SAFETY: a plain system call on a value owned here.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        for round in 0..200u32 {
            let started = pipe().map_err(|e| e.to_string()).and_then(|(near, far)| {
                let child = Process::new(move || far.send(&round).expect("sent"))
                    .start()
                    .map_err(|e| e.to_string())?;
                assert_eq!(near.recv_timeout::<u32>(GENEROUS).expect("a value"), round);
                child.join().expect("the worker");
                Ok(())
            });
            if let Err(e) = started {
                return Some(format!("round {round}: {e}"));
            }
        }
        None
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(failed_at, None);
}

/// Writes `bytes` into `conn`'s socket as they are: a peer that does not
/// go through this crate (or a crate bug) writing the wire format by hand.
fn write_raw(conn: &Connection, bytes: &[u8]) {
    assert_eq!(
        rustix::net::send(conn.as_fd(), bytes, SendFlags::NOSIGNAL),
        Ok(bytes.len())
    );
}

/// A message of which only part has arrived is not a message: `poll` and
/// `recv_timeout` wait their whole timeout (never less, not much more),
/// and the message is received whole once the rest arrives.
#[test]
fn half_a_message_is_waited_for_on_time_and_then_received_whole() {
    let (a, b) = pipe().unwrap();
    let body = pattern(1000, 3);
    write_raw(&a, &(body.len() as u32).to_le_bytes());
    write_raw(&a, &body[..600]);
    let wait = Duration::from_millis(50);
    let started = Instant::now();
    assert!(!b.poll(Some(wait)));
    let got = b.recv_timeout::<Vec<u8>>(wait);
    let waited = started.elapsed();
    assert!(
        matches!(got, Err(PipeError::Timeout(t)) if t == wait),
        "{got:?}"
    );
    assert!(waited >= 2 * wait, "{waited:?}");
    assert!(waited < 2 * wait + GENEROUS / 10, "{waited:?}");
    write_raw(&a, &body[600..]);
    assert_eq!(b.recv_bytes().unwrap(), body);
}

/// Frames this crate never writes: a length word with its top bit set
/// other than an announcement is a `Protocol` error after the messages
/// before it, and ends the stream; a length close to 2 GiB whose writer
/// goes away is a torn frame, never a value.
#[test]
fn forged_control_words_and_huge_lengths_end_the_stream_with_an_error() {
    let (a, b) = pipe().unwrap();
    a.send(&1u8).unwrap();
    write_raw(&a, &0x8000_0002u32.to_le_bytes());
    write_raw(&a, &[0; 4]);
    a.send(&2u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert!(matches!(
        b.recv::<u8>(),
        Err(PipeError::Protocol { word: 0x8000_0002 })
    ));
    assert_peer_closed(b.recv::<u8>());

    let (a, b) = pipe().unwrap();
    write_raw(&a, &0x7FFF_FFFFu32.to_le_bytes());
    write_raw(&a, &[7; 100]);
    assert!(!b.poll(Some(Duration::ZERO)));
    drop(a);
    match b.recv_bytes() {
        Err(PipeError::TornFrame { expected, received }) => {
            assert_eq!((expected, received), (0x7FFF_FFFF, 100));
        }
        other => panic!("expected a torn frame, got {:?}", other.map(|v| v.len())),
    }
    assert_peer_closed(b.recv_bytes());
}

/// A descriptor limit lowered below the number of the pidfd slot (here:
/// the pipe opened at descriptor 70 and more, the limit then set to 64,
/// as `testkit::exhaust_descriptors` does) makes `dup3` onto the slot fail
/// (`EBADF`), though the announcement's pidfd itself arrived. That error
/// came out of every `recv` from then on (the announcement was never
/// consumed): the stream was wedged, where the docs promise that messages
/// flow on whatever the descriptors.
#[test]
fn a_pidfd_slot_above_a_lowered_descriptor_limit_does_not_wedge_the_stream() {
    let got = Process::new(|| {
        let filler: Vec<_> = (0..70)
            .map(|_| std::fs::File::open("/dev/null").expect("/dev/null"))
            .collect();
        let (near, far) = pipe().expect("a pipe");
        drop(filler);
        let limit = libc::rlimit {
            rlim_cur: 64,
            rlim_max: 64,
        };
        // SAFETY: a plain system call on a value owned here.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let writer = Process::new(move || {
            far.send(&1u8).expect("sent");
            far.send(&2u8).expect("sent");
        })
        .start()
        .expect("start the writer");
        let got: Vec<String> = (0..3)
            .map(|_| match near.recv_timeout::<u8>(GENEROUS) {
                Ok(n) => n.to_string(),
                Err(e) => format!("{e:?}"),
            })
            .collect();
        let _ = writer.join();
        got
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(got, ["1", "2", "PeerClosed"]);
}

/// While a large message streams in, `recv_timeout` and `poll` read on
/// and on: the deadline was looked at only when a read found the socket
/// empty, so a 10 ms `recv_timeout` read the whole 128 MiB message (and
/// returned it, though most of it arrived after the deadline), and a zero
/// `poll` (what `wait` asks, which must not block) did too; with a
/// writer that kept up, a 10 ms `recv_timeout` took 0.5 to 1.7 s.
///
/// Made exact here: the writer's socket buffer is raised to 96 MiB
/// (`SO_SNDBUFFORCE`, as root), so 96 MiB are there at once and the rest
/// follows as it is read; a receive reads past its deadline only what
/// completes a message already there, which this one never is.
#[test]
fn a_message_streaming_in_does_not_hold_a_receive_past_its_timeout() {
    if skip_unless_root() {
        return;
    }
    const LEN: usize = 128 << 20;
    let writing = Shared::new(Futex::new(0)).unwrap();
    let writing_ref = &writing;
    let (parent_end, child_end) = pipe().unwrap();
    // The kernel doubles it.
    rustix::net::sockopt::set_socket_send_buffer_size_force(&child_end, 48 << 20)
        .expect("SO_SNDBUFFORCE (needs root)");
    let mut child = Process::new(move || {
        let big = vec![1u8; LEN];
        raise(writing_ref);
        child_end.send_bytes(&big).expect("sent");
    })
    .start()
    .unwrap();
    wait_for(&writing, 1);
    testkit::wait_until("the writer fills the socket and blocks", || {
        testkit::process_state(child.pid()) == Some(b'S')
    });
    let limit = Duration::from_millis(10);
    let ready = parent_end.poll(Some(Duration::ZERO));
    let started = Instant::now();
    let got = parent_end.recv_timeout::<Vec<u8>>(limit);
    let waited = started.elapsed();
    // However they ended, the message still arrives whole.
    let len = parent_end.recv_bytes().map(|b| b.len());
    child.join_timeout(GENEROUS).unwrap();
    assert!(!ready, "poll(ZERO) took the message in");
    assert!(
        matches!(got, Err(PipeError::Timeout(_))),
        "recv_timeout({limit:?}): {:?} after {waited:?}",
        got.map(|v| v.len())
    );
    assert!(
        waited < GENEROUS / 2,
        "recv_timeout({limit:?}) took {waited:?}"
    );
    assert_eq!(len.unwrap(), LEN);
}

/// A whole message already in the socket is received, however short the
/// timeout and however many reads it takes (100 kB: two reads of 64 KiB).
#[test]
fn a_whole_message_already_there_is_received_with_a_zero_timeout() {
    let (a, b) = pipe().unwrap();
    let body = pattern(100_000, 5);
    a.send_bytes(&body).unwrap();
    assert!(b.poll(Some(Duration::ZERO)));
    assert_eq!(b.recv_bytes().unwrap(), body);
    a.send_bytes(&body).unwrap();
    match b.recv_timeout::<Vec<u8>>(Duration::ZERO) {
        Err(PipeError::Decode { bytes, .. }) => assert!(bytes == body),
        other => panic!("expected the message (not a Vec<u8> encoding), got {other:?}"),
    }
}

/// A frame this crate does not expect ends the stream with `Protocol`,
/// after the messages before it: so `recv` has it when it reads the stream
/// itself. But when a send blocked on a full buffer read the stream ahead
/// (looking for announcements), the whole inbox was dropped at the unknown
/// word: the message before it was lost.
#[test]
fn a_protocol_error_found_by_a_blocked_send_keeps_the_messages_before_it() {
    let (a, b) = pipe().unwrap();
    // `a` is the peer that does not speak the wire format.
    a.send(&1u8).unwrap();
    write_raw(&a, &0x8000_0002u32.to_le_bytes());
    write_raw(&a, &[0; 4]);
    // `b` sends with its outgoing buffer full: the send reads ahead, finds
    // the unknown word, and fails (nothing of it was sent).
    fill_outgoing(&b);
    assert_peer_closed(b.send(&2u8));
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert!(matches!(
        b.recv::<u8>(),
        Err(PipeError::Protocol { word: 0x8000_0002 })
    ));
    assert_peer_closed(b.recv::<u8>());
}

/// How many processes the end passes through in the relay below.
const HOPS: u32 = 12;

/// One hop of the relay: announces itself and sends its number, passes
/// the end on to a child of its own, and exits once that child has
/// announced itself; the last hop vanishes without closing anything.
fn relay(end: Connection, hop: u32, announced: &Futex) {
    end.send(&hop).expect("sent");
    raise(announced);
    if hop == HOPS {
        // No destructor: only its death can tell the other end.
        daemon::exit(0);
    }
    let _next = Process::new(move || relay(end, hop + 1, announced))
        .start()
        .expect("start the next hop");
    wait_for(announced, hop + 1);
}

/// The end travels child -> grandchild -> ... (12 processes), each hop
/// exiting just after the next one announced itself, while this process
/// reads: the deaths race with the announcements in the socket. Every
/// message arrives, in order, and the last hop's death ends the stream;
/// no hop's death is taken for the end's.
#[test]
fn an_end_relayed_through_a_chain_of_processes_is_watched_to_the_last() {
    let announced = Shared::new(Futex::new(0)).unwrap();
    let announced_ref = &announced;
    let (parent_end, child_end) = pipe().unwrap();
    let first = Process::new(move || relay(child_end, 1, announced_ref))
        .start()
        .unwrap();
    for hop in 1..=HOPS {
        assert_eq!(parent_end.recv_timeout::<u32>(GENEROUS).unwrap(), hop);
    }
    assert_peer_closed(parent_end.recv_timeout::<u32>(GENEROUS));
    first.join().unwrap();
}
