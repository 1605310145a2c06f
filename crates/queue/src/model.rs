//! The ring protocol without the typed layer, for the loom models
//! (`tests/loom_queue.rs`); built only under `cfg(loom)`.

use std::time::Instant;

use shm::futex::Recheck;

use crate::line::Line;
use crate::ring::{Config, GetFailure, PutFailure, Ring, Role};

/// A queue's lines in this process's memory: loom threads play processes.
#[derive(Debug)]
pub struct Lines(Vec<Line>);

impl Lines {
    /// A queue of `capacity` messages of up to 8 bytes.
    pub fn new(capacity: u64, joinable: bool) -> Lines {
        let config = Config {
            capacity,
            max_bytes: 8,
            joinable,
            type_name: "u64".into(),
        };
        let lines = config.lines().expect("a small queue");
        Lines((0..lines).map(|i| config.line(i)).collect())
    }

    fn ring(&self) -> Ring<'_> {
        Ring::new(&self.0).expect("a queue")
    }

    /// Attaches the calling (loom) process as a producer or consumer.
    pub fn attach(&self, producer: bool) -> usize {
        let role = if producer {
            Role::Producer
        } else {
            Role::Consumer
        };
        self.ring().claim_row(role).expect("a free row")
    }

    /// Puts `value`, sleeping while the queue is full.
    pub fn put(&self, value: u64) {
        let ring = self.ring();
        let mut recheck = Recheck::new();
        loop {
            match ring.try_put(&value.to_le_bytes(), None) {
                Ok(()) => return,
                Err(Some(PutFailure::Full)) => {
                    // As `Sender::put`: the count is read once the ring was
                    // found full, before sleeping.
                    let seen = ring.space_events();
                    ring.wait_for_space(seen, None, &mut recheck);
                }
                Err(None) => unreachable!("no deadline"),
            }
        }
    }

    /// Takes a value for `row`, sleeping while the queue is empty; `None`
    /// once it is empty and every producer is gone.
    pub fn get(&self, row: usize) -> Option<u64> {
        let ring = self.ring();
        let mut recheck = Recheck::new();
        let mut out = Vec::new();
        loop {
            match ring.try_get(row, &mut out, None) {
                Ok(()) => return Some(u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))),
                Err(Some(GetFailure::Empty)) => {
                    // As `Receiver::get`: the count is read once the ring
                    // was found empty, before judging the producers.
                    let seen = ring.data_events();
                    if ring.disconnected(Role::Producer) && ring.len() == 0 {
                        return None;
                    }
                    ring.wait_for_data(seen, None::<Instant>, &mut recheck);
                }
                Err(Some(GetFailure::Corrupt(n))) => panic!("corrupt length {n}"),
                Err(None) => unreachable!("no deadline"),
            }
        }
    }

    /// Detaches `row`.
    pub fn detach(&self, row: usize) {
        let me = shm::pid::current_identity().to_bits();
        self.ring().release_row(row, me);
    }

    /// Marks one message of `row` done.
    pub fn task_done(&self, row: usize) -> bool {
        self.ring().task_done(row)
    }

    /// Whether every message is done, and how many were lost.
    pub fn all_done(&self) -> (bool, u64) {
        self.ring().all_done(None).expect("no deadline")
    }
}
