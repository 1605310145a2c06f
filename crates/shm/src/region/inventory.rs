//! What is in `/dev/shm`, as a tool sees it: procsync's named segments,
//! who created them and whether that process still runs, which processes
//! map them now, and the removal of the ones nobody will use again.
//!
//! This is what the `procsync` command (`ls`, `inspect`, `gc`, `rm`) and the
//! cleanup of names whose creator died (see the guide) stand on. Nothing
//! here maps a segment: the header is read from the file, and a segment's
//! users are found in `/proc/PID/maps` and `/proc/PID/fd`, by the file's
//! identity (device and inode), whatever path they reached it by (another
//! mount of the same tmpfs, a container's `/dev/shm`).
//!
//! ```
//! use shm::{inventory, Shared};
//! use std::sync::atomic::AtomicU64;
//!
//! let name = format!("procsync-doc-inventory-{}", std::process::id());
//! let counter = Shared::create(&name, AtomicU64::new(0))?;
//! let seen = inventory::inspect(&name)?;
//! assert_eq!(seen.kind, Some("value"));
//! assert_eq!(seen.creator, Some(shm::pid::current()));
//! assert_eq!(seen.creator_alive, Some(true));
//! // This process maps it: never abandoned while it does.
//! assert_eq!(inventory::users(&name)?, vec![shm::pid::current()]);
//! assert!(!seen.abandoned(&[]));
//! drop(counter); // the creator's handle removes the name
//! assert!(matches!(inventory::inspect(&name), Err(shm::Error::NotFound { .. })));
//! # Ok::<(), shm::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime};

pub use super::snapshot::Snapshot;

use super::header::{Facts, NotAHeader, LAYOUT_VERSION, READY};
use super::name::{FileId, ShmName};
use super::os_error;
use crate::pid::{Identity, Pid};
use crate::{Error, Result, ShmSafe};

/// Where POSIX shared memory lives on Linux.
pub const SHM_DIR: &str = crate::sys::SHM_DIR;

/// A name whose creator has not recorded itself yet is left alone for this
/// long after the file was made: its creator may be between `shm_open` and
/// writing its pid (a few system calls).
pub const UNRECORDED_GRACE: Duration = Duration::from_secs(10);

/// One procsync segment in `/dev/shm`, read from its header and file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The name (without the leading `/`), as the file is called: any
    /// bytes, not always UTF-8 (show it with [`escape`]).
    pub name: OsString,
    /// `"value"` (`Shared<T>`), `"slice"` (`SharedSlice<T>`) or `"bytes"`
    /// (`Segment`); `None` for a header of another layout version.
    pub kind: Option<&'static str>,
    /// The element type's name, without module paths (empty if unknown).
    pub type_name: String,
    /// Bytes of one element.
    pub element_size: u64,
    /// The element's alignment in bytes (0 if unknown).
    pub element_align: u64,
    /// Elements (1 for a value, bytes for a byte segment).
    pub len: u64,
    /// The file's size in bytes (header included).
    pub file_size: u64,
    /// Permission bits.
    pub mode: u32,
    /// The owning user's id.
    pub uid: u32,
    /// The creating process (`None` until the creator has recorded it).
    pub creator: Option<Pid>,
    /// Whether that very process still runs (a new process that took over
    /// its pid does not count).
    /// `None` when that cannot be known: no creator recorded, or a header
    /// without the creator's identity (an older layout version), whose pid
    /// alone may name another process by now.
    pub creator_alive: Option<bool>,
    /// Whether its creator made it persistent (`persist`): kept after the
    /// creator ends. `None` for a header of another layout version, whose
    /// flags this build cannot read.
    pub persistent: Option<bool>,
    /// Whether it was made with the tracker off
    /// ([`tracker::disable`](crate::tracker::disable)): no tracker removes
    /// it when its creator dies (`gc` still does).
    pub untracked: bool,
    /// Whether the creator finished and published it.
    pub ready: bool,
    /// The header's layout version ([`layout_version`] is this build's).
    pub layout_version: u32,
    /// How long ago the file was last changed (its creation, normally).
    pub age: Duration,
    /// Device and inode: the file's identity (a name removed and made
    /// again is another file).
    pub file: (u64, u64),
    /// The element type's layout description (as much as the header
    /// keeps; empty for another layout version).
    description: Vec<u8>,
}

/// `bytes` (a name, a type name) as text that is safe to print, as
/// `ls -b` shows a file name: a byte that is not part of valid UTF-8 and a
/// control character (newline, escape, DEL, C1 controls) as `\xNN` (one
/// per byte), a backslash as `\\`; anything else as itself. So a name
/// cannot break a line, drive a terminal or pass for another name (the
/// escaping is one-to-one), and a plain name is shown as it is.
///
/// ```
/// use shm::inventory::escape;
///
/// assert_eq!(escape(b"jobs-lock"), "jobs-lock");
/// assert_eq!(escape(b"a\nb\x1b[2J"), "a\\x0ab\\x1b[2J");
/// assert_eq!(escape(b"caf\xc3\xa9-\xff"), "caf\u{e9}-\\xff");
/// assert_eq!(escape(b"back\\slash"), "back\\\\slash");
/// ```
pub fn escape(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    let hex = |out: &mut String, raw: &[u8]| {
        for b in raw {
            let _ = write!(out, "\\x{b:02x}");
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => hex(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes()),
                c => out.push(c),
            }
        }
        hex(&mut out, chunk.invalid());
    }
    out
}

/// The layout version this build writes and reads.
pub fn layout_version() -> u32 {
    LAYOUT_VERSION
}

impl SegmentInfo {
    /// Where the data starts in the segment's file (after the header, at
    /// the element's alignment): for a tool that reads a value's bytes
    /// from the file, such as the lock word of a `Mutex<T>` whose `T` it
    /// does not know. `None` for a header of another layout version or an
    /// alignment that is not a power of two up to a page.
    ///
    /// ```
    /// use shm::{inventory, Shared};
    ///
    /// let name = format!("procsync-doc-data-offset-{}", std::process::id());
    /// let value = Shared::create(&name, 0x1234_5678_u32)?;
    /// let info = inventory::inspect(&name)?;
    /// let offset = info.data_offset().expect("this build's layout");
    /// let file = std::fs::read(format!("{}/{name}", inventory::SHM_DIR)).unwrap();
    /// let at = offset as usize;
    /// assert_eq!(u32::from_ne_bytes(file[at..at + 4].try_into().unwrap()), 0x1234_5678);
    /// # drop(value);
    /// # Ok::<(), shm::Error>(())
    /// ```
    pub fn data_offset(&self) -> Option<u64> {
        let align = usize::try_from(self.element_align).ok()?;
        let fits = align.is_power_of_two() && align <= super::mapping::page_size();
        (self.layout_version == LAYOUT_VERSION && self.kind.is_some() && fits)
            .then(|| super::header::data_offset_for(align) as u64)
    }

    /// Whether the element type is a struct whose first field is named
    /// `field`, at offset 0, and is exactly an `F` by its layout
    /// description (a procsync primitive's names its protocol and version):
    /// how a tool recognises a generic wrapper around a primitive whose
    /// other type parameter it does not know, such as `sync_lock`'s
    /// `Mutex<T>` (`raw: RawLock` first), where a type name would not do
    /// (any crate may call a type `Mutex<T>`).
    ///
    /// ```
    /// use shm::lockword::RawLock;
    /// use shm::{inventory, Shared, ShmSafe};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// #[derive(ShmSafe)]
    /// #[repr(C)]
    /// struct Guarded {
    ///     raw: RawLock,
    ///     data: AtomicU64,
    /// }
    /// #[derive(ShmSafe)]
    /// #[repr(C)]
    /// struct Mutex {
    ///     raw: AtomicU64,
    /// }
    /// let name = format!("procsync-doc-first-field-{}", std::process::id());
    /// let guarded = Shared::create(&name, Guarded { raw: RawLock::new(), data: AtomicU64::new(0) })?;
    /// assert!(inventory::inspect(&name)?.first_field_is::<RawLock>("raw"));
    /// drop(guarded);
    /// let plain = Shared::create(&name, Mutex { raw: AtomicU64::new(0) })?;
    /// assert!(!inventory::inspect(&name)?.first_field_is::<RawLock>("raw"));
    /// # drop(plain);
    /// # Ok::<(), shm::Error>(())
    /// ```
    pub fn first_field_is<F: ShmSafe>(&self, field: &str) -> bool {
        crate::layout::starts_with_field::<F>(&self.description, field)
    }

    /// Whether nobody will use this segment again, so that removing its
    /// name loses nothing: not persistent, its creator is gone (or never
    /// recorded itself and the file is older than [`UNRECORDED_GRACE`]),
    /// and no process in `users` (see [`users`]) maps it or holds it open.
    /// A segment of another layout version is never judged abandoned (its
    /// flags cannot be read).
    pub fn abandoned(&self, users: &[Pid]) -> bool {
        if self.persistent != Some(false)
            || !users.is_empty()
            || self.layout_version != LAYOUT_VERSION
        {
            return false;
        }
        match (self.creator, self.creator_alive) {
            (Some(_), Some(alive)) => !alive,
            // A pid without its identity: whether it still runs is unknown.
            (Some(_), None) => false,
            (None, _) => self.age >= UNRECORDED_GRACE,
        }
    }
}

/// Reads the header and file of segment `name`.
///
/// # Errors
///
/// [`Error::NotFound`], [`Error::PermissionDenied`] (another user's,
/// unreadable), [`Error::Foreign`] (not a procsync segment: the first bytes
/// are not procsync's magic), [`Error::Truncated`] (shorter than its header,
/// or, once published, than the data its header describes),
/// [`Error::InvalidName`], or [`Error::Os`].
pub fn inspect(name: impl AsRef<OsStr>) -> Result<SegmentInfo> {
    let name = ShmName::parse(name)?;
    let path = crate::sys::shm_path(name.as_os_str());
    let not_found = || Error::NotFound {
        name: name.as_str().to_string(),
    };
    let metadata = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => not_found(),
        _ => os_error("stat", name.as_str(), e),
    })?;
    if !metadata.file_type().is_file() {
        return Err(Error::Foreign {
            name: name.as_str().to_string(),
            reason: "it is not a regular file".into(),
        });
    }
    let bytes = read_start(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => not_found(),
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            name: name.as_str().to_string(),
        },
        _ => os_error("read", name.as_str(), e),
    })?;
    let facts = Facts::read(&bytes).map_err(|why| match why {
        NotAHeader::Foreign => Error::Foreign {
            name: name.as_str().to_string(),
            reason: "its first bytes are not the procsync magic".into(),
        },
        NotAHeader::Short => Error::Truncated {
            name: name.as_str().to_string(),
            expected: super::header::header_size() as u64,
            actual: metadata.len(),
        },
    })?;
    if let Some(expected) = facts.data_end().filter(|&end| metadata.len() < end) {
        return Err(Error::Truncated {
            name: name.as_str().to_string(),
            expected,
            actual: metadata.len(),
        });
    }
    let creator = Pid::from_raw(facts.creator_pid);
    // By identity only: a pid alone may be another process's by now.
    let creator_alive = creator
        .and(Identity::from_bits(facts.creator_identity))
        .map(Identity::is_running);
    let described = facts.described.as_ref();
    let age = metadata
        .modified()
        .ok()
        .and_then(|changed| SystemTime::now().duration_since(changed).ok())
        .unwrap_or_default();
    Ok(SegmentInfo {
        name: name.as_os_str().to_os_string(),
        kind: described.and_then(|d| d.kind),
        type_name: described.map(|d| d.type_name.clone()).unwrap_or_default(),
        element_size: described.map_or(0, |d| d.elem_size),
        element_align: described.map_or(0, |d| d.elem_align),
        len: described.map_or(0, |d| d.len),
        file_size: metadata.len(),
        mode: metadata.permissions().mode() & 0o7777,
        uid: metadata.uid(),
        creator,
        creator_alive,
        persistent: described.map(|d| d.persistent),
        untracked: described.is_some_and(|d| d.untracked),
        ready: facts.state == READY,
        layout_version: facts.layout_version,
        age,
        file: (metadata.dev(), metadata.ino()),
        description: described.map(|d| d.description.clone()).unwrap_or_default(),
    })
}

/// The first bytes of the file at `path`, up to a header's size.
fn read_start(path: &std::path::Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(super::header::header_size());
    file.take(super::header::header_size() as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Every name in `/dev/shm`, sorted (by bytes), each with what [`inspect`]
/// says of it (files of other programs come back as [`Error::Foreign`]).
/// Names that are not UTF-8 are listed too: a name is any bytes but '/'
/// and NUL (show one with [`escape`]).
///
/// # Errors
///
/// [`Error::Os`] if `/dev/shm` cannot be read.
pub fn list() -> Result<Vec<(OsString, Result<SegmentInfo>)>> {
    let entries = std::fs::read_dir(SHM_DIR).map_err(|e| os_error("read_dir", SHM_DIR, e))?;
    let mut names: Vec<OsString> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let info = inspect(&name);
            (name, info)
        })
        .collect())
}

/// The processes that map segment `name` or hold it open now, sorted; this
/// process included if it does. Only processes whose `/proc` entries this
/// user may read are seen (all of one's own; every process as root). A
/// process whose main thread has ended while others run is seen through
/// its other threads.
///
/// # Errors
///
/// [`Error::NotFound`] if there is no such name, [`Error::InvalidName`];
/// [`Error::Os`] if `/proc` could not be read whole (out of descriptors,
/// for example): then nobody could be ruled out.
pub fn users(name: impl AsRef<OsStr>) -> Result<Vec<Pid>> {
    let name = ShmName::parse(name)?;
    let file = name.file_id().ok_or_else(|| Error::NotFound {
        name: name.as_str().to_string(),
    })?;
    users_of(file).map_err(|e| os_error("read /proc", name.as_str(), e))
}

/// The processes that map the file `file` or hold it open, sorted.
fn users_of(file: FileId) -> io::Result<Vec<Pid>> {
    Ok(users_of_all(&[file])?.remove(&file).unwrap_or_default())
}

/// The processes that map each of `files` or hold it open (sorted; files
/// nobody uses are left out), in one pass over `/proc`. An error if some
/// process's entries could not be read for a reason other than its end or
/// another user's privacy (then a user may have been missed).
pub(crate) fn users_of_all(files: &[FileId]) -> io::Result<HashMap<FileId, Vec<Pid>>> {
    let mut found: HashMap<FileId, Vec<Pid>> = HashMap::new();
    if files.is_empty() {
        return Ok(found);
    }
    let inodes: HashSet<u64> = files.iter().map(|file| file.ino()).collect();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(Pid::from_u32)
        else {
            continue;
        };
        let mut used: HashSet<FileId> = HashSet::new();
        for task in tasks_of(pid)? {
            mapped_files(&task, &inodes, files, &mut used)?;
            open_files(&task, &inodes, files, &mut used)?;
            // One task that shows the process's memory and descriptors is
            // enough: they are the process's, not the thread's.
            if task.shows_process {
                break;
            }
        }
        for file in used {
            found.entry(file).or_default().push(pid);
        }
    }
    for pids in found.values_mut() {
        pids.sort();
    }
    Ok(found)
}

/// Where to read a process's maps and descriptors from.
struct Task {
    dir: String,
    /// Whether this directory showed the process's memory (a process whose
    /// main thread has ended shows an empty `/proc/PID/maps`; its other
    /// threads still show it, under `/proc/PID/task/TID`).
    shows_process: bool,
}

/// `/proc/PID`, or, if its maps are empty (the main thread has ended),
/// each of its threads' directories.
fn tasks_of(pid: Pid) -> io::Result<Vec<Task>> {
    let dir = format!("/proc/{pid}");
    match read_proc(&format!("{dir}/maps"))? {
        Some(maps) if !maps.is_empty() => Ok(vec![Task {
            dir,
            shows_process: true,
        }]),
        Some(_) => {
            let Some(threads) = read_proc_dir(&format!("{dir}/task"))? else {
                return Ok(Vec::new());
            };
            Ok(threads
                .into_iter()
                .map(|tid| Task {
                    dir: format!("{dir}/task/{tid}"),
                    shows_process: false,
                })
                .collect())
        }
        None => Ok(Vec::new()),
    }
}

/// A `/proc` file's bytes (not text: a mapped file's path need not be
/// UTF-8); `None` if the process is gone or is another user's (neither can
/// be helped); an error otherwise (out of descriptors, out of memory): the
/// caller must not take the silence for "unused".
fn read_proc(path: &str) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if gone_or_private(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A `/proc` directory's entry names, as [`read_proc`] reads a file.
fn read_proc_dir(path: &str) -> io::Result<Option<Vec<String>>> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if gone_or_private(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.extend(entry.file_name().into_string().ok()),
            Err(e) if gone_or_private(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(names))
}

/// The process ended (its entries vanish) or is another user's.
fn gone_or_private(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error())
}

/// Adds to `used` each of `files` that a line of `TASK/maps` maps: its
/// device and inode, whatever the path (the process may have reached the
/// file through another mount of the tmpfs, or in another mount namespace,
/// where the path shown is its own).
fn mapped_files(
    task: &Task,
    inodes: &HashSet<u64>,
    files: &[FileId],
    used: &mut HashSet<FileId>,
) -> io::Result<()> {
    let Some(maps) = read_proc(&format!("{}/maps", task.dir))? else {
        return Ok(());
    };
    for line in crate::proc_maps::lines(&maps) {
        if inodes.contains(&line.inode) {
            used.extend(
                files
                    .iter()
                    .filter(|file| file.ino() == line.inode && file.dev() == line.dev),
            );
        }
    }
    Ok(())
}

/// Adds to `used` each of `files` that a descriptor in `TASK/fd` stands
/// for: `stat` of `TASK/fd/N` follows the link to the very file, even one
/// opened in another mount namespace or through another mount, and its
/// device and inode say which. (Sockets, pipes and other descriptors
/// without a path are not looked at.)
///
/// `stat` asks the file's file system, and a file of a hung network or
/// FUSE mount would hang it (and with it `ls`, `rm`, `gc` and the
/// tracker): so a file outside [`SHM_DIR`] is looked at through
/// `TASK/fdinfo/N` first, which the kernel answers itself, and `stat`ed
/// only if its inode number is one of `files`' (or the kernel is too old
/// to say it).
fn open_files(
    task: &Task,
    inodes: &HashSet<u64>,
    files: &[FileId],
    used: &mut HashSet<FileId>,
) -> io::Result<()> {
    let Some(fds) = read_proc_dir(&format!("{}/fd", task.dir))? else {
        return Ok(());
    };
    for fd in fds {
        let path = format!("{}/fd/{fd}", task.dir);
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        if !target.is_absolute() {
            continue;
        }
        let worth_a_stat = target.starts_with(SHM_DIR)
            || fdinfo_inode(&format!("{}/fdinfo/{fd}", task.dir))
                .is_none_or(|inode| inodes.contains(&inode));
        if !worth_a_stat {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if inodes.contains(&m.ino()) => {
                used.extend(
                    files
                        .iter()
                        .filter(|f| f.dev() == m.dev() && f.ino() == m.ino()),
                );
            }
            Ok(_) => {}
            // Closed meanwhile, or the process ended.
            Err(e) if gone_or_private(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The inode number `/proc/.../fdinfo/N` gives for a descriptor (its
/// `ino:` line; older kernels write none); `None` if it gives none or
/// cannot be read.
fn fdinfo_inode(path: &str) -> Option<u64> {
    let info = std::fs::read(path).ok()?;
    info.split(|&b| b == b'\n').find_map(|line| {
        let value = line.strip_prefix(b"ino:")?;
        std::str::from_utf8(value).ok()?.trim().parse().ok()
    })
}

/// What [`remove_if_abandoned`] did with a name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Abandoned: removed (or, in a dry run, would be).
    Removed,
    /// Still of use: kept. The processes that map it or hold it open (empty
    /// when it is kept because its creator runs).
    Kept(Vec<Pid>),
    /// Made persistent by its creator: kept.
    Persistent,
    /// Not there any more, or another file under that name now.
    Gone,
}

/// Removes `name` if it is abandoned ([`SegmentInfo::abandoned`]): not
/// persistent, its creator gone (or never recorded and the file older than
/// [`UNRECORDED_GRACE`]), and nobody has it open or mapped, which a write
/// lease decides at the moment of the unlink (see [`unlink_if_still`]; no
/// `/proc` pass, and processes of other users count too). With `dry_run`,
/// only judges.
///
/// # Errors
///
/// What [`inspect`] fails with, other than [`Error::NotFound`] (which is
/// [`Verdict::Gone`]); [`Error::Os`] if the lease or the unlink fails.
pub fn remove_if_abandoned(name: impl AsRef<OsStr>, dry_run: bool) -> Result<Verdict> {
    match inspect(name) {
        Ok(info) => remove_inspected(&info, dry_run),
        Err(Error::NotFound { .. }) => Ok(Verdict::Gone),
        Err(e) => Err(e),
    }
}

/// [`remove_if_abandoned`] for a segment [`inspect`] has just read (by
/// [`list`], say): the header is not read again.
pub(crate) fn remove_inspected(info: &SegmentInfo, dry_run: bool) -> Result<Verdict> {
    if info.persistent == Some(true) {
        return Ok(Verdict::Persistent);
    }
    // Users are left to the lease, at the unlink.
    if !info.abandoned(&[]) {
        return Ok(Verdict::Kept(Vec::new()));
    }
    unlink_if_still(&info.name, FileId::new(info.file.0, info.file.1), dry_run)
}

/// The tracker's removal of a name whose creator it saw end: `name` is
/// removed if it still stands for `file`, is not persistent, and nobody
/// has it open or mapped (the write lease decides; see
/// [`unlink_if_still`]). The header is not otherwise trusted: a creator
/// that died in `create` left it half-written.
pub(crate) fn remove_if_unused(name: &str, file: FileId) -> Result<Verdict> {
    let parsed = ShmName::parse(name)?;
    if parsed.file_id() != Some(file) {
        return Ok(Verdict::Gone);
    }
    if inspect(name).is_ok_and(|info| info.persistent == Some(true)) {
        return Ok(Verdict::Persistent);
    }
    unlink_if_still(OsStr::new(name), file, false)
}

/// Removes `name` if it still stands for `file` and nobody has that file
/// open or mapped, deciding and removing under a write lease: the kernel
/// grants one only while no other open file (a mapping holds one) exists,
/// of any process or user, and an `open` of the file meanwhile waits for
/// it. So a process that maps the segment between a `/proc` look and this
/// unlink keeps the name (`Kept`); only one that opens it in the few
/// microseconds the lease is held finds its open completed on the
/// removed file. Where leases are refused for another reason (a file
/// system without them, `fs.leases-enable = 0`), the `/proc` look alone
/// decided.
fn unlink_if_still(name: &OsStr, file: FileId, dry_run: bool) -> Result<Verdict> {
    let parsed = ShmName::parse(name)?;
    let lease = match crate::sys::shm_lease_if_unused(parsed.as_os_str()) {
        Ok(lease) => lease,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Gone),
        Err(e) => return Err(os_error("open", parsed.as_str(), e)),
    };
    match &lease {
        crate::sys::Lease::InUse => return Ok(Verdict::Kept(Vec::new())),
        crate::sys::Lease::Held(held) | crate::sys::Lease::Unsupported(held) => {
            let there = crate::sys::fstat(std::os::fd::AsFd::as_fd(held))
                .map(FileId::from)
                .ok();
            if there != Some(file) || parsed.file_id() != Some(file) {
                return Ok(Verdict::Gone);
            }
        }
    }
    if let crate::sys::Lease::Unsupported(_) = lease {
        // No lease to ask: `/proc` decides (our own descriptor aside).
        let me = crate::pid::current();
        let users: Vec<Pid> = users_of(file)
            .map_err(|e| os_error("read /proc", parsed.as_str(), e))?
            .into_iter()
            .filter(|&user| user != me)
            .collect();
        if !users.is_empty() {
            return Ok(Verdict::Kept(users));
        }
    }
    if dry_run {
        return Ok(Verdict::Removed);
    }
    let result = match parsed.unlink() {
        Ok(()) => Ok(Verdict::Removed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Verdict::Gone),
        Err(e) => Err(os_error("shm_unlink", parsed.as_str(), e)),
    };
    drop(lease); // released when its descriptor closes
    result
}

/// Removes every abandoned procsync segment of this user's that this
/// process may remove (see [`remove_if_abandoned`]); returns the names
/// removed (or, with `dry_run`, that would be), sorted; names that are not
/// UTF-8 included (show them with [`escape`]).
///
/// # Errors
///
/// [`Error::Os`] if `/dev/shm` cannot be read. Names that cannot be judged
/// or removed are skipped.
pub fn collect_garbage(dry_run: bool) -> Result<Vec<OsString>> {
    collect_garbage_prefixed(dry_run, "")
}

/// [`collect_garbage`] for the names that start with `prefix` only: one
/// program's or test's names, leaving every other name alone (however
/// abandoned).
///
/// ```
/// use shm::inventory;
///
/// let prefix = format!("procsync-doc-gc-{}-", std::process::id());
/// // Nothing of ours is abandoned: nothing to remove, and nothing else
/// // (no other name) is touched.
/// assert!(inventory::collect_garbage_prefixed(true, &prefix)?.is_empty());
/// # Ok::<(), shm::Error>(())
/// ```
///
/// # Errors
///
/// As [`collect_garbage`].
pub fn collect_garbage_prefixed(dry_run: bool, prefix: &str) -> Result<Vec<OsString>> {
    let me = crate::sys::getuid();
    let mut removed = Vec::new();
    for (name, info) in list()? {
        let Some(info) = info.ok().filter(|info| info.uid == me) else {
            continue;
        };
        if !name.as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        match remove_inspected(&info, dry_run) {
            Ok(Verdict::Removed) => removed.push(name),
            // `/proc` could not be read whole: no name can be judged.
            Err(
                e @ Error::Os {
                    op: "read /proc", ..
                },
            ) => return Err(e),
            _ => {}
        }
    }
    Ok(removed)
}

/// Removes `name` unless a process maps it or holds it open (then
/// [`Error::InUse`], naming them); with `force`, removes it anyway (they
/// keep their mappings; the memory is freed when the last one lets go).
///
/// # Errors
///
/// [`Error::InUse`], [`Error::NotFound`], [`Error::PermissionDenied`],
/// [`Error::InvalidName`], [`Error::Os`].
pub fn remove(name: impl AsRef<OsStr>, force: bool) -> Result<()> {
    let parsed = ShmName::parse(name)?;
    let file = parsed.file_id().ok_or_else(|| Error::NotFound {
        name: parsed.as_str().to_string(),
    })?;
    if !force {
        let users = users_of(file).map_err(|e| os_error("read /proc", parsed.as_str(), e))?;
        if !users.is_empty() {
            return Err(Error::InUse {
                name: parsed.as_str().to_string(),
                users,
            });
        }
    }
    parsed.unlink().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound {
            name: parsed.as_str().to_string(),
        },
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            name: parsed.as_str().to_string(),
        },
        _ => os_error("shm_unlink", parsed.as_str(), e),
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn fdinfo_gives_the_inode_of_an_open_file_as_stat_does() {
        let file = std::fs::File::open("/proc/self/exe").expect("open");
        let info = format!("/proc/self/fdinfo/{}", file.as_raw_fd());
        let stat = file.metadata().expect("stat");
        // A kernel too old to write `ino:` gives `None` (then the caller
        // falls back to `stat`); never another inode.
        if let Some(inode) = super::fdinfo_inode(&info) {
            assert_eq!(inode, stat.ino());
        }
        assert_eq!(super::fdinfo_inode("/proc/self/fdinfo/999999"), None);
    }
}
