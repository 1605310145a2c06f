//! [`ShmSafe`]: which types may live in memory shared between processes.

use crate::layout::LayoutWriter;
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
/// So is a field that is not plain data. A `String`, `Vec<_>`, `Box<_>`
/// (and the other std types owning heap memory), a reference or a raw
/// pointer, also inside an `Option` or an array, is refused with a message
/// naming the field's type and what to use instead, here:
///
/// ```text
/// error: ShmSafe: the field type `String` cannot live in shared memory: it owns
///        its text on this process's heap (another process maps other memory, so
///        it would read garbage); use plain data instead: a fixed-capacity byte
///        array with a length field, such as `name: [u8; 64]` and
///        `name_len: u32` (UTF-8 bytes; check the length fits when writing)
/// ```
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
/// What compiles instead (a `Vec<u64>` is an array and a length the same
/// way):
///
/// ```
/// use shm::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Named {
///     name: [u8; 64],
///     name_len: u32,
/// }
/// ```
///
/// A `Vec<_>` suggests a fixed-capacity array with a length (or a
/// [`SharedSlice`](crate::SharedSlice) of its own):
///
/// ```compile_fail
/// #[derive(shm::ShmSafe)]
/// #[repr(C)]
/// struct HoldsAVec {
///     items: Vec<u64>,
/// }
/// ```
///
/// A `Box<T>` suggests `T` itself:
///
/// ```compile_fail
/// #[derive(shm::ShmSafe)]
/// #[repr(C)]
/// struct HoldsABox {
///     value: Box<u32>,
/// }
/// ```
///
/// A reference suggests the value itself, or an index into an array both
/// processes map:
///
/// ```compile_fail
/// #[derive(shm::ShmSafe)]
/// #[repr(C)]
/// struct HoldsAReference<'a> {
///     value: &'a u32,
/// }
/// ```
///
/// An `Option<String>` suggests an array whose length 0 means `None`:
///
/// ```compile_fail
/// #[derive(shm::ShmSafe)]
/// #[repr(C)]
/// struct HoldsAnOptionalName {
///     name: Option<String>,
/// }
/// ```
///
/// (rustdoc checks only that these fail to compile; the messages
/// themselves are checked by the derive's unit tests.)
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
/// # Where the derive finds `shm`
///
/// The generated impl names this crate `::shm` (or `::procsync::shm` when
/// the derive is used as `procsync::shm::ShmSafe`). A crate that renamed
/// its dependency says where it is, as with serde's `#[serde(crate)]`:
///
/// ```
/// extern crate shm as my_shm;
/// use my_shm::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[shm(crate = "my_shm")]
/// #[repr(C)]
/// struct Point {
///     x: u32,
///     y: u32,
/// }
/// # fn main() {}
/// ```
///
/// The path given is the one used:
///
/// ```compile_fail
/// use shm::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[shm(crate = "no_such_crate")]
/// #[repr(C)]
/// struct Point {
///     x: u32,
/// }
/// ```
///
/// # Layout description
///
/// A named segment is checked by layout, not by Rust path: the derive also
/// writes [`describe_layout`](ShmSafe::describe_layout), which records the
/// struct's `repr`, size and alignment and each field's name, offset and
/// type (see [`crate::layout`]). Two programs that declare the same struct
/// in different modules open each other's segments; a field of another
/// type, name or offset is refused, naming the field.
///
/// # Safety
///
/// Implement it by hand only for a type that meets every rule above. A wrong
/// implementation lets another process create an invalid value or a dangling
/// pointer in this one.
///
/// A hand-written impl should also describe its fields in
/// [`describe_layout`](ShmSafe::describe_layout) (see
/// [`LayoutWriter`](crate::layout::LayoutWriter) for an example); the
/// default records only the type's short name, size and alignment, so a
/// changed field of the same size goes unnoticed. The description must be
/// true: it is what lets another program's segment be taken for this type.
pub unsafe trait ShmSafe: Sized {
    /// Writes this type's layout description into `out` (see
    /// [`crate::layout`]). The default describes the type as opaque: its
    /// name without module path, its size and alignment.
    fn describe_layout(out: &mut LayoutWriter) {
        out.opaque(
            &crate::layout::short_type_name::<Self>(),
            size_of::<Self>(),
            align_of::<Self>(),
        );
    }
}

macro_rules! impl_shm_safe {
    ($($ty:ident),* $(,)?) => {
        $(
            // SAFETY: a primitive or an atomic of one: plain data with a fixed
            // layout, valid at any address.
            unsafe impl ShmSafe for $ty {
                fn describe_layout(out: &mut LayoutWriter) {
                    out.primitive(stringify!($ty), size_of::<$ty>(), align_of::<$ty>());
                }
            }
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
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    fn describe_layout(out: &mut LayoutWriter) {
        out.array::<T>(N);
    }
}

// SAFETY: zero-sized and holds nothing.
unsafe impl<T: ?Sized> ShmSafe for std::marker::PhantomData<T> {
    fn describe_layout(out: &mut LayoutWriter) {
        out.primitive("PhantomData", 0, 1);
    }
}

// SAFETY: zero-sized and holds nothing (so `Mutex<()>` is a plain lock that
// a `Condvar` can wait with, like Python's `Condition(Lock())`).
unsafe impl ShmSafe for () {
    fn describe_layout(out: &mut LayoutWriter) {
        out.primitive("()", 0, 1);
    }
}
