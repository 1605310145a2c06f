//! The lesson's §1 answer, the other way round: memory shared on purpose.
//! Four forked children each add 1,000 to one counter in `shm::Shared`;
//! the parent sees every addition (Python's `Value('Q', 0)`).
//!
//! `cargo run -p procsync-shm --example shared_counter`

use std::sync::atomic::{AtomicU64, Ordering};

use daemon::Process;
use shm::Shared;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // counter = Value('Q', 0): in memory that the children forked below map too
    let counter = Shared::new(AtomicU64::new(0))?;
    let children = (0..4)
        .map(|_| {
            Process::new(|| {
                for _ in 0..1000 {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
            .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for child in children {
        child.join()?;
    }
    let total = counter.load(Ordering::SeqCst);
    println!("counter = {total}");
    assert_eq!(total, 4000, "every child's additions, seen by the parent");
    Ok(())
}
