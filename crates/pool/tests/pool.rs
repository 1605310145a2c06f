//! `Pool` between real processes: results exact and ordered, a worker
//! SIGKILLed mid-task costs that task only, panics, timeouts,
//! `max_tasks_per_child`, an owner SIGKILLed, `apply_async`, `terminate`.
//!
//! Every task function reaches shared memory made before its pool (workers
//! inherit it), each test its own statics: tests of this file run in
//! parallel threads of one process.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pool::{Pool, TaskError};
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise, wait_for, wait_until, within, GENEROUS};

mod common;
use common::{add_one, parks, PARK_FLAG};

#[test]
fn map_of_100_000_tasks_is_exact() {
    let pool = std::sync::Arc::new(Pool::new(2).expect("pool"));
    let p = std::sync::Arc::clone(&pool);
    let out = within(move || p.map(add_one, 0..100_000u64));
    assert_eq!(out.len(), 100_000);
    for (i, r) in out.into_iter().enumerate() {
        assert_eq!(r, Ok(i as u64 + 1), "task {i}");
    }
    // One task per message, too: many more outcomes than the manager takes
    // from its inbox in a row.
    let p = std::sync::Arc::clone(&pool);
    let out = within(move || p.map_chunked(add_one, 0..20_000u64, 1));
    assert!(out
        .into_iter()
        .enumerate()
        .all(|(i, r)| r == Ok(i as u64 + 1)));
    pool.close();
    pool.join().expect("join");
}

/// Work that takes longer for some inputs than others, so outcomes come
/// back out of order.
fn uneven(i: u64) -> u64 {
    let rounds = (i * 7919) % 13 * 2_000;
    let mut x = i;
    for _ in 0..rounds {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    std::hint::black_box(x);
    i
}

#[test]
fn imap_yields_in_order_and_counts_progress() {
    let pool = Pool::new(2).expect("pool");
    let mut it = pool.imap(uneven, 0..600u64);
    assert_eq!(it.len(), 600);
    let mut next = 0;
    while let Some(r) = it.next() {
        assert_eq!(r, Ok(next));
        next += 1;
        assert!(it.done() >= next as usize);
        assert_eq!(it.done() + it.pending(), 600);
    }
    assert_eq!(next, 600);
    assert_eq!(it.pending(), 0);

    let mut seen: Vec<(usize, Result<u64, TaskError>)> = pool
        .imap_unordered_chunked(uneven, 0..600u64, 7)
        .indexed()
        .collect();
    seen.sort_by_key(|(i, _)| *i);
    assert!(seen
        .iter()
        .enumerate()
        .all(|(k, (i, r))| *i == k && *r == Ok(k as u64)));
}

fn product(a: u32, b: u32) -> u64 {
    u64::from(a) * u64::from(b)
}

#[test]
fn starmap_takes_pairs() {
    let pool = Pool::new(2).expect("pool");
    let out = pool.starmap(product, (0..300u32).map(|i| (i, i + 1)));
    assert!(out
        .into_iter()
        .enumerate()
        .all(|(i, r)| r == Ok(i as u64 * (i as u64 + 1))));
}

static KILL_FLAG: OnceLock<Shared<Futex>> = OnceLock::new();
static KILL_PID: OnceLock<Shared<AtomicU64>> = OnceLock::new();
const VICTIM: u64 = 77;

/// Doubles, except that the victim says where it runs and waits to be killed.
fn doubled_or_parked(i: u64) -> u64 {
    if i == VICTIM {
        KILL_PID
            .get()
            .expect("set")
            .store(u64::from(std::process::id()), SeqCst);
        raise(KILL_FLAG.get().expect("set"));
        park_until_killed();
    }
    i * 2
}

fn sigkill(pid: u64) {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a worker
    // of this process's pool, still running (it waits to be killed), so an
    // unreaped child of this process: its pid cannot have been reused.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill {pid}");
}

#[test]
fn a_killed_worker_costs_its_task_only() {
    KILL_FLAG.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    KILL_PID.get_or_init(|| Shared::new(AtomicU64::new(0)).expect("shm"));
    let pool = Pool::new(2).expect("pool");
    let before = pool.worker_pids();
    let results = std::thread::scope(|s| {
        // Chunks of 8: the victim's chunk neighbours (those before it ran,
        // their outcomes kept in the worker's journal; those after it never
        // started) and the chunks queued behind it complete normally.
        let mapped = s.spawn(|| pool.map_chunked(doubled_or_parked, 0..200u64, 8));
        wait_for(KILL_FLAG.get().expect("set"), 1);
        sigkill(KILL_PID.get().expect("set").load(SeqCst));
        mapped.join().expect("map")
    });
    for (i, r) in results.iter().enumerate() {
        if i as u64 == VICTIM {
            assert_eq!(
                *r,
                Err(TaskError::WorkerDied {
                    signal: Some(libc::SIGKILL),
                    exit_code: None
                })
            );
        } else {
            assert_eq!(*r, Ok(i as u64 * 2), "task {i}");
        }
    }
    let victim = KILL_PID.get().expect("set").load(SeqCst);
    wait_until("the pool has its two workers again", || {
        let pids = pool.worker_pids();
        pids.len() == 2 && pids.iter().all(|p| u64::from(p.get()) != victim)
    });
    assert_eq!(pool.workers_replaced(), 1);
    assert_ne!(pool.worker_pids(), before);
    assert_eq!(
        pool.map(add_one, 0..1000u64)
            .into_iter()
            .filter(Result::is_ok)
            .count(),
        1000
    );

    // How long from the kill to the failed task's outcome.
    let pending = pool.apply_async(doubled_or_parked, VICTIM);
    wait_for(KILL_FLAG.get().expect("set"), 2);
    let killed_at = Instant::now();
    sigkill(KILL_PID.get().expect("set").load(SeqCst));
    let outcome = pending.get();
    let latency = killed_at.elapsed();
    eprintln!("kill to Err(WorkerDied): {latency:?}");
    assert!(matches!(outcome, Err(TaskError::WorkerDied { .. })));
    assert!(latency < Duration::from_secs(1), "{latency:?}");
}

static DIE_COUNT: OnceLock<Shared<AtomicU64>> = OnceLock::new();

/// Kills its own worker the first time it runs, returns `x` after.
fn dies_once(x: u64) -> u64 {
    if DIE_COUNT.get().expect("set").fetch_add(1, SeqCst) == 0 {
        // SAFETY: kill(2) on this very process; no memory is involved.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x
}

#[test]
fn retries_run_a_died_task_again() {
    DIE_COUNT.get_or_init(|| Shared::new(AtomicU64::new(0)).expect("shm"));
    let retrying = Pool::builder().workers(2).retries(1).build().expect("pool");
    assert_eq!(
        retrying.map_chunked(dies_once, 0..20u64, 3),
        (0..20).map(Ok).collect::<Vec<_>>()
    );
    assert_eq!(DIE_COUNT.get().expect("set").load(SeqCst), 21);
    assert_eq!(retrying.workers_replaced(), 1);

    DIE_COUNT.get().expect("set").store(0, SeqCst);
    let plain = Pool::new(1).expect("pool");
    assert_eq!(
        plain.apply(dies_once, 5),
        Err(TaskError::WorkerDied {
            signal: Some(libc::SIGKILL),
            exit_code: None
        })
    );
    assert_eq!(plain.apply(dies_once, 6), Ok(6));
}

fn odd_one_panics(x: u32) -> u32 {
    assert!(x != 3, "three is right out");
    x
}

#[test]
fn a_panicking_task_returns_its_message_and_the_worker_goes_on() {
    let pool = Pool::new(2).expect("pool");
    let pids = pool.worker_pids();
    let out = pool.map_chunked(odd_one_panics, 0..10, 2);
    for (i, r) in out.into_iter().enumerate() {
        if i == 3 {
            assert_eq!(r, Err(TaskError::Panicked("three is right out".into())));
        } else {
            assert_eq!(r, Ok(i as u32));
        }
    }
    assert_eq!(pool.workers_replaced(), 0);
    assert_eq!(pool.worker_pids(), pids);
}

fn one_hangs(x: u64) -> u64 {
    if x == 1 {
        park_until_killed();
    }
    x
}

#[test]
fn a_task_past_the_timeout_has_its_worker_killed() {
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("pool");
    let started = Instant::now();
    let out = pool.map_chunked(one_hangs, 0..10u64, 1);
    let took = started.elapsed();
    for (i, r) in out.into_iter().enumerate() {
        if i == 1 {
            assert_eq!(r, Err(TaskError::TimedOut));
        } else {
            assert_eq!(r, Ok(i as u64));
        }
    }
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(pool.workers_replaced(), 1);
    wait_until("a replacement worker", || pool.worker_pids().len() == 2);
}

fn worker_pid(_: u32) -> u32 {
    std::process::id()
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let pool = Pool::builder()
        .workers(1)
        .max_tasks_per_child(2)
        .build()
        .expect("pool");
    let pids: Vec<u32> = (0..6)
        .map(|i| pool.apply(worker_pid, i).expect("pid"))
        .collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_eq!(pids[4], pids[5]);
    assert!(
        pids[0] != pids[2] && pids[2] != pids[4] && pids[0] != pids[4],
        "{pids:?}"
    );
    assert!(pool.workers_replaced() >= 2);
}

/// Field 22 of `/proc/<pid>/stat`: when the process started (ticks after
/// boot), so a pid reused by a new process is not mistaken for the old.
fn start_time(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that was `pid`, started at `started`, is gone
/// (exited or a zombie).
fn gone(pid: u64, started: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|close| stat[close + 2..].chars().next());
    matches!(state, None | Some('Z') | Some('X')) || start_time(pid) != Some(started)
}

#[test]
fn an_owner_killed_leaves_no_worker_behind() {
    let pids = Shared::new(<[AtomicU64; 4]>::default()).expect("shm");
    let ready = Shared::new(Futex::new(0)).expect("shm");
    let owner = daemon::Process::new(|| {
        let pool = Pool::new(3).expect("pool in the owner");
        for (slot, pid) in pool.worker_pids().iter().enumerate() {
            pids[slot].store(pid.get() as u64, SeqCst);
        }
        assert_eq!(pool.apply(add_one, 1), Ok(2));
        raise(&ready);
        park_until_killed();
    })
    .start()
    .expect("owner");
    wait_for(&ready, 1);
    kill_owner_then_see_workers_gone(owner, &pids[..3]);
}

/// SIGKILLs `owner` (a pool's owner, whose workers' pids are in `pids`) and
/// waits until every one of those workers is gone.
fn kill_owner_then_see_workers_gone(owner: daemon::Child<()>, pids: &[AtomicU64]) {
    let workers: Vec<(u64, u64)> = pids
        .iter()
        .map(|p| p.load(SeqCst))
        .map(|pid| (pid, start_time(pid).expect("a running worker")))
        .collect();
    owner.kill().expect("kill the owner");
    assert!(matches!(
        owner.join(),
        Err(daemon::JoinError::Signaled { .. })
    ));
    for (pid, started) in workers {
        wait_until(&format!("worker {pid} gone"), || gone(pid, started));
    }
}

static OWNER_PARKED: OnceLock<Shared<Futex>> = OnceLock::new();

/// Says it runs (the map's caller drives by then), then waits to be killed.
fn parks_in_owner(x: u64) -> u64 {
    raise(OWNER_PARKED.get().expect("set"));
    park_until_killed();
    x
}

/// The same while the owner's `map` runs the pool's bookkeeping on its own
/// thread (chunks of one): the workers still die with the owner.
#[test]
fn an_owner_killed_while_its_map_drives_leaves_no_worker_behind() {
    let parked = OWNER_PARKED.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    let pids = Shared::new(<[AtomicU64; 2]>::default()).expect("shm");
    let owner = daemon::Process::new(|| {
        let pool = Pool::new(2).expect("pool in the owner");
        for (slot, pid) in pool.worker_pids().iter().enumerate() {
            pids[slot].store(pid.get() as u64, SeqCst);
        }
        let _ = pool.map_chunked(parks_in_owner, 0..10u64, 1);
    })
    .start()
    .expect("owner");
    wait_for(parked, 2);
    kill_owner_then_see_workers_gone(owner, &pids[..]);
}

static GATE: OnceLock<Shared<Futex>> = OnceLock::new();

fn gated(x: u32) -> u32 {
    let gate = GATE.get().expect("set");
    let limit = testkit::deadline(GENEROUS);
    while gate.load(SeqCst) == 0 && gate.wait(0, Some(limit)) {}
    x + 1
}

#[test]
fn apply_async_get_get_timeout_ready() {
    GATE.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    let pool = Pool::new(1).expect("pool");
    let pending = pool.apply_async(gated, 41);
    assert!(!pending.ready());
    assert_eq!(pending.get_timeout(Duration::from_millis(20)), None);
    let gate = GATE.get().expect("set");
    gate.store(1, SeqCst);
    gate.wake_all();
    assert_eq!(pending.get_timeout(GENEROUS), Some(Ok(42)));
    assert!(pending.ready());
    assert_eq!(pending.get(), Ok(42));
}

#[test]
fn terminate_kills_the_workers_and_fails_what_is_left() {
    PARK_FLAG.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    let pool = Pool::new(2).expect("pool");
    let workers: Vec<(u64, u64)> = pool
        .worker_pids()
        .iter()
        .map(|p| (p.get() as u64, start_time(p.get() as u64).expect("running")))
        .collect();
    let running = pool.apply_async(parks, 1);
    let queued = pool.imap(parks, [2, 3, 4, 5, 6, 7, 8]);
    wait_for(PARK_FLAG.get().expect("set"), 1);
    pool.terminate();
    assert_eq!(running.get(), Err(TaskError::Terminated));
    assert!(queued.into_iter().all(|r| r == Err(TaskError::Terminated)));
    assert!(pool.worker_pids().is_empty());
    for (pid, started) in workers {
        assert!(gone(pid, started), "worker {pid} still runs");
    }
    assert_eq!(pool.apply(add_one, 1), Err(TaskError::PoolClosed));
}

#[test]
fn close_lets_submitted_work_finish_then_join_waits_for_the_workers() {
    let pool = Pool::new(2).expect("pool");
    let pending: Vec<_> = (0..50u64).map(|i| pool.apply_async(add_one, i)).collect();
    let workers: Vec<(u64, u64)> = pool
        .worker_pids()
        .iter()
        .map(|p| (p.get() as u64, start_time(p.get() as u64).expect("running")))
        .collect();
    pool.close();
    assert_eq!(pool.apply(add_one, 1), Err(TaskError::PoolClosed));
    pool.join().expect("join");
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(p.get(), Ok(i as u64 + 1));
    }
    assert!(pool.worker_pids().is_empty());
    for (pid, started) in workers {
        assert!(gone(pid, started), "worker {pid} still runs");
    }
}

/// A job submitted just before `terminate` (both seen by the manager at
/// one look) was left in the submissions, its reply channel open: its
/// iterator waited for ever.
#[test]
fn terminate_right_after_a_submission_fails_it() {
    for round in 0..100 {
        let pool = Pool::new(1).expect("pool");
        let outcomes = pool.imap(add_one, 0..4u64);
        pool.terminate();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(outcomes.collect::<Vec<_>>());
        });
        let outcomes = rx
            .recv_timeout(GENEROUS)
            .unwrap_or_else(|_| panic!("round {round}: the job's outcomes never came"));
        assert!(outcomes
            .iter()
            .enumerate()
            .all(|(i, r)| *r == Ok(i as u64 + 1) || *r == Err(TaskError::Terminated)));
    }
}

static INITIALIZED: AtomicU64 = AtomicU64::new(0);

/// Marks this process's copy of `INITIALIZED` (each worker has its own).
fn initialize() {
    INITIALIZED.store(u64::from(std::process::id()), SeqCst);
}

fn initialized_by(_: u32) -> (u32, u64) {
    (std::process::id(), INITIALIZED.load(SeqCst))
}

#[test]
fn every_worker_runs_the_initializer_replacements_too() {
    let pool = Pool::builder()
        .workers(2)
        .initializer(initialize)
        .max_tasks_per_child(1)
        .build()
        .expect("pool");
    for (pid, initialized) in pool
        .map_chunked(initialized_by, 0..6, 1)
        .into_iter()
        .map(Result::unwrap)
    {
        assert_eq!(
            u64::from(pid),
            initialized,
            "worker {pid} ran no initializer"
        );
    }
    assert!(pool.workers_replaced() >= 4);
    assert_eq!(INITIALIZED.load(SeqCst), 0, "the owner ran it");
}

/// A little work, so that kills land inside tasks as well as between them
/// and inside the queues' put and get.
fn add_one_slowly(x: u64) -> u64 {
    let mut y = x;
    for _ in 0..2_000 {
        y = std::hint::black_box(y.rotate_left(7) ^ 0x9E37);
    }
    std::hint::black_box(y);
    x + 1
}

/// SIGKILLs the worker `pid` of `pool` if it is still the pool's: a pidfd
/// opened while the pool still lists the pid names that worker (the pool
/// drops a pid from its list before collecting the process, so the pid
/// could not have been reused yet).
fn kill_worker(pool: &Pool, pid: shm::pid::Pid) -> bool {
    let Some(raw) = rustix::process::Pid::from_raw(pid.get() as i32) else {
        return false;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) else {
        return false;
    };
    if !pool.worker_pids().contains(&pid) {
        return false;
    }
    rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL).is_ok()
}

#[test]
fn workers_killed_at_random_instants_cost_at_most_one_task_each() {
    let pool = Pool::new(2).expect("pool");
    let mut rng = testkit::Rng::new(std::process::id().into());
    for chunksize in [1, 5] {
        let (results, kills) = std::thread::scope(|s| {
            let mapped = s.spawn(|| pool.map_chunked(add_one_slowly, 0..3_000u64, chunksize));
            let mut kills = 0;
            while !mapped.is_finished() && kills < 20 {
                let pids = pool.worker_pids();
                if let Some(&pid) = pids.get(rng.below(2) as usize) {
                    if kill_worker(&pool, pid) {
                        kills += 1;
                    }
                }
                // Chaos timing, not synchronisation: the next kill comes
                // at a random instant.
                std::thread::sleep(Duration::from_micros(200 + rng.below(2_000)));
            }
            (mapped.join().expect("map"), kills)
        });
        let mut died = 0;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(v, i as u64 + 1),
                Err(TaskError::WorkerDied { .. }) => died += 1,
                Err(e) => panic!("task {i}: {e}"),
            }
        }
        eprintln!("chunksize {chunksize}: {kills} kills, {died} tasks died");
        // A kill costs the task running, at most: those of its chunk that
        // finished are in its journal.
        assert!(died <= kills, "{died} tasks died for {kills} kills");
        wait_until("two workers again", || pool.worker_pids().len() == 2);
    }
    assert!(pool
        .map(add_one, 0..1_000u64)
        .into_iter()
        .enumerate()
        .all(|(i, r)| r == Ok(i as u64 + 1)));
}

fn hundred_bytes(x: u32) -> Vec<u32> {
    vec![x; 25]
}

fn as_long_as(n: u32) -> Vec<u8> {
    vec![7; n as usize]
}

#[test]
fn large_outcomes_are_split_across_messages_and_too_large_ones_refused() {
    let pool = Pool::builder()
        .workers(2)
        .max_message_bytes(1024)
        .build()
        .expect("pool");
    // Chunks of 50 outcomes of 25 numbers each: several messages a chunk.
    let out = pool.map_chunked(hundred_bytes, 0..500u32, 50);
    assert!(out
        .into_iter()
        .enumerate()
        .all(|(i, r)| r == Ok(vec![i as u32; 25])));
    assert_eq!(pool.apply(as_long_as, 100), Ok(vec![7; 100]));
    assert!(matches!(
        pool.apply(as_long_as, 5_000),
        Err(TaskError::TooLarge { .. })
    ));
    assert!(matches!(
        pool.apply(as_long_as_vec, vec![1; 5_000]),
        Err(TaskError::TooLarge { .. })
    ));
    assert_eq!(pool.workers_replaced(), 0);
}

fn as_long_as_vec(v: Vec<u8>) -> usize {
    v.len()
}

#[test]
fn pools_and_their_handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool>();
    send_sync::<pool::AsyncResult<u64>>();
    send::<pool::Imap<u64>>();
    let pool = Pool::new(2).expect("pool");
    let sums: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    pool.map(add_one, t * 100..(t + 1) * 100)
                        .into_iter()
                        .map(Result::unwrap)
                        .sum()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (t, sum) in sums.into_iter().enumerate() {
        let t = t as u64;
        assert_eq!(sum, (t * 100 + 1..=(t + 1) * 100).sum::<u64>());
    }
}

/// The manager looked at the deadlines before dispatching, so a task given
/// to an idle pool was first checked only after the manager's longest
/// sleep (100 ms), whatever the timeout.
#[test]
fn a_short_timeout_is_kept_on_an_idle_pool() {
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_millis(20))
        .build()
        .expect("pool");
    let started = Instant::now();
    assert_eq!(pool.apply(one_hangs, 1), Err(TaskError::TimedOut));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(20), "{took:?}");
    assert!(took < Duration::from_millis(80), "{took:?}");
}

static SLOW_INIT: OnceLock<Shared<Futex>> = OnceLock::new();

/// An initializer longer than the pool's timeout: waits until the test
/// lets it go.
fn slow_initializer() {
    let gate = SLOW_INIT.get().expect("set");
    let limit = testkit::deadline(GENEROUS);
    while gate.load(SeqCst) == 0 && gate.wait(0, Some(limit)) {}
}

#[test]
fn an_initializer_longer_than_the_timeout_is_not_killed() {
    SLOW_INIT.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    let pool = Pool::builder()
        .workers(1)
        .initializer(slow_initializer)
        .timeout(Duration::from_millis(20))
        .build()
        .expect("pool");
    let pending = pool.apply_async(add_one, 1);
    // Several timeouts pass while the initializer waits.
    assert_eq!(pending.get_timeout(Duration::from_millis(200)), None);
    let gate = SLOW_INIT.get().expect("set");
    gate.store(1, SeqCst);
    gate.wake_all();
    assert_eq!(pending.get(), Ok(2));
    assert_eq!(pool.workers_replaced(), 0);
}

/// A child forked from the owner has a copy of the pool's handle, but no
/// manager thread and no workers of its own: a task submitted there would
/// wait for ever (it did). It fails at once with `NotOwner`; `terminate`
/// does nothing there and `join` says why; the owner's pool goes on.
#[test]
fn a_forked_child_using_its_copy_of_the_pool_gets_not_owner() {
    let pool = Pool::new(1).expect("pool");
    let owner = shm::pid::current().get();
    let child = daemon::Process::new(|| {
        let mapped: Vec<String> = pool
            .map(add_one, 0..3u64)
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        let applied = format!("{:?}", pool.apply(add_one, 1));
        pool.terminate();
        let joined = format!("{:?}", pool.join());
        (mapped, applied, joined)
    })
    .start()
    .expect("fork");
    let (mapped, applied, joined) = within(move || child.join()).expect("the child ended");
    let not_owner = format!("{:?}", Err::<u64, _>(TaskError::NotOwner { owner }));
    assert_eq!(mapped, vec![not_owner.clone(); 3]);
    assert_eq!(applied, not_owner);
    assert_eq!(
        joined,
        format!("{:?}", Err::<(), _>(pool::PoolError::NotOwner { owner }))
    );
    assert_eq!(
        pool.map(add_one, 0..10u64),
        (1..=10).map(Ok).collect::<Vec<_>>()
    );
}

/// The helper of `a_pool_never_warns_of_a_multithreaded_fork`: a pool in a
/// fresh process (its manager and forker threads make it multithreaded).
#[test]
fn helper_pool_in_a_fresh_process() {
    if testkit::helper_args().is_none() {
        return;
    }
    let pool = Pool::new(2).expect("pool");
    assert_eq!(pool.map(add_one, 0..10u64)[9], Ok(10));
    pool.close();
    pool.join().expect("join");
}

/// The pool forks its workers from its forker thread on purpose: it opts
/// out of `daemon::Process::start`'s multithreaded-fork warning.
#[test]
fn a_pool_never_warns_of_a_multithreaded_fork() {
    let out = testkit::run_helper("helper_pool_in_a_fresh_process", &["go"], GENEROUS * 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(daemon::MULTITHREADED_WARNING), "{stderr}");
}
