//! The machinery under [`Shared`](crate::Shared), [`SharedSlice`](crate::SharedSlice)
//! and [`Segment`](crate::Segment): mapping memory, naming it, and the header
//! that lets an unrelated process check what a named segment holds.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Futex, Result};

/// How long `open` waits, by default, for a segment's creator to finish
/// initialising it.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The permissions a named segment is created with unless told otherwise:
/// read and write for its owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// The longest name a segment may have, in bytes (the file name under
/// `/dev/shm`, without the leading `/`).
pub const MAX_NAME_LEN: usize = 255;

/// The names of a named segment's crash points (see [`crate::crash`]): one
/// after each step of `create` that others can see (the file, its mode and
/// size, the header's creator pid, the rest of the header, the data, the
/// published state, the wake-up), and after each step of the creator's
/// unlink on drop. `open` stores nothing shared and has none.
pub const SEGMENT_CRASH_POINTS: &[&str] = &[
    "segment: file created",
    "segment: mode set",
    "segment: sized",
    "segment: creator recorded",
    "segment: header written",
    "segment: data initialised",
    "segment: published",
    "segment: openers woken",
    "segment: name checked",
    "segment: unlinked",
];

/// A `mmap`ed range, unmapped on drop.
#[derive(Debug)]
struct Mapping {
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
    /// Maps `len` bytes `MAP_SHARED` from `fd`, or anonymous shared memory
    /// when `fd` is `None` (inherited by children forked afterwards, unlike
    /// a `MAP_PRIVATE` mapping, which they would get a copy-on-write copy of).
    fn new(fd: Option<&OwnedFd>, len: usize) -> io::Result<Mapping> {
        let (flags, raw_fd) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping at an address the kernel picks: it cannot
        // overlap any Rust object. `len` is non-zero (callers check).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw_fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap returned; the typed wrappers hand out
        // references tied to their own lifetime, which ends before this drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

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
    fn data_bytes(&self, what: &str) -> Result<usize> {
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

    fn data_offset(&self) -> Result<usize> {
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

const MAGIC: u64 = u64::from_le_bytes(*b"PROCSYNC");
/// Bumped whenever `Header` or a primitive's layout changes incompatibly.
pub(crate) const LAYOUT_VERSION: u32 = 2;
/// The header's `state` once the creator has finished. Before that it is 0
/// (a freshly truncated file is all zeros).
const READY: u32 = 0x5244_5921;
const TYPE_NAME_CAP: usize = 96;

/// The start of every named segment. Written by the creator before it
/// publishes `state = READY` with release ordering; read by openers after they
/// see `READY` with acquire ordering.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    state: Futex,
    layout_version: u32,
    creator_pid: AtomicI32,
    kind: u32,
    elem_size: u64,
    elem_align: u64,
    len: u64,
    fingerprint: u64,
    /// The creator's pid namespace (`shm::pid::pid_namespace`; 0 unknown).
    pid_namespace: u64,
    type_name_len: u32,
    type_name: [u8; TYPE_NAME_CAP],
}

/// A validated segment name, as `shm_open` wants it: `/name`.
#[derive(Clone, Debug)]
pub(crate) struct ShmName {
    display: String,
    c_path: CString,
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
        let c_path =
            CString::new(format!("/{bare}")).map_err(|_| invalid("it contains a NUL byte"))?;
        Ok(ShmName {
            display: bare.to_string(),
            c_path,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.display
    }

    /// The identity of the file the name stands for now, if any. glibc
    /// (and musl) keep POSIX shared memory under `/dev/shm`.
    fn file_id(&self) -> Option<FileId> {
        let path = CString::new(format!("/dev/shm/{}", self.display)).ok()?;
        // SAFETY: all-zero is a valid `stat`; stat fills it in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid NUL-terminated path and a valid out-pointer.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        Some(file_id(&st))
    }

    fn unlink(&self) -> io::Result<()> {
        // SAFETY: a valid NUL-terminated path that lives across the call.
        if unsafe { libc::shm_unlink(self.c_path.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Removes the name `name` from `/dev/shm` (Python's `SharedMemory.unlink`).
/// Processes that have it mapped keep their mapping; the memory is freed when
/// the last one unmaps it.
pub(crate) fn unlink(name: &str) -> Result<()> {
    let name = ShmName::parse(name)?;
    name.unlink()
        .map_err(|e| os_error("shm_unlink", name.as_str(), e))
}

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
    unlink_by: Option<u32>,
    /// Kept open so that `check_size` can see truncation by others (and
    /// named segments' bytes can be copied with `pread`/`pwrite`).
    fd: Option<OwnedFd>,
    /// The file this handle created (device and inode), so that its drop
    /// removes the name only while it still names that file.
    created: Option<FileId>,
}

/// A file's identity: device and inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
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

    /// Creates the named segment `name` for `layout` (failing if it exists),
    /// lets `init` write the data, then publishes it to openers. If `init`
    /// panics or anything fails, the name is removed again.
    pub(crate) fn create(
        name: &str,
        layout: &Layout,
        mode: u32,
        init: impl FnOnce(*mut u8),
    ) -> Result<Region> {
        let name = ShmName::parse(name)?;
        let data_len = layout.data_bytes(&format!("segment {:?}", name.as_str()))?;
        let data_offset = layout.data_offset()?;
        let total = data_offset + data_len;

        if mode & !0o777 != 0 {
            return Err(Error::InvalidMode { mode });
        }
        let fd = shm_open(&name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600)?;
        // From here on the name exists: remove it again unless we succeed
        // (an error below, or a panic in `init`).
        let unlink_on_failure = UnlinkOnDrop(&name);
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: file created");
        let created = fstat(&fd)
            .map(|st| file_id(&st))
            .map_err(|e| os_error("fstat", name.as_str(), e))?;
        // Exactly `mode`, whatever the umask (which shm_open applies).
        // SAFETY: a valid descriptor; plain permission bits.
        if unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) } != 0 {
            return Err(os_error(
                "fchmod",
                name.as_str(),
                io::Error::last_os_error(),
            ));
        }
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: mode set");
        // SAFETY: a valid open descriptor; a size that fits off_t (checked in data_bytes).
        if unsafe { libc::ftruncate(fd.as_raw_fd(), total as libc::off_t) } != 0 {
            return Err(os_error(
                "ftruncate",
                name.as_str(),
                io::Error::last_os_error(),
            ));
        }
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: sized");
        let map = Mapping::new(Some(&fd), total).map_err(|e| os_error("mmap", name.as_str(), e))?;
        let header = map.ptr.as_ptr().cast::<Header>();
        // SAFETY: the header lies at the start of our fresh, writable,
        // page-aligned mapping of at least `total` bytes; `creator_pid` is
        // atomic.
        unsafe {
            (*header)
                .creator_pid
                .store(crate::pid::current() as i32, Ordering::Relaxed);
        }
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: creator recorded");
        // SAFETY: as above. Nobody reads the non-atomic fields before we
        // publish READY below.
        unsafe {
            (*header).magic.store(MAGIC, Ordering::Relaxed);
            (*header).layout_version = LAYOUT_VERSION;
            (*header).kind = layout.kind as u32;
            (*header).elem_size = layout.elem_size as u64;
            (*header).elem_align = layout.elem_align as u64;
            (*header).len = layout.len.unwrap_or(0) as u64;
            (*header).fingerprint = layout.fingerprint();
            (*header).pid_namespace = crate::pid::pid_namespace();
            let type_name = layout.type_name.as_bytes();
            let n = type_name.len().min(TYPE_NAME_CAP);
            (&mut (*header).type_name)[..n].copy_from_slice(&type_name[..n]);
            (*header).type_name_len = n as u32;
        }
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: header written");
        // SAFETY: data_offset + data_len == total, the mapping's length.
        init(unsafe { map.ptr.as_ptr().add(data_offset) });
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: data initialised");
        // SAFETY: as above; `state` is atomic.
        let state = unsafe { &(*header).state };
        state.store(READY, Ordering::Release);
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: published");
        state.wake_all();
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: openers woken");
        std::mem::forget(unlink_on_failure);
        Ok(Region {
            map,
            data_offset,
            data_len,
            name: Some(name),
            unlink_by: Some(crate::pid::current()),
            fd: Some(fd),
            created: Some(created),
        })
    }

    /// Opens the named segment `name`, waiting up to `timeout` for its creator
    /// to finish, and checks that it holds `layout`.
    pub(crate) fn open(name: &str, layout: &Layout, timeout: Duration) -> Result<Region> {
        let name = ShmName::parse(name)?;
        let fd = shm_open(&name, libc::O_RDWR, 0)?;
        let started = Instant::now();
        // `None`: no limit (`Duration::MAX`, or any timeout past the end of
        // the clock).
        let deadline = started.checked_add(timeout);
        let expired = || deadline.is_some_and(|d| Instant::now() >= d);
        let uninitialized = |creator_pid: i32| Error::Uninitialized {
            name: name.as_str().to_string(),
            creator_pid,
            creator_alive: creator_pid > 0 && crate::pid::is_running(creator_pid as u32),
            waited: started.elapsed(),
        };

        // The creator makes the file, then sizes it: wait for the size.
        let size = loop {
            let size = file_size(&fd).map_err(|e| os_error("fstat", name.as_str(), e))?;
            if size != 0 {
                break size;
            }
            if expired() {
                return Err(uninitialized(0));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if size < size_of::<Header>() as u64 {
            let mut magic = [0u8; 8];
            // SAFETY: a valid descriptor and an 8-byte writable buffer.
            let n = unsafe { libc::pread(fd.as_raw_fd(), magic.as_mut_ptr().cast(), 8, 0) };
            if n == 8 && u64::from_ne_bytes(magic) == MAGIC {
                return Err(Error::Truncated {
                    name: name.as_str().to_string(),
                    expected: size_of::<Header>() as u64,
                    actual: size,
                });
            }
            return Err(Error::Foreign {
                name: name.as_str().to_string(),
                reason: format!("it is {size} bytes, smaller than a procsync header"),
            });
        }
        // `size` is the one size this open uses: the mapping's length, and
        // (below) what the header's promise is checked against. A second
        // look at the file could see it resized in between and hand out a
        // data area longer than the mapping.
        let map = Mapping::new(Some(&fd), size as usize)
            .map_err(|e| os_error("mmap", name.as_str(), e))?;
        let mut region = Region {
            map,
            data_offset: 0,
            data_len: 0,
            name: Some(name.clone()),
            unlink_by: None,
            fd: Some(fd),
            created: None,
        };
        let header = region.header_ptr();
        // SAFETY: the mapping is at least a header long (checked above); the
        // fields read before READY are atomics.
        let (state, magic, creator_pid) =
            unsafe { (&(*header).state, &(*header).magic, &(*header).creator_pid) };
        loop {
            let now_state = state.load(Ordering::Acquire);
            let now_magic = magic.load(Ordering::Relaxed);
            if now_magic != 0 && now_magic != MAGIC {
                return Err(Error::Foreign {
                    name: name.as_str().to_string(),
                    reason: "its first bytes are not the procsync magic".into(),
                });
            }
            if now_state == READY {
                if now_magic != MAGIC {
                    return Err(Error::Foreign {
                        name: name.as_str().to_string(),
                        reason: "its first bytes are not the procsync magic".into(),
                    });
                }
                break;
            }
            if now_state != 0 {
                return Err(Error::Foreign {
                    name: name.as_str().to_string(),
                    reason: format!(
                        "its state word is {now_state:#x}, neither initialising nor ready"
                    ),
                });
            }
            let pid = creator_pid.load(Ordering::Relaxed);
            if expired() || (pid > 0 && !crate::pid::is_running(pid as u32)) {
                return Err(uninitialized(pid));
            }
            // Sleep until the creator publishes; wake now and then to notice
            // a creator that died half-way.
            let tick = Instant::now() + Duration::from_millis(10);
            state.wait(0, Some(deadline.map_or(tick, |d| d.min(tick))));
        }

        // SAFETY: READY was read with acquire ordering, so the creator's plain
        // writes of the header are visible and no longer change.
        let found = unsafe { &*header };
        let found_type_name = String::from_utf8_lossy(
            &found.type_name[..(found.type_name_len as usize).min(TYPE_NAME_CAP)],
        )
        .into_owned();
        if found.layout_version != LAYOUT_VERSION {
            return Err(Error::LayoutVersion {
                name: name.as_str().to_string(),
                found: found.layout_version,
                expected: LAYOUT_VERSION,
            });
        }
        let ours = crate::pid::pid_namespace();
        if found.pid_namespace != 0 && ours != 0 && found.pid_namespace != ours {
            return Err(Error::OtherPidNamespace {
                name: name.as_str().to_string(),
                found: found.pid_namespace,
                ours,
            });
        }
        let found_kind = Kind::from_u32(found.kind);
        let same_len = layout.len.is_none_or(|len| len as u64 == found.len);
        if found_kind != Some(layout.kind)
            || found.fingerprint != layout.fingerprint()
            || found.elem_size != layout.elem_size as u64
            || found.elem_align != layout.elem_align as u64
            || !same_len
        {
            let found_desc = match found_kind {
                Some(kind) => Layout::describe_parts(
                    kind,
                    &found_type_name,
                    found.elem_size,
                    found.elem_align,
                    Some(found.len),
                ),
                None => format!("an unknown kind of segment ({})", found.kind),
            };
            return Err(Error::TypeMismatch {
                name: name.as_str().to_string(),
                expected: layout.describe(),
                found: found_desc,
            });
        }
        let opened = Layout {
            len: Some(found.len as usize),
            ..layout.clone()
        };
        let data_offset = opened.data_offset()?;
        let data_len = opened.data_bytes(&format!("segment {:?}", name.as_str()))?;
        // Both at most isize::MAX / 2 (data_bytes, a page): no overflow.
        let expected = (data_offset + data_len) as u64;
        if expected > size {
            return Err(Error::Truncated {
                name: name.as_str().to_string(),
                expected,
                actual: size,
            });
        }
        region.data_offset = data_offset;
        region.data_len = data_len;
        Ok(region)
    }

    /// Opens `name` if it exists, else creates it with `init`. Returns the
    /// region and whether this call created it.
    pub(crate) fn open_or_create(
        name: &str,
        layout: &Layout,
        timeout: Duration,
        init: impl FnOnce(*mut u8),
    ) -> Result<(Region, bool)> {
        let mut init = Some(init);
        // Between a failed create (it exists) and our open, the owner may
        // unlink it; then creating is right again. A few rounds settle it.
        for _ in 0..16 {
            match Region::create(name, layout, DEFAULT_MODE, |p| {
                (init.take().expect("init runs once"))(p)
            }) {
                Ok(region) => return Ok((region, true)),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match Region::open(name, layout, timeout) {
                Ok(region) => return Ok((region, false)),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(os_error(
            "open_or_create",
            name,
            io::Error::other("the name kept appearing and disappearing"),
        ))
    }

    fn header_ptr(&self) -> *mut Header {
        self.map.ptr.as_ptr().cast::<Header>()
    }

    /// Start of the data area.
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        // SAFETY: data_offset + data_len <= map.len by construction.
        unsafe { self.map.ptr.as_ptr().add(self.data_offset) }
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
        self.unlink_by = None;
    }

    /// Copies `buf.len()` bytes from the data area at `offset` (in bounds:
    /// the caller checked) into `buf`. A named segment's bytes are read with
    /// `pread`, which meets a truncated file as a short read, never as a
    /// SIGBUS: a truncation racing with the copy gives [`Error::Truncated`].
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let (Some(fd), Some(name)) = (&self.fd, &self.name) else {
            // SAFETY: an anonymous mapping cannot shrink; the range is inside
            // the data area (the caller checked) and `buf` is a distinct,
            // exclusive Rust buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data_ptr().add(offset),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            return Ok(());
        };
        let start = self.data_offset + offset;
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: a valid descriptor; `rest` is writable for its length.
            let n = unsafe {
                libc::pread(
                    fd.as_raw_fd(),
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                    (start + done) as libc::off_t,
                )
            };
            match n {
                0 => return Err(self.truncated_at((start + done) as u64)),
                n if n > 0 => done += n as usize,
                _ => {
                    let err = io::Error::last_os_error();
                    if err.raw_os_error() != Some(libc::EINTR) {
                        return Err(os_error("pread", name.as_str(), err));
                    }
                }
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
            // SAFETY: as in `read`; the segment's bytes belong to no Rust
            // reference, only to this raw copy.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    self.data_ptr().add(offset),
                    data.len(),
                )
            };
            return Ok(());
        };
        self.check_size()?;
        let start = self.data_offset + offset;
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            // SAFETY: a valid descriptor; `rest` is readable for its length.
            let n = unsafe {
                libc::pwrite(
                    fd.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    (start + done) as libc::off_t,
                )
            };
            if n >= 0 {
                done += n as usize;
            } else {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(os_error("pwrite", name.as_str(), err));
                }
            }
        }
        Ok(())
    }

    /// The error for a named segment's file found ending at or before `end`.
    fn truncated_at(&self, end: u64) -> Error {
        let name = self.name().unwrap_or_default().to_string();
        let actual = match &self.fd {
            Some(fd) => file_size(fd).map_or(end, |size| size.min(end)),
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
        let actual = file_size(fd).map_err(|e| os_error("fstat", name.as_str(), e))?;
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
        if !self.owns_name() {
            return;
        }
        if let (Some(name), Some(created)) = (&self.name, self.created) {
            // Only while the name still names the file this handle created:
            // another process may have removed it and made a new segment
            // under the same name, which is theirs. (Our descriptor is still
            // open, so no other file can have our device and inode now.)
            // The race that remains: another process removing and
            // re-creating the name between this check and the unlink just
            // after, a window of two system calls; Linux has no "unlink
            // only this inode".
            if name.file_id() == Some(created) {
                crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: name checked");
                // Already gone (someone else unlinked it) is fine.
                let _ = name.unlink();
                crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: unlinked");
            }
        }
    }
}

/// Unlinks a half-created segment's name if creation fails or panics.
struct UnlinkOnDrop<'a>(&'a ShmName);

impl Drop for UnlinkOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlink();
    }
}

fn shm_open(name: &ShmName, flags: i32, mode: libc::mode_t) -> Result<OwnedFd> {
    // SAFETY: a valid NUL-terminated path; plain flags.
    let fd = unsafe { libc::shm_open(name.c_path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let owned = name.as_str().to_string();
        return Err(match err.raw_os_error() {
            Some(libc::EEXIST) => Error::AlreadyExists { name: owned },
            Some(libc::ENOENT) => Error::NotFound { name: owned },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { name: owned },
            Some(libc::ENAMETOOLONG) => Error::InvalidName {
                name: owned,
                reason: "the system says it is too long",
            },
            _ => os_error("shm_open", name.as_str(), err),
        });
    }
    // SAFETY: shm_open just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: all-zero is a valid `stat`; fstat fills it in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn file_size(fd: &OwnedFd) -> io::Result<u64> {
    fstat(fd).map(|st| st.st_size as u64)
}

fn file_id(st: &libc::stat) -> FileId {
    FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

pub(crate) fn os_error(op: &'static str, segment: &str, source: io::Error) -> Error {
    Error::Os {
        op,
        segment: segment.to_string(),
        source,
    }
}
