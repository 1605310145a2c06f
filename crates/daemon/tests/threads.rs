//! `Process::start` from a multithreaded process: the one-time warning on
//! stderr, its absence from a single-threaded process, and its opt-outs.
//!
//! Each scenario runs in a fresh helper process (the test binary run
//! again, its stderr captured through a pipe), inside a child it forks
//! with `threads_ok` (so the helper itself warns of nothing, and the child
//! starts with one thread and no warning printed yet).

use std::sync::mpsc;

use daemon::{thread_count, Process, MULTITHREADED_WARNING, THREADS_OK_ENV};
use testkit::{helper_args, run_helper, GENEROUS};

/// Runs `scenario` in a helper and returns how many times its stderr
/// carries the warning.
fn warnings_in(scenario: &str) -> usize {
    let out = run_helper("scenario", &[scenario], GENEROUS * 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "helper {scenario} failed: {}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    stderr.matches(MULTITHREADED_WARNING).count()
}

/// Starts and joins two children from this process, the second with the
/// given `threads_ok`.
fn start_two(threads_ok: bool) {
    for _ in 0..2 {
        let child = Process::new(|| 1u8).threads_ok(threads_ok).start().unwrap();
        assert_eq!(child.join().unwrap(), 1);
    }
}

/// With a second thread alive (blocked on a channel), runs `work`.
fn with_a_second_thread(work: impl FnOnce()) {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _ = stopped.recv();
    });
    assert!(thread_count().is_some_and(|n| n >= 2));
    work();
    drop(stop);
    thread.join().unwrap();
}

/// The helper: one scenario, in a single-threaded child.
#[test]
fn scenario() {
    let Some(args) = helper_args() else { return };
    let scenario = args[0].clone();
    let child = Process::new(move || {
        assert_eq!(thread_count(), Some(1), "a forked child has one thread");
        match scenario.as_str() {
            "single" => start_two(false),
            "threaded" => with_a_second_thread(|| start_two(false)),
            "threads_ok" => with_a_second_thread(|| start_two(true)),
            "env" => {
                // Set before any thread exists here.
                std::env::set_var(THREADS_OK_ENV, "1");
                with_a_second_thread(|| start_two(false));
            }
            other => panic!("no scenario {other}"),
        }
    })
    .threads_ok(true)
    .start()
    .unwrap();
    child.join().unwrap();
}

#[test]
fn a_multithreaded_start_warns_once() {
    assert_eq!(warnings_in("threaded"), 1);
}

#[test]
fn a_single_threaded_start_does_not_warn() {
    assert_eq!(warnings_in("single"), 0);
}

#[test]
fn threads_ok_and_the_environment_silence_the_warning() {
    assert_eq!(warnings_in("threads_ok"), 0);
    assert_eq!(warnings_in("env"), 0);
}

#[test]
fn the_warning_names_the_fixes() {
    let out = run_helper("scenario", &["threaded"], GENEROUS * 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains(MULTITHREADED_WARNING))
        .expect("the warning");
    for fix in ["ForkServer", "threads_ok", THREADS_OK_ENV] {
        assert!(line.contains(fix), "{fix} missing from {line:?}");
    }
}
