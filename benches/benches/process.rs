//! W6: starting a child process that returns a value, and joining it:
//! `daemon::Process` against a bare fork + waitpid, and a probe that passes
//! a result back the least costly way (a pipe).

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

fn spawn_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("W6_spawn_join");
    group.bench_function("procsync-Process", |b| {
        b.iter(|| {
            let child = daemon::Process::new(|| 42u64).start().expect("fork");
            assert_eq!(child.join().expect("join"), 42);
        })
    });
    group.bench_function("fork-waitpid", |b| {
        b.iter(|| {
            // SAFETY: the child only calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: leaves at once, running nothing of the parent's.
                unsafe { libc::_exit(42) };
            }
            let mut status = 0;
            // SAFETY: our child; a valid out-pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(libc::WEXITSTATUS(status), 42);
        })
    });
    group.bench_function("fork-pipe-probe", |b| {
        b.iter(|| {
            // The least a child that passes a result back does: fork, write
            // the result to a pipe, exit; the parent reads it and reaps.
            let mut ends = [0; 2];
            // SAFETY: a valid out-array of two descriptors.
            let piped = unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(piped, 0);
            // SAFETY: the child only writes and calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let result = 42u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live buffer, then leaves at
                // once, running nothing of the parent's.
                unsafe {
                    libc::write(ends[1], result.as_ptr().cast(), result.len());
                    libc::_exit(0)
                };
            }
            let mut result = [0u8; 8];
            // SAFETY: our descriptors; a live 8-byte buffer; our child.
            unsafe {
                libc::close(ends[1]);
                libc::read(ends[0], result.as_mut_ptr().cast(), result.len());
                libc::close(ends[0]);
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
            assert_eq!(u64::from_ne_bytes(result), 42);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::criterion_config(20, Duration::from_secs(2));
    targets = spawn_join
}
criterion_main!(benches);
