//! The create/open protocol room: how a creator makes a named segment and
//! publishes it, how openers wait for it (and notice a creator that died or
//! never finished), and how the creator's handle removes only its own file.
//!
//! The creator makes the file (mode, size), records its pid in the header,
//! writes the rest of the header and the data, then stores `state = READY`
//! with release ordering and wakes the openers, who sleep on `state` as a
//! futex. An opener that sees `READY` with acquire ordering sees everything
//! written before it. Each step others can see is followed by a crash point
//! ([`SEGMENT_CRASH_POINTS`]).

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::header::{Header, Layout, LAYOUT_VERSION, MAGIC, READY, STATE_OFFSET, VERSION_OFFSET};
use super::mapping::Mapping;
use super::name::ShmName;
use super::{os_error, Region};
use crate::pid::Pid;
use crate::sys::{self, ShmOpen};
use crate::{Error, Result};

/// How long `open` waits, by default, for a segment's creator to finish
/// initialising it.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The permissions a named segment is created with unless told otherwise:
/// read and write for its owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// The names of a named segment's crash points (see [`crate::crash`]): one
/// after each step of `create` that others can see (the file, its mode and
/// size, the header's creator pid, the rest of the header, the data, the
/// published state, the wake-up), and after each step of the creator's
/// unlink on drop. `open` stores nothing shared and has none.
pub const SEGMENT_CRASH_POINTS: &[&str] = &[
    "segment: file created",
    "segment: mode set",
    "segment: sized",
    "segment: creator identity recorded",
    "segment: creator recorded",
    "segment: header written",
    "segment: data initialised",
    "segment: published",
    "segment: openers woken",
    "segment: name checked",
    "segment: unlinked",
];

impl Region {
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
        let fd = shm_open(&name, ShmOpen::CreateNew { mode: 0o600 })?;
        // From here on the name exists: remove it again unless we succeed
        // (an error below, or a panic in `init`).
        let unlink_on_failure = UnlinkOnDrop(&name);
        let created = sys::fstat(fd.as_fd())
            .map_err(|e| os_error("fstat", name.as_str(), e))?
            .into();
        // At once: whatever ends this process from here on, its tracker
        // removes the name. (A death in the two system calls before this
        // leaves it, for `procsync gc`.)
        let tracked = crate::tracker::track(name.as_str(), created);
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: file created");
        // Exactly `mode`, whatever the umask (which shm_open applies).
        sys::fchmod(fd.as_fd(), mode).map_err(|e| os_error("fchmod", name.as_str(), e))?;
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: mode set");
        // A size that fits off_t (checked in data_bytes).
        sys::ftruncate(fd.as_fd(), total as u64)
            .map_err(|e| os_error("ftruncate", name.as_str(), e))?;
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: sized");
        let map = Mapping::new(Some(fd.as_fd()), total)
            .map_err(|e| os_error("mmap", name.as_str(), e))?;
        let header = map.header().expect("a segment is at least a header long");
        // The identity first: a creator killed between the two stores is
        // then judged by it (its pid may be a newcomer's by the time
        // someone looks; review 16).
        header
            .creator_identity
            .store(crate::pid::current_identity().to_bits(), Ordering::Relaxed);
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: creator identity recorded");
        header
            .creator_pid
            .store(crate::pid::current().as_raw(), Ordering::Relaxed);
        if !tracked {
            header.mark_untracked();
        }
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: creator recorded");
        // Nobody reads the other fields before we publish READY below.
        header.write(layout);
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: header written");
        init(map.at(data_offset));
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: data initialised");
        header.state.store(READY, Ordering::Release);
        crate::crash_point!(SEGMENT_CRASH_POINTS, "segment: published");
        header.state.wake_all();
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
        let fd = shm_open(&name, ShmOpen::Existing)?;
        let started = Instant::now();
        // `None`: no limit (`Duration::MAX`, or any timeout past the end of
        // the clock).
        let deadline = started.checked_add(timeout);
        let expired = || deadline.is_some_and(|d| Instant::now() >= d);
        let uninitialized = |creator: Option<(Pid, bool)>| Error::Uninitialized {
            name: name.as_str().to_string(),
            creator_pid: creator.map(|(pid, _)| pid),
            creator_alive: creator.is_some_and(|(_, alive)| alive),
            waited: started.elapsed(),
        };

        // The creator makes the file, then sizes it: wait for the size.
        let size = loop {
            let size = sys::fstat(fd.as_fd())
                .map_err(|e| os_error("fstat", name.as_str(), e))?
                .size;
            if size != 0 {
                break size;
            }
            if expired() {
                return Err(uninitialized(None));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if size < size_of::<Header>() as u64 {
            return Err(too_short(&fd, &name, size));
        }
        // `size` is the one size this open uses: the mapping's length, and
        // (below) what the header's promise is checked against. A second
        // look at the file could see it resized in between and hand out a
        // data area longer than the mapping.
        let map = Mapping::new(Some(fd.as_fd()), size as usize)
            .map_err(|e| os_error("mmap", name.as_str(), e))?;
        let header = map.header().expect("the mapping is at least a header long");
        loop {
            let now_state = header.state.load(Ordering::Acquire);
            let now_magic = header.magic.load(Ordering::Relaxed);
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
            let creator = header.creator();
            if expired() || creator.is_some_and(|(_, alive)| !alive) {
                return Err(uninitialized(creator));
            }
            // Sleep until the creator publishes; wake now and then to notice
            // a creator that died half-way.
            let tick = Instant::now() + Duration::from_millis(10);
            header
                .state
                .wait(0, Some(deadline.map_or(tick, |d| d.min(tick))));
        }

        // READY was read with acquire ordering: the creator's writes of the
        // header are visible and no longer change.
        let found_len = header.check(name.as_str(), layout)?;
        let opened = layout.with_len(found_len);
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
        Ok(Region {
            map,
            data_offset,
            data_len,
            name: Some(name),
            unlink_by: None,
            fd: Some(fd),
            created: None,
        })
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
            std::io::Error::other("the name kept appearing and disappearing"),
        ))
    }

    /// The creator's unlink on drop: removes the name only while it still
    /// names the file this handle created.
    pub(super) fn unlink_own_name(&self) {
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
            crate::tracker::untrack(name.as_str());
        }
    }
}

/// Unlinks a half-created segment's name if creation fails or panics.
struct UnlinkOnDrop<'a>(&'a ShmName);

impl Drop for UnlinkOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlink();
        crate::tracker::untrack(self.0.as_str());
    }
}

/// The error for a file of `size` bytes, too short for a header: a
/// published segment of another layout version (whose header may be
/// shorter), a procsync segment truncated by someone, or a foreign file.
fn too_short(fd: &std::os::fd::OwnedFd, name: &ShmName, size: u64) -> Error {
    let mut start = [0u8; VERSION_OFFSET + 4];
    let n = sys::pread(fd.as_fd(), &mut start, 0).unwrap_or(0);
    let whole = n == start.len();
    let word = |at: usize| u32::from_ne_bytes(start[at..at + 4].try_into().expect("4 bytes"));
    let magic = u64::from_ne_bytes(start[..8].try_into().expect("8 bytes"));
    if whole && magic == MAGIC {
        let version = word(VERSION_OFFSET);
        if word(STATE_OFFSET) == READY && version != LAYOUT_VERSION {
            return Error::LayoutVersion {
                name: name.as_str().to_string(),
                found: version,
                expected: LAYOUT_VERSION,
            };
        }
    }
    if n >= 8 && magic == MAGIC {
        return Error::Truncated {
            name: name.as_str().to_string(),
            expected: size_of::<Header>() as u64,
            actual: size,
        };
    }
    Error::Foreign {
        name: name.as_str().to_string(),
        reason: format!("it is {size} bytes, smaller than a procsync header"),
    }
}

/// `shm_open` of `name`, its failures as the [`Error`]s callers act on.
fn shm_open(name: &ShmName, how: ShmOpen) -> Result<std::os::fd::OwnedFd> {
    use std::io::ErrorKind;
    sys::shm_open(name.as_os_str(), how).map_err(|err| {
        let owned = name.as_str().to_string();
        match err.kind() {
            ErrorKind::AlreadyExists => Error::AlreadyExists { name: owned },
            ErrorKind::NotFound => Error::NotFound { name: owned },
            ErrorKind::PermissionDenied => Error::PermissionDenied { name: owned },
            ErrorKind::InvalidFilename => Error::InvalidName {
                name: owned,
                reason: "the system says it is too long",
            },
            _ => os_error("shm_open", name.as_str(), err),
        }
    })
}
