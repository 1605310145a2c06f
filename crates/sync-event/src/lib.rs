//! Not implemented yet: see issue #5. This crate will hold `Event` and
//! `Barrier` for use between processes.
