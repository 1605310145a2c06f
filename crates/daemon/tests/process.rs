//! `Process` / `Child`: results over the socket, panics, exit codes,
//! signals and timeouts, each in a real child process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use daemon::{ExitStatus, JoinError, Process, PANIC_EXIT_CODE};

const GENEROUS: Duration = Duration::from_secs(10);

#[test]
fn join_returns_values_of_several_types() {
    assert_eq!(Process::new(|| 7u8).start().unwrap().join().unwrap(), 7);
    assert_eq!(Process::new(|| -3i64).start().unwrap().join().unwrap(), -3);
    Process::new(|| ()).start().unwrap().join().unwrap();
    let text = Process::new(|| "你好".repeat(3))
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(text, "你好你好你好");
    let map =
        Process::new(|| BTreeMap::from([("a".to_string(), vec![1u32, 2]), ("b".into(), vec![])]))
            .start()
            .unwrap()
            .join()
            .unwrap();
    assert_eq!(map["a"], [1, 2]);
    let nested: Result<Option<(u16, bool)>, String> = Process::new(|| Ok(Some((9, true))))
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(nested, Ok(Some((9, true))));
}

#[test]
fn a_large_result_larger_than_the_socket_buffer_arrives_whole() {
    let big = Process::new(|| vec![0xA5u8; 4 << 20])
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(big.len(), 4 << 20);
    assert!(big.iter().all(|&b| b == 0xA5));
}

#[test]
fn results_of_every_size_around_the_buffer_limits_arrive_whole() {
    // Inline (256 bytes), socket buffer (64 KiB announced as streaming).
    for len in [
        0usize, 1, 250, 255, 256, 257, 300, 65_535, 65_536, 65_537, 300_000,
    ] {
        let bytes = Process::new(|| (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(bytes.len(), len);
        assert!(
            bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
            "len {len}"
        );
    }
}

#[test]
fn the_closure_borrows_the_parents_data() {
    let words: Vec<String> = "process isolation".split(" ").map(String::from).collect();
    let total = Process::new(|| words.iter().map(|w| w.len()).sum::<usize>())
        .start()
        .unwrap();
    assert_eq!(total.join().unwrap(), 16);
}

#[test]
fn a_panic_comes_back_with_its_message() {
    let mut child = Process::new(|| -> u32 { panic!("sold out at {}", 3) })
        .start()
        .unwrap();
    match child.join_timeout(GENEROUS) {
        Err(JoinError::Panicked { message, pid }) => {
            assert_eq!(message, "sold out at 3");
            assert_eq!(pid, child.pid());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(child.exit_code(), Some(PANIC_EXIT_CODE));
}

#[test]
fn exit_codes_follow_python() {
    let mut exited = Process::new(|| -> u8 { daemon::exit(3) }).start().unwrap();
    assert!(matches!(
        exited.join_timeout(GENEROUS),
        Err(JoinError::Exited { code: 3, .. })
    ));
    assert_eq!(exited.exit_code(), Some(3));
    assert_eq!(exited.status(), Some(ExitStatus::Exited(3)));

    let ok = Process::new(|| 1).start().unwrap();
    let mut ok = ok;
    assert_eq!(ok.join_timeout(GENEROUS).unwrap(), 1);
    assert_eq!(ok.exit_code(), Some(0));
}

/// A child that blocks until signalled: it waits on a pipe nobody writes.
fn sleeper() -> daemon::Child<()> {
    Process::new(|| {
        let mut fds = [0; 2];
        // SAFETY: a valid out-array; the child then blocks reading its own pipe.
        unsafe {
            libc::pipe(fds.as_mut_ptr());
            let mut b = 0u8;
            libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
        }
    })
    .start()
    .unwrap()
}

#[test]
fn terminate_and_kill_give_minus_the_signal() {
    let mut child = sleeper();
    assert!(child.is_alive());
    assert_eq!(child.exit_code(), None);
    child.terminate().unwrap();
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(JoinError::Signaled {
            signal: libc::SIGTERM,
            ..
        })
    ));
    assert_eq!(child.exit_code(), Some(-libc::SIGTERM));
    assert!(!child.is_alive());
    child.kill().unwrap(); // already collected: a no-op, never another process

    let mut child = sleeper();
    child.kill().unwrap();
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(JoinError::Signaled {
            signal: libc::SIGKILL,
            ..
        })
    ));
    assert_eq!(child.exit_code(), Some(-9));
}

#[test]
fn join_timeout_waits_the_full_timeout_then_can_join_again() {
    let mut child = sleeper();
    let started = Instant::now();
    let timeout = Duration::from_millis(30);
    assert!(matches!(
        child.join_timeout(timeout),
        Err(JoinError::Timeout { .. })
    ));
    assert!(
        started.elapsed() >= timeout,
        "returned early: {:?}",
        started.elapsed()
    );
    assert!(child.is_alive());
    child.kill().unwrap();
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(JoinError::Signaled { .. })
    ));
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(JoinError::AlreadyJoined { .. })
    ));
}

#[test]
fn nothing_buffered_before_the_fork_prints_twice() {
    // Run ourselves as a separate program so stdout is a pipe we can read.
    if std::env::var_os("PROCSYNC_DOUBLE_PRINT_CHILD").is_some() {
        print!("buffered-once ");
        Process::new(|| print!("from-child "))
            .start()
            .unwrap()
            .join()
            .unwrap();
        println!("end");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "nothing_buffered_before_the_fork_prints_twice",
            "--exact",
            "--nocapture",
        ])
        .env("PROCSYNC_DOUBLE_PRINT_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("buffered-once").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("from-child").count(), 1, "{stdout}");
}

#[test]
fn the_child_is_named() {
    let name = Process::new(|| std::fs::read_to_string("/proc/thread-self/comm").unwrap())
        .name("ticket-buyer-number-7")
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(name.trim_end(), "ticket-buyer-nu", "truncated to 15 bytes");
}
