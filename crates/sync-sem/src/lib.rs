//! Not implemented yet: see issue #4. This crate will hold `Semaphore` and its
//! bounded form for use between processes.
