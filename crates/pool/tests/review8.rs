//! Review 8 of `Pool`: a hostile look at the wire format of issue #14
//! (`wire::Items`, results encoded in place, messages split in the worker,
//! `Batch`, `Imap::into_vec`). Defects are `#[ignore = "defect: ..."]`
//! tests that fail now; attacks withstood are plain tests, kept to guard
//! the format.
//!
//! Every task function reaches shared memory made before its pool (workers
//! inherit it), each test its own statics: tests of this file run in
//! parallel threads of one process.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;

use pool::{Pool, TaskError};
use serde::de::DeserializeOwned;
use serde::ser::{Error as _, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise, sigkill_from_sibling, wait_for, wait_until, within};

/// The pool's smallest `max_message_bytes` (what 0 is raised to).
const SMALLEST: usize = 138;
/// What ends a panic message cut to fit an item.
const CUT_MARK: &str = "… (cut)";
/// The largest argument or result of a pool whose messages hold `budget`.
fn max_item(budget: usize) -> usize {
    budget.max(SMALLEST) - 64 - 10
}

fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::to_allocvec(value).expect("encode").len()
}

/// A value of exactly `target` bytes encoded: `n` bytes and a pad of `m`
/// (0 or 1) bytes, as two byte vectors.
fn spec_for(target: usize) -> (u32, u32) {
    for n in target.saturating_sub(8)..=target {
        for m in 0..=1 {
            if encoded_len(&shaped((n as u32, m))) == target {
                return (n as u32, m);
            }
        }
    }
    panic!("no shape of {target} bytes");
}

fn shaped((n, m): (u32, u32)) -> (Vec<u8>, Vec<u8>) {
    (vec![1; n as usize], vec![2; m as usize])
}

fn measured(value: (Vec<u8>, Vec<u8>)) -> u64 {
    (value.0.len() * 1000 + value.1.len()) as u64
}

const BUDGETS: [usize; 8] = [0, SMALLEST, SMALLEST + 1, 200, 1000, 4096, 16_500, 65_536];

/// Results of exactly the limit and one or two bytes either side, for
/// several budgets (the smallest too), through `map` (several chunk sizes),
/// `imap`, `imap_unordered` and `apply`: the ones at the limit come back,
/// the larger ones are `TooLarge` with their exact size, each at its index.
#[test]
fn results_at_and_around_the_limit_for_several_budgets() {
    within(|| {
        for budget in BUDGETS {
            let pool = Pool::builder()
                .workers(2)
                .max_message_bytes(budget)
                .build()
                .expect("pool");
            let max = max_item(budget);
            let targets: Vec<usize> = (max - 2..=max + 2).chain([3, max, max + 1]).collect();
            let specs: Vec<(u32, u32)> = targets.iter().map(|&t| spec_for(t)).collect();
            let expect = |i: usize| {
                if targets[i] <= max {
                    Ok(shaped(specs[i]))
                } else {
                    Err(TaskError::TooLarge {
                        size: targets[i],
                        max,
                    })
                }
            };
            for chunksize in [1, 2, 3, 8] {
                let out = pool.map_chunked(shaped, specs.clone(), chunksize);
                for (i, r) in out.into_iter().enumerate() {
                    assert_eq!(r, expect(i), "budget {budget}, chunks of {chunksize}, {i}");
                }
            }
            for (i, r) in pool.imap_chunked(shaped, specs.clone(), 3).enumerate() {
                assert_eq!(r, expect(i), "budget {budget}, imap, {i}");
            }
            let mut seen = vec![0; specs.len()];
            for (i, r) in pool
                .imap_unordered_chunked(shaped, specs.clone(), 2)
                .indexed()
            {
                seen[i] += 1;
                assert_eq!(r, expect(i), "budget {budget}, imap_unordered, {i}");
            }
            assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
            for (i, &spec) in specs.iter().enumerate() {
                assert_eq!(pool.apply(shaped, spec), expect(i), "budget {budget}");
            }
            assert_eq!(pool.workers_replaced(), 0, "budget {budget}");
        }
    });
}

/// Arguments of exactly the limit and around it, for several budgets,
/// through the handles that file refusals one by one (`imap`,
/// `imap_unordered`, `apply_async`, also after a `ready()`): accepted up
/// to the limit, `TooLarge` with their exact size past it.
#[test]
fn arguments_at_and_around_the_limit_for_several_budgets() {
    within(|| {
        for budget in BUDGETS {
            let pool = Pool::builder()
                .workers(2)
                .max_message_bytes(budget)
                .build()
                .expect("pool");
            let max = max_item(budget);
            let targets: Vec<usize> = (max - 2..=max + 2).chain([3, max + 1, max]).collect();
            let args: Vec<_> = targets.iter().map(|&t| shaped(spec_for(t))).collect();
            let expect = |i: usize| {
                if targets[i] <= max {
                    Ok(measured(args[i].clone()))
                } else {
                    Err(TaskError::TooLarge {
                        size: targets[i],
                        max,
                    })
                }
            };
            for chunksize in [1, 2, 5] {
                for (i, r) in pool
                    .imap_chunked(measured, args.clone(), chunksize)
                    .enumerate()
                {
                    assert_eq!(r, expect(i), "budget {budget}, imap/{chunksize}, {i}");
                }
                let mut seen = vec![0; args.len()];
                for (i, r) in pool
                    .imap_unordered_chunked(measured, args.clone(), chunksize)
                    .indexed()
                {
                    seen[i] += 1;
                    assert_eq!(r, expect(i), "budget {budget}, unordered/{chunksize}, {i}");
                }
                assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
            }
            for (i, arg) in args.iter().enumerate() {
                let pending = pool.apply_async(measured, arg.clone());
                let _ = pending.ready();
                assert_eq!(pending.get(), expect(i), "budget {budget}, apply_async {i}");
                assert_eq!(pending.get(), expect(i), "budget {budget}, second get {i}");
            }
        }
    });
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

/// `map` over inputs of which one in the middle is refused at submission
/// (too large): every outcome must sit at its input's index.
#[test]

fn map_with_a_refused_input_between_accepted_ones_keeps_every_index() {
    let out = within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(1000)
            .build()
            .expect("pool");
        pool.map(len_of, vec![vec![0; 1], vec![0; 5_000], vec![0; 3]])
    });
    assert_eq!(
        out,
        [
            Ok(1),
            Err(TaskError::TooLarge {
                size: 5_002,
                max: 926
            }),
            Ok(3)
        ]
    );
}

/// Serialized as a `u32`, except that 13 fails to encode (on the owner's
/// side: an argument the pool must refuse, alone).
#[derive(Debug, Clone, PartialEq)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(S::Error::custom("13 is refused"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Picky, D::Error> {
        u32::deserialize(d).map(Picky)
    }
}

fn picky_twice(p: Picky) -> u32 {
    2 * p.0
}

fn picky_sum(a: Picky, b: u32) -> u32 {
    a.0 + b
}

/// The same with a mix of refusals (an argument that fails to encode, one
/// too large) among accepted ones, through `map` and `starmap`, several
/// chunk sizes.
#[test]

fn map_and_starmap_with_mixed_refusals_keep_every_index() {
    let (mapped, starmapped) = within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(SMALLEST)
            .build()
            .expect("pool");
        let mapped: Vec<_> = [1, 2, 3]
            .into_iter()
            .map(|c| pool.map_chunked(picky_twice, (10..20).map(Picky), c))
            .collect();
        let starmapped: Vec<_> = [1, 4]
            .into_iter()
            .map(|c| {
                pool.starmap_chunked(
                    picky_sum,
                    (10..20).map(|i| (Picky(i), if i == 16 { u32::MAX } else { i })),
                    c,
                )
            })
            .collect();
        (mapped, starmapped)
    });
    for out in mapped {
        for (k, r) in out.into_iter().enumerate() {
            let i = 10 + k as u32;
            if i == 13 {
                assert!(matches!(r, Err(TaskError::Serde(_))), "input {i}: {r:?}");
            } else {
                assert_eq!(r, Ok(2 * i), "input {i}");
            }
        }
    }
    for out in starmapped {
        for (k, r) in out.into_iter().enumerate() {
            let i = 10 + k as u32;
            match i {
                13 => assert!(matches!(r, Err(TaskError::Serde(_))), "input {i}: {r:?}"),
                // u32::MAX + 16 overflows: a panic in the worker (debug).
                16 => assert!(matches!(r, Err(TaskError::Panicked(_))), "input {i}: {r:?}"),
                _ => assert_eq!(r, Ok(2 * i), "input {i}"),
            }
        }
    }
}

/// The same refusals through `imap` and `apply_async` (which file them
/// one by one): withstood.
#[test]
fn imap_and_apply_async_with_refusals_keep_every_index() {
    within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(1000)
            .build()
            .expect("pool");
        let args = || (0..12u32).map(|i| vec![0u8; if i % 3 == 1 { 5_000 } else { i as usize }]);
        let expect = |i: usize| {
            if i % 3 == 1 {
                Err(TaskError::TooLarge {
                    size: 5_002,
                    max: 926,
                })
            } else {
                Ok(i)
            }
        };
        for c in [1, 2, 5] {
            for (i, r) in pool.imap_chunked(len_of, args(), c).enumerate() {
                assert_eq!(r, expect(i), "imap/{c} {i}");
            }
        }
        let mut unordered: Vec<_> = pool
            .imap_unordered_chunked(len_of, args(), 2)
            .indexed()
            .collect();
        unordered.sort_by_key(|(i, _)| *i);
        assert!(unordered
            .into_iter()
            .enumerate()
            .all(|(k, (i, r))| k == i && r == expect(i)));
        for (i, arg) in args().enumerate() {
            assert_eq!(
                pool.apply_async(len_of, arg).get(),
                expect(i),
                "apply_async {i}"
            );
        }
        assert!(pool.apply_async(picky_twice, Picky(13)).ready());
        assert!(matches!(
            pool.apply_async(picky_twice, Picky(13)).get(),
            Err(TaskError::Serde(_))
        ));
        // A refused `map` in full (nothing submitted at all).
        let out = pool.map(len_of, vec![vec![0u8; 5_000]; 3]);
        assert!(out
            .iter()
            .all(|r| matches!(r, Err(TaskError::TooLarge { .. }))));
    });
}

fn unit(x: ()) {
    x
}

fn echo_string(s: String) -> String {
    s
}

fn nested(n: u32) -> Vec<Vec<String>> {
    (0..n % 4)
        .map(|i| (0..i).map(|j| "é".repeat(j as usize)).collect())
        .collect()
}

fn nested_expected(n: u32) -> Vec<Vec<String>> {
    nested(n)
}

fn check<A, R>(pool: &Pool, f: fn(A) -> R, inputs: Vec<A>, expected: &[R], what: &str)
where
    A: Serialize + DeserializeOwned + Clone,
    R: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for c in [1, 3, 7, 1000] {
        let out = pool.map_chunked(f, inputs.clone(), c);
        assert_eq!(out.len(), expected.len());
        for (i, r) in out.into_iter().enumerate() {
            assert_eq!(r.as_ref(), Ok(&expected[i]), "{what}: map/{c} {i}");
        }
        let mut seen = vec![0; expected.len()];
        for (i, r) in pool.imap_unordered_chunked(f, inputs.clone(), c).indexed() {
            seen[i] += 1;
            assert_eq!(r.as_ref(), Ok(&expected[i]), "{what}: unordered/{c} {i}");
        }
        assert!(seen.iter().all(|&n| n == 1), "{what}: {seen:?}");
    }
}

/// Zero-sized arguments and results (`()`: empty items), strings (empty
/// ones too, multi-byte), nested vectors, at the smallest budget (many
/// messages a chunk) and the default.
#[test]
fn zero_sized_strings_and_nested_vectors_come_back_exact() {
    within(|| {
        for budget in [SMALLEST, 0, 65_536] {
            let pool = Pool::builder()
                .workers(2)
                .max_message_bytes(budget)
                .build()
                .expect("pool");
            check(&pool, unit, vec![(); 300], &[(); 300], "unit");
            let strings: Vec<String> = (0..200).map(|i| "ü".repeat(i % 7)).collect();
            check(&pool, echo_string, strings.clone(), &strings, "strings");
            let nests: Vec<_> = (0..100).map(nested_expected).collect();
            check(&pool, nested, (0..100).collect(), &nests, "nested");
            assert_eq!(pool.workers_replaced(), 0);
        }
    });
}

static SPLIT_FLAG: OnceLock<Shared<Futex>> = OnceLock::new();
static SPLIT_PID: OnceLock<Shared<AtomicU64>> = OnceLock::new();
static SPLIT_RUNS: OnceLock<Shared<AtomicU64>> = OnceLock::new();
/// In chunks of 20, the 14th item of the second chunk: its chunk has sent
/// three messages of outcomes (four 200-byte results each) when it stops.
const SPLIT_VICTIM: u32 = 33;

/// 200 bytes, except that the victim's first run says where it runs and
/// waits to be killed.
fn big_or_parked(i: u32) -> Vec<u8> {
    if i == SPLIT_VICTIM && SPLIT_RUNS.get().expect("set").fetch_add(1, SeqCst) == 0 {
        SPLIT_PID
            .get()
            .expect("set")
            .store(u64::from(std::process::id()), SeqCst);
        raise(SPLIT_FLAG.get().expect("set"));
        park_until_killed();
    }
    vec![i as u8; 200]
}

/// SIGKILLs the worker whose pid is in `pid` (from a sibling process), once
/// `flag` has been raised `times` times.
fn kill_parked(pool: &Pool, flag: &Futex, times: u32, pid: &AtomicU64) {
    wait_for(flag, times);
    let pid = pid.load(SeqCst);
    let worker = pool
        .worker_pids()
        .into_iter()
        .find(|p| u64::from(p.get()) == pid)
        .expect("the parked worker is the pool's");
    sigkill_from_sibling(worker).join().expect("killer");
}

/// A worker SIGKILLed in the middle of a chunk whose first outcomes went
/// in three messages: each index is delivered exactly once (`map`,
/// `imap_unordered`), the victim `WorkerDied` without retries and its
/// value with one.
#[test]
fn a_worker_killed_mid_chunk_after_split_messages_delivers_each_index_once() {
    SPLIT_FLAG.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    SPLIT_PID.get_or_init(|| Shared::new(AtomicU64::new(0)).expect("shm"));
    SPLIT_RUNS.get_or_init(|| Shared::new(AtomicU64::new(0)).expect("shm"));
    let flag = SPLIT_FLAG.get().expect("set");
    let pid = SPLIT_PID.get().expect("set");
    let runs = SPLIT_RUNS.get().expect("set");
    let mut kills = 0;
    for retries in [0, 1] {
        let pool = Pool::builder()
            .workers(2)
            .retries(retries)
            .max_message_bytes(1024)
            .build()
            .expect("pool");
        let victim = |r: &Result<Vec<u8>, TaskError>| {
            if retries == 0 {
                matches!(
                    r,
                    Err(TaskError::WorkerDied {
                        signal: Some(9),
                        ..
                    })
                )
            } else {
                *r == Ok(vec![SPLIT_VICTIM as u8; 200])
            }
        };
        runs.store(0, SeqCst);
        let out = std::thread::scope(|s| {
            let mapped = s.spawn(|| pool.map_chunked(big_or_parked, 0..100u32, 20));
            kills += 1;
            kill_parked(&pool, flag, kills, pid);
            mapped.join().expect("map")
        });
        for (i, r) in out.iter().enumerate() {
            if i as u32 == SPLIT_VICTIM {
                assert!(victim(r), "retries {retries}: victim {r:?}");
            } else {
                assert_eq!(*r, Ok(vec![i as u8; 200]), "retries {retries}: {i}");
            }
        }
        runs.store(0, SeqCst);
        let got = std::thread::scope(|s| {
            let got = s.spawn(|| {
                pool.imap_unordered_chunked(big_or_parked, 0..100u32, 20)
                    .indexed()
                    .collect::<Vec<_>>()
            });
            kills += 1;
            kill_parked(&pool, flag, kills, pid);
            got.join().expect("imap")
        });
        let mut seen = vec![0; 100];
        for (i, r) in got {
            seen[i] += 1;
            if i as u32 == SPLIT_VICTIM {
                assert!(victim(&r), "retries {retries}: victim {r:?}");
            } else {
                assert_eq!(r, Ok(vec![i as u8; 200]), "retries {retries}: {i}");
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "retries {retries}: {seen:?}");
        wait_until("both kills replaced", || pool.workers_replaced() == 2);
    }
}

/// Serialized as a sequence of its bytes, except that mode 1 panics and
/// mode 2 fails half-way through (a partial encoding left behind); read
/// back as mode 0.
#[derive(Debug, Clone, PartialEq)]
struct Bomb(Vec<u8>, u8);

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (k, b) in self.0.iter().enumerate() {
            if k == self.0.len() / 2 {
                match self.1 {
                    1 => panic!("bomb after {k} bytes"),
                    2 => return Err(S::Error::custom("fizzle")),
                    _ => {}
                }
            }
            seq.serialize_element(b)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Bomb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bomb, D::Error> {
        Vec::<u8>::deserialize(d).map(|v| Bomb(v, 0))
    }
}

/// 150 bytes; every 7th panics while encoded, every 11th fails.
fn bomb(i: u32) -> Bomb {
    let mode = if i % 7 == 3 {
        1
    } else if i % 11 == 5 {
        2
    } else {
        0
    };
    Bomb(vec![i as u8; 150], mode)
}

/// Results whose encoding panics or fails half-way, in chunks whose
/// outcomes are split across messages: the partial item is taken back out,
/// the failure sits at its index, every neighbour is exact.
#[test]
fn a_result_panicking_or_failing_half_encoded_leaves_no_partial_item() {
    let (out, replaced) = within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(600)
            .build()
            .expect("pool");
        let out: Vec<_> = [1, 4, 25]
            .into_iter()
            .map(|c| pool.map_chunked(bomb, 0..100u32, c))
            .collect();
        (out, pool.workers_replaced())
    });
    for out in out {
        for (i, r) in out.into_iter().enumerate() {
            match (i % 7, i % 11) {
                (3, _) => assert_eq!(r, Err(TaskError::Panicked("bomb after 75 bytes".into()))),
                (_, 5) => assert!(
                    matches!(&r, Err(TaskError::Serde(m)) if m.contains("did not encode")),
                    "{i}: {r:?}"
                ),
                _ => assert_eq!(r, Ok(Bomb(vec![i as u8; 150], 0)), "{i}"),
            }
        }
    }
    assert_eq!(replaced, 0);
}

/// `max_tasks_per_child(1)` with chunks whose outcomes take several
/// messages: every worker leaves after its chunk's last message, nothing
/// lost or doubled.
#[test]
fn max_tasks_per_child_with_split_messages() {
    let (out, replaced) = within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_tasks_per_child(1)
            .max_message_bytes(SMALLEST)
            .build()
            .expect("pool");
        let out = pool.map_chunked(shaped, (0..60u32).map(|i| (20 + i % 5, 0)), 6);
        // Ten chunks, ten workers leaving (the last ones maybe after the
        // outcomes came).
        wait_until("ten workers replaced", || pool.workers_replaced() >= 10);
        (out, pool.workers_replaced())
    });
    for (i, r) in out.into_iter().enumerate() {
        assert_eq!(r, Ok(shaped((20 + i as u32 % 5, 0))), "{i}");
    }
    assert_eq!(replaced, 10);
}

/// Panic messages longer than a message at the smallest budget, with a
/// multi-byte character across the cut: cut on a character boundary, the
/// worker goes on, the neighbours exact.
fn long_panic(i: u32) -> u32 {
    if i % 2 == 1 {
        panic!("{}", "€".repeat(200 + i as usize));
    }
    i
}

#[test]
fn long_panic_messages_at_the_smallest_budget() {
    let (out, replaced) = within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(0)
            .build()
            .expect("pool");
        let out: Vec<_> = [1, 3, 10]
            .into_iter()
            .map(|c| pool.map_chunked(long_panic, 0..30u32, c))
            .collect();
        (out, pool.workers_replaced())
    });
    for out in out {
        for (i, r) in out.into_iter().enumerate() {
            if i % 2 == 1 {
                match r {
                    Err(TaskError::Panicked(m)) => {
                        let cut = m.strip_suffix(CUT_MARK).unwrap_or(&m);
                        assert!(!cut.is_empty() && cut.chars().all(|c| c == '€'), "{i}: {m}");
                        assert!(m.len() <= max_item(SMALLEST), "{i}: {}", m.len());
                    }
                    other => panic!("{i}: {other:?}"),
                }
            } else {
                assert_eq!(r, Ok(i as u32), "{i}");
            }
        }
    }
    assert_eq!(replaced, 0);
}

static ORDER_DONE: OnceLock<Shared<Futex>> = OnceLock::new();

/// Input 0 waits until 10 others have finished (its chunk comes last);
/// each other input says it finished.
fn first_comes_last(i: u32) -> Vec<u8> {
    let done = ORDER_DONE.get().expect("set");
    if i == 0 {
        wait_for(done, 10);
    } else {
        raise(done);
    }
    vec![i as u8; 40]
}

/// Chunks arriving out of order (the first one last), outcomes split:
/// `imap` yields in order, `imap_unordered` each index once, `map` in
/// place.
#[test]
fn chunks_arriving_out_of_order_are_put_in_place() {
    ORDER_DONE.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    let done = ORDER_DONE.get().expect("set");
    within(move || {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(300)
            .build()
            .expect("pool");
        let expect = |i: usize| Ok(vec![i as u8; 40]);
        for c in [1, 3] {
            done.store(0, SeqCst);
            for (i, r) in pool.imap_chunked(first_comes_last, 0..60u32, c).enumerate() {
                assert_eq!(r, expect(i), "imap/{c} {i}");
            }
            done.store(0, SeqCst);
            let got: Vec<_> = pool
                .imap_unordered_chunked(first_comes_last, 0..60u32, c)
                .indexed()
                .collect();
            assert_ne!(got[0].0, 0, "the first input came first");
            let mut seen = vec![0; 60];
            for (i, r) in got {
                seen[i] += 1;
                assert_eq!(r, expect(i), "unordered/{c} {i}");
            }
            assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
            done.store(0, SeqCst);
            let out = pool.map_chunked(first_comes_last, 0..60u32, c);
            assert!(out.into_iter().enumerate().all(|(i, r)| r == expect(i)));
        }
    });
}

/// An `imap` dropped after one outcome, with outcomes still coming in
/// several messages, and an `AsyncResult` dropped unread: the pool goes
/// on, exact.
#[test]
fn handles_dropped_early_leave_the_pool_exact() {
    within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(SMALLEST)
            .build()
            .expect("pool");
        let mut early = pool.imap_chunked(shaped, (0..200u32).map(|i| (i % 40, 0)), 9);
        assert_eq!(early.next(), Some(Ok(shaped((0, 0)))));
        drop(early);
        drop(pool.apply_async(shaped, (30, 1)));
        let out = pool.map(shaped, (0..200u32).map(|i| (i % 40, 1)));
        assert!(out
            .into_iter()
            .enumerate()
            .all(|(i, r)| r == Ok(shaped((i as u32 % 40, 1)))));
        assert_eq!(pool.workers_replaced(), 0);
    });
}

/// Encoded as a `u8`, read back as a `bool`: 0 and 1 decode, the rest do
/// not (an argument the worker cannot read).
#[derive(Debug, Clone, PartialEq)]
struct Lopsided(u8);

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lopsided, D::Error> {
        bool::deserialize(d).map(|b| Lopsided(u8::from(b)))
    }
}

fn lopsided(x: Lopsided) -> u8 {
    x.0 + 10
}

/// Arguments the worker cannot decode, among ones it can, at the smallest
/// budget (the failure messages fill the outcome messages): each `Serde`
/// at its index, the worker goes on.
#[test]
fn arguments_the_worker_cannot_decode_at_the_smallest_budget() {
    let (out, replaced) = within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(0)
            .build()
            .expect("pool");
        let out: Vec<_> = [1, 5, 40]
            .into_iter()
            .map(|c| pool.map_chunked(lopsided, (0..40u8).map(|i| Lopsided(i % 3)), c))
            .collect();
        (out, pool.workers_replaced())
    });
    for out in out {
        for (i, r) in out.into_iter().enumerate() {
            if i % 3 == 2 {
                assert!(
                    matches!(&r, Err(TaskError::Serde(m)) if m.contains("did not decode")),
                    "{i}: {r:?}"
                );
            } else {
                assert_eq!(r, Ok(i as u8 % 3 + 10), "{i}");
            }
        }
    }
    assert_eq!(replaced, 0);
}

fn bomb_len(b: Bomb) -> usize {
    b.0.len()
}

/// An argument whose encoding panics half-way in the owner: the panic is
/// the caller's (nothing was submitted), and the pool goes on exact.
#[test]
fn an_argument_panicking_while_encoded_leaves_the_pool_usable() {
    within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_message_bytes(SMALLEST)
            .build()
            .expect("pool");
        let args = vec![
            Bomb(vec![1; 10], 0),
            Bomb(vec![2; 20], 1),
            Bomb(vec![3; 5], 0),
        ];
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map_chunked(bomb_len, args.clone(), 3)
        }));
        assert!(caught.is_err());
        let args = vec![
            Bomb(vec![1; 10], 0),
            Bomb(vec![2; 20], 2),
            Bomb(vec![3; 5], 0),
        ];
        let mut out: Vec<_> = pool.imap_chunked(bomb_len, args, 3).collect();
        assert!(matches!(out.remove(1), Err(TaskError::Serde(_))), "{out:?}");
        assert_eq!(out, [Ok(10), Ok(5)]);
        assert_eq!(
            pool.map(bomb_len, (0..50).map(|i| Bomb(vec![0; i], 0))),
            (0..50).map(Ok).collect::<Vec<_>>()
        );
        assert_eq!(pool.workers_replaced(), 0);
    });
}

static HANG_RUNS: OnceLock<Shared<AtomicU64>> = OnceLock::new();

/// 200 bytes, except that the victim's first run hangs (until killed).
fn big_or_hangs(i: u32) -> Vec<u8> {
    if i == SPLIT_VICTIM && HANG_RUNS.get().expect("set").fetch_add(1, SeqCst) == 0 {
        park_until_killed();
    }
    vec![i as u8; 200]
}

/// A task past the timeout in the middle of a chunk whose first outcomes
/// went in three messages: `TimedOut` for it, every other index once.
#[test]
fn a_timeout_mid_chunk_after_split_messages_delivers_each_index_once() {
    HANG_RUNS.get_or_init(|| Shared::new(AtomicU64::new(0)).expect("shm"));
    let runs = HANG_RUNS.get().expect("set");
    let (out, got) = within(move || {
        let pool = Pool::builder()
            .workers(2)
            .timeout(std::time::Duration::from_millis(300))
            .max_message_bytes(1024)
            .build()
            .expect("pool");
        let out = pool.map_chunked(big_or_hangs, 0..100u32, 20);
        runs.store(0, SeqCst);
        let got: Vec<_> = pool
            .imap_unordered_chunked(big_or_hangs, 0..100u32, 20)
            .indexed()
            .collect();
        (out, got)
    });
    for (i, r) in out.into_iter().enumerate() {
        if i as u32 == SPLIT_VICTIM {
            assert_eq!(r, Err(TaskError::TimedOut));
        } else {
            assert_eq!(r, Ok(vec![i as u8; 200]), "{i}");
        }
    }
    let mut seen = vec![0; 100];
    for (i, r) in got {
        seen[i] += 1;
        if i as u32 == SPLIT_VICTIM {
            assert_eq!(r, Err(TaskError::TimedOut));
        } else {
            assert_eq!(r, Ok(vec![i as u8; 200]), "{i}");
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
}

/// Review 8 found the docs untrue: they called `max_message_bytes` "the
/// largest single argument or result", but the limit is 74 bytes less and
/// a value below 138 is raised to 138. The docs now say so, and
/// `Pool::max_value_bytes` gives the limit: an argument or result of that
/// size comes back, one byte more is `TooLarge` naming it.
#[test]
fn an_argument_or_result_of_max_value_bytes_is_accepted_and_one_more_is_not() {
    let out = within(|| {
        let mut out = Vec::new();
        for (asked, max) in [
            (100, 64),
            (1000, 926),
            (pool::DEFAULT_MAX_MESSAGE_BYTES, 65_462),
        ] {
            let pool = Pool::builder()
                .workers(1)
                .max_message_bytes(asked)
                .build()
                .expect("pool");
            assert_eq!(pool.max_value_bytes(), max, "asked {asked}");
            let (fits, over) = (spec_for(max), spec_for(max + 1));
            out.push((
                max,
                pool.apply(measured, shaped(fits)),
                pool.apply(shaped, fits).map(|v| encoded_len(&v)),
                pool.apply(measured, shaped(over)),
                pool.apply(shaped, over).map(|v| encoded_len(&v)),
            ));
        }
        out
    });
    for (max, arg, result, big_arg, big_result) in out {
        assert!(arg.is_ok(), "max {max}: an argument of {max}: {arg:?}");
        assert_eq!(result, Ok(max), "max {max}: a result");
        let too_large = TaskError::TooLarge { size: max + 1, max };
        assert_eq!(
            big_arg,
            Err(too_large.clone()),
            "max {max}: an argument one more"
        );
        assert_eq!(big_result, Err(too_large), "max {max}: a result one more");
    }
}

/// A result of `n` bytes of `n as u8`, or a panic whose message is the
/// pad's length in 'p's; the pad makes the argument as large as asked.
fn fuzzed((n, panics, pad): (u32, bool, Vec<u8>)) -> Vec<u8> {
    if panics {
        panic!("{}", "p".repeat(pad.len()));
    }
    vec![n as u8; n as usize]
}

/// What `fuzzed` gives for `arg` at `budget`, by the documented rules.
fn fuzzed_expected(arg: &(u32, bool, Vec<u8>), budget: usize) -> Result<Vec<u8>, TaskError> {
    let max = max_item(budget);
    let size = encoded_len(arg);
    if size > max {
        return Err(TaskError::TooLarge { size, max });
    }
    if arg.1 {
        // A message longer than an item may be is cut to fit and marked.
        let len = arg.2.len();
        return Err(TaskError::Panicked(if len <= max {
            "p".repeat(len)
        } else {
            "p".repeat(max - CUT_MARK.len()) + CUT_MARK
        }));
    }
    let result = vec![arg.0 as u8; arg.0 as usize];
    let size = encoded_len(&result);
    if size > max {
        return Err(TaskError::TooLarge { size, max });
    }
    Ok(result)
}

/// Random budgets, chunk sizes, argument and result sizes clustered
/// around the limit, panics with long messages: `imap` (every seed) and
/// `map` (inputs all accepted, the defect above aside) give each index
/// the outcome the rules say, `imap_unordered` each index once.
#[test]
fn random_sizes_around_the_limit_come_back_where_they_belong() {
    within(|| {
        let mut rng = testkit::Rng::new(8);
        for round in 0..12 {
            let budget = [0, SMALLEST, 150, 300, 1000, 5000][rng.below(6) as usize];
            let max = max_item(budget);
            let pool = Pool::builder()
                .workers(1 + rng.below(3) as usize)
                .max_message_bytes(budget)
                .build()
                .expect("pool");
            let near = |rng: &mut testkit::Rng| {
                let d = rng.below(9) as usize;
                (max + d).saturating_sub(4 + rng.below(2) as usize * rng.below(max as u64) as usize)
            };
            let args: Vec<(u32, bool, Vec<u8>)> = (0..60)
                .map(|_| {
                    let n = near(&mut rng) as u32;
                    let panics = rng.below(6) == 0;
                    let pad = if rng.below(5) == 0 {
                        near(&mut rng)
                    } else {
                        rng.below(3) as usize
                    };
                    (n, panics, vec![0; pad])
                })
                .collect();
            let expected: Vec<_> = args.iter().map(|a| fuzzed_expected(a, budget)).collect();
            let c = 1 + rng.below(12) as usize;
            for (i, r) in pool.imap_chunked(fuzzed, args.clone(), c).enumerate() {
                assert_eq!(
                    r, expected[i],
                    "round {round}, budget {budget}, imap/{c}, {i}"
                );
            }
            let mut seen = vec![0; args.len()];
            for (i, r) in pool
                .imap_unordered_chunked(fuzzed, args.clone(), c)
                .indexed()
            {
                seen[i] += 1;
                assert_eq!(
                    r, expected[i],
                    "round {round}, budget {budget}, unordered/{c}, {i}"
                );
            }
            assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
            let accepted: Vec<_> = args
                .iter()
                .filter(|a| encoded_len(*a) <= max)
                .cloned()
                .collect();
            let expected: Vec<_> = accepted
                .iter()
                .map(|a| fuzzed_expected(a, budget))
                .collect();
            let out = pool.map_chunked(fuzzed, accepted, c);
            for (i, r) in out.into_iter().enumerate() {
                assert_eq!(
                    r, expected[i],
                    "round {round}, budget {budget}, map/{c}, {i}"
                );
            }
            assert_eq!(pool.workers_replaced(), 0, "round {round}");
        }
    });
}

fn pair_len(a: Vec<u8>, b: Vec<u8>) -> usize {
    a.len() + b.len()
}

/// Empty inputs, and a closed pool given refused and accepted inputs
/// mixed: every handle ends, each index with its outcome.
#[test]
fn empty_inputs_and_a_closed_pool_with_mixed_refusals() {
    within(|| {
        let pool = Pool::builder()
            .workers(1)
            .max_message_bytes(1000)
            .build()
            .expect("pool");
        assert!(pool.map(len_of, Vec::<Vec<u8>>::new()).is_empty());
        assert!(pool
            .starmap(pair_len, Vec::<(Vec<u8>, Vec<u8>)>::new())
            .is_empty());
        assert_eq!(pool.imap(len_of, Vec::<Vec<u8>>::new()).count(), 0);
        pool.close();
        pool.join().expect("join");
        let too_large = Err(TaskError::TooLarge {
            size: 5_002,
            max: 926,
        });
        let args = vec![vec![0u8; 1], vec![0; 5_000], vec![0; 2]];
        let expect = [
            Err(TaskError::PoolClosed),
            too_large.clone(),
            Err(TaskError::PoolClosed),
        ];
        assert_eq!(pool.map(len_of, args.clone()), expect);
        assert_eq!(pool.imap(len_of, args.clone()).collect::<Vec<_>>(), expect);
        assert_eq!(pool.apply(len_of, args[1].clone()), too_large);
        assert_eq!(
            pool.apply(len_of, args[0].clone()),
            Err(TaskError::PoolClosed)
        );
    });
}

/// A job's chunks go to the manager in parts as they are encoded; an
/// encoding that panics after some parts went out still ends the job for
/// the manager: the tasks already submitted run, and `close` + `join`
/// return (the job left open would keep the manager, and `join`, waiting
/// for its last part for ever).
#[test]
fn an_encoding_panic_after_parts_went_out_does_not_keep_join_waiting() {
    within(|| {
        let pool = Pool::new(2).expect("pool");
        let args: Vec<Bomb> = (0..40)
            .map(|i| Bomb(vec![1; 4], if i == 30 { 1 } else { 0 }))
            .collect();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map_chunked(bomb_len, args, 1)
        }));
        assert!(caught.is_err());
        assert_eq!(pool.apply(bomb_len, Bomb(vec![0; 3], 0)), Ok(3));
        pool.close();
        pool.join().expect("join");
    });
}
