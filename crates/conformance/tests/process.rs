//! CPython's `Process` tests, ported to `daemon::Process`.
//!
//! Source: `Lib/test/_test_multiprocessing.py` (`_TestProcess`, the
//! `processes` flavour), CPython 3.11.
//!
//! `Process(target=f, args=...)` is `Process::new(closure)`; the child's
//! result comes back from `join` instead of through a `Queue`;
//! `p.exitcode` is `exit_code()`; `p.join(t)` is `join_timeout(t)`.
//!
//! | Python case | why it is not ported |
//! |---|---|
//! | `test_current` | no `current_process()` object (pid, name, authkey): `std::process::id()` is the pid |
//! | `test_set_executable` | procsync always forks; it never executes an interpreter |
//! | `test_cpu_count` | not part of procsync (`std::thread::available_parallelism`) |
//! | `test_active_children` | no `active_children()` in the API |
//! | `test_sentinel` | no sentinel handle in the API (the `Child` keeps its pidfd private; `join_timeout` and `is_alive` cover waiting) |
//! | `test_close` | `close()` is dropping the `Child`; using it afterwards does not compile |
//! | `test_child_fd_inflation` | Python skips it for the fork start method, and procsync always forks |
//! | `test_forkserver_sigint`, `test_forkserver_sigkill` | no forkserver |
//! | `test_process`, the `authkey` and `active_children` lines, and `is_alive`/`exitcode` before `start` | no authkey, no `active_children`; a `Child` exists only once started |
//! | `test_parent_process_attributes`, the name | no `parent_process()` object: the child checks its parent's pid with `getppid` |
//! | `test_error_on_stdio_flush_*`, the `remove` action | Rust has no `sys.stdout = None`; the `close` action is ported |

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{join, start, Log};
use daemon::{JoinError, Process};
use shm::{Futex, Shared};
use sync_event::Event;
use testkit::{deadline, park_until_killed, raise, unique_name, wait_for, GENEROUS};

// _TestProcess::test_args_argument: the arguments reach the child (here
// captured by the closure) and come back unchanged.
#[test]
fn mp_process_args_argument() {
    let int = 1;
    let text = "str".to_string();
    let list = vec![1];
    let tuple = (1,);
    let child = start(Process::new(|| (int, text.clone(), list.clone(), tuple)).daemon(true));
    assert_eq!(join(child).unwrap(), (int, text, list, tuple));
}

// _TestProcess::test_daemon_argument: the daemon flag defaults to off and
// is set on request; the child sees it (`is_daemon_process`).
#[test]
fn mp_process_daemon_argument() {
    let plain = start(Process::new(daemon::is_daemon_process));
    assert!(!join(plain).unwrap());
    let daemonic = start(Process::new(daemon::is_daemon_process).daemon(true));
    assert!(join(daemonic).unwrap());
    let not_daemonic = start(Process::new(daemon::is_daemon_process).daemon(false));
    assert!(!join(not_daemonic).unwrap());
}

// _TestProcess::test_parent_process_attributes: the child's parent is this
// process.
#[test]
fn mp_process_parent_process_attributes() {
    let child = start(Process::new(std::os::unix::process::parent_id));
    assert_eq!(join(child).unwrap(), std::process::id());
}

// _TestProcess::test_parent_process: a grandchild sees its parent alive,
// and not alive once the parent is terminated. Python's grandchild joins
// its parent with a timeout; this one watches the parent's pid (a
// terminated, unreaped parent is a zombie, which counts as not running).
#[test]
fn mp_process_parent_process() {
    let status = Shared::new(Log::new()).unwrap();
    let child = start(Process::new(|| {
        let grandchild = start(Process::new(|| {
            let parent = shm::pid::Pid::from_u32(std::os::unix::process::parent_id()).unwrap();
            status.push(u32::from(shm::pid::is_running(parent)));
            let limit = deadline(GENEROUS);
            while shm::pid::is_running(parent) && Instant::now() < limit {
                std::thread::yield_now();
            }
            status.push(u32::from(shm::pid::is_running(parent)));
        }));
        drop(grandchild);
        park_until_killed();
    }));
    status.wait_len(1);
    assert_eq!(status.values(), [1], "alive");
    child.terminate().unwrap();
    assert!(matches!(
        join(child),
        Err(JoinError::Signaled {
            signal: libc::SIGTERM,
            ..
        })
    ));
    status.wait_len(2);
    assert_eq!(status.values(), [1, 0], "not alive");
}

// _TestProcess::test_process: name, liveness, exit code, and the result.
#[test]
fn mp_process_process() {
    let go = Shared::new(Futex::new(0)).unwrap();
    let mut child = start(
        Process::new(|| {
            wait_for(&go, 1);
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            ((1, 2), name.trim().to_string(), std::process::id())
        })
        .name("SomeProcess")
        .daemon(true),
    );
    assert_eq!(child.name(), "SomeProcess");
    assert_eq!(child.exit_code(), None);
    assert!(child.is_alive());
    raise(&go);
    let (args, name, pid) = child.join_timeout(GENEROUS).unwrap();
    assert_eq!(args, (1, 2));
    assert_eq!(name, "SomeProcess");
    assert_eq!(child.pid(), pid);
    assert_eq!(child.exit_code(), Some(0));
    assert!(!child.is_alive());
}

// _TestProcess::test_process_mainthread_native_id: the child's main thread
// is not this process's main thread.
#[test]
fn mp_process_process_mainthread_native_id() {
    // Linux: a process's main thread id is its pid.
    let child = start(Process::new(|| {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }));
    let childs_main = join(child).unwrap();
    assert_ne!(childs_main as u32, std::process::id());
}

/// _TestProcess::_kill_process: a sleeping child, joined with timeout 0
/// (Python also joins with -1: a negative `Duration` does not exist), then
/// stopped with `stop`; returns its exit code.
fn kill_process(stop: impl FnOnce(&daemon::Child<()>) -> std::io::Result<()>) -> Option<i32> {
    let mut child = start(Process::new(park_until_killed).daemon(true));
    assert!(child.is_alive());
    assert_eq!(child.exit_code(), None);
    let started = Instant::now();
    assert!(matches!(
        child.join_timeout(Duration::ZERO),
        Err(JoinError::Timeout { .. })
    ));
    assert!(started.elapsed() < GENEROUS);
    assert!(child.is_alive());
    stop(&child).unwrap();
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(JoinError::Signaled { .. })
    ));
    assert!(!child.is_alive());
    child.exit_code()
}

// _TestProcess::test_terminate
#[test]
fn mp_process_terminate() {
    assert_eq!(kill_process(daemon::Child::terminate), Some(-libc::SIGTERM));
}

// _TestProcess::test_kill
#[test]
fn mp_process_kill() {
    assert_eq!(kill_process(daemon::Child::kill), Some(-libc::SIGKILL));
}

/// _TestProcess::_test_recursion: records its id, then starts and joins
/// two children, two levels deep. An id `[a, b]` is recorded as the
/// base-3 number with digits a+1, b+1.
fn recursion(log: &Log, id: u32, depth: u32) {
    log.push(id);
    if depth < 2 {
        for i in 0..2 {
            let child = start(Process::new(|| recursion(log, id * 3 + i + 1, depth + 1)));
            join(child).unwrap();
        }
    }
}

// _TestProcess::test_recursion
#[test]
fn mp_process_recursion() {
    let log = Shared::new(Log::new()).unwrap();
    recursion(&log, 0, 0);
    // [], [0], [0, 0], [0, 1], [1], [1, 0], [1, 1]
    assert_eq!(log.values(), [0, 1, 4, 5, 2, 7, 8]);
}

// _TestProcess::test_many_processes: 100 children that exit at once, then
// 100 that sleep until terminated.
#[test]
fn mp_process_many_processes() {
    const N: usize = 100;
    let quick: Vec<_> = (0..N).map(|_| start(Process::new(|| ()))).collect();
    for child in quick {
        join(child).unwrap();
    }
    let sleepers: Vec<_> = (0..N)
        .map(|_| start(Process::new(park_until_killed)))
        .collect();
    for child in &sleepers {
        child.terminate().unwrap();
    }
    for mut child in sleepers {
        assert!(child.join_timeout(GENEROUS).is_err());
        assert_eq!(child.exit_code(), Some(-libc::SIGTERM));
    }
}

// _TestProcess::test_lose_target_ref: Python's parent drops its reference
// to the target once the child is started. procsync differs on purpose
// (issue 11, defect 1): what a closure captures is moved into the child,
// as with `thread::spawn`, and dropped there, once; the parent never drops
// its copy (dropping it would release a permit, unlink a name or unlock a
// guard that the child owns), so the parent's copy of the memory stays.
#[test]
fn mp_process_lose_target_ref() {
    let target = Arc::new(5u8);
    let weak = Arc::downgrade(&target);
    let child = start(Process::new(move || *target));
    assert_eq!(join(child).unwrap(), 5);
    assert!(
        weak.upgrade().is_some(),
        "the parent dropped a capture that the child owned"
    );
}

// _TestProcess::test_wait_for_threads: Python's child process waits for
// its non-daemon threads before exiting, so the event its thread sets is
// set. A procsync child leaves with `_exit` as soon as its closure
// returns, ending its other threads (procsync difference): the thread,
// which would set the event only after GENEROUS, never does.
#[test]
fn mp_process_wait_for_threads() {
    let name = unique_name("conf-threads");
    let evt = Shared::create(&name, Event::new()).unwrap();
    let child = start(Process::new(|| {
        let name = name.clone();
        std::thread::spawn(move || {
            let evt = Shared::<Event>::open(&name).expect("open by name");
            park_until_killed();
            evt.set();
        });
    }));
    join(child).unwrap();
    assert!(!evt.is_set());
}

/// Closes `fd` in this (child) process.
fn close(fd: i32) {
    // SAFETY: closing a standard stream of this child; nothing in it uses
    // the descriptor afterwards except writes that then fail with EBADF.
    unsafe { libc::close(fd) };
}

// _TestProcess::test_error_on_stdio_flush_1: a child whose standard
// streams are closed (Python: replaced by a closed stream before start)
// still exits with 0.
#[test]
fn mp_process_error_on_stdio_flush_1() {
    for fd in [1, 2] {
        let evt = Shared::new(Event::new()).unwrap();
        // The stream is broken in a child, whose own child inherits it.
        let child = start(Process::new(|| {
            close(fd);
            let mut grandchild = start(Process::new(|| evt.set()));
            let _ = grandchild.join_timeout(GENEROUS);
            grandchild.exit_code()
        }));
        assert_eq!(join(child).unwrap(), Some(0), "fd {fd}");
        assert!(evt.is_set());
    }
}

// _TestProcess::test_error_on_stdio_flush_2: a child that closes its own
// stdout or stderr, with output still buffered, exits with 0.
#[test]
fn mp_process_error_on_stdio_flush_2() {
    for fd in [1, 2] {
        let evt = Shared::new(Event::new()).unwrap();
        let mut child = start(Process::new(|| {
            if fd == 1 {
                let _ = std::io::stdout().write_all(b"unflushed");
                close(fd);
            } else {
                close(fd);
                let _ = std::io::stderr().write_all(b"unwritable");
            }
            evt.set();
        }));
        child.join_timeout(GENEROUS).unwrap();
        assert!(evt.is_set());
        assert_eq!(child.exit_code(), Some(0), "fd {fd}");
    }
}

// Not a CPython case: the reproducer of a defect the suite ran into. A
// child forked while another thread of the parent holds the stdout lock
// (libtest does, printing a result) inherits the lock held, and hangs for
// ever in the stdout flush of `daemon::exit` after its closure returns.
// Fixed: `start` holds the stdout lock across the fork.
#[test]
fn process_start_while_another_thread_holds_stdout() {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let printer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::io::stdout().lock().flush();
            }
        })
    };
    let mut hung = 0;
    for _ in 0..300 {
        let mut child = Process::new(|| 1u8).start().unwrap();
        if child.join_timeout(Duration::from_secs(2)).is_err() {
            hung += 1;
            let _ = child.kill();
            let _ = child.join_timeout(GENEROUS);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    printer.join().unwrap();
    assert_eq!(hung, 0, "children hung on exit");
}

/// The fresh process of `process_fork_during_the_first_pid_lookup`: one
/// thread makes the process's first `shm::pid::current()` call while this
/// one forks children as fast as it can; reports how many children hang in
/// their own `pid::current()`.
#[test]
fn helper_fork_during_first_pid_lookup() {
    let Some(_) = testkit::helper_args() else {
        return;
    };
    let go = Futex::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let hung = std::thread::scope(|scope| {
        scope.spawn(|| {
            wait_for(&go, 1);
            shm::pid::current();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut children = Vec::new();
        raise(&go);
        while !done.load(std::sync::atomic::Ordering::SeqCst) && children.len() < 20 {
            // Daemons: they die with this process, whatever happens here.
            let child = Process::new(shm::pid::current).daemon(true);
            children.push(child.start().unwrap());
        }
        children
            .into_iter()
            .filter_map(|mut child| {
                let hung = child.join_timeout(Duration::from_secs(1)).is_err();
                let _ = child.kill();
                let _ = child.join_timeout(GENEROUS);
                hung.then_some(())
            })
            .count()
    });
    testkit::helper_report("hung", hung);
}

// Not a CPython case: the reproducer of a second defect the suite ran
// into. A fork while another thread runs `shm::pid::current()` for the
// first time in the process copies its `Once` half-run: the child hangs
// for ever in its own first `pid::current()` (every lock, semaphore and
// barrier operation calls it). Fixed: the fork handler is registered
// without a `Once`. The window is short: the reproducer tries in up to
// 100 fresh processes.
#[test]
fn process_fork_during_the_first_pid_lookup() {
    for _ in 0..100 {
        let out = testkit::run_helper("helper_fork_during_first_pid_lookup", &[], GENEROUS);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(testkit::reported(&out, "hung").as_deref(), Some("0"));
    }
}
