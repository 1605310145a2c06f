//! The lesson's §2, 报活: a daemon reports over UDP that its main process
//! is alive; a monitor (here in the parent) sees the beats, and silence
//! once the main process has ended, since its daemon ended with it.
//!
//! `cargo run -p procsync-heartbeat --example heartbeat`

use std::thread::sleep;
use std::time::{Duration, Instant};

use daemon::Process;
use heartbeat::{Health, Monitor, Reporter};

/// The lesson's 60 s between beats, shortened.
const INTERVAL: Duration = Duration::from_millis(100);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut monitor = Monitor::udp("127.0.0.1:0")?;
    let addr = monitor.local_addr()?;
    // The main process: it starts its reporting daemon, works, and ends.
    let main_process = Process::new(|| {
        let reporter = Reporter::new("main").interval(INTERVAL).udp(addr);
        let beat = reporter.start().expect("start the reporting daemon");
        for _ in 0..6 {
            sleep(INTERVAL); // work...
            beat.progress(1); // ...that the beats report
        }
    })
    .start()?;
    let mut beats = 0;
    while main_process.is_alive() {
        monitor.poll(INTERVAL / 2)?;
        for r in monitor.reporters() {
            if r.seq >= beats {
                println!(
                    "{} (pid {}) is {}: seq {} progress {}",
                    r.id, r.pid, r.health, r.seq, r.progress
                );
                beats = r.seq + 1;
            }
        }
    }
    main_process.join()?;
    assert!(beats >= 2, "too few beats: {beats}");
    // Its daemon ended with it: the monitor hears nothing more.
    let deadline = Instant::now() + 20 * INTERVAL;
    while monitor.health("main") != Some(Health::Silent) {
        assert!(
            Instant::now() < deadline,
            "the reporter outlived its main process"
        );
        monitor.poll(INTERVAL / 2)?;
    }
    println!("main is {}", Health::Silent);
    Ok(())
}
