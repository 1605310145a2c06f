//! A newcomer's first program, written against `procsync` alone (no other
//! dependency, no `unsafe`, no workaround): four worker processes count
//! into one shared counter, and one of them panics while holding the lock.
//! Every other increment is counted, the panic is reported with the
//! worker's name, and the lock is handed on (with a report), not wedged.

use procsync::daemon::Process;
use procsync::lock::Mutex;

const WORKERS: usize = 4;
const JOBS: u64 = 100;
const PANICKING: usize = 2;

#[test]
fn workers_over_a_shared_counter_with_one_panicking_worker() {
    let counter = Mutex::shared(0u64).expect("shared memory");
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let counter = &counter;
            Process::new(move || {
                for job in 0..JOBS {
                    // A worker after a panicked holder sees the report once
                    // and goes on with the count it left (whole: the
                    // panic came before its change).
                    let mut n = counter.lock().unwrap_or_else(|died| died.into_inner());
                    if w == PANICKING && job == JOBS / 2 {
                        panic!("worker {w} gave up at job {job}");
                    }
                    *n += 1;
                }
            })
            .name(format!("worker-{w}"))
            .start()
            .expect("fork")
        })
        .collect();
    let mut failures = Vec::new();
    for worker in workers {
        if let Err(e) = worker.join() {
            failures.push(e.to_string());
        }
    }
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("worker-2") && failures[0].contains("gave up at job 50"),
        "the panic names the worker and says why: {}",
        failures[0]
    );
    let total = *counter.lock().unwrap_or_else(|died| died.into_inner());
    assert_eq!(
        total,
        (WORKERS as u64 - 1) * JOBS + JOBS / 2,
        "every increment of every worker counted, none twice"
    );
}
