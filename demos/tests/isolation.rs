//! `demos isolation`: the seed's data-isolation lesson, measured.

mod common;

use std::time::Duration;

use common::demos;

#[test]
fn a_child_changes_its_own_copy_and_shared_memory_is_seen() {
    let run = demos(&["isolation"], Duration::from_secs(30));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<i64>("plain_in_child"), 99);
    assert_eq!(run.value::<i64>("plain_in_parent"), 100);
    assert_eq!(run.value::<i64>("shared_in_parent"), 99);
    assert_eq!(run.stdout.matches("summary:").count(), 1);
}

#[test]
fn zh_prints_the_seeds_own_words() {
    let run = demos(&["isolation", "--lang", "zh"], Duration::from_secs(30));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("进程与进程之间的数据是隔离的"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("父子进程之间通过socket通信"),
        "{}",
        run.stdout
    );
}
