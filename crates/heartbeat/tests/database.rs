//! The SQLite sink and the monitor's reading of it: safe after a fork,
//! robust to locks, clocks and bad rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use daemon::Process;
use heartbeat::{HeartbeatError, Reporter};

const INTERVAL: Duration = Duration::from_millis(100);

/// A fresh directory for one test's database, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(testkit::unique_name(tag));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("beats.sqlite")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes rows into `path` as fast as it can until `stop`: a thread that is
/// inside SQLite most of the time.
fn write_until(path: &Path, stop: &AtomicBool) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let _ = db.execute("INSERT INTO t VALUES (1)", []);
    }
}

#[test]
fn a_database_reporter_is_refused_in_a_process_with_threads() {
    let dir = TempDir::new("hb-threads");
    let (db, other) = (dir.db(), dir.0.join("other.sqlite"));
    let main = Process::new(|| {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            // A thread inside SQLite at the fork: its locks would stay
            // locked for ever in the reporting daemon.
            s.spawn(|| write_until(&other, &stop));
            let started = Reporter::new("threaded")
                .interval(INTERVAL)
                .sqlite(&db)
                .start();
            stop.store(true, Ordering::Relaxed);
            match started {
                Err(HeartbeatError::ThreadedDatabase { threads }) => Ok(threads),
                Err(other) => Err(format!("another error: {other}")),
                Ok(_) => Err("started in a process with threads".to_string()),
            }
        })
    })
    .start()
    .unwrap();
    let threads = main.join().unwrap().unwrap();
    assert!(threads >= 2, "{threads}");
}
