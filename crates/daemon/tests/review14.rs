//! Review 14 (issue #18): reproducers for `ForkServer::spawn_timeout`,
//! between real processes. Ignored: they fail on the code as reviewed.

use std::sync::mpsc;
use std::time::Duration;

use daemon::{ForkServer, Process};
use testkit::{wait_stopped_or_exited, wait_until, GENEROUS};

fn double(n: u32) -> u32 {
    n * 2
}

fn length(bytes: Vec<u8>) -> usize {
    bytes.len()
}

/// The state letter of this process's thread `tid` (`/proc/self/task`).
fn thread_state(tid: i32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/self/task/{tid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// `spawn_timeout` promises to give up after its timeout. But the request
/// lock is taken without one: while another thread's `spawn` sends a large
/// argument to a stopped server (blocked, holding the lock), a
/// `spawn_timeout(.., 500 ms)` in a second thread waits on the lock for as
/// long as the server stays stopped.
#[test]
fn spawn_timeout_gives_up_while_another_spawn_holds_the_request_lock() {
    let server = ForkServer::start().unwrap();
    let pid = server.pid();
    let raw = i32::try_from(pid.get()).unwrap();
    // SAFETY: plain kill(2) of our own unreaped child (the server).
    assert_eq!(unsafe { libc::kill(raw, libc::SIGSTOP) }, 0);
    assert!(wait_stopped_or_exited(pid), "the server exited");
    let (tid_tx, tid_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    let answered = std::thread::scope(|scope| {
        // A: a plain spawn of 16 MiB, blocked in its send (the server's
        // socket is full), holding the request lock.
        let big = scope.spawn(|| {
            // SAFETY: gettid(2) has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            server.spawn(length, vec![7u8; 16 << 20]).map(|_| ())
        });
        let tid = tid_rx.recv_timeout(GENEROUS).unwrap();
        // Sleeping: in its poll for room in the socket (it cannot have sent
        // 16 MiB to a stopped server).
        wait_until("the big spawn blocks in its send", || {
            thread_state(tid) == Some(b'S')
        });
        // B: spawn_timeout with half a second.
        scope.spawn(|| {
            let result = server
                .spawn_timeout(double, 21, Duration::from_millis(500))
                .map(|_| ());
            let _ = tx.send(result);
        });
        let answered = rx.recv_timeout(Duration::from_secs(5));
        // Let both threads end: a dead server fails both spawns.
        // SAFETY: as above; the server is still our unreaped child.
        unsafe { libc::kill(raw, libc::SIGKILL) };
        let _ = big.join();
        if answered.is_err() {
            let _ = rx.recv_timeout(GENEROUS);
        }
        answered
    });
    match answered {
        Ok(Err(daemon::Error::Os { source, .. })) => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}")
        }
        other => panic!(
            "spawn_timeout(500 ms) while another thread's spawn holds the request lock: \
             {other:?} (nothing within 5 s: it waited on the lock without bound)"
        ),
    }
}

/// Waits for ever (a served child that stays alive until its server ends).
fn park(_: ()) {
    loop {
        // SAFETY: pause(2) has no preconditions.
        unsafe { libc::pause() };
    }
}

/// Sets this process's soft limit of open descriptors.
fn set_descriptor_limit(soft: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct, for this process.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// `spawn` promises `BrokenPipe` ("the fork server (pid N) has ended") only
/// when the server has ended. A server out of descriptors (each live
/// served child costs it two: its pidfd and its report socket) cannot
/// receive the two sockets a request passes: the kernel drops them
/// (`MSG_CTRUNC`), the server takes the request for "not a request of
/// spawn" and answers nothing, and the requester, seeing its report socket
/// closed, says the server has ended. It has not: it runs, and serves again
/// once a child ends. (A caller that restarts an ended server on
/// `BrokenPipe` restarts a live one.)
#[test]
fn a_server_out_of_descriptors_is_not_reported_as_ended() {
    // In a child of its own: the descriptor limit is this process's.
    let outcome = Process::new(|| {
        // The server inherits a small limit; this process keeps room for
        // its handles (three descriptors each).
        set_descriptor_limit(24);
        let server = ForkServer::start().unwrap();
        set_descriptor_limit(4096);
        let mut children = Vec::new();
        for _ in 0..20 {
            match server.spawn(park, ()) {
                Ok(child) => children.push(child),
                Err(daemon::Error::Os { op, source }) => {
                    return Some((
                        children.len(),
                        op.to_string(),
                        format!("{:?}", source.kind()),
                        source.to_string(),
                        server.is_alive(),
                    ))
                }
                Err(other) => panic!("{other}"),
            }
        }
        None
    })
    .threads_ok(true)
    .start()
    .unwrap()
    .join()
    .unwrap();
    let Some((served, op, kind, message, alive)) = outcome else {
        panic!("20 served children with a server limited to 24 descriptors: no failure at all?");
    };
    assert!(
        !(kind == "BrokenPipe" && alive),
        "after {served} served children, spawn failed with {op}: {kind} ({message}), \
         yet the server was alive"
    );
}
