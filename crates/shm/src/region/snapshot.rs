//! The snapshot room: a private copy of a named segment's file, read with
//! `pread` into this process's heap and looked at there, for tools that
//! must not map a segment (a mapping of a file another process shrinks
//! raises SIGBUS on the first page it no longer covers; a copy is just
//! memory).

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use super::header::{Header, Layout, MAGIC, READY};
use super::name::ShmName;
use super::os_error;
use crate::{sys, Error, Result, ShmSafe};

/// One page-aligned block of the copy: every type a segment holds is
/// aligned to at most a page, and the data starts at its alignment from
/// the file's start.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Block([u8; 4096]);

/// A private copy of a named segment's file, taken by [`Snapshot::read`]:
/// what a tool (`procsync inspect`) looks at instead of mapping the
/// segment. Each part of the copy is what the file held at some moment
/// during the read (the copy is not atomic: a primitive's words may come
/// from moments a few microseconds apart). Nothing in the file is changed,
/// no lock is taken, and a file shrunk or grown meanwhile gives a shorter
/// copy (then [`Error::Truncated`]), never a signal.
///
/// ```
/// use shm::inventory::Snapshot;
/// use shm::Shared;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let name = format!("procsync-doc-snapshot-{}", std::process::id());
/// let counter = Shared::create(&name, AtomicU64::new(41))?;
/// let copy = Snapshot::read(&name)?;
/// counter.fetch_add(1, Ordering::Relaxed);
/// // The copy is this process's own memory: as it was when read.
/// assert_eq!(copy.value::<AtomicU64>()?.load(Ordering::Relaxed), 41);
/// assert!(copy.value::<u32>().is_err()); // another type: refused
/// # Ok::<(), shm::Error>(())
/// ```
pub struct Snapshot {
    /// The name, as text (escaped if it is not UTF-8), for errors.
    name: String,
    blocks: Vec<Block>,
    /// Bytes of the file copied into `blocks`.
    len: usize,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("name", &self.name)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Copies the file of segment `name` (as large as `fstat` says it is
    /// when opened, or less if it shrinks while it is read) with `pread`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`], [`Error::NotFound`],
    /// [`Error::PermissionDenied`], [`Error::Os`].
    pub fn read(name: impl AsRef<OsStr>) -> Result<Snapshot> {
        let parsed = ShmName::parse(name)?;
        let shown = parsed.as_str().to_string();
        let file =
            std::fs::File::open(sys::shm_path(parsed.as_os_str())).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotFound {
                    name: shown.clone(),
                },
                io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                    name: shown.clone(),
                },
                _ => os_error("open", &shown, e),
            })?;
        let size = sys::fstat(file.as_fd())
            .map_err(|e| os_error("fstat", &shown, e))?
            .size;
        let size = usize::try_from(size).map_err(|_| Error::InvalidSize {
            what: format!("segment {shown:?}"),
            reason: format!("{size} bytes do not fit in memory"),
        })?;
        let mut snapshot = Snapshot {
            name: shown,
            blocks: vec![Block([0; 4096]); size.div_ceil(4096)],
            len: 0,
        };
        let buffer = &mut snapshot.bytes_mut()[..size];
        let mut len = 0;
        while len < size {
            match sys::pread(file.as_fd(), &mut buffer[len..], len as u64) {
                Ok(0) => break, // shrunk meanwhile
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(os_error("pread", &snapshot.name, e)),
            }
        }
        snapshot.len = len;
        Ok(snapshot)
    }

    /// The segment's name, as text (escaped as by
    /// [`escape`](super::inventory::escape) if it is not UTF-8).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bytes copied: the file's, from its start.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `blocks` is a vector of plain byte arrays, contiguous,
        // at least `len` bytes long (`len` never exceeds the size the
        // blocks were made for); the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let all = self.blocks.len() * size_of::<Block>();
        // SAFETY: as in `bytes`, all of the blocks, borrowed mutably from
        // `self` for as long as the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), all) }
    }

    /// The copy's value, if the segment is published and holds a value of
    /// type `T` (checked as [`Shared::open`](crate::Shared::open) checks
    /// it: layout version, kind, layout fingerprint, size and alignment).
    ///
    /// # Errors
    ///
    /// [`Error::Foreign`], [`Error::Uninitialized`] (not published yet),
    /// [`Error::LayoutVersion`], [`Error::OtherPidNamespace`],
    /// [`Error::TypeMismatch`], [`Error::Truncated`] (the copy ends before
    /// the header or the data does), [`Error::InvalidSize`].
    pub fn value<T: ShmSafe>(&self) -> Result<&T> {
        let (at, _) = self.data(&Layout::value::<T>())?;
        // SAFETY: `data` checked that the copy holds a published header
        // describing exactly `T`'s layout, and `size_of::<T>()` bytes at
        // `at`, which is a multiple of `T`'s alignment from the page-aligned
        // start of the copy. `T: ShmSafe` is valid for the bit patterns a
        // segment holds, as for `Shared::open`; the reference borrows `self`
        // and nothing writes the copy meanwhile (the methods of `T` that
        // store would only change this process's copy).
        Ok(unsafe { &*self.bytes().as_ptr().add(at).cast::<T>() })
    }

    /// The copy's elements, if the segment is published and holds a slice
    /// of `T` (checked as [`SharedSlice::open`](crate::SharedSlice::open)
    /// checks it, any length).
    ///
    /// # Errors
    ///
    /// As [`value`](Snapshot::value).
    pub fn slice<T: ShmSafe>(&self) -> Result<&[T]> {
        let (at, len) = self.data(&Layout::slice::<T>(None))?;
        // SAFETY: as in `value`, for `len` elements of `T` at `at`, which
        // `data` checked the copy holds.
        Ok(unsafe { std::slice::from_raw_parts(self.bytes().as_ptr().add(at).cast::<T>(), len) })
    }

    /// Checks the copy's header against `layout`; returns where the data
    /// starts and how many elements there are, all within the copy.
    fn data(&self, layout: &Layout) -> Result<(usize, usize)> {
        let name = self.name.as_str();
        let truncated = |expected: usize| Error::Truncated {
            name: name.to_string(),
            expected: expected as u64,
            actual: self.len as u64,
        };
        if self.len < size_of::<Header>() {
            return Err(truncated(size_of::<Header>()));
        }
        // SAFETY: the copy starts page-aligned (more than `Header`'s
        // alignment) and holds at least a header's bytes (checked above);
        // `Header` is `repr(C)` of atomics, valid for every bit pattern.
        // The reference borrows `self`.
        let header = unsafe { &*self.bytes().as_ptr().cast::<Header>() };
        if header.magic.load(Ordering::Relaxed) != MAGIC {
            return Err(Error::Foreign {
                name: name.to_string(),
                reason: "its first bytes are not the procsync magic".into(),
            });
        }
        if header.state.load(Ordering::Relaxed) != READY {
            let creator = header.creator();
            return Err(Error::Uninitialized {
                name: name.to_string(),
                creator_pid: creator.map(|(pid, _)| pid),
                creator_alive: creator.is_some_and(|(_, alive)| alive),
                waited: std::time::Duration::ZERO,
            });
        }
        let len = header.check(name, layout)?;
        let with_len = layout.with_len(len);
        let at = with_len.data_offset()?;
        let bytes = with_len.data_bytes(&format!("segment {name:?}"))?;
        // Both at most isize::MAX / 2 (data_bytes, a page): no overflow.
        if at + bytes > self.len {
            return Err(truncated(at + bytes));
        }
        Ok((at, len))
    }
}
