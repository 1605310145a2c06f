//! W10: a pool of 2 workers maps `x -> x + 1` over many inputs, with
//! Python's automatic chunk size and with one task per round trip (chunks
//! of 1), against `rayon`'s `par_iter` on two threads (the in-process
//! floor). Python's `Pool.map` figures come from `benches/python/peer.py`
//! (`W10`: automatic chunks, `W10c1`: `chunksize=1`).

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use benches::scaled;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pool::Pool;
use rayon::prelude::*;

/// The task: as in Python's bench, `x + 1`.
fn inc(x: u64) -> u64 {
    x + 1
}

/// Maps `inc` over `n` inputs with the pool's automatic chunk size (or
/// `chunksize`), checking every result.
fn pool_map(pool: &Pool, n: u64, chunksize: Option<usize>) -> Duration {
    let started = Instant::now();
    let out = match chunksize {
        None => pool.map(inc, 0..n),
        Some(c) => pool.map_chunked(inc, 0..n, c),
    };
    let elapsed = started.elapsed();
    assert_eq!(out.len() as u64, n);
    for (x, r) in out.into_iter().enumerate() {
        assert_eq!(r.expect("a task failed"), x as u64 + 1);
    }
    elapsed
}

fn rayon_map(n: u64) -> Duration {
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a rayon pool");
    let started = Instant::now();
    let out: Vec<u64> = threads.install(|| (0..n).into_par_iter().map(inc).collect());
    let elapsed = started.elapsed();
    assert_eq!(out.len() as u64, n);
    elapsed
}

fn pool_map_group(c: &mut Criterion) {
    let pool = Pool::builder().workers(2).build().expect("a pool of 2");
    let mut group = c.benchmark_group("W10_pool_map");
    group.throughput(Throughput::Elements(1));
    group.bench_function("procsync-Pool-auto", |b| {
        b.iter_custom(|n| scaled(n, |ops| pool_map(&pool, ops, None)))
    });
    group.bench_function("rayon", |b| b.iter_custom(|n| scaled(n, rayon_map)));
    group.finish();

    let mut group = c.benchmark_group("W10c1_pool_map_chunk1");
    group.throughput(Throughput::Elements(1));
    group.bench_function("procsync-Pool-chunk1", |b| {
        b.iter_custom(|n| scaled(n, |ops| pool_map(&pool, ops, Some(1))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::criterion_config(10, Duration::from_secs(2));
    targets = pool_map_group
}
criterion_main!(benches);
