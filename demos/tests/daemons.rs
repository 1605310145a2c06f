//! `demos daemon`, `daemon-order`, `result` and `heartbeat`: the seed's
//! daemon lessons, measured.

mod common;

use std::time::Duration;

use common::demos;

#[test]
fn the_daemon_ends_with_the_main_code() {
    let run = demos(
        &["daemon", "--speed", "5", "--lang", "zh"],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.value::<bool>("daemon_finished"));
    assert!(
        run.stdout.contains("start") && run.stdout.contains("主进程结束了!"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("这是一个好天气"),
        "the daemon's second line printed:\n{}",
        run.stdout
    );
}

#[test]
fn fun2_prints_twice_and_fun_finishes_in_the_seeds_order() {
    let run = demos(&["daemon-order", "--lang", "zh"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u32>("fun2_lines"), 2);
    assert!(run.value::<bool>("fun_finished"));
    let seed_lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| ["in fun2", "start", "主程序结束了", "今天天气不错"].contains(&l.trim()))
        .collect();
    assert_eq!(
        seed_lines,
        [
            "in fun2",
            "start",
            "in fun2",
            "主程序结束了",
            "今天天气不错"
        ]
    );
}

#[test]
fn the_parent_gets_the_childs_result() {
    let run = demos(&["result"], Duration::from_secs(30));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u64>("result"), run.value::<u64>("expected"));
}

#[test]
fn a_killed_main_is_reported_silent() {
    // Interval 1 s at speed 5: 200 ms; SILENT after three missed intervals.
    let run = demos(&["heartbeat", "--speed", "5"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.value::<bool>("silent_detected"));
    assert!(run.value::<u64>("beats") >= 4);
    let detect: u64 = run.value("detect_ms");
    assert!(
        (400..=2_000).contains(&detect),
        "detected after {detect} ms"
    );
}

#[test]
fn the_heartbeat_demo_works_at_the_shortest_interval() {
    // 1 s at speed 10,000 is 100 µs, below the reporter's 1 ms minimum:
    // the demo must wait by the interval the reporter really uses.
    let run = demos(&["heartbeat", "--speed", "10000"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.value::<bool>("silent_detected"));
}
