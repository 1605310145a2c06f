//! The lesson's §4, 信号量: a mall has 4 mini KTV rooms; 10 people come, and
//! never more than 4 are inside at once.
//!
//! `cargo run -p procsync-sem --example ktv`

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::thread::sleep;
use std::time::Duration;

use daemon::Process;
use shm::Shared;
use sync_sem::Semaphore;

const ROOMS: u32 = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // sem = Semaphore(4)
    let sem = Semaphore::shared(ROOMS)?;
    // Counted in shared memory, to check the rooms.
    let inside = Shared::new(AtomicU32::new(0))?;
    let most = Shared::new(AtomicU32::new(0))?;
    // def go_ktv(sem, user)
    let go_ktv = |user: u64| {
        let _room = sem.acquire(); // sem.acquire(); given back when dropped
        let now = inside.fetch_add(1, SeqCst) + 1;
        most.fetch_max(now, SeqCst);
        // %s在ktv中
        println!("{user} is in the KTV ({now} inside)");
        // time.sleep(random.randint(3, 10)), in tenths of a second here
        sleep(Duration::from_millis(100 + user * 37 % 200));
        println!("{user} left the KTV"); // %s走出了ktv
        inside.fetch_sub(1, SeqCst);
    };
    // for i in range(10): Process(target=go_ktv, args=(sem, i)).start()
    let users = (0..10)
        .map(|user| Process::new(|| go_ktv(user)).start())
        .collect::<Result<Vec<_>, _>>()?;
    for user in users {
        user.join()?;
    }
    let most = most.load(SeqCst);
    println!("at most {most} inside at once");
    assert!(most <= ROOMS, "{most} people in {ROOMS} rooms");
    Ok(())
}
