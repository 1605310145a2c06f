//! The lesson's §5, 事件: a traffic light process sets an Event for green
//! and clears it for red; cars wait while it is red.
//!
//! `cargo run -p procsync-event --example traffic_light`

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::thread::sleep;
use std::time::Duration;

use daemon::Process;
use shm::Shared;
use sync_event::Event;

/// The lesson's `time.sleep(2)` between changes of the light, shortened.
const PHASE: Duration = Duration::from_millis(200);

// def ligth(e): red first, then a change every PHASE, for ever
fn light(e: &Event, lit: &Event, greens: &AtomicU32) {
    println!("red light"); // 红灯亮
    lit.set(); // shown: the cars may come
    loop {
        sleep(PHASE);
        if e.is_set() {
            println!("red light");
            e.clear();
        } else {
            println!("green light"); // 绿灯亮
            e.set();
            greens.fetch_add(1, SeqCst); // after the set, before the next clear
        }
    }
}

// def car(id, e): if not e.is_set(): wait; then pass
fn car(e: &Event, id: u32, greens: &AtomicU32) {
    let greens_before = greens.load(SeqCst);
    if !e.is_set() {
        println!("car {id} waits"); // car %s等待
        e.wait();
        // Let through by a green: still green, or gone green since.
        let green = e.is_set() || greens.load(SeqCst) > greens_before;
        assert!(green, "car {id} passed on red");
    }
    println!("car {id} passes"); // car %s通过
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let e = Event::shared()?; // e = Event()
    let lit = Event::shared()?;
    let greens = Shared::new(AtomicU32::new(0))?;
    // Process(target=ligth, args=(e,)).start(): a daemon here, so that it
    // ends with the main code instead of running for ever.
    Process::new(|| light(&e, &lit, &greens))
        .daemon(true)
        .start()?;
    lit.wait(); // the light's first state is printed before any car moves
    let mut cars = Vec::new();
    for id in 0..10 {
        cars.push(Process::new(|| car(&e, id, &greens)).start()?);
        // time.sleep(random.randrange(0, 3, 2)): 0 or a whole phase
        sleep(PHASE * (id * 7 % 3 / 2));
    }
    for car in cars {
        car.join()?;
    }
    Ok(())
}
