//! [`ShmSafe`]: which types may live in memory shared between processes.

use std::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32,
    AtomicU64, AtomicU8, AtomicUsize,
};

/// A type whose values may live in memory shared between processes.
///
/// Such a type is plain data: it holds no pointers, references, file
/// descriptors, heap allocations or anything else that means something in
/// one process only; every bit pattern another process may store through its
/// own safe API is valid; its layout is the same in every binary that maps it
/// (`#[repr(C)]` or a primitive); and it works at whatever address each
/// process maps it. Destructors of values in shared memory never run:
/// another process may still be using the value.
///
/// Implemented for the integers, floats, `bool`, `()`, the atomics, arrays of
/// `ShmSafe` types, [`Futex`](crate::Futex) and the procsync primitives. Not
/// for tuples: their layout is `repr(Rust)` and may differ between two
/// binaries that map the same segment.
///
/// For your own structs, derive it. The derive checks `#[repr(C)]` and that
/// every field is `ShmSafe`:
///
/// ```
/// use shm::ShmSafe;
/// use std::sync::atomic::AtomicU64;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Stats {
///     requests: AtomicU64,
///     errors: AtomicU64,
///     buckets: [AtomicU64; 8],
/// }
/// ```
///
/// A struct without `#[repr(C)]` is rejected:
///
/// ```compile_fail
/// use shm::ShmSafe;
///
/// #[derive(ShmSafe)]
/// struct NoRepr {
///     count: u64,
/// }
/// ```
///
/// So is a field that is not plain data:
///
/// ```compile_fail
/// use shm::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct HoldsAPointer {
///     name: String,
/// }
/// ```
///
/// Generic structs get the bound on their parameters: `Pair<AtomicU32>`
/// is `ShmSafe`, `Pair<String>` is not.
///
/// ```
/// use shm::{Shared, ShmSafe};
/// use std::sync::atomic::AtomicU32;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Pair<T> {
///     left: T,
///     right: T,
/// }
///
/// let pair = Shared::new(Pair { left: AtomicU32::new(1), right: AtomicU32::new(2) })?;
/// # let _ = pair;
/// # Ok::<(), shm::Error>(())
/// ```
///
/// ```compile_fail
/// use shm::{Shared, ShmSafe};
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Pair<T> {
///     left: T,
///     right: T,
/// }
///
/// let pair = Shared::new(Pair { left: String::new(), right: String::new() });
/// ```
///
/// And an enum:
///
/// ```compile_fail
/// use shm::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// enum Light {
///     Red,
///     Green,
/// }
/// ```
///
/// # Safety
///
/// Implement it by hand only for a type that meets every rule above. A wrong
/// implementation lets another process create an invalid value or a dangling
/// pointer in this one.
pub unsafe trait ShmSafe: Sized {}

macro_rules! impl_shm_safe {
    ($($ty:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive or an atomic of one: plain data with a fixed
            // layout, valid at any address.
            unsafe impl ShmSafe for $ty {}
        )*
    };
}

impl_shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
);

// SAFETY: an array of plain data is plain data, laid out element after element.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

// SAFETY: zero-sized and holds nothing.
unsafe impl<T: ?Sized> ShmSafe for std::marker::PhantomData<T> {}

// SAFETY: zero-sized and holds nothing (so `Mutex<()>` is a plain lock that
// a `Condvar` can wait with, like Python's `Condition(Lock())`).
unsafe impl ShmSafe for () {}
