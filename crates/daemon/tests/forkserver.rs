//! `ForkServer` / `ServedChild`: results, panics, signals, a dead server,
//! reaping and cleanup, between real processes; and issue #18's scenario
//! (a lock held for ever by another thread at the fork).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{mpsc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use daemon::{ExitStatus, ForkServer, JoinError, Process};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use shm::pid::Pid;
use testkit::{park_until_killed, sigkill_from_sibling, GENEROUS};

fn square(n: u64) -> u64 {
    n * n
}

fn describe((name, tags): (String, Vec<u8>)) -> String {
    format!("{name}:{}", tags.len())
}

fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn fail(message: String) -> u8 {
    panic!("{message}")
}

fn park(_: ()) {
    park_until_killed()
}

fn exit_with(code: i32) {
    daemon::exit(code)
}

/// Whether `pidfd` polls readable (its process has exited) within `timeout`.
fn exits_within(pidfd: impl AsFd, timeout: Duration) -> bool {
    let limit = Instant::now() + timeout;
    loop {
        let left = limit.saturating_duration_since(Instant::now());
        let left = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&left)) {
            Ok(n) => return n == 1,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// A pidfd of our own unreaped child `pid`.
fn pidfd_of(pid: Pid) -> OwnedFd {
    let pid = rustix::process::Pid::from_raw(pid.as_raw()).expect("a pid");
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open")
}

/// The children `pid`'s main thread has now (`/proc/<pid>/task/<pid>/children`).
fn children_of(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("/proc children")
        .trim()
        .to_string()
}

#[test]
fn spawned_functions_return_their_results() {
    let server = ForkServer::start().unwrap();
    let children: Vec<_> = (0..5u64)
        .map(|n| server.spawn(square, n).unwrap())
        .collect();
    let squares: Vec<u64> = children.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(squares, [0, 1, 4, 9, 16]);
    let text = server
        .spawn(describe, ("tags".to_string(), vec![1, 2, 3]))
        .unwrap();
    assert_eq!(text.join().unwrap(), "tags:3");
    // Larger than the socket buffer: the requester reads while the child
    // writes.
    let large = server.spawn(big, 3 << 20).unwrap().join().unwrap();
    assert_eq!(large, big(3 << 20));
    // Each a fork of the server, none of this process.
    let child = server.spawn(square, 3).unwrap();
    assert_ne!(child.pid(), server.pid());
    assert_eq!(child.name(), "served-8");
}

#[test]
fn two_threads_spawn_at_once() {
    let server = ForkServer::start().unwrap();
    let sums: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                let server = &server;
                scope.spawn(move || {
                    let children: Vec<_> = (0..20u64)
                        .map(|i| server.spawn(square, t * 100 + i).unwrap())
                        .collect();
                    children.into_iter().map(|c| c.join().unwrap()).sum()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let expected = |t: u64| (0..20u64).map(|i| (t * 100 + i).pow(2)).sum::<u64>();
    assert_eq!(sums, [expected(0), expected(1)]);
}

static HELD: Mutex<u32> = Mutex::new(41);

fn take_the_lock(_: ()) -> u32 {
    *HELD.lock().unwrap() + 1
}

/// Issue #18: a thread holds a `std::sync::Mutex` for ever while another
/// forks. A `Process` child finds the lock held (locking it would hang,
/// which is not tested: `try_lock` shows it); a child of a server started
/// before the thread takes its own copy and finishes.
#[test]
fn a_lock_held_by_another_thread_is_free_in_a_served_child() {
    let server = ForkServer::start().unwrap();
    let (locked, release) = (mpsc::channel(), mpsc::channel::<()>());
    let (locked_tx, locked_rx) = locked;
    let (release_tx, release_rx) = release;
    let holder = std::thread::spawn(move || {
        let guard = HELD.lock().unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(guard);
    });
    locked_rx.recv_timeout(GENEROUS).unwrap();

    let held_in_fork = Process::new(|| matches!(HELD.try_lock(), Err(TryLockError::WouldBlock)))
        .threads_ok(true)
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert!(held_in_fork, "a plain fork copies the held lock");

    let mut served = server.spawn(take_the_lock, ()).unwrap();
    assert_eq!(served.join_timeout(GENEROUS).unwrap(), 42);

    release_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn a_panic_comes_back_with_its_message() {
    let server = ForkServer::start().unwrap();
    let child = server.spawn(fail, "out of tickets".to_string()).unwrap();
    let pid = child.pid();
    match child.join() {
        Err(JoinError::Panicked {
            message,
            pid: reported,
            name,
        }) => {
            assert_eq!(message, "out of tickets");
            assert_eq!(reported, pid);
            assert_eq!(name, "served-1");
        }
        other => panic!("unexpected: {other:?}"),
    }
    match server.spawn(exit_with, 7).unwrap().join() {
        Err(JoinError::Exited { code: 7, .. }) => {}
        other => panic!("unexpected: {other:?}"),
    }
}

#[test]
fn a_killed_child_is_an_error_naming_the_signal() {
    let server = ForkServer::start().unwrap();
    let mut child = server.spawn(park, ()).unwrap();
    assert!(child.is_alive());
    assert!(matches!(
        child.join_timeout(Duration::from_millis(20)),
        Err(JoinError::Timeout { .. })
    ));
    let started = Instant::now();
    child.kill().unwrap();
    let error = child.join_timeout(GENEROUS).unwrap_err();
    assert!(started.elapsed() < GENEROUS);
    assert!(
        matches!(error, JoinError::Signaled { signal: 9, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("killed by signal 9"), "{error}");
    assert_eq!(child.status(), Some(ExitStatus::Signaled(9)));
    assert!(!child.is_alive());
}

#[test]
fn a_killed_server_fails_spawns_at_once_and_ends_joins() {
    let server = ForkServer::start().unwrap();
    let mut running = server.spawn(park, ()).unwrap();
    let running_pidfd = running.sentinel().try_clone_to_owned().unwrap();
    let server_pidfd = pidfd_of(server.pid());
    sigkill_from_sibling(server.pid()).join().unwrap();
    assert!(exits_within(&server_pidfd, GENEROUS), "the server dies");
    assert!(!server.is_alive());

    let started = Instant::now();
    let error = server.spawn(square, 2).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "at once");
    assert!(error.to_string().contains("has ended"), "{error}");

    let started = Instant::now();
    match running.join_timeout(GENEROUS) {
        Err(JoinError::Os {
            op: "ForkServer",
            source,
        }) => {
            assert!(source.to_string().contains("ended before"), "{source}")
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert!(started.elapsed() < GENEROUS);
    assert!(
        exits_within(&running_pidfd, GENEROUS),
        "it died with its server"
    );
}

#[test]
fn the_server_reaps_its_children_and_nothing_outlives_the_handles() {
    let server = ForkServer::start().unwrap();
    let server_pid = server.pid();
    for n in 0..3 {
        assert_eq!(server.spawn(square, n).unwrap().join().unwrap(), n * n);
    }
    let mut killed = server.spawn(park, ()).unwrap();
    killed.kill().unwrap();
    assert!(killed.join_timeout(GENEROUS).is_err());
    // Every end is reported after the server reaped the child.
    assert_eq!(children_of(server_pid), "", "no zombies under the server");
    drop(killed);

    // A handle keeps the server alive after the ForkServer is dropped.
    let server_pidfd = pidfd_of(server_pid);
    let parked = server.spawn(park, ()).unwrap();
    let late = server.spawn(square, 12).unwrap();
    let parked_pidfd = parked.sentinel().try_clone_to_owned().unwrap();
    let parked_pid = parked.pid();
    drop(server);
    assert_eq!(late.join().unwrap(), 144);
    assert!(
        !exits_within(&server_pidfd, Duration::ZERO),
        "still serving"
    );
    // The last handle ends the server, and its children with it.
    drop(parked);
    assert!(
        exits_within(&server_pidfd, Duration::ZERO),
        "reaped at drop"
    );
    assert!(
        exits_within(&parked_pidfd, GENEROUS),
        "died with the server"
    );
    // Both reaped, the child by the server itself (not left to `init`).
    assert_eq!(testkit::process_state(server_pid), None);
    assert_eq!(testkit::process_state(parked_pid), None);
}

fn who_am_i(_: ()) -> (String, u32, Option<(String, u32)>) {
    let me = daemon::current_process();
    let parent = daemon::parent_process().map(|p| (p.name().to_string(), p.pid().get()));
    (me.name().to_string(), me.pid().get(), parent)
}

/// A served child knows itself by the name its handle gives (`served-N`,
/// counted in the order of the requests, from any thread), and the server
/// as its parent.
#[test]
fn a_served_child_knows_its_name_and_its_parent() {
    let server = ForkServer::start().unwrap();
    let children: Vec<_> = std::thread::scope(|scope| {
        let spawns: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    (0..3)
                        .map(|_| server.spawn(who_am_i, ()).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        spawns.into_iter().flat_map(|s| s.join().unwrap()).collect()
    });
    let mut names = Vec::new();
    for child in children {
        let (name, pid) = (child.name().to_string(), child.pid().get());
        let (seen_name, seen_pid, parent) = child.join().unwrap();
        assert_eq!((seen_name.as_str(), seen_pid), (name.as_str(), pid));
        assert_eq!(parent, Some(("forkserver".to_string(), server.pid().get())));
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        ["served-1", "served-2", "served-3", "served-4", "served-5", "served-6"]
    );
}
