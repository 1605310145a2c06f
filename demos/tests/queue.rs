//! `demos queue`: a producer SIGKILLed half-way; every bun made is eaten
//! once and whole, and the consumers stop when the producers are gone.

mod common;

use std::time::Duration;

use common::demos;

#[test]
fn a_killed_producer_tears_nothing_and_wedges_nobody() {
    let run = demos(&["queue", "--speed", "20"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let sent = run.value::<u32>("sent");
    // Producer 0 put half its 20 buns, the other two all of theirs.
    assert_eq!(sent, 10 + 20 + 20);
    assert_eq!(run.value::<u32>("received"), sent, "every bun eaten");
    assert_eq!(run.value::<u32>("torn"), 0);
    assert_eq!(run.value::<u32>("duplicated"), 0);
    assert_eq!(run.value::<u32>("out_of_order"), 0);
    assert_eq!(run.value::<u32>("lost_in_flight"), 0);
    assert_eq!(run.value::<u32>("killed"), 1);
    assert_eq!(run.value::<u32>("disconnected"), 2, "both consumers told");
}

#[test]
fn many_processes_on_a_one_place_counter_in_the_lessons_words() {
    let run = demos(
        &[
            "queue",
            "--producers",
            "4",
            "--consumers",
            "3",
            "--buns",
            "50",
            "--capacity",
            "1",
            "--speed",
            "100",
            "--lang",
            "zh",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u32>("sent"), 25 + 3 * 50);
    assert_eq!(run.value::<u32>("received"), 25 + 3 * 50);
    assert_eq!(run.value::<u32>("duplicated"), 0);
    assert_eq!(run.value::<u32>("disconnected"), 3);
    assert!(run.stdout.contains("包子"), "{}", run.stdout);
}

#[test]
fn a_zero_capacity_is_refused_by_the_command_line() {
    let run = demos(&["queue", "--capacity", "0"], Duration::from_secs(30));
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("capacity"), "{}", run.stderr);
}
