//! The header room: what a named segment records about itself (magic,
//! layout version, kind, the element type's fingerprint, size and
//! alignment, the length, the creator), written by the creator and checked
//! by every opener, with each way of not matching turned into an [`Error`].

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::mapping::page_size;
use crate::{Error, Futex, Result};

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Value = 1,
    Slice = 2,
    Bytes = 3,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Value),
            2 => Some(Kind::Slice),
            3 => Some(Kind::Bytes),
            _ => None,
        }
    }
}

/// The shape of a segment's data: what kind, of which element type, how many.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    kind: Kind,
    elem_size: usize,
    elem_align: usize,
    type_name: &'static str,
    /// Elements (1 for a value, bytes for a byte segment). `None` in an
    /// `open` that accepts whatever length the segment has.
    len: Option<usize>,
}

impl Layout {
    pub(crate) fn value<T>() -> Layout {
        Layout {
            kind: Kind::Value,
            elem_size: size_of::<T>(),
            elem_align: align_of::<T>(),
            type_name: std::any::type_name::<T>(),
            len: Some(1),
        }
    }

    pub(crate) fn slice<T>(len: Option<usize>) -> Layout {
        Layout {
            kind: Kind::Slice,
            len,
            ..Layout::value::<T>()
        }
    }

    pub(crate) fn bytes(len: Option<usize>) -> Layout {
        Layout {
            kind: Kind::Bytes,
            elem_size: 1,
            elem_align: 1,
            type_name: "u8",
            len,
        }
    }

    /// The same layout with exactly `len` elements.
    pub(super) fn with_len(&self, len: usize) -> Layout {
        Layout {
            len: Some(len),
            ..self.clone()
        }
    }

    /// FNV-1a over the kind, the element type's name, size and alignment.
    /// Not the length: a slice opened without a length accepts any.
    fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(&(self.kind as u32).to_le_bytes());
        eat(self.type_name.as_bytes());
        eat(&(self.elem_size as u64).to_le_bytes());
        eat(&(self.elem_align as u64).to_le_bytes());
        hash
    }

    fn describe_parts(
        kind: Kind,
        type_name: &str,
        size: u64,
        align: u64,
        len: Option<u64>,
    ) -> String {
        let count = len.map_or_else(|| "any number of".to_string(), |n| n.to_string());
        match kind {
            Kind::Value => format!("a value of type `{type_name}` ({size} bytes, align {align})"),
            Kind::Slice => {
                format!("a slice of {count} `{type_name}` ({size} bytes, align {align} each)")
            }
            Kind::Bytes => format!("a byte segment of {count} bytes"),
        }
    }

    fn describe(&self) -> String {
        Layout::describe_parts(
            self.kind,
            self.type_name,
            self.elem_size as u64,
            self.elem_align as u64,
            self.len.map(|n| n as u64),
        )
    }

    /// Bytes of data for `len` elements, refusing zero-sized and overflowing
    /// layouts with an error that names `what`.
    pub(super) fn data_bytes(&self, what: &str) -> Result<usize> {
        let len = self.len.unwrap_or(0);
        let bytes = self
            .elem_size
            .checked_mul(len)
            .filter(|&b| b <= isize::MAX as usize / 2);
        match bytes {
            None => Err(Error::InvalidSize {
                what: what.to_string(),
                reason: format!(
                    "{len} elements of {} bytes do not fit in memory",
                    self.elem_size
                ),
            }),
            Some(0) if self.kind == Kind::Bytes => Err(Error::InvalidSize {
                what: what.to_string(),
                reason: "a segment of zero bytes holds nothing; give it at least one byte".into(),
            }),
            Some(b) => Ok(b),
        }
    }

    /// Where the data starts in a named segment: after the header, at the
    /// element's alignment (at least a cache line).
    pub(super) fn data_offset(&self) -> Result<usize> {
        if self.elem_align > page_size() {
            return Err(Error::InvalidSize {
                what: format!("`{}`", self.type_name),
                reason: format!(
                    "alignment {} is larger than a page ({} bytes)",
                    self.elem_align,
                    page_size()
                ),
            });
        }
        Ok(size_of::<Header>().next_multiple_of(self.elem_align.max(64)))
    }
}

/// The first eight bytes of every procsync segment.
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"PROCSYNC");
/// Bumped whenever `Header` or a primitive's layout changes incompatibly.
pub(crate) const LAYOUT_VERSION: u32 = 2;
/// The header's `state` once the creator has finished. Before that it is 0
/// (a freshly truncated file is all zeros).
pub(super) const READY: u32 = 0x5244_5921;
const TYPE_NAME_CAP: usize = 96;

/// The start of every named segment. The first four fields are the
/// create/open protocol's (see `protocol`); the rest describe the data.
/// Written by the creator before it publishes `state = READY` with release
/// ordering; read by openers after they see `READY` with acquire ordering.
/// All atomics, so that a view of another process's bytes is always valid.
#[repr(C)]
pub(super) struct Header {
    pub(super) magic: AtomicU64,
    pub(super) state: Futex,
    layout_version: AtomicU32,
    pub(super) creator_pid: AtomicI32,
    kind: AtomicU32,
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    len: AtomicU64,
    fingerprint: AtomicU64,
    /// The creator's pid namespace (`shm::pid::pid_namespace`; 0 unknown).
    pid_namespace: AtomicU64,
    type_name_len: AtomicU32,
    type_name: [AtomicU8; TYPE_NAME_CAP],
}

impl Header {
    /// Writes everything but the protocol's words (`state`, `creator_pid`):
    /// the creator's step "header written", before it publishes `READY`.
    pub(super) fn write(&self, layout: &Layout) {
        let relaxed = Ordering::Relaxed;
        self.magic.store(MAGIC, relaxed);
        self.layout_version.store(LAYOUT_VERSION, relaxed);
        self.kind.store(layout.kind as u32, relaxed);
        self.elem_size.store(layout.elem_size as u64, relaxed);
        self.elem_align.store(layout.elem_align as u64, relaxed);
        self.len.store(layout.len.unwrap_or(0) as u64, relaxed);
        self.fingerprint.store(layout.fingerprint(), relaxed);
        self.pid_namespace
            .store(crate::pid::pid_namespace(), relaxed);
        let type_name = layout.type_name.as_bytes();
        let n = type_name.len().min(TYPE_NAME_CAP);
        for (cell, &b) in self.type_name.iter().zip(&type_name[..n]) {
            cell.store(b, relaxed);
        }
        self.type_name_len.store(n as u32, relaxed);
    }

    /// Checks a published header (`READY` seen with acquire ordering)
    /// against what the opener asks for; returns the segment's length in
    /// elements.
    pub(super) fn check(&self, name: &str, layout: &Layout) -> Result<usize> {
        let relaxed = Ordering::Relaxed;
        let found_version = self.layout_version.load(relaxed);
        if found_version != LAYOUT_VERSION {
            return Err(Error::LayoutVersion {
                name: name.to_string(),
                found: found_version,
                expected: LAYOUT_VERSION,
            });
        }
        let ours = crate::pid::pid_namespace();
        let theirs = self.pid_namespace.load(relaxed);
        if theirs != 0 && ours != 0 && theirs != ours {
            return Err(Error::OtherPidNamespace {
                name: name.to_string(),
                found: theirs,
                ours,
            });
        }
        let raw_kind = self.kind.load(relaxed);
        let found_kind = Kind::from_u32(raw_kind);
        let found_len = self.len.load(relaxed);
        let elem_size = self.elem_size.load(relaxed);
        let elem_align = self.elem_align.load(relaxed);
        let same_len = layout.len.is_none_or(|len| len as u64 == found_len);
        if found_kind != Some(layout.kind)
            || self.fingerprint.load(relaxed) != layout.fingerprint()
            || elem_size != layout.elem_size as u64
            || elem_align != layout.elem_align as u64
            || !same_len
        {
            let found_desc = match found_kind {
                Some(kind) => Layout::describe_parts(
                    kind,
                    &self.type_name(),
                    elem_size,
                    elem_align,
                    Some(found_len),
                ),
                None => format!("an unknown kind of segment ({raw_kind})"),
            };
            return Err(Error::TypeMismatch {
                name: name.to_string(),
                expected: layout.describe(),
                found: found_desc,
            });
        }
        Ok(found_len as usize)
    }

    /// The element type's name as the creator recorded it.
    fn type_name(&self) -> String {
        let n = (self.type_name_len.load(Ordering::Relaxed) as usize).min(TYPE_NAME_CAP);
        let bytes: Vec<u8> = self.type_name[..n]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
