//! Test support for the procsync suites (not part of the library).
//!
//! - [`unique_name`]: a segment name no other test or run uses, under a
//!   common prefix, so [`leaked_names`] can find what a suite left behind.
//! - [`helper_args`] and [`run_helper`]: run a function of the test binary
//!   as a separate, unrelated process (fork + exec of the test binary
//!   itself), the way two programs meet through a named segment.
//! - [`deadline`]: the timeout every wait in a test gets, so a broken
//!   primitive fails the test instead of hanging it.
//! - [`raise`] and [`wait_for`]: one process tells another "I got this
//!   far" through a futex word in shared memory (never a sleep).

#![deny(unsafe_code)]

#[allow(unsafe_code)] // _exit in a forked child
mod sys;

pub mod postgres;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shm::pid::Pid;

/// Every name made by [`unique_name`] starts with this.
pub const NAME_PREFIX: &str = "procsync-test-";

/// The environment variable that tells a test binary it runs as a helper,
/// carrying the helper's arguments separated by `\x1f`.
pub const HELPER_ENV: &str = "PROCSYNC_TEST_HELPER_ARGS";

/// A fresh segment name: prefix, this process's pid, `tag`, a counter.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{tag}-{n}", std::process::id())
}

/// Names under `/dev/shm` that start with [`NAME_PREFIX`] and `pid`: what a
/// suite run by process `pid` has left behind.
pub fn leaked_names(pid: Pid) -> Vec<String> {
    let prefix = format!("{NAME_PREFIX}{pid}-");
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the name exists under `/dev/shm`.
pub fn name_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

/// Inside a helper test: the arguments [`run_helper`] passed, or `None` when
/// the test binary runs normally (then the helper test returns at once).
pub fn helper_args() -> Option<Vec<String>> {
    std::env::var(HELPER_ENV)
        .ok()
        .map(|v| v.split('\x1f').map(str::to_string).collect())
}

/// Runs the test function `helper_test` of the current test binary as a new
/// process (its own program, not a fork of this one) with `args`, and waits
/// for it, killing it after `timeout`. Panics if it cannot be started or
/// does not finish in time.
pub fn run_helper(helper_test: &str, args: &[&str], timeout: Duration) -> Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([helper_test, "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, args.join("\x1f"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the helper process");
    let limit = deadline(timeout);
    loop {
        if child.try_wait().expect("poll the helper").is_some() {
            return child
                .wait_with_output()
                .expect("collect the helper's output");
        }
        if Instant::now() >= limit {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .expect("collect the helper's output");
            panic!(
                "helper {helper_test} did not finish within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The line a helper prints to report `key=value` to its test.
pub fn helper_report(key: &str, value: impl std::fmt::Display) {
    println!("helper-report {key}={value}");
}

/// Finds `key` in a helper's reports.
pub fn reported(output: &Output, key: &str) -> Option<String> {
    let prefix = format!("helper-report {key}=");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // libtest may print "test name ... " on the same line first.
        .find_map(|l| l.split_once(&prefix).map(|(_, v)| v.trim().to_string()))
}

/// `now + timeout`: the deadline of a wait in a test. A timeout past the
/// end of the clock (`Duration::MAX`) gives a deadline a century away.
pub fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// `work()` in another thread, failing the test (instead of hanging it)
/// if it has not returned within [`GENEROUS`].
pub fn within<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(GENEROUS)
        .expect("no answer within the deadline")
}

/// The timeout for waits that should succeed at once on a healthy system:
/// long enough for a loaded two-core machine, short enough to fail fast.
pub const GENEROUS: Duration = Duration::from_secs(10);

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the
/// machine (unlike `Instant`, which cannot cross a process boundary).
pub fn monotonic_ns() -> u64 {
    shm::sync::monotonic_ns()
}

/// A small deterministic pseudo-random sequence (xorshift), so a failing
/// randomized test can be rerun with the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from `seed` (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Adds one to `signal` and wakes every process waiting on it: "I got this
/// far" for [`wait_for`].
pub fn raise(signal: &shm::Futex) {
    signal.fetch_add(1, Ordering::SeqCst);
    signal.wake_all();
}

/// Waits until `signal` has been raised at least `times` times, failing the
/// test after [`GENEROUS`] instead of hanging it.
pub fn wait_for(signal: &shm::Futex, times: u32) {
    let limit = deadline(GENEROUS);
    loop {
        let seen = signal.load(Ordering::SeqCst);
        if seen >= times {
            return;
        }
        assert!(
            signal.wait(seen, Some(limit)),
            "the other process never signalled (at {seen} of {times})"
        );
    }
}

/// Sleeps until this process is killed, or [`GENEROUS`] has passed (so a
/// test that forgets to kill it cannot leave it behind for long).
pub fn park_until_killed() {
    let parked = shm::Futex::new(0);
    let limit = deadline(GENEROUS);
    while parked.wait(0, Some(limit)) {}
}

/// Starts a process that SIGKILLs `pid` (a sibling: a child of this
/// process, not yet reaped, so its pid cannot have been reused) while this
/// process goes on to block; joining it gives the CLOCK_MONOTONIC time of
/// the kill in nanoseconds (see [`monotonic_ns`]).
pub fn sigkill_from_sibling(pid: Pid) -> daemon::Child<u64> {
    daemon::Process::new(|| {
        // `pid` names the intended process: see above.
        sys::sigkill(pid);
        monotonic_ns()
    })
    .start()
    .expect("start the killer process")
}

/// Runs `work(i)` for `i` in `0..n`, each in its own forked process, all at
/// once, and returns what they returned, in order. A child that panics or
/// dies fails the test.
pub fn in_processes<T, W>(n: usize, work: W) -> Vec<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    W: Fn(usize) -> T,
{
    let work = &work;
    let children: Vec<_> = (0..n)
        .map(|i| {
            daemon::Process::new(move || work(i))
                .start()
                .expect("start a child process")
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.join().expect("a child process failed"))
        .collect()
}

/// Whether this process may force the pid of its next child (root, with a
/// writable `/proc/sys/kernel/ns_last_pid`): what [`start_with_pid`] needs.
/// CI runs as root; a developer's run without it skips the pid-reuse tests,
/// saying so.
pub fn can_force_pids() -> bool {
    let root = sys::is_root();
    root && std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/kernel/ns_last_pid")
        .is_ok()
}

/// Starts a process whose pid is `target` (a pid that is free now, such as
/// a reaped child's), and runs `work` in it: a new process that reuses a
/// dead process's pid, on demand.
///
/// Forces the pid through `/proc/sys/kernel/ns_last_pid` (the kernel then
/// gives the next process `target`), retrying while other processes on the
/// machine take it first. Each try's child waits at a gate until the parent
/// has seen its pid; a child with the wrong pid leaves without running
/// `work`. Panics if the pid cannot be had in 1,000 tries or without root
/// (check [`can_force_pids`] first).
pub fn start_with_pid<T, W>(target: Pid, work: W) -> daemon::Child<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    W: Fn() -> T,
{
    const GO: u32 = 1;
    const WRONG_PID: u32 = 2;
    assert!(target.get() > 1, "pid {target} cannot be forced");
    let work = &work;
    for _ in 0..1_000 {
        let gate = shm::Shared::new(shm::Futex::new(0)).expect("a gate in shared memory");
        std::fs::write(
            "/proc/sys/kernel/ns_last_pid",
            (target.get() - 1).to_string(),
        )
        .expect("write ns_last_pid (needs root)");
        let gate_ref = &gate;
        let mut child = daemon::Process::new(move || {
            let limit = deadline(GENEROUS);
            while gate_ref.load(Ordering::SeqCst) == 0 {
                assert!(gate_ref.wait(0, Some(limit)), "the gate never opened");
            }
            if gate_ref.load(Ordering::SeqCst) == WRONG_PID {
                // Leaves at once, running nothing of the test.
                sys::exit_now(0);
            }
            work()
        })
        .start()
        .expect("start a child process");
        let got = child.pid() == target;
        gate.store(if got { GO } else { WRONG_PID }, Ordering::SeqCst);
        gate.wake_all();
        if got {
            return child;
        }
        let _ = child.join_timeout(GENEROUS);
    }
    panic!("could not get pid {target} for a new process in 1,000 tries");
}

/// The state letter of process `pid` in `/proc/<pid>/stat` (`R`, `S`,
/// `T` for stopped, `Z` for a zombie, ...), or `None` once it is gone.
pub fn process_state(pid: Pid) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and ')': the state follows the
    // last ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// Waits (at most [`GENEROUS`]) until process `pid` is stopped (true) or
/// has exited (false).
pub fn wait_stopped_or_exited(pid: Pid) -> bool {
    let limit = deadline(GENEROUS);
    loop {
        match process_state(pid) {
            Some(b'T') | Some(b't') => return true,
            None | Some(b'Z') | Some(b'X') => return false,
            _ => {}
        }
        assert!(
            Instant::now() < limit,
            "process {pid} neither stopped nor exited"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Waits (at most [`GENEROUS`]) until `condition` holds, yielding between
/// checks; panics with `what` otherwise.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let limit = deadline(GENEROUS);
    while !condition() {
        assert!(Instant::now() < limit, "never happened: {what}");
        std::thread::yield_now();
    }
}

/// Says why a pid-reuse test does nothing here and returns `true` when
/// this process cannot force pids (see [`can_force_pids`]); CI runs as
/// root, where it returns `false` and the test runs.
pub fn skip_unless_pids_can_be_forced() -> bool {
    if can_force_pids() {
        return false;
    }
    eprintln!("skipped: forcing a pid needs root and /proc/sys/kernel/ns_last_pid");
    true
}

/// Runs every scenario against every crash point of a module's list
/// (`run(scenario, point)` returns whether the point was reached), and
/// fails the test if some point is reached by no scenario: a point a
/// suite never hits is a window it never tests.
pub fn every_crash_point<S: std::fmt::Debug + Copy>(
    points: &[&'static str],
    scenarios: &[S],
    action: impl std::fmt::Debug,
    mut run: impl FnMut(S, &'static str) -> bool,
) {
    let mut unreached = Vec::new();
    for &point in points {
        let hits: Vec<S> = scenarios
            .iter()
            .copied()
            .filter(|&scenario| run(scenario, point))
            .collect();
        eprintln!("{point:?} ({action:?}): hit in {hits:?}");
        if hits.is_empty() {
            unreached.push(point);
        }
    }
    assert!(
        unreached.is_empty(),
        "crash points no scenario reaches: {unreached:?}"
    );
}

/// Runs this process out of file descriptors: lowers its limit to 64, then
/// opens `/dev/null` until no descriptor is left. The files keep the table
/// full while they live; drop them to give the descriptors back. Only in a
/// child process made for it (the limit stays lowered).
pub fn exhaust_descriptors() -> Vec<std::fs::File> {
    sys::limit_descriptors(64);
    let mut files = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        files.push(f);
    }
    files
}
