//! The lesson's §2, second program: fun2, a daemon printing "in fun2" every
//! 0.5 s, ends when the main code ends; fun, not a daemon, is waited for
//! and still prints its last line. (The lesson's seconds are halved.)
//!
//! `cargo run -p procsync-daemon --example daemon_order`

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::thread::sleep;
use std::time::Duration;

use daemon::{JoinError, Process};
use shm::Shared;

/// The lesson's second, halved.
const SECOND: Duration = Duration::from_millis(500);

/// The lesson's main code. `fun2_lines` counts fun2's lines; `seen` is that
/// count when fun ends (shared memory, checked in `main`).
fn lesson(fun2_lines: &AtomicU32, seen: &AtomicU32) -> Result<(), daemon::Error> {
    // p = Process(target=fun); p.start()
    Process::new(|| {
        println!("start");
        sleep(3 * SECOND);
        println!("nice weather today"); // 今天天气不错
        seen.store(fun2_lines.load(SeqCst), SeqCst);
    })
    .start()?;
    // p = Process(target=fun2); p.daemon = True; p.start()
    Process::new(|| -> () {
        loop {
            println!("in fun2");
            fun2_lines.fetch_add(1, SeqCst);
            sleep(SECOND / 2);
        }
    })
    .daemon(true)
    .start()?;
    sleep(SECOND);
    println!("the main program is done"); // 主程序结束了
    Ok(()) // leaving: fun2 is terminated, fun is waited for
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fun2_lines = Shared::new(AtomicU32::new(0))?;
    let seen = Shared::new(AtomicU32::new(u32::MAX))?;
    // The lesson's program runs as a process of its own, which ends through
    // `exit` (as returning from `main` does): its end can be checked here.
    let main_process = Process::new(|| -> () {
        lesson(&fun2_lines, &seen).expect("start fun and fun2");
        std::process::exit(0)
    })
    .start()?;
    match main_process.join() {
        Err(JoinError::Exited { code: 0, .. }) => {}
        other => panic!("the lesson's main process ended with {other:?}"),
    }
    let seen = seen.load(SeqCst);
    // fun finished (it was waited for) and fun2 had stopped by then: about
    // twice, as in the lesson; a fun2 still running would have printed ~7.
    assert!(
        seen < 5,
        "fun did not finish, or fun2 outlived the main code: {seen}"
    );
    Ok(())
}
