//! The lesson's §3, 锁: ten buyers of the last ticket in a "db" file; under
//! the Lock, exactly one buys it.
//!
//! `cargo run -p procsync-lock --example tickets`

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use daemon::Process;
use sync_lock::Lock;

/// The lesson's `time.sleep(0.2)` between reading the db and acting on it,
/// shortened.
const PAUSE: Duration = Duration::from_millis(50);

// The lesson's db holds {"count": 1}; this one holds the count alone.
fn count(db: &Path) -> u32 {
    fs::read_to_string(db).unwrap().trim().parse().unwrap()
}

// def search(i): look at the db
fn search(db: &Path, i: u32) {
    let left = count(db);
    sleep(PAUSE);
    println!("buyer {i} is looking: {left} left");
}

// def buy(i): read, pause, and buy if a ticket is left
fn buy(db: &Path, i: u32) -> bool {
    let left = count(db);
    sleep(PAUSE);
    if left == 0 {
        return false;
    }
    println!("buyer {i} bought a ticket!"); // 第i个用户购票成功!
    fs::write(db, (left - 1).to_string()).unwrap();
    true
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = std::env::temp_dir().join(format!("procsync-tickets-{}", std::process::id()));
    fs::write(&db, "1")?;
    // lock = Lock()
    let lock = Lock::shared()?;
    // for i in range(10): Process(target=test, args=(i, lock)).start()
    let buyers = (0..10)
        .map(|i| {
            // def test(i, lock): search(i); lock.acquire(); buy(i); lock.release()
            Process::new(|| {
                search(&db, i);
                let _held = lock.lock().unwrap(); // released when dropped
                buy(&db, i)
            })
            .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut sold = 0;
    for buyer in buyers {
        sold += u32::from(buyer.join()?);
    }
    let left = count(&db);
    fs::remove_file(&db)?;
    // 需要加锁来维护数据的安全性: never oversold.
    assert_eq!((sold, left), (1, 0), "sold {sold}, {left} left");
    Ok(())
}
