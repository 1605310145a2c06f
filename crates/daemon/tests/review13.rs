//! Review 13 (issue #18): reproducers for `Process::try_new` and
//! `ForkServer`, between real processes; fixed since, regression tests now.

use std::error::Error;
use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use daemon::{ForkServer, JoinError, Process};
use testkit::{wait_stopped_or_exited, GENEROUS};

/// An error that is its own source: a cycle in the `source()` chain (an
/// `Arc`-shared error graph, or a buggy `source`, gives the same).
#[derive(Debug)]
struct Cycle;

static CYCLE: Cycle = Cycle;

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("goes round")
    }
}

impl Error for Cycle {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&CYCLE)
    }
}

/// Caps this process's address space at what it maps now plus 256 MiB, so
/// that a child that allocates without end dies of it (abort) instead of
/// eating the machine's memory.
fn cap_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let limit = (kib + 256 * 1024) * 1024;
    let cap = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit with a valid struct; affects this (child) process.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) }, 0);
}

/// `try_new` promises the `Err` comes back as its message and `source()`
/// chain (`JoinError::Failed`, exit code 1). The child walks `source()`
/// until `None` with no bound and no cycle check: an error whose chain
/// loops makes the child allocate until it dies (here: aborted by the
/// memory cap; without it, it eats the machine's memory while `join`
/// waits for ever).
#[test]
fn a_cyclic_source_chain_comes_back_as_failed() {
    let mut child = Process::try_new(|| -> Result<u32, Cycle> {
        cap_memory();
        Err(Cycle)
    })
    .start()
    .unwrap();
    let joined = child.join_timeout(GENEROUS);
    if matches!(joined, Err(JoinError::Timeout { .. })) {
        let _ = child.kill();
        let _ = child.join_timeout(GENEROUS);
    }
    match joined {
        Err(JoinError::Failed {
            message, causes, ..
        }) => {
            assert_eq!(message, "goes round");
            assert_eq!(causes.len(), 65, "64 causes and the cut mark");
            assert!(causes[64].contains("cut after 64"), "{:?}", causes[64]);
        }
        other => panic!("expected JoinError::Failed for a cyclic source() chain, got {other:?}"),
    }
}

fn double(n: u32) -> u32 {
    n * 2
}

/// `ForkServer::spawn` had no bound on its wait for the server's report: a
/// server that is stopped (SIGSTOP, a debugger, a frozen cgroup) made
/// `spawn` block for as long as it stayed stopped. `spawn_timeout` gives
/// up.
#[test]
fn spawn_on_a_stopped_server_gives_up() {
    let server = ForkServer::start().unwrap();
    let pid = server.pid();
    let raw = i32::try_from(pid.get()).unwrap();
    // SAFETY: plain kill(2) of our own unreaped child (the server).
    assert_eq!(unsafe { libc::kill(raw, libc::SIGSTOP) }, 0);
    assert!(wait_stopped_or_exited(pid), "the server exited");
    let (tx, rx) = mpsc::channel();
    let answered = std::thread::scope(|scope| {
        scope.spawn(|| {
            let result = server
                .spawn_timeout(double, 21, Duration::from_millis(500))
                .map(|_| ());
            let _ = tx.send(result);
        });
        let answered = rx.recv_timeout(Duration::from_secs(3));
        // Let it go on, so that the thread (and the test) can end.
        // SAFETY: as above; the server is still our unreaped child.
        unsafe { libc::kill(raw, libc::SIGCONT) };
        answered
    });
    match answered {
        Ok(Err(daemon::Error::Os { source, .. })) => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}")
        }
        other => panic!("spawn_timeout on a stopped server: {other:?} (none within 3 s: a hang)"),
    }
}

fn length(bytes: Vec<u8>) -> usize {
    bytes.len()
}

/// A request that could not be sent whole before the timeout (a stopped
/// server, an argument larger than the socket's buffer) leaves part of it
/// in the socket: the server is ended, and later spawns fail as on an
/// ended server, never a request read from the middle of another.
#[test]
fn a_request_cut_by_a_timeout_ends_the_server() {
    let server = ForkServer::start().unwrap();
    let pid = server.pid();
    let raw = i32::try_from(pid.get()).unwrap();
    // SAFETY: plain kill(2) of our own unreaped child (the server).
    assert_eq!(unsafe { libc::kill(raw, libc::SIGSTOP) }, 0);
    assert!(wait_stopped_or_exited(pid), "the server exited");
    let cut = server.spawn_timeout(length, vec![7u8; 16 << 20], Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(raw, libc::SIGCONT) };
    match cut {
        Err(daemon::Error::Os { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}")
        }
        Ok(_) => panic!("16 MiB went into a stopped server's socket"),
        Err(other) => panic!("{other}"),
    }
    let limit = testkit::deadline(GENEROUS);
    while server.is_alive() {
        assert!(std::time::Instant::now() < limit, "the server did not end");
        std::thread::yield_now();
    }
    match server.spawn(double, 21) {
        Err(daemon::Error::Os { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::BrokenPipe, "{source}")
        }
        other => panic!(
            "a spawn after the cut request: {:?}",
            other.map(|c| c.pid())
        ),
    }
}
