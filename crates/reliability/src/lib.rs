//! procsync's reliability campaign lives in this crate's tests:
//!
//! - `tests/chaos.rs`: worker processes hammer every primitive while the
//!   test SIGKILLs them at random moments; after each kill every primitive
//!   must be usable and every invariant must hold. Quick by default;
//!   `PROCSYNC_CHAOS_KILLS=1000 cargo test -p reliability --release --test chaos`
//!   is the long run.
//! - `tests/bad_input.rs`: the inputs of `docs/reliability.md` that no
//!   single crate's suite covers (timeouts of zero and `Duration::MAX`
//!   across every primitive).
//!
//! There is no library code here.
