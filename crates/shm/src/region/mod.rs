//! The machinery under [`Shared`](crate::Shared), [`SharedSlice`](crate::SharedSlice)
//! and [`Segment`](crate::Segment), in five rooms:
//!
//! - `name`: what a segment may be called, and the file under `/dev/shm`
//!   a name stands for;
//! - `header`: what a named segment records about its data, and checking
//!   it into errors;
//! - `mapping`: the mapped memory and the typed views of it;
//! - `protocol`: creating and publishing a named segment, waiting for one
//!   while opening, and removing only one's own name;
//! - `snapshot`: a private copy of a named segment's file, for tools.
//!
//! This file holds [`Region`], the handle they make, and its data access.

mod header;
pub mod inventory;
#[allow(unsafe_code)] // maps memory and makes the typed views of it
mod mapping;
mod name;
mod protocol;
#[allow(unsafe_code)] // views of a page-aligned private copy
mod snapshot;

use std::io;
use std::os::fd::{AsFd, OwnedFd};

pub(crate) use header::Layout;
use mapping::Mapping;
pub(crate) use name::unlink;
pub use name::MAX_NAME_LEN;
pub(crate) use name::{FileId, ShmName};
pub use protocol::{DEFAULT_MODE, DEFAULT_OPEN_TIMEOUT, SEGMENT_CRASH_POINTS};

use crate::{sys, Error, Result};

/// Mapped shared memory with its data area: anonymous (inherited across
/// fork) or named (opened by unrelated processes), maybe owning its name.
#[derive(Debug)]
pub(crate) struct Region {
    map: Mapping,
    data_offset: usize,
    data_len: usize,
    name: Option<ShmName>,
    /// The pid whose drop unlinks the name: the creator's. A forked child
    /// carries a copy of this struct but another pid, so never unlinks.
    unlink_by: Option<crate::pid::Pid>,
    /// Kept open so that `check_size` can see truncation by others (and
    /// named segments' bytes can be copied with `pread`/`pwrite`).
    fd: Option<OwnedFd>,
    /// The file this handle created (device and inode), so that its drop
    /// removes the name only while it still names that file.
    created: Option<FileId>,
}

impl Region {
    /// Anonymous shared memory for `layout`, zero-filled.
    pub(crate) fn anonymous(layout: &Layout) -> Result<Region> {
        let data_len = layout.data_bytes("an anonymous segment")?;
        layout.data_offset()?; // refuses alignments a page cannot give
        let map =
            Mapping::new(None, data_len.max(1)).map_err(|e| os_error("mmap", "anonymous", e))?;
        Ok(Region {
            map,
            data_offset: 0,
            data_len,
            name: None,
            unlink_by: None,
            fd: None,
            created: None,
        })
    }

    /// Start of the data area.
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        // data_offset + data_len <= the mapping's length by construction.
        self.map.at(self.data_offset)
    }

    /// Length of the data area in bytes.
    pub(crate) fn data_len(&self) -> usize {
        self.data_len
    }

    /// The segment's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_ref().map(ShmName::as_str)
    }

    /// The name for messages: the segment's name, or "anonymous".
    pub(crate) fn label(&self) -> String {
        self.name()
            .map_or_else(|| "anonymous".to_string(), |n| format!("{n:?}"))
    }

    /// Whether dropping this handle in this process removes the name.
    pub(crate) fn owns_name(&self) -> bool {
        self.name.is_some() && self.unlink_by == Some(crate::pid::current())
    }

    /// Keeps the name after this handle is dropped.
    pub(crate) fn persist(&mut self) {
        if self.owns_name() {
            if let Some(header) = self.map.header() {
                header.mark_persistent();
            }
            if let Some(name) = &self.name {
                crate::tracker::untrack(name.as_str());
            }
        }
        self.unlink_by = None;
    }

    /// Copies `buf.len()` bytes from the data area at `offset` (in bounds:
    /// the caller checked) into `buf`. A named segment's bytes are read with
    /// `pread`, which meets a truncated file as a short read, never as a
    /// SIGBUS: a truncation racing with the copy gives [`Error::Truncated`].
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let (Some(fd), Some(name)) = (&self.fd, &self.name) else {
            // An anonymous mapping cannot shrink.
            self.map.copy_out(self.data_offset + offset, buf);
            return Ok(());
        };
        let start = self.data_offset + offset;
        let mut done = 0;
        while done < buf.len() {
            match sys::pread(fd.as_fd(), &mut buf[done..], (start + done) as u64) {
                Ok(0) => return Err(self.truncated_at((start + done) as u64)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(os_error("pread", name.as_str(), e)),
            }
        }
        Ok(())
    }

    /// Copies `data` into the data area at `offset` (in bounds: the caller
    /// checked). A named segment first checks the file's size (a truncated
    /// one gives [`Error::Truncated`]), then writes with `pwrite`, never
    /// through the mapping: a truncation racing with the copy makes the
    /// file longer again instead of raising SIGBUS.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        let (Some(fd), Some(name)) = (&self.fd, &self.name) else {
            // An anonymous mapping cannot shrink.
            self.map.copy_in(self.data_offset + offset, data);
            return Ok(());
        };
        self.check_size()?;
        let start = self.data_offset + offset;
        let mut done = 0;
        while done < data.len() {
            match sys::pwrite(fd.as_fd(), &data[done..], (start + done) as u64) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(os_error("pwrite", name.as_str(), e)),
            }
        }
        Ok(())
    }

    /// The error for a named segment's file found ending at or before `end`.
    fn truncated_at(&self, end: u64) -> Error {
        let name = self.name().unwrap_or_default().to_string();
        let actual = match &self.fd {
            Some(fd) => sys::fstat(fd.as_fd()).map_or(end, |st| st.size.min(end)),
            None => end,
        };
        Error::Truncated {
            name,
            expected: (self.data_offset + self.data_len) as u64,
            actual,
        }
    }

    /// Fails with [`Error::Truncated`] if another process shrank the file
    /// below what the header promises (touching the missing pages would raise
    /// SIGBUS).
    pub(crate) fn check_size(&self) -> Result<()> {
        let (Some(fd), Some(name)) = (&self.fd, &self.name) else {
            return Ok(());
        };
        let expected = (self.data_offset + self.data_len) as u64;
        let actual = sys::fstat(fd.as_fd())
            .map_err(|e| os_error("fstat", name.as_str(), e))?
            .size;
        if actual < expected {
            return Err(Error::Truncated {
                name: name.as_str().to_string(),
                expected,
                actual,
            });
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.owns_name() {
            self.unlink_own_name();
        }
    }
}

pub(crate) fn os_error(op: &'static str, segment: &str, source: io::Error) -> Error {
    Error::Os {
        op,
        segment: segment.to_string(),
        source,
    }
}
