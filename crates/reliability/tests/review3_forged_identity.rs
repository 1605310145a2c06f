//! Review 3: `RawRobustLock::lock_until_as` was a safe method that took the
//! caller's identity on trust (checked only by a `debug_assert`): an
//! identity whose pid half had bit 30 (the word's POISONED bit) left the
//! word looking free, so the forger was told it held the lock while a
//! `Mutex::try_lock` in another process got in too (release builds).
//!
//! Now `lock_until_as` is `unsafe` (its contract: the identity is the
//! caller's; a compile_fail doctest on `RawLock::lock_until_as` shows safe
//! code cannot call it), and no `Identity` can carry a pid at or above
//! Linux's `PID_MAX_LIMIT`, so no identity sets a lock word's flag bits.

use shm::pid::Identity;

#[test]
fn no_identity_carries_a_pid_into_the_lock_words_flag_bits() {
    assert_eq!(Identity::from_parts(1 << 30, 7), None, "the POISONED bit");
    assert_eq!(Identity::from_parts(1 << 31, 7), None, "the WAITERS bit");
    assert_eq!(Identity::from_parts(1 << 22, 7), None, "PID_MAX_LIMIT");
    let highest = Identity::from_parts((1 << 22) - 1, 7).expect("the largest pid");
    assert_eq!(highest.pid().get(), (1 << 22) - 1);
    assert_eq!(Identity::from_bits(highest.to_bits()), Some(highest));
}
