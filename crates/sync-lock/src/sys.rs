//! Every system call of this crate (one: the RLock's random thread keys),
//! through `rustix`; see `shm`'s `sys` module for why rustix.

/// 64 random bits from the kernel (`getrandom(2)`, the urandom source).
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        // EINTR, or a short read: go on with the rest.
        if let Ok(n) =
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
        {
            filled += n;
        }
    }
    u64::from_ne_bytes(bytes)
}
