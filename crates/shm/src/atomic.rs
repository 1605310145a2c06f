//! Float atomics, for Python's `Value('d')` and `Array('d')`.
//!
//! Rust has no `AtomicF64` or `AtomicF32` in `std`; these are the float's
//! bits in an [`AtomicU64`] / [`AtomicU32`] (`#[repr(transparent)]`: the
//! same size, alignment and layout), with the read-modify-write operations
//! ([`fetch_add`](AtomicF64::fetch_add), [`fetch_sub`](AtomicF64::fetch_sub))
//! done as compare-and-swap loops. They are [`ShmSafe`](crate::ShmSafe), so
//! they go in a [`Shared`](crate::Shared) or a
//! [`SharedSlice`](crate::SharedSlice):
//!
//! ```
//! use shm::atomic::AtomicF64;
//! use shm::SharedSlice;
//! use std::sync::atomic::Ordering;
//!
//! // Python: totals = Array('d', 3)
//! let totals = SharedSlice::from_fn(3, |_| AtomicF64::new(0.0))?;
//! let child = daemon::Process::new(|| {
//!     totals[1].fetch_add(2.5, Ordering::Relaxed);
//! })
//! .start()?;
//! child.join()?;
//! assert_eq!(totals[1].load(Ordering::Relaxed), 2.5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Comparisons ([`compare_exchange`](AtomicF64::compare_exchange)) compare
//! bits, not values: `0.0` and `-0.0` differ there, and a NaN matches the
//! same NaN bits.

use std::fmt;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::layout::LayoutWriter;
use crate::ShmSafe;

/// The ordering of the load that starts or retries a compare-and-swap loop
/// whose successful store uses `order` (a failure ordering may not be
/// `Release` or `AcqRel`).
fn load_ordering(order: Ordering) -> Ordering {
    match order {
        Ordering::Release | Ordering::Relaxed => Ordering::Relaxed,
        Ordering::Acquire | Ordering::AcqRel => Ordering::Acquire,
        _ => Ordering::SeqCst,
    }
}

macro_rules! float_atomic {
    ($name:ident, $float:ident, $bits:ident, $python:literal) => {
        #[doc = concat!("An `", stringify!($float), "` that processes (and threads) may change at")]
        /// once: its bits in an
        #[doc = concat!("[`", stringify!($bits), "`], `#[repr(transparent)]`.")]
        #[doc = concat!("Python's `", $python, "` (see the [module docs](self)).")]
        ///
        /// `fetch_add` and `fetch_sub` are compare-and-swap loops: each
        /// addition happens exactly once, in some order, and the rounding of
        /// each is that of the float type (so sums of values that are exactly
        /// representable, and stay so, are exact in any order).
        #[repr(transparent)]
        pub struct $name($bits);

        impl $name {
            #[doc = concat!("A new atomic holding `value`.")]
            pub const fn new(value: $float) -> $name {
                $name($bits::new(value.to_bits()))
            }

            /// The value.
            pub fn load(&self, order: Ordering) -> $float {
                $float::from_bits(self.0.load(order))
            }

            /// Stores `value`.
            pub fn store(&self, value: $float, order: Ordering) {
                self.0.store(value.to_bits(), order)
            }

            /// Stores `value` and returns the value before.
            pub fn swap(&self, value: $float, order: Ordering) -> $float {
                $float::from_bits(self.0.swap(value.to_bits(), order))
            }

            /// Stores `new` if the value's bits are `current`'s; returns the
            /// value before, `Ok` if it was stored. Compares bits: `0.0` is
            /// not `-0.0` here, and a NaN matches the same NaN.
            pub fn compare_exchange(
                &self,
                current: $float,
                new: $float,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$float, $float> {
                self.0
                    .compare_exchange(current.to_bits(), new.to_bits(), success, failure)
                    .map($float::from_bits)
                    .map_err($float::from_bits)
            }

            /// Adds `value` (a compare-and-swap loop); returns the value
            /// before.
            pub fn fetch_add(&self, value: $float, order: Ordering) -> $float {
                self.update(order, |old| old + value)
            }

            /// Subtracts `value` (a compare-and-swap loop); returns the value
            /// before.
            pub fn fetch_sub(&self, value: $float, order: Ordering) -> $float {
                self.update(order, |old| old - value)
            }

            /// The value, from an atomic nobody else can reach any more.
            pub fn into_inner(self) -> $float {
                $float::from_bits(self.0.into_inner())
            }

            fn update(&self, order: Ordering, f: impl Fn($float) -> $float) -> $float {
                let previous = self.0.fetch_update(order, load_ordering(order), |bits| {
                    Some(f($float::from_bits(bits)).to_bits())
                });
                // The closure always gives a value: the update never gives up.
                let (Ok(bits) | Err(bits)) = previous;
                $float::from_bits(bits)
            }
        }

        impl Default for $name {
            /// Zero.
            fn default() -> $name {
                $name::new(0.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.load(Ordering::Relaxed), f)
            }
        }

        // SAFETY: repr(transparent) over an atomic integer: plain data with
        // a fixed layout, and every bit pattern is a valid float, valid at
        // any (aligned) address.
        unsafe impl ShmSafe for $name {
            /// Described as the other atomics are: a primitive by name, size
            /// and alignment (so it is not taken for the integer atomic of
            /// the same size).
            fn describe_layout(out: &mut LayoutWriter) {
                out.primitive(stringify!($name), size_of::<$name>(), align_of::<$name>());
            }
        }
    };
}

float_atomic!(AtomicF64, f64, AtomicU64, "Value('d')");
float_atomic!(AtomicF32, f32, AtomicU32, "Value('f')");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_give_the_values_before() {
        let x = AtomicF64::new(1.5);
        assert_eq!(x.fetch_add(2.0, Ordering::SeqCst), 1.5);
        assert_eq!(x.fetch_sub(0.5, Ordering::SeqCst), 3.5);
        assert_eq!(x.swap(-1.0, Ordering::SeqCst), 3.0);
        assert_eq!(
            x.compare_exchange(0.0, 1.0, Ordering::SeqCst, Ordering::SeqCst),
            Err(-1.0)
        );
        assert_eq!(
            x.compare_exchange(-1.0, 1.0, Ordering::SeqCst, Ordering::SeqCst),
            Ok(-1.0)
        );
        assert_eq!(format!("{x:?}"), "1.0");
        assert_eq!(x.into_inner(), 1.0);
        let y = AtomicF32::default();
        y.store(0.25, Ordering::Relaxed);
        assert_eq!(y.fetch_add(0.5, Ordering::AcqRel), 0.25);
        assert_eq!(y.load(Ordering::Acquire), 0.75);
        assert_eq!(size_of::<AtomicF32>(), 4);
        assert_eq!(size_of::<AtomicF64>(), 8);
    }

    #[test]
    fn the_layout_is_not_the_integer_atomics() {
        assert_ne!(
            crate::layout::fingerprint::<AtomicF64>(),
            crate::layout::fingerprint::<AtomicU64>()
        );
        assert_ne!(
            crate::layout::fingerprint::<AtomicF32>(),
            crate::layout::fingerprint::<AtomicU32>()
        );
    }
}
