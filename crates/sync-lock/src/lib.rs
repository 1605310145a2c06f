//! Not implemented yet: see issue #3. This crate will hold `Lock`, `Mutex<T>`,
//! `RLock` and `Condvar` for use between processes.
