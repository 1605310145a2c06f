//! `demos ktv`: never more singers inside than rooms, everyone served.

mod common;

use std::time::Duration;

use common::demos;

#[test]
fn two_rooms_ten_users() {
    let run = demos(&["ktv", "--speed", "40"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u32>("users"), 10);
    assert_eq!(run.value::<u32>("served"), 10, "served == users");
    assert_eq!(
        run.value::<u32>("max_inside"),
        2,
        "max_inside == rooms, measured"
    );
}

#[test]
fn three_rooms_seven_users_in_the_seeds_words() {
    let run = demos(
        &[
            "ktv", "--rooms", "3", "--users", "7", "--speed", "40", "--lang", "zh",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u32>("served"), 7);
    assert_eq!(run.value::<u32>("max_inside"), 3);
    assert!(
        run.stdout.contains("在ktv中") && run.stdout.contains("走出了ktv"),
        "{}",
        run.stdout
    );
}

#[test]
fn zero_rooms_is_refused() {
    let run = demos(&["ktv", "--rooms", "0"], Duration::from_secs(30));
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("rooms"), "{}", run.stderr);
}
