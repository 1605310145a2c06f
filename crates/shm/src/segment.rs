//! [`Segment`]: raw bytes shared between processes.

use std::time::Duration;

use crate::region::{self, Layout, Region, DEFAULT_MODE, DEFAULT_OPEN_TIMEOUT};
use crate::{Error, Result};

/// A run of bytes shared between processes, by name and size: Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// [`read`](Segment::read) and [`write`](Segment::write) copy byte ranges in
/// and out, checked against the segment's bounds. A named segment's bytes
/// are copied with `pread`/`pwrite` on its file, never through the mapping,
/// so a segment truncated by another process, even during the copy, gives
/// [`Error::Truncated`] (a read that meets the end of the file; a write to
/// a file shorter than the segment), never a `SIGBUS`. (A write racing with
/// a truncation may make the file longer again; a truncation to zero bytes
/// while another process is inside `open`, reading the header through its
/// mapping, can still raise `SIGBUS` there.) Copies are not atomic:
/// coordinate writers with a lock. [`as_ptr`](Segment::as_ptr) gives raw
/// access for `unsafe` code.
///
/// # Example
///
/// ```
/// use shm::Segment;
///
/// let name = format!("doc-segment-{}", std::process::id());
/// let mine = Segment::create(&name, 64)?;
/// mine.write(0, b"hello")?;
///
/// let theirs = Segment::open(&name)?; // as another process would
/// let mut buf = [0u8; 5];
/// theirs.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert!(theirs.write(62, b"too long").is_err());
/// # Ok::<(), shm::Error>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    region: Region,
}

impl Segment {
    /// An anonymous segment of `size` zero bytes, shared with children
    /// forked afterwards.
    pub fn anonymous(size: usize) -> Result<Segment> {
        Ok(Segment {
            region: Region::anonymous(&Layout::bytes(Some(size)))?,
        })
    }

    /// Creates the named segment `name` of `size` zero bytes, mode 0600.
    /// Dropping this handle removes the name.
    pub fn create(name: &str, size: usize) -> Result<Segment> {
        Segment::create_with_mode(name, size, DEFAULT_MODE)
    }

    /// [`create`](Segment::create) with permission bits `mode`, applied
    /// exactly, whatever the umask.
    pub fn create_with_mode(name: &str, size: usize, mode: u32) -> Result<Segment> {
        Ok(Segment {
            region: Region::create(name, &Layout::bytes(Some(size)), mode, |_| {})?,
        })
    }

    /// Opens the named segment `name`, whatever its size. Waits up to two
    /// seconds for its creator to finish.
    pub fn open(name: &str) -> Result<Segment> {
        Segment::open_timeout(name, DEFAULT_OPEN_TIMEOUT)
    }

    /// [`open`](Segment::open), waiting at most `timeout` for the creator.
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Segment> {
        Ok(Segment {
            region: Region::open(name, &Layout::bytes(None), timeout)?,
        })
    }

    /// Opens `name` if it exists (it must be `size` bytes), or creates it.
    pub fn open_or_create(name: &str, size: usize) -> Result<Segment> {
        let (region, _created) = Region::open_or_create(
            name,
            &Layout::bytes(Some(size)),
            DEFAULT_OPEN_TIMEOUT,
            |_| {},
        )?;
        Ok(Segment { region })
    }

    /// Removes the name `name`; see [`Shared::unlink`](crate::Shared::unlink).
    pub fn unlink(name: &str) -> Result<()> {
        region::unlink(name)
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.region.data_len()
    }

    /// Whether the segment has no bytes (never true: zero-size segments are
    /// refused when made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_bounds(offset, buf.len())?;
        self.region.read(offset, buf)
    }

    /// Copies `data` into the segment starting at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_bounds(offset, data.len())?;
        self.region.write(offset, data)
    }

    /// The first byte. Reading or writing through it is `unsafe` code's
    /// responsibility: stay within [`len`](Segment::len) bytes, expect other
    /// processes to change the bytes at any time, and expect `SIGBUS` if
    /// another process truncates the file behind a named segment.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.data_ptr()
    }

    /// The segment's name, or `None` for an anonymous one.
    pub fn name(&self) -> Option<&str> {
        self.region.name()
    }

    /// Whether dropping this handle removes the name.
    pub fn owns_name(&self) -> bool {
        self.region.owns_name()
    }

    /// Keeps the name after this handle is dropped.
    pub fn persist(&mut self) {
        self.region.persist();
    }

    fn check_bounds(&self, offset: usize, len: usize) -> Result<()> {
        let size = self.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::OutOfBounds {
                segment: self.region.label(),
                offset,
                len,
                size,
            });
        }
        Ok(())
    }
}
