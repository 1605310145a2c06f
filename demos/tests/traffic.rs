//! `demos traffic`: nobody passes a red light, every car passes, and the
//! police car waits no longer than its patience.

mod common;

use std::time::Duration;

use common::{demos, demos_with_env};

#[test]
fn every_car_passes_and_none_on_red() {
    let run = demos(&["traffic", "--speed", "10"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u32>("cars"), 10);
    assert_eq!(run.value::<u32>("passed"), 10);
    assert_eq!(run.value::<u32>("passed_on_red"), 0);
    // 0.5 s at speed 10 is 50 ms; waiting on a green light is 0.
    let police: u64 = run.value("police_max_wait_ms");
    assert!(police <= 50 + 40, "the police car waited {police} ms");
}

#[test]
fn twenty_cars_in_the_seeds_words() {
    let run = demos(
        &["traffic", "--cars", "20", "--speed", "10", "--lang", "zh"],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u32>("passed"), 20);
    assert_eq!(run.value::<u32>("passed_on_red"), 0);
    assert!(
        run.stdout.contains("红灯亮") && run.stdout.contains("通过"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains('\x1b'),
        "no colour codes when stdout is not a terminal"
    );
}

/// The light's first state is printed before any car moves (issue 18: a
/// car once printed before the first light), even when the light process
/// is scheduled late: the demo's seam delays it by 200 ms, in which car 0
/// (started at once) would have printed "car 0 waits".
#[test]
fn the_lights_first_state_comes_before_any_car() {
    let run = demos_with_env(
        &["traffic", "--cars", "3", "--speed", "100"],
        &[("PROCSYNC_DEMO_LIGHT_LATE_MS", "200")],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let first_light = run.stdout.lines().position(|l| l.contains("light"));
    let first_car = run.stdout.lines().position(|l| l.contains("car"));
    assert_eq!(first_light, Some(0), "{}", run.stdout);
    assert!(first_car > first_light, "{}", run.stdout);
    assert_eq!(run.value::<u32>("passed"), 3);
}
