//! The name room: what a segment may be called, and the file under
//! `/dev/shm` a name stands for.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::{sys, Error, Result};

/// The longest name a segment may have, in bytes (the file name under
/// `/dev/shm`, without the leading `/`).
pub const MAX_NAME_LEN: usize = 255;

/// A validated segment name: one file name under `/dev/shm`, any bytes
/// but '/' and NUL (a name made by hand or renamed need not be UTF-8).
#[derive(Clone, Debug)]
pub(crate) struct ShmName {
    bare: OsString,
    /// The name as text: itself if it is UTF-8, else escaped
    /// (`inventory::escape`).
    shown: String,
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
    pub(crate) fn parse(name: impl AsRef<OsStr>) -> Result<ShmName> {
        let raw = name.as_ref().as_bytes();
        let invalid = |reason| Error::InvalidName {
            name: shown(raw),
            reason,
        };
        let bare = raw.strip_prefix(b"/").unwrap_or(raw);
        if bare.is_empty() {
            return Err(invalid("it is empty"));
        }
        if bare.len() > MAX_NAME_LEN {
            return Err(invalid("it is longer than 255 bytes"));
        }
        if bare.contains(&b'/') {
            return Err(invalid("it contains '/' (only one leading '/' is allowed)"));
        }
        if bare.contains(&0) {
            return Err(invalid("it contains a NUL byte"));
        }
        if bare == b"." || bare == b".." {
            return Err(invalid("'.' and '..' are not file names"));
        }
        Ok(ShmName {
            bare: OsStr::from_bytes(bare).to_os_string(),
            shown: shown(bare),
        })
    }

    /// The name without its leading `/`, as text: the name itself if it is
    /// UTF-8 (every name `create` makes), else escaped
    /// (`inventory::escape`). For messages and the tracker; the file is
    /// reached by [`as_os_str`](ShmName::as_os_str).
    pub(crate) fn as_str(&self) -> &str {
        &self.shown
    }

    /// The name without its leading `/`, as the file is called.
    pub(crate) fn as_os_str(&self) -> &OsStr {
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

/// A name's bytes as text: itself if UTF-8, else escaped.
fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => super::inventory::escape(bytes),
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
