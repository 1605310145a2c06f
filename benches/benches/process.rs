//! W6: starting a child process that returns a value, and joining it:
//! `daemon::Process` against a bare fork + waitpid.

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
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::criterion_config(20, Duration::from_secs(2));
    targets = spawn_join
}
criterion_main!(benches);
