//! The mapping room: a range of shared memory, mapped and unmapped, and
//! the typed views of it the other rooms use.

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use super::header::Header;
use crate::sys;

/// A `MAP_SHARED` range, readable and writable, unmapped on drop.
#[derive(Debug)]
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is just memory; sharing or sending its address between
// threads is no different from sharing a `&[AtomicU8]`. What may be stored
// there is governed by the typed wrappers (`ShmSafe + Sync`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (non-zero) of the file `fd` from its start, or
    /// anonymous shared memory (inherited by children forked afterwards)
    /// when `fd` is `None`.
    pub(super) fn new(fd: Option<BorrowedFd<'_>>, len: usize) -> io::Result<Mapping> {
        let ptr = sys::mmap_shared(fd, len)?;
        Ok(Mapping { ptr, len })
    }

    /// Copies `buf.len()` bytes at `offset` out of the mapping.
    ///
    /// Only for mappings no other process can shrink (anonymous ones): a
    /// file's would raise SIGBUS past its end. Panics if out of bounds.
    pub(super) fn copy_out(&self, offset: usize, buf: &mut [u8]) {
        self.check_range(offset, buf.len());
        // SAFETY: in bounds (checked); the mapping's bytes belong to no Rust
        // reference here, and `buf` is a distinct, exclusive Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.at(offset), buf.as_mut_ptr(), buf.len()) };
    }

    /// Copies `data` into the mapping at `offset`; as [`copy_out`](Self::copy_out).
    pub(super) fn copy_in(&self, offset: usize, data: &[u8]) {
        self.check_range(offset, data.len());
        // SAFETY: as in `copy_out`; the bytes belong to no Rust reference,
        // only to this raw copy.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.at(offset), data.len()) };
    }

    fn check_range(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "{offset}+{len} is outside a mapping of {} bytes",
            self.len
        );
    }

    /// The address `offset` bytes in (`offset <= len`, checked).
    pub(super) fn at(&self, offset: usize) -> *mut u8 {
        assert!(
            offset <= self.len,
            "offset {offset} past a mapping of {}",
            self.len
        );
        // SAFETY: in bounds of (or one past) the mapped range, checked above.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The segment header at the start, if the mapping is long enough to
    /// hold one.
    pub(super) fn header(&self) -> Option<&Header> {
        if self.len < size_of::<Header>() {
            return None;
        }
        // SAFETY: the mapping is page-aligned and at least a header long,
        // and lives as long as the returned reference. `Header` is all
        // atomics, so any bytes (another process's, changing under us) are
        // a valid value, read and written only through atomic operations.
        Some(unsafe { &*self.ptr.as_ptr().cast::<Header>() })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap returned; the typed wrappers hand out
        // references tied to their own lifetime, which ends before this drop.
        unsafe { sys::munmap(self.ptr, self.len) };
        // Private memory may come here next: the debug-build check of
        // primitives' placement must not take it for shared.
        crate::placement::unmapped();
    }
}

/// The size of a memory page.
pub(super) fn page_size() -> usize {
    sys::page_size()
}
