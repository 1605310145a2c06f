//! What the loom models share: processes to play, a critical section that
//! loom checks for concurrent access, and a `check` that counts the
//! interleavings it explored.
//!
//! Run the models as `shm::sync` describes (`.ci/run` does).

#![allow(dead_code)] // each model uses its own share of these

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use loom::cell::UnsafeCell;
use shm::pid::Identity;

/// The process with this pid and start tag.
pub(crate) fn process(pid: u32, start_tag: u32) -> Identity {
    Identity::from_bits(u64::from(pid) | u64::from(start_tag) << 32).expect("pid is not 0")
}

/// The process the model's main thread plays unless it says otherwise.
pub(crate) const MAIN: (u32, u32) = (1, 1);

/// Explores every interleaving of `model` with at most `preemptions`
/// preemptions (`LOOM_MAX_PREEMPTIONS` overrides it), then prints how many
/// there were. The bounds keep the whole loom step of `.ci/run` within a
/// few minutes; most bugs need only two or three preemptions. The main
/// thread plays process [`MAIN`]; spawned threads choose theirs.
pub(crate) fn check(name: &str, preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    let bound = builder.preemption_bound;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        shm::sync::model::play(process(MAIN.0, MAIN.1));
        model();
    });
    println!(
        "loom model {name}: {} interleavings explored (preemption bound {})",
        runs.load(Ordering::Relaxed),
        bound.map_or("none".to_string(), |b| b.to_string()),
    );
}

/// A plain (non-atomic) counter: loom fails the model if two threads touch
/// it at once, that is if a lock let two holders in.
pub(crate) struct Guarded(UnsafeCell<u32>);

impl Guarded {
    /// At zero.
    pub(crate) fn new() -> Guarded {
        Guarded(UnsafeCell::new(0))
    }

    /// Adds one; call only while holding the lock under test.
    pub(crate) fn bump(&self) {
        // SAFETY: loom's cell checks the claim this makes: no other
        // thread touches the counter meanwhile.
        self.0.with_mut(|n| unsafe { *n += 1 });
    }

    /// The count, once every thread that bumped it has been joined.
    pub(crate) fn get(&self) -> u32 {
        // SAFETY: as for `bump`, checked by loom.
        self.0.with(|n| unsafe { *n })
    }
}
