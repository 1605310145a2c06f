//! The header room: what a named segment records about itself (magic,
//! layout version, kind, the element type's layout fingerprint, size,
//! alignment and layout description, the length, the creator), written by
//! the creator and checked by every opener, with each way of not matching
//! turned into an [`Error`].

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::mapping::page_size;
use crate::layout::{self, Described};
use crate::pid::{Identity, Pid};
use crate::{Error, Futex, Result, ShmSafe};

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Value = 1,
    Slice = 2,
    Bytes = 3,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Value => "a value",
            Kind::Slice => "a slice",
            Kind::Bytes => "bytes",
        }
    }

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
    /// The element type's name without module paths, for messages only.
    type_name: String,
    /// The element type's layout description and fingerprint.
    described: Described,
    /// Elements (1 for a value, bytes for a byte segment). `None` in an
    /// `open` that accepts whatever length the segment has.
    len: Option<usize>,
}

impl Layout {
    pub(crate) fn value<T: ShmSafe>() -> Layout {
        Layout {
            kind: Kind::Value,
            elem_size: size_of::<T>(),
            elem_align: align_of::<T>(),
            type_name: layout::short_type_name::<T>(),
            described: Described::of::<T>(),
            len: Some(1),
        }
    }

    pub(crate) fn slice<T: ShmSafe>(len: Option<usize>) -> Layout {
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
            type_name: "u8".into(),
            described: Described::of::<u8>(),
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
            &self.type_name,
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
    /// element's alignment (at least a cache line). [`data_offset_for`] is
    /// the same rule for a tool reading the file.
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
        Ok(data_offset_for(self.elem_align))
    }
}

/// Where the data of elements aligned to `align` (at most a page) starts.
pub(crate) fn data_offset_for(align: usize) -> usize {
    size_of::<Header>().next_multiple_of(align.max(64))
}

/// The first eight bytes of every procsync segment.
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"PROCSYNC");
/// Bumped whenever `Header` or a primitive's layout changes incompatibly.
/// 3: the element type is checked by layout fingerprint and description,
/// not by Rust path. 4: the creator's identity and the persistent flag (for
/// the cleanup of names whose creator died, `crate::tracker`).
pub(crate) const LAYOUT_VERSION: u32 = 4;
/// `Header::flags`: the name outlives its creator (`Segment::persist`).
pub(crate) const PERSISTENT: u32 = 1;
/// `Header::flags`: created with the tracker off (`shm::tracker::disable`):
/// a tracker started later must not adopt it.
pub(crate) const UNTRACKED: u32 = 2;
/// The header's `state` once the creator has finished. Before that it is 0
/// (a freshly truncated file is all zeros).
pub(super) const READY: u32 = 0x5244_5921;
const TYPE_NAME_CAP: usize = 96;
/// Room for the element type's layout description (a longer one is kept
/// cut short: a mismatch past the cut is still refused, by fingerprint,
/// but not named).
const DESCRIPTION_CAP: usize = 1856;

/// The start of every named segment.
///
/// The first four fields keep their offsets in every layout version: they
/// are the create/open protocol's (see `protocol`), and an opener reads the
/// version there before anything else. The rest describe the data.
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
    type_name_len: AtomicU32,
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    len: AtomicU64,
    /// The element type's layout fingerprint (`shm::layout::fingerprint`).
    fingerprint: AtomicU64,
    /// The creator's pid namespace (`shm::pid::pid_namespace`; 0 unknown).
    pid_namespace: AtomicU64,
    /// Bytes of `description` in use.
    description_len: AtomicU32,
    /// Bytes of the whole description (more than `description_len` if it
    /// was cut short).
    description_full_len: AtomicU32,
    /// The creator's identity (`shm::pid::Identity` bits): a pid alone may
    /// name a new process by the time someone asks whether the creator
    /// lives. Stored with `creator_pid`.
    pub(super) creator_identity: AtomicU64,
    /// [`PERSISTENT`], set by the creator's `persist`.
    pub(super) flags: AtomicU32,
    /// Zero; room for a later flag word.
    reserved: AtomicU32,
    /// The element type's name without module paths, for messages only.
    type_name: [AtomicU8; TYPE_NAME_CAP],
    /// The element type's layout description (see `shm::layout`).
    description: [AtomicU8; DESCRIPTION_CAP],
}

const _: () = assert!(size_of::<Header>() == 2048);

/// Bytes of a header (of this layout version).
pub(crate) const fn header_size() -> usize {
    size_of::<Header>()
}

/// Where an opener finds the layout version, in every version.
pub(super) const VERSION_OFFSET: usize = std::mem::offset_of!(Header, layout_version);
/// Where an opener finds the state word, in every version.
pub(super) const STATE_OFFSET: usize = std::mem::offset_of!(Header, state);

impl Header {
    /// The creator's pid as recorded (`None` before it is), and whether
    /// that process still runs: judged by its recorded identity (stored
    /// before the pid), so a newcomer that took a dead creator's pid is not
    /// taken for it; by the pid alone only in a header without an identity
    /// (an older layout's).
    pub(super) fn creator(&self) -> Option<(Pid, bool)> {
        if let Some(identity) = Identity::from_bits(self.creator_identity.load(Ordering::Relaxed)) {
            return Some((identity.pid(), identity.is_running()));
        }
        let pid = Pid::from_raw(self.creator_pid.load(Ordering::Relaxed))?;
        Some((pid, crate::pid::is_running(pid)))
    }

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
        self.fingerprint
            .store(layout.described.fingerprint, relaxed);
        self.pid_namespace
            .store(crate::pid::pid_namespace(), relaxed);
        let n = store_bytes(&self.type_name, layout.type_name.as_bytes());
        self.type_name_len.store(n as u32, relaxed);
        let description = &layout.described.bytes;
        let n = store_bytes(&self.description, description);
        self.description_len.store(n as u32, relaxed);
        self.description_full_len.store(
            u32::try_from(description.len()).unwrap_or(u32::MAX),
            relaxed,
        );
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
        let fingerprint = self.fingerprint.load(relaxed);
        let difference = if found_kind != Some(layout.kind) {
            Some(format!(
                "kind: {} here, {} in the segment",
                layout.kind.word(),
                found_kind.map_or("an unknown kind", Kind::word)
            ))
        } else if fingerprint != layout.described.fingerprint
            || elem_size != layout.elem_size as u64
            || elem_align != layout.elem_align as u64
        {
            Some(self.layout_difference(layout))
        } else if layout.len.is_some_and(|len| len as u64 != found_len) {
            Some(format!(
                "length: {} here, {found_len} in the segment",
                layout.len.unwrap_or(0)
            ))
        } else {
            None
        };
        if let Some(difference) = difference {
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
                difference,
            });
        }
        Ok(found_len as usize)
    }

    /// The first difference between the segment's element layout and
    /// `layout`'s, in words.
    fn layout_difference(&self, layout: &Layout) -> String {
        let relaxed = Ordering::Relaxed;
        let stored = (self.description_len.load(relaxed) as usize).min(DESCRIPTION_CAP);
        let there = load_bytes(&self.description[..stored]);
        if let Some(found) = layout::first_difference(&layout.described.bytes, &there) {
            return found;
        }
        let cut = (self.description_full_len.load(relaxed) as usize) > stored;
        format!(
            "layout fingerprint {:#018x} here, {:#018x} in the segment{}",
            layout.described.fingerprint,
            self.fingerprint.load(relaxed),
            if cut {
                " (the difference lies past the part of the description the header holds)"
            } else {
                ""
            }
        )
    }

    /// The element type's name as the creator recorded it.
    fn type_name(&self) -> String {
        let n = (self.type_name_len.load(Ordering::Relaxed) as usize).min(TYPE_NAME_CAP);
        String::from_utf8_lossy(&load_bytes(&self.type_name[..n])).into_owned()
    }
}

/// Stores as much of `bytes` as fits in `cells`; returns how much.
fn store_bytes(cells: &[AtomicU8], bytes: &[u8]) -> usize {
    let n = bytes.len().min(cells.len());
    for (cell, &b) in cells.iter().zip(&bytes[..n]) {
        cell.store(b, Ordering::Relaxed);
    }
    n
}

fn load_bytes(cells: &[AtomicU8]) -> Vec<u8> {
    cells.iter().map(|b| b.load(Ordering::Relaxed)).collect()
}

/// What a tool reads of a segment's header from the file's bytes, without
/// mapping it (see `crate::inventory`).
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    /// The state word: [`READY`] once published, 0 while the creator
    /// initialises it.
    pub(crate) state: u32,
    pub(crate) layout_version: u32,
    pub(crate) creator_pid: i32,
    /// The creator's identity bits (0 before layout version 4, or before
    /// the creator recorded it).
    pub(crate) creator_identity: u64,
    /// The rest is only read from a header of this build's version.
    pub(crate) described: Option<DescribedFacts>,
}

/// The data's description in a header of this build's layout version.
#[derive(Clone, Debug)]
pub(crate) struct DescribedFacts {
    pub(crate) kind: Option<&'static str>,
    pub(crate) type_name: String,
    pub(crate) elem_size: u64,
    pub(crate) elem_align: u64,
    pub(crate) len: u64,
    pub(crate) persistent: bool,
    pub(crate) untracked: bool,
    /// The element type's layout description, as much as the header keeps.
    pub(crate) description: Vec<u8>,
}

/// Why bytes are not a procsync header.
pub(crate) enum NotAHeader {
    /// Fewer bytes than the stable part of a header, or than a whole
    /// header of this build's layout version.
    Short,
    /// The magic is not procsync's.
    Foreign,
}

impl Facts {
    /// Reads a header from the first bytes of a segment's file (as many as
    /// there are, up to the header's size).
    pub(crate) fn read(bytes: &[u8]) -> std::result::Result<Facts, NotAHeader> {
        use std::mem::offset_of;
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_ne_bytes(b.try_into().expect("four bytes")))
        };
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .map(|b| u64::from_ne_bytes(b.try_into().expect("eight bytes")))
        };
        let magic = u64_at(offset_of!(Header, magic)).ok_or(NotAHeader::Short)?;
        if magic != MAGIC {
            return Err(NotAHeader::Foreign);
        }
        let stable = (
            u32_at(STATE_OFFSET),
            u32_at(VERSION_OFFSET),
            u32_at(offset_of!(Header, creator_pid)),
        );
        let (Some(state), Some(layout_version), Some(creator_pid)) = stable else {
            return Err(NotAHeader::Short);
        };
        let mut facts = Facts {
            state,
            layout_version,
            creator_pid: creator_pid as i32,
            creator_identity: 0,
            described: None,
        };
        if layout_version != LAYOUT_VERSION {
            // Another version's header: its size is not known here.
            return Ok(facts);
        }
        if bytes.len() < size_of::<Header>() {
            // This version's header, cut before its end.
            return Err(NotAHeader::Short);
        }
        let at32 = |at| u32_at(at).unwrap_or(0);
        let at64 = |at| u64_at(at).unwrap_or(0);
        facts.creator_identity = at64(offset_of!(Header, creator_identity));
        let name_start = offset_of!(Header, type_name);
        let name_len = (at32(offset_of!(Header, type_name_len)) as usize).min(TYPE_NAME_CAP);
        facts.described = Some(DescribedFacts {
            kind: Kind::from_u32(at32(offset_of!(Header, kind))).map(|kind| match kind {
                Kind::Value => "value",
                Kind::Slice => "slice",
                Kind::Bytes => "bytes",
            }),
            type_name: String::from_utf8_lossy(&bytes[name_start..name_start + name_len])
                .into_owned(),
            elem_size: at64(offset_of!(Header, elem_size)),
            elem_align: at64(offset_of!(Header, elem_align)),
            len: at64(offset_of!(Header, len)),
            persistent: at32(offset_of!(Header, flags)) & PERSISTENT != 0,
            untracked: at32(offset_of!(Header, flags)) & UNTRACKED != 0,
            description: {
                let start = offset_of!(Header, description);
                let len = (at32(offset_of!(Header, description_len)) as usize).min(DESCRIPTION_CAP);
                bytes[start..start + len].to_vec()
            },
        });
        Ok(facts)
    }
}

impl Facts {
    /// Where a published header of this build's version says the data ends
    /// (the file's least size); `None` if it does not say (not published,
    /// another version, an unknown kind, an impossible layout).
    pub(crate) fn data_end(&self) -> Option<u64> {
        let described = self.described.as_ref().filter(|_| self.state == READY)?;
        described.kind?;
        let align = usize::try_from(described.elem_align).ok()?;
        if !align.is_power_of_two() || align > page_size() {
            return None;
        }
        let data = described.elem_size.checked_mul(described.len)?;
        (data_offset_for(align) as u64).checked_add(data)
    }
}

impl Header {
    /// Marks the name as outliving its creator (the creator's `persist`).
    pub(super) fn mark_persistent(&self) {
        self.flags.fetch_or(PERSISTENT, Ordering::Relaxed);
    }

    /// Marks the name as made with the tracker off.
    pub(super) fn mark_untracked(&self) {
        self.flags.fetch_or(UNTRACKED, Ordering::Relaxed);
    }
}
