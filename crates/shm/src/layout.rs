//! Layout descriptions: what a [`ShmSafe`] type looks like in memory, in a
//! form two separately built programs can compare.
//!
//! A named segment records the layout of its element type, not the type's
//! Rust path: two programs that each declare
//!
//! ```
//! # use shm::ShmSafe;
//! #[derive(ShmSafe)]
//! #[repr(C)]
//! struct Point {
//!     x: u32,
//!     y: u32,
//! }
//! ```
//!
//! in whatever module, agree on it, and open each other's segments; a
//! program whose `Point` has `y: u64` is refused with an error naming field
//! `y`.
//!
//! Every [`ShmSafe`] type describes itself through
//! [`ShmSafe::describe_layout`], writing into a [`LayoutWriter`]:
//!
//! - a **primitive** (an integer, a float, `bool`, an atomic, `()`): its
//!   name, size and alignment;
//! - an **array** `[T; N]`: `N` and `T`'s description;
//! - a **struct** (what `#[derive(ShmSafe)]` writes): its `repr`, size and
//!   alignment, then each field's name, offset and type's description, in
//!   declaration order. The struct's own name is kept for messages only:
//!   structs are compared by shape, so renaming or moving one keeps its
//!   segments open;
//! - an **opaque** type: a hand-written `ShmSafe` impl that does not
//!   describe its fields gets the default, its short type name (no module
//!   path), size and alignment.
//!
//! The description is a byte string (a pre-order walk of that tree); its
//! [`fingerprint`] is a 64-bit FNV-1a hash of it, struct names left out.
//! A named segment's header keeps the fingerprint and as much of the
//! description as fits, so that a mismatch names its first difference.

use crate::ShmSafe;

const PRIMITIVE: u8 = 1;
const ARRAY: u8 = 2;
const STRUCT: u8 = 3;
const OPAQUE: u8 = 4;
const CELL: u8 = 5;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Where a [`ShmSafe`] type writes its layout description (see the
/// [module documentation](self)).
///
/// A struct writes [`structure`](LayoutWriter::structure), then exactly
/// that many [`field`](LayoutWriter::field)s, in declaration order; this is
/// what `#[derive(ShmSafe)]` generates, and what a hand-written impl of a
/// struct should do too:
///
/// ```
/// use shm::layout::{self, LayoutWriter};
/// use shm::ShmSafe;
/// use std::mem::{align_of, offset_of, size_of};
/// use std::sync::atomic::AtomicU32;
///
/// #[repr(C)]
/// struct Gate {
///     state: AtomicU32,
///     waiters: AtomicU32,
/// }
///
/// // SAFETY: #[repr(C)], two atomics: plain data, valid at any address.
/// unsafe impl ShmSafe for Gate {
///     fn describe_layout(out: &mut LayoutWriter) {
///         out.structure("Gate", "C", size_of::<Gate>(), align_of::<Gate>(), 2);
///         out.field::<AtomicU32>("state", offset_of!(Gate, state));
///         out.field::<AtomicU32>("waiters", offset_of!(Gate, waiters));
///     }
/// }
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Derived {
///     state: AtomicU32,
///     waiters: AtomicU32,
/// }
///
/// assert_eq!(layout::fingerprint::<Gate>(), layout::fingerprint::<Derived>());
/// ```
#[derive(Debug)]
pub struct LayoutWriter {
    bytes: Vec<u8>,
    hash: u64,
}

impl LayoutWriter {
    fn new() -> LayoutWriter {
        LayoutWriter {
            bytes: Vec::new(),
            hash: FNV_OFFSET,
        }
    }

    /// A primitive: an integer, float, `bool`, atomic, or another leaf that
    /// is known by its `name` (which two programs must spell alike).
    pub fn primitive(&mut self, name: &str, size: usize, align: usize) {
        self.byte(PRIMITIVE);
        self.text(name, true);
        self.number(size as u64);
        self.number(align as u64);
    }

    /// An array of `len` elements of `T` (`[T; len]`).
    pub fn array<T: ShmSafe>(&mut self, len: usize) {
        self.byte(ARRAY);
        self.number(size_of::<T>().saturating_mul(len) as u64);
        self.number(align_of::<T>() as u64);
        self.number(len as u64);
        T::describe_layout(self);
    }

    /// A struct named `name` (for messages only: not part of the
    /// fingerprint) with `repr` (as written in `#[repr(...)]`, e.g. `"C"`
    /// or `"C, align(64)"`), `size` and `align`, followed by exactly
    /// `fields` calls of [`field`](LayoutWriter::field).
    pub fn structure(&mut self, name: &str, repr: &str, size: usize, align: usize, fields: usize) {
        self.byte(STRUCT);
        self.text(name, false);
        self.text(repr, true);
        self.number(size as u64);
        self.number(align as u64);
        self.number(fields as u64);
    }

    /// One field of the struct being written: its `name` (`"0"`, `"1"`, ...
    /// in a tuple struct), its `offset` in bytes, and its type `T`.
    pub fn field<T: ShmSafe>(&mut self, name: &str, offset: usize) {
        self.text(name, true);
        self.number(offset as u64);
        T::describe_layout(self);
    }

    /// One field of the struct being written whose `T` sits behind an
    /// `UnsafeCell`: written by whoever holds the primitive's lock, never
    /// to be read as plain data. A lock's protected data is described so
    /// (`sync-lock`'s `Mutex<T>`): a struct with the same fields, but a
    /// plain `T` where the cell is, does not match it.
    pub fn cell_field<T: ShmSafe>(&mut self, name: &str, offset: usize) {
        self.text(name, true);
        self.number(offset as u64);
        self.byte(CELL);
        T::describe_layout(self);
    }

    /// A procsync primitive `T` (a lock word, a semaphore, a condition
    /// variable...), described by its protocol's `name` and version, size
    /// and alignment: what its words mean is the protocol, not a field
    /// list, and a user's struct of the same shape must not pass for it.
    pub fn protocol<T>(&mut self, name: &str) {
        self.opaque(&format!("procsync {name}"), size_of::<T>(), align_of::<T>());
    }

    /// A type described only by its `name`, `size` and `align`: the default
    /// for a hand-written `ShmSafe` impl (see
    /// [`ShmSafe::describe_layout`]).
    pub fn opaque(&mut self, name: &str, size: usize, align: usize) {
        self.byte(OPAQUE);
        self.text(name, true);
        self.number(size as u64);
        self.number(align as u64);
    }

    fn byte(&mut self, b: u8) {
        self.put(&[b], true);
    }

    /// A length-prefixed string (at most 255 bytes kept).
    fn text(&mut self, s: &str, hashed: bool) {
        let s = &s.as_bytes()[..s.len().min(255)];
        self.put(&[s.len() as u8], hashed);
        self.put(s, hashed);
    }

    /// LEB128.
    fn number(&mut self, mut n: u64) {
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.byte(low);
                return;
            }
            self.byte(low | 0x80);
        }
    }

    fn put(&mut self, bytes: &[u8], hashed: bool) {
        self.bytes.extend_from_slice(bytes);
        if hashed {
            for &b in bytes {
                self.hash ^= u64::from(b);
                self.hash = self.hash.wrapping_mul(FNV_PRIME);
            }
        }
    }
}

/// The 64-bit fingerprint of `T`'s layout description: equal for types
/// that are laid out alike, whatever they or their modules are called.
///
/// ```
/// mod a {
///     #[derive(shm::ShmSafe)]
///     #[repr(C)]
///     pub struct Point { pub x: u32, pub y: u32 }
/// }
/// mod b {
///     #[derive(shm::ShmSafe)]
///     #[repr(C)]
///     pub struct Point { pub x: u32, pub y: u32 }
/// }
/// mod c {
///     #[derive(shm::ShmSafe)]
///     #[repr(C)]
///     pub struct Point { pub x: u32, pub y: u64 }
/// }
/// use shm::layout::fingerprint;
/// assert_eq!(fingerprint::<a::Point>(), fingerprint::<b::Point>());
/// assert_ne!(fingerprint::<a::Point>(), fingerprint::<c::Point>());
/// ```
pub fn fingerprint<T: ShmSafe>() -> u64 {
    Described::of::<T>().fingerprint
}

/// `std::any::type_name` without module paths: `Pair<AtomicU32>`, not
/// `my_crate::pair::Pair<core::sync::atomic::AtomicU32>`.
pub fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut segment_start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(segment_start);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                segment_start = out.len();
            }
        }
    }
    out
}

/// Whether `description` (a segment's, as its header keeps it) is a
/// struct's whose first field is named `field`, sits at offset 0 and is
/// exactly an `F` (its whole description, protocol name and version
/// included): how a tool recognises a generic wrapper around a procsync
/// primitive (a `Mutex<T>`'s `raw: RawLock`) whose other parameter it does
/// not know, by what only that primitive's description carries rather than
/// by a type name any type may have.
pub(crate) fn starts_with_field<F: ShmSafe>(description: &[u8], field: &str) -> bool {
    let mut expected = LayoutWriter::new();
    expected.field::<F>(field, 0);
    let rest = (|| {
        let mut at = 0usize;
        let mut byte = || {
            let b = *description.get(at)?;
            at += 1;
            Some(b)
        };
        if byte()? != STRUCT {
            return None;
        }
        // The struct's name and repr (length-prefixed texts).
        for _ in 0..2 {
            let len = usize::from(byte()?);
            for _ in 0..len {
                byte()?;
            }
        }
        // Its size, alignment and number of fields (LEB128).
        let mut fields = 0u64;
        for n in 0..3 {
            let (mut value, mut shift) = (0u64, 0u32);
            loop {
                let b = byte()?;
                value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            if n == 2 {
                fields = value;
            }
        }
        (fields >= 1).then_some(at)
    })();
    rest.is_some_and(|at| description[at..].starts_with(&expected.bytes))
}

/// A type's description as written, with its fingerprint.
#[derive(Clone, Debug)]
pub(crate) struct Described {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fingerprint: u64,
}

impl Described {
    pub(crate) fn of<T: ShmSafe>() -> Described {
        let mut out = LayoutWriter::new();
        T::describe_layout(&mut out);
        Described {
            fingerprint: out.hash,
            bytes: out.bytes,
        }
    }
}

/// A decoded description, for naming differences.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Leaf {
        opaque: bool,
        name: String,
        size: u64,
        align: u64,
    },
    Array {
        size: u64,
        align: u64,
        len: u64,
        elem: Box<Node>,
    },
    Struct {
        name: String,
        repr: String,
        size: u64,
        align: u64,
        fields: Vec<(String, u64, Node)>,
        /// How many fields the struct has (more than `fields` if the
        /// description was cut short).
        count: u64,
    },
    /// A value behind an `UnsafeCell` (see `LayoutWriter::cell_field`).
    Cell(Box<Node>),
    /// The stored description ended here (it did not fit the header).
    Cut,
}

impl Node {
    fn decode(bytes: &[u8]) -> Node {
        Reader { bytes, at: 0 }.node(0)
    }

    /// How the type is called in messages.
    fn label(&self) -> String {
        match self {
            Node::Leaf { name, .. } => name.clone(),
            Node::Array { len, elem, .. } => format!("[{}; {len}]", elem.label()),
            Node::Struct { name, .. } => name.clone(),
            Node::Cell(inner) => format!("UnsafeCell<{}>", inner.label()),
            Node::Cut => "(not recorded)".into(),
        }
    }

    fn size_align(&self) -> Option<(u64, u64)> {
        match self {
            Node::Leaf { size, align, .. }
            | Node::Array { size, align, .. }
            | Node::Struct { size, align, .. } => Some((*size, *align)),
            Node::Cell(inner) => inner.size_align(),
            Node::Cut => None,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn text(&mut self) -> Option<String> {
        let len = usize::from(self.byte()?);
        let s = self.bytes.get(self.at..self.at + len)?;
        self.at += len;
        Some(String::from_utf8_lossy(s).into_owned())
    }

    fn number(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn node(&mut self, depth: u32) -> Node {
        self.try_node(depth).unwrap_or(Node::Cut)
    }

    fn try_node(&mut self, depth: u32) -> Option<Node> {
        if depth > 64 {
            return None;
        }
        Some(match self.byte()? {
            tag @ (PRIMITIVE | OPAQUE) => Node::Leaf {
                opaque: tag == OPAQUE,
                name: self.text()?,
                size: self.number()?,
                align: self.number()?,
            },
            CELL => Node::Cell(Box::new(self.node(depth + 1))),
            ARRAY => Node::Array {
                size: self.number()?,
                align: self.number()?,
                len: self.number()?,
                elem: Box::new(self.node(depth + 1)),
            },
            STRUCT => {
                let name = self.text()?;
                let repr = self.text()?;
                let size = self.number()?;
                let align = self.number()?;
                let count = self.number()?;
                let mut fields = Vec::new();
                for _ in 0..count {
                    let Some(field) = self.text() else { break };
                    let Some(offset) = self.number() else { break };
                    let ty = self.node(depth + 1);
                    let cut = ty == Node::Cut;
                    fields.push((field, offset, ty));
                    if cut {
                        break;
                    }
                }
                Node::Struct {
                    name,
                    repr,
                    size,
                    align,
                    fields,
                    count,
                }
            }
            _ => return None,
        })
    }
}

/// The first difference between the layout described by `here` (this
/// program's) and `there` (the segment's, perhaps cut short), in words;
/// `None` if none can be named.
pub(crate) fn first_difference(here: &[u8], there: &[u8]) -> Option<String> {
    diff(&Node::decode(here), &Node::decode(there), "")
}

fn diff(here: &Node, there: &Node, path: &str) -> Option<String> {
    let what = if path.is_empty() {
        "the type".to_string()
    } else if path.starts_with('[') {
        "each element".to_string()
    } else {
        format!("field `{path}`")
    };
    let differ = || {
        Some(format!(
            "{what}: `{}` here, `{}` in the segment",
            here.label(),
            there.label()
        ))
    };
    match (here, there) {
        (Node::Cut, _) | (_, Node::Cut) => None,
        (Node::Cell(a), Node::Cell(b)) => diff(a, b, path),
        (Node::Leaf { .. }, Node::Leaf { .. }) => (here != there).then(differ).flatten(),
        (
            Node::Array {
                len: len_a,
                elem: a,
                ..
            },
            Node::Array {
                len: len_b,
                elem: b,
                ..
            },
        ) => {
            if len_a != len_b {
                return differ();
            }
            diff(a, b, &format!("{path}[_]"))
        }
        (
            Node::Struct {
                repr: repr_a,
                fields: fields_a,
                count: count_a,
                ..
            },
            Node::Struct {
                repr: repr_b,
                fields: fields_b,
                count: count_b,
                ..
            },
        ) => {
            if repr_a != repr_b {
                return Some(format!(
                    "{what}: repr({repr_a}) here, repr({repr_b}) in the segment"
                ));
            }
            let inner = |name: &str| {
                if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            };
            for (i, ((name_a, off_a, ty_a), (name_b, off_b, ty_b))) in
                fields_a.iter().zip(fields_b).enumerate()
            {
                if name_a != name_b {
                    let place = if path.is_empty() {
                        String::new()
                    } else {
                        format!("in field `{path}`, ")
                    };
                    return Some(format!(
                        "{place}field {} is `{name_a}` here, `{name_b}` in the segment",
                        i + 1
                    ));
                }
                if let Some(found) = diff(ty_a, ty_b, &inner(name_a)) {
                    return Some(found);
                }
                if off_a != off_b {
                    return Some(format!(
                        "field `{}`: at offset {off_a} here, {off_b} in the segment",
                        inner(name_a)
                    ));
                }
            }
            if count_a != count_b {
                let owner = if path.is_empty() {
                    format!("`{}`", here.label())
                } else {
                    what.clone()
                };
                return Some(format!(
                    "{owner} has {count_a} fields here, {count_b} in the segment"
                ));
            }
            size_align_difference(&what, here, there)
        }
        _ => differ(),
    }
}

fn size_align_difference(what: &str, here: &Node, there: &Node) -> Option<String> {
    let ((size_a, align_a), (size_b, align_b)) = (here.size_align()?, there.size_align()?);
    if size_a != size_b {
        return Some(format!(
            "{what}: {size_a} bytes here, {size_b} in the segment"
        ));
    }
    if align_a != align_b {
        return Some(format!(
            "{what}: alignment {align_a} here, {align_b} in the segment"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    #[test]
    fn short_names_drop_module_paths() {
        assert_eq!(short_type_name::<AtomicU64>(), "AtomicU64");
        assert_eq!(
            short_type_name::<Option<std::sync::atomic::AtomicU32>>(),
            "Option<AtomicU32>"
        );
        assert_eq!(short_type_name::<[u8; 4]>(), "[u8; 4]");
    }

    #[test]
    fn a_cut_description_names_what_it_can() {
        let here = Described::of::<[AtomicU32; 3]>().bytes;
        let there = Described::of::<[AtomicU64; 3]>().bytes;
        assert_eq!(
            first_difference(&here, &there).as_deref(),
            Some("each element: `AtomicU32` here, `AtomicU64` in the segment")
        );
        assert_eq!(first_difference(&here, &there[..3]), None);
    }
}
