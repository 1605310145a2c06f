//! The reporting daemon's lifetime and descriptors: it holds none of its
//! main process's descriptors, lives exactly as long as the main process
//! (not the thread that started it), and only that process may stop it.

use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use daemon::Process;
use heartbeat::Reporter;
use shm::{Futex, Shared};
use testkit::{raise, wait_for, GENEROUS};

mod common;
use common::{beat_receiver, next_beat};

const INTERVAL: Duration = Duration::from_millis(50);

#[test]
fn the_reporter_holds_none_of_mains_descriptors() {
    let (socket, addr) = beat_receiver();
    let reporter = Shared::new(Futex::new(0)).unwrap();
    let done = Shared::new(Futex::new(0)).unwrap();
    let main = Process::new(|| {
        // A pipe main writes to (a subprocess's stdin, say): once main
        // closes its end, the reader must see EOF, reporter or not.
        let (mut reader, writer) = UnixStream::pair().unwrap();
        let beat = Reporter::new("fds")
            .interval(INTERVAL)
            .udp(addr)
            .start()
            .unwrap();
        drop(writer);
        reader.set_read_timeout(Some(GENEROUS / 2)).unwrap();
        let eof = matches!(reader.read(&mut [0u8; 1]), Ok(0));
        reporter.store(beat.pid().get(), Ordering::SeqCst);
        raise(&done);
        wait_for(&done, 2);
        drop(beat);
        eof
    })
    .start()
    .unwrap();
    wait_for(&done, 1);
    // Any beat comes after the reporter's set-up.
    next_beat(&socket);
    let fds: Vec<String> =
        std::fs::read_dir(format!("/proc/{}/fd", reporter.load(Ordering::SeqCst)))
            .unwrap()
            .map(|e| format!("{:?}", std::fs::read_link(e.unwrap().path())))
            .collect();
    raise(&done);
    assert!(
        main.join().unwrap(),
        "the reporter kept main's end of the pipe open"
    );
    // stdin, stdout, stderr, the UDP socket, its own channel to main (two),
    // and main's pidfd, opened since.
    assert!(fds.len() <= 7, "the reporter's descriptors: {fds:?}");
}

/// Receives `count` more beats, failing the test if they stop.
fn beats_go_on(socket: &UdpSocket, count: usize) {
    let first = next_beat(socket).seq;
    for _ in 0..count {
        assert!(next_beat(socket).seq > first);
    }
}

#[test]
fn a_forked_child_dropping_its_copy_of_the_heartbeat_does_not_stop_it() {
    let (socket, addr) = beat_receiver();
    let forked = Shared::new(Futex::new(0)).unwrap();
    let main = Process::new(|| {
        let beat = Reporter::new("forked")
            .interval(INTERVAL)
            .udp(addr)
            .start()
            .unwrap();
        // A plain fork, as any library might make: the child leaves the
        // scope of `beat`, dropping its copy.
        // SAFETY: this process has one thread (a fresh `Process` child);
        // the child only drops its copy of `beat` and calls `_exit`.
        match unsafe { libc::fork() } {
            0 => {
                drop(beat);
                // SAFETY: _exit ends the forked child at once.
                unsafe { libc::_exit(0) }
            }
            pid => {
                assert!(pid > 0, "fork failed");
                let mut status = 0;
                // SAFETY: waits for our own child, writing its status to a
                // local.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            }
        }
        raise(&forked);
        testkit::park_until_killed();
        drop(beat);
    })
    .start()
    .unwrap();
    wait_for(&forked, 1);
    // The reporter still beats (a few beats may have been queued before).
    beats_go_on(&socket, 10);
    main.kill().unwrap();
    let _ = main.join();
}

#[test]
fn a_reporter_started_from_a_short_lived_thread_lives_as_long_as_main() {
    let (socket, addr) = beat_receiver();
    // 1: the thread may end (the reporter is set up); 2: it has ended.
    let phase = Shared::new(Futex::new(0)).unwrap();
    let main = Process::new(|| {
        // `Heartbeat` may move between threads: the thread that started the
        // reporter works a while and ends, the main process works on.
        let beat = std::thread::scope(|s| {
            s.spawn(|| {
                let beat = Reporter::new("from-a-thread")
                    .interval(INTERVAL)
                    .udp(addr)
                    .start()
                    .unwrap();
                wait_for(&phase, 1);
                beat
            })
            .join()
            .unwrap()
        });
        raise(&phase);
        testkit::park_until_killed();
        drop(beat);
    })
    .start()
    .unwrap();
    // A beat comes once the reporter is set up.
    next_beat(&socket);
    raise(&phase);
    wait_for(&phase, 2);
    beats_go_on(&socket, 10);
    main.kill().unwrap();
    let _ = main.join();
}
