//! `demos pool`: the worker running the middle task is SIGKILLed; that
//! task is WorkerDied, a new worker replaces it, every other task is right
//! and nothing hangs.

mod common;

use std::time::Duration;

use common::demos;

#[test]
fn a_killed_worker_costs_one_task_never_the_pool() {
    let run = demos(&["pool", "--speed", "20"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u64>("tasks"), 20);
    assert_eq!(run.value::<u64>("ok"), 19, "every other task right");
    assert_eq!(run.value::<u64>("worker_died"), 1);
    assert_eq!(run.value::<u64>("other_errors"), 0);
    assert_eq!(run.value::<u64>("replaced"), 1);
    assert_eq!(run.value::<u64>("hung"), 0);
}

#[test]
fn three_workers_forty_tasks_in_the_lessons_words() {
    let run = demos(
        &[
            "pool",
            "--workers",
            "3",
            "--tasks",
            "40",
            "--speed",
            "50",
            "--lang",
            "zh",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u64>("ok"), 39);
    assert_eq!(run.value::<u64>("worker_died"), 1);
    assert!(run.stdout.contains("进程池"), "{}", run.stdout);
}

#[test]
fn zero_workers_are_refused_by_the_command_line() {
    let run = demos(&["pool", "--workers", "0"], Duration::from_secs(30));
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("workers"), "{}", run.stderr);
}
