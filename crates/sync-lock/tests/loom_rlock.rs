//! Loom model of [`RLock`]: re-entry, and hand-off between two threads of
//! one process and a thread of another. Built only under `cfg(loom)`; see
//! `shm::sync`.

#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::thread;
use shm::pid::Identity;
use shm::sync::model;
use sync_lock::RLock;

use loom_support::{check, process, Guarded};

struct World {
    lock: RLock,
    counter: Guarded,
}

fn reenter(w: &Arc<World>, who: Identity) -> thread::JoinHandle<()> {
    let w = Arc::clone(w);
    thread::spawn(move || {
        model::play(who);
        let outer = w.lock.lock().expect("clean");
        let inner = w.lock.lock().expect("clean");
        assert!(w.lock.is_held_by_current_thread());
        assert_eq!(w.lock.depth(), 2);
        w.counter.bump();
        drop(inner);
        assert_eq!(w.lock.depth(), 1);
        assert!(w.lock.is_held_by_current_thread());
        w.counter.bump();
        drop(outer);
    })
}

#[test]
fn reentry_and_handoff_between_threads_and_processes() {
    check("rlock: 2 threads of P + 1 of Q", 2, || {
        let w = Arc::new(World {
            lock: RLock::new(),
            counter: Guarded::new(),
        });
        let p = process(10, 1);
        let threads = [reenter(&w, p), reenter(&w, p), reenter(&w, process(20, 1))];
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.counter.get(), 6);
        assert!(!w.lock.is_locked());
    });
}
