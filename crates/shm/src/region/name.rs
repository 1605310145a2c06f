//! The name room: what a segment may be called, and the file under
//! `/dev/shm` a name stands for.

use std::io;

use crate::{sys, Error, Result};

/// The longest name a segment may have, in bytes (the file name under
/// `/dev/shm`, without the leading `/`).
pub const MAX_NAME_LEN: usize = 255;

/// A validated segment name: one file name under `/dev/shm`.
#[derive(Clone, Debug)]
pub(crate) struct ShmName {
    bare: String,
}

/// A file's identity: device and inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn new(dev: u64, ino: u64) -> FileId {
        FileId { dev, ino }
    }

    pub(crate) fn dev(self) -> u64 {
        self.dev
    }

    pub(crate) fn ino(self) -> u64 {
        self.ino
    }
}

impl From<sys::FileStat> for FileId {
    fn from(st: sys::FileStat) -> FileId {
        FileId {
            dev: st.dev,
            ino: st.ino,
        }
    }
}

impl ShmName {
    /// Accepts `name` or `/name`; the rest must be a single file name.
    pub(crate) fn parse(name: &str) -> Result<ShmName> {
        let invalid = |reason| Error::InvalidName {
            name: name.to_string(),
            reason,
        };
        let bare = name.strip_prefix('/').unwrap_or(name);
        if bare.is_empty() {
            return Err(invalid("it is empty"));
        }
        if bare.len() > MAX_NAME_LEN {
            return Err(invalid("it is longer than 255 bytes"));
        }
        if bare.contains('/') {
            return Err(invalid("it contains '/' (only one leading '/' is allowed)"));
        }
        if bare.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        if bare == "." || bare == ".." {
            return Err(invalid("'.' and '..' are not file names"));
        }
        Ok(ShmName {
            bare: bare.to_string(),
        })
    }

    /// The name without its leading `/`.
    pub(crate) fn as_str(&self) -> &str {
        &self.bare
    }

    /// The identity of the file the name stands for now, if any.
    pub(crate) fn file_id(&self) -> Option<FileId> {
        sys::shm_stat(&self.bare).ok().map(FileId::from)
    }

    /// Removes the name (`shm_unlink`).
    pub(crate) fn unlink(&self) -> io::Result<()> {
        sys::shm_unlink(&self.bare)
    }
}

/// Removes the name `name` from `/dev/shm` (Python's `SharedMemory.unlink`).
/// Processes that have it mapped keep their mapping; the memory is freed when
/// the last one unmaps it.
pub(crate) fn unlink(name: &str) -> Result<()> {
    let name = ShmName::parse(name)?;
    name.unlink()
        .map_err(|e| super::os_error("shm_unlink", name.as_str(), e))
}
