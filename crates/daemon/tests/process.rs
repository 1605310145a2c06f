//! `Process` / `Child`: results over the socket, panics, exit codes,
//! signals and timeouts, each in a real child process.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::{ExitStatus, JoinError, Process, PANIC_EXIT_CODE};
use shm::{Futex, Shared};
use testkit::{raise, wait_for};

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
        Err(JoinError::Panicked { message, pid, .. }) => {
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

/// `Child::signal` takes any number: named signals, and also those without
/// a name (0, which only checks; a real-time signal; an invalid number,
/// refused by the kernel), which take another path to the same system call.
#[test]
fn signal_takes_unnamed_numbers_too() {
    let mut child = sleeper();
    child.signal(0).unwrap();
    assert!(child.is_alive(), "signal 0 only checks");
    let invalid = child.signal(1000).unwrap_err();
    assert_eq!(invalid.raw_os_error(), Some(libc::EINVAL));
    assert!(child.is_alive());
    child.signal(libc::SIGRTMIN()).unwrap();
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(JoinError::Signaled { signal, .. }) if signal == libc::SIGRTMIN()
    ));
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

// ---- What is moved into the closure belongs to the child (issue #11) ----

#[test]
fn an_owning_shared_moved_into_a_child_is_not_dropped_by_the_parent() {
    let name = testkit::unique_name("moved-shared");
    let owner = shm::Shared::create(&name, AtomicU32::new(5)).unwrap();
    assert!(owner.owns_name());
    let child = Process::new(move || owner.fetch_add(1, Ordering::SeqCst))
        .start()
        .unwrap();
    // The parent dropped nothing: its name is still there.
    assert!(testkit::name_exists(&name), "start() unlinked {name}");
    assert_eq!(child.join().unwrap(), 5);
    // The child's drop never unlinks (it is not the creating process): the
    // name stays until someone removes it.
    let seen = shm::Shared::<AtomicU32>::open(&name).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 6);
    shm::Shared::<AtomicU32>::unlink(&name).unwrap();
}

#[test]
fn what_is_moved_in_is_dropped_once_by_the_child_and_never_by_the_parent() {
    /// Counts its drops in shared memory, by process.
    struct Counted<'a> {
        drops: &'a [AtomicU32; 2],
        parent: u32,
    }
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            let slot = usize::from(std::process::id() != self.parent);
            self.drops[slot].fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = shm::Shared::new([AtomicU32::new(0), AtomicU32::new(0)]).unwrap();
    let counted = Counted {
        drops: &drops,
        parent: std::process::id(),
    };
    let child = Process::new(move || {
        let _moved_in = &counted;
    })
    .start()
    .unwrap();
    child.join().unwrap();
    assert_eq!(drops[0].load(Ordering::SeqCst), 0, "dropped by the parent");
    assert_eq!(drops[1].load(Ordering::SeqCst), 1, "dropped by the child");
}

// ---- Nothing unwinds out of start() in the child (issue #11) ----

/// Starts `process`, then counts (in shared memory) every process that gets
/// past `start()`. A child that unwound out of `start()` counts itself and
/// leaves at once, so the test sees it instead of the child running the
/// rest of this test binary. Returns the started child.
fn start_and_count_returns<F, T>(
    process: Process<F>,
    returns: &shm::Shared<AtomicU32>,
) -> daemon::Child<T>
where
    F: FnOnce() -> T,
    T: serde::Serialize,
{
    let me = std::process::id();
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process.start()));
    returns.fetch_add(1, Ordering::SeqCst);
    match started {
        Ok(child) => child.unwrap(),
        Err(panic) if std::process::id() == me => std::panic::resume_unwind(panic),
        // SAFETY: leaves the escaped child at once, running nothing more.
        Err(_) => unsafe { libc::_exit(77) },
    }
}

#[test]
fn a_captured_value_whose_drop_panics_is_the_childs_panic() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("a captured value's drop panicked");
        }
    }
    let returns = shm::Shared::new(AtomicU32::new(0)).unwrap();
    let bomb = PanicsOnDrop;
    let child = start_and_count_returns(
        Process::new(move || {
            let _moved_in = &bomb;
            7u8
        }),
        &returns,
    );
    match child.join() {
        Err(JoinError::Panicked { message, .. }) => {
            assert_eq!(message, "a captured value's drop panicked")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(returns.load(Ordering::SeqCst), 1);
}

/// A result whose `Serialize` panics.
#[derive(Debug, serde::Deserialize)]
struct SerializePanics;

impl serde::Serialize for SerializePanics {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("serializing the result panicked")
    }
}

#[test]
fn a_result_whose_serialize_panics_is_the_childs_panic() {
    let returns = shm::Shared::new(AtomicU32::new(0)).unwrap();
    let mut child = start_and_count_returns(Process::new(|| SerializePanics), &returns);
    match child.join_timeout(GENEROUS) {
        Err(JoinError::Panicked { message, .. }) => {
            assert_eq!(message, "serializing the result panicked")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(child.exit_code(), Some(PANIC_EXIT_CODE));
    assert_eq!(returns.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panic_payload_whose_drop_panics_is_still_reported() {
    struct Payload;
    impl Drop for Payload {
        fn drop(&mut self) {
            panic!("the payload's drop panicked");
        }
    }
    let returns = shm::Shared::new(AtomicU32::new(0)).unwrap();
    let child = start_and_count_returns(
        Process::new(|| -> u8 { std::panic::panic_any(Payload) }),
        &returns,
    );
    assert!(matches!(child.join(), Err(JoinError::Panicked { .. })));
    assert_eq!(returns.load(Ordering::SeqCst), 1);
}

// ---- Another thread holding the stdout lock at the fork (issue #11) ----

/// The helper side: a thread holds std's stdout lock nearly all the time
/// (printing now and then, little enough never to fill the pipe) while
/// this thread starts and joins children.
#[test]
fn helper_start_while_a_thread_prints() {
    let Some(_) = testkit::helper_args() else {
        return;
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let printer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut out = std::io::stdout().lock();
                for _ in 0..1000 {
                    std::hint::black_box(&mut out);
                }
                n += 1;
                if n.is_multiple_of(4096) {
                    let _ = write!(out, ".");
                }
            }
        })
    };
    let mut finished = 0;
    for i in 0..200u32 {
        // Some children print a partial line: flushed at their exit.
        let mut child = Process::new(move || {
            if i.is_multiple_of(2) {
                print!("child-{i}-done");
            }
            i
        })
        .start()
        .unwrap();
        match child.join_timeout(Duration::from_secs(5)) {
            Ok(v) if v == i => finished += 1,
            other => {
                let _ = child.kill();
                let _ = child.join_timeout(GENEROUS);
                testkit::helper_report("stuck", format!("child {i}: {other:?}"));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    printer.join().unwrap();
    testkit::helper_report("finished", finished);
}

#[test]
fn children_finish_while_another_thread_holds_the_stdout_lock() {
    let out = testkit::run_helper("helper_start_while_a_thread_prints", &["go"], GENEROUS * 6);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        testkit::reported(&out, "stuck"),
        None,
        "a child hung on its way out"
    );
    assert_eq!(testkit::reported(&out, "finished").as_deref(), Some("200"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for i in (0..200).step_by(2) {
        assert_eq!(
            stdout.matches(&format!("child-{i}-done")).count(),
            1,
            "child {i}'s partial line"
        );
    }
}

// ---- Duration::MAX means no limit (issue #11) ----

#[test]
fn join_timeout_of_duration_max_waits_without_limit() {
    let mut done = Process::new(|| 12u8).start().unwrap();
    assert_eq!(done.join_timeout(Duration::MAX).unwrap(), 12);
    assert!(matches!(
        done.join_timeout(Duration::MAX),
        Err(JoinError::AlreadyJoined { .. })
    ));
}

#[test]
fn zz_this_suite_left_no_names_behind() {
    assert_eq!(
        testkit::leaked_names(shm::pid::current()),
        Vec::<String>::new()
    );
}

/// A daemon checks, once it asked for its parent-death signal, that its
/// forking thread still lists it as a child. One read of that list can miss
/// a child when a sibling listed before it is reaped meanwhile (the kernel
/// walks the list a record at a time): a daemon started while its elder
/// siblings were being collected left at once, its result lost (the
/// conformance suite's fork test saw it, 1 run in 8). Here one thread
/// starts daemons while another collects each as soon as it is started:
/// every one must give its result.
#[test]
fn daemons_started_while_siblings_are_reaped_all_give_their_result() {
    let (tx, rx) = std::sync::mpsc::channel();
    let collector = std::thread::spawn(move || {
        let mut lost = 0;
        for (expected, child) in rx {
            let child: daemon::Child<u32> = child;
            if !matches!(child.join(), Ok(v) if v == expected) {
                lost += 1;
            }
        }
        lost
    });
    for i in 0..3_000u32 {
        let child = Process::new(move || i).daemon(true).start().expect("start");
        tx.send((i, child)).expect("collector");
    }
    drop(tx);
    let lost = collector.join().expect("collector");
    assert_eq!(lost, 0, "daemons that left before giving their result");
}

/// `is_alive` (Python's `is_alive()`) looks through `&self` and collects
/// nothing: the ended child stays a zombie until `join`, which still
/// returns its value.
#[test]
fn is_alive_looks_without_collecting_the_child() {
    let gate = Shared::new(Futex::new(0)).unwrap();
    let gate_ref = &gate;
    let child = Process::new(move || {
        wait_for(gate_ref, 1);
        5u8
    })
    .start()
    .unwrap();
    let shared: &daemon::Child<u8> = &child;
    assert!(shared.is_alive(), "waiting at its gate");
    raise(&gate);
    assert_eq!(
        daemon::wait_first(&[shared], Some(GENEROUS)).unwrap(),
        Some(0)
    );
    assert!(!shared.is_alive());
    assert_eq!(
        testkit::process_state(child.pid()),
        Some(b'Z'),
        "is_alive collected the child"
    );
    assert!(!shared.is_alive(), "still ended, still a zombie");
    assert_eq!(child.join().unwrap(), 5);
}

/// The daemon flag reads back (Python's `p.daemon`), on the `Process` and
/// on the started `Child`.
#[test]
fn the_daemon_flag_reads_back() {
    let plain = Process::new(|| 1u8);
    assert!(!plain.is_daemon());
    let daemonic = Process::new(|| 2u8).daemon(true);
    assert!(daemonic.is_daemon());
    assert!(!daemonic.daemon(false).is_daemon());
    let plain = plain.start().unwrap();
    let daemonic = Process::new(|| 2u8).daemon(true).start().unwrap();
    assert!(!plain.is_daemon());
    assert!(daemonic.is_daemon());
    assert_eq!(plain.join().unwrap(), 1);
    assert_eq!(daemonic.join().unwrap(), 2);
}

/// The sentinel (Python's `Process.sentinel`, here the child's pidfd) polls
/// unreadable while the child runs, readable once it has ended, and stays
/// readable after it is collected.
#[test]
fn the_sentinel_polls_readable_once_the_child_ends() {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let readable = |child: &daemon::Child<u8>, wait: Timespec| {
        let mut fds = [PollFd::from_borrowed_fd(child.sentinel(), PollFlags::IN)];
        poll(&mut fds, Some(&wait)).unwrap() == 1
    };
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let generous = Timespec {
        tv_sec: GENEROUS.as_secs() as i64,
        tv_nsec: 0,
    };
    let gate = Shared::new(Futex::new(0)).unwrap();
    let gate_ref = &gate;
    let mut child = Process::new(move || {
        wait_for(gate_ref, 1);
        3u8
    })
    .start()
    .unwrap();
    assert!(!readable(&child, now), "readable while the child runs");
    raise(&gate);
    assert!(readable(&child, generous), "never readable");
    assert_eq!(child.join_timeout(GENEROUS).unwrap(), 3);
    assert!(readable(&child, now), "unreadable once collected");
}

/// `wait_first` (Python's `connection.wait` on sentinels) returns the index
/// of the first child to end, `None` after the timeout (never before it)
/// while all run, and leaves every child joinable.
#[test]
fn wait_first_returns_the_first_child_to_end() {
    let gates: Vec<Shared<Futex>> = (0..3)
        .map(|_| Shared::new(Futex::new(0)).unwrap())
        .collect();
    let children: Vec<daemon::Child<usize>> = (0..3)
        .map(|i| {
            let gate = &gates[i];
            Process::new(move || {
                wait_for(gate, 1);
                i
            })
            .start()
            .unwrap()
        })
        .collect();
    let all: Vec<&daemon::Child<usize>> = children.iter().collect();
    let timeout = Duration::from_millis(30);
    let started = Instant::now();
    assert_eq!(daemon::wait_first(&all, Some(timeout)).unwrap(), None);
    assert!(started.elapsed() >= timeout, "returned early");

    raise(&gates[2]);
    assert_eq!(daemon::wait_first(&all, None).unwrap(), Some(2));
    assert_eq!(
        daemon::wait_first(&all[..2], Some(Duration::ZERO)).unwrap(),
        None
    );
    raise(&gates[0]);
    assert_eq!(
        daemon::wait_first(&all[..2], Some(GENEROUS)).unwrap(),
        Some(0)
    );
    raise(&gates[1]);
    assert_eq!(
        daemon::wait_first(&all[1..2], Some(GENEROUS)).unwrap(),
        Some(0)
    );
    assert_eq!(daemon::wait_first::<u8>(&[], None).unwrap(), None);
    drop(all);
    for (i, child) in children.into_iter().enumerate() {
        assert_eq!(child.join().unwrap(), i);
    }
}

/// A `JoinError` names the process, Python's `name`: the given one, or
/// `Process-N` as in Python.
#[test]
fn join_errors_name_the_process() {
    let named = Process::new(|| -> u32 { panic!("sold out") })
        .name("worker-3")
        .start()
        .unwrap();
    let pid = named.pid();
    assert_eq!(named.name(), "worker-3");
    assert_eq!(
        named.join().unwrap_err().to_string(),
        format!("process \"worker-3\" (pid {pid}) panicked: sold out")
    );

    let mut unnamed = Process::new(|| -> u8 { daemon::exit(4) }).start().unwrap();
    let name = unnamed.name().to_string();
    let number = name
        .strip_prefix("Process-")
        .expect("Python's default name");
    assert!(number.parse::<u64>().is_ok(), "{name}");
    assert_eq!(
        unnamed.join_timeout(GENEROUS).unwrap_err().to_string(),
        format!(
            "process \"{name}\" (pid {}) exited with code 4 without returning a value",
            unnamed.pid()
        )
    );
}

/// A child's own children are `Process-N:M`, as in Python, counted from 1
/// in each process.
#[test]
fn a_childs_children_are_numbered_under_it() {
    let child = Process::new(|| {
        let first = Process::new(|| ()).start().unwrap();
        let second = Process::new(|| ()).start().unwrap();
        let names = [first.name().to_string(), second.name().to_string()];
        first.join().unwrap();
        second.join().unwrap();
        names
    })
    .start()
    .unwrap();
    let parent = child.name().to_string();
    let names = child.join().unwrap();
    assert_eq!(names, [format!("{parent}:1"), format!("{parent}:2")]);
}

/// The helper process's side of `a_childs_panic_line_names_it`: a named
/// child panics there, its stderr the helper's.
#[test]
fn helper_a_named_child_panics() {
    let Some(_) = testkit::helper_args() else {
        return;
    };
    let child = Process::new(|| -> u32 { panic!("sold out") })
        .name("worker-3")
        .start()
        .unwrap();
    testkit::helper_report("pid", child.pid());
    assert!(matches!(child.join(), Err(JoinError::Panicked { .. })));
}

/// The panic hook's line in the child starts with the process's name and
/// pid.
#[test]
fn a_childs_panic_line_names_it() {
    let out = testkit::run_helper("helper_a_named_child_panics", &["go"], GENEROUS * 6);
    assert!(out.status.success(), "{out:?}");
    let pid = testkit::reported(&out, "pid").expect("the helper reports the child's pid");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("process \"worker-3\" (pid {pid}): ");
    let (_, report) = stderr
        .split_once(&prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{stderr}"));
    // The default hook's report follows at once (it starts on a new line).
    let first = report.trim_start().lines().next().unwrap_or("");
    assert!(
        first.starts_with("thread '") && first.contains("panicked at"),
        "{stderr}"
    );
    assert!(report.contains("sold out"), "{stderr}");
}
