//! Errors of the semaphores.

/// A release that would break the semaphore's rules; nothing was released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A bounded semaphore would exceed its initial value (Python raises
    /// `ValueError: Semaphore released too many times`).
    #[error("releasing {released} would raise the bounded semaphore to {would_be}, above its bound of {bound}")]
    AboveBound {
        /// How many permits the call tried to release.
        released: u32,
        /// The value it would have reached.
        would_be: u64,
        /// The bound (the initial value).
        bound: u32,
    },
    /// The count would exceed [`MAX_PERMITS`](crate::MAX_PERMITS).
    #[error("releasing {released} would overflow the semaphore (value {value}, at most {max})")]
    Overflow {
        /// How many permits the call tried to release.
        released: u32,
        /// The value before.
        value: u32,
        /// The largest value a semaphore can hold.
        max: u32,
    },
}

/// An acquisition that gave no permit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// `try_acquire`: no permit is free now.
    #[error("no permit is free")]
    WouldBlock,
    /// `acquire_timeout`: no permit came free in time.
    #[error("timed out waiting for a permit")]
    TimedOut,
    /// A [`RobustSemaphore`](crate::RobustSemaphore) already has
    /// [`MAX_HOLDERS`](crate::MAX_HOLDERS) live processes holding permits.
    #[error(
        "{holders} processes already hold permits; a robust semaphore tracks at most that many"
    )]
    TooManyHolders {
        /// The limit.
        holders: usize,
    },
}

/// A [`Permit::adopt`](crate::Permit::adopt) that did not make the calling
/// process the permit's holder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdoptError {
    /// The process that acquired the permit died and its permits were taken
    /// back (by a waiter's sweep or [`reclaim`](crate::RobustSemaphore::reclaim))
    /// before this process adopted it: another process may hold the permit
    /// now. The permit is spent: dropping it releases nothing.
    #[error("the permit was reclaimed: its acquirer died and its permits were taken back before this process adopted it")]
    Reclaimed,
    /// [`MAX_HOLDERS`](crate::MAX_HOLDERS) live processes already hold
    /// permits, so this process gets no row. The permit stays counted under
    /// the process that acquired it (as if not adopted); adopting again may
    /// succeed once a holder is gone.
    #[error(
        "{holders} processes already hold permits; a robust semaphore tracks at most that many"
    )]
    TooManyHolders {
        /// The limit.
        holders: usize,
    },
}
