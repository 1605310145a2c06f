//! [`Shared<T>`]: one value in memory shared between processes.

use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use crate::region::{self, Layout, Region, DEFAULT_MODE, DEFAULT_OPEN_TIMEOUT};
use crate::{Result, ShmSafe};

/// A `T` in memory shared between processes: Python's `Value` and
/// `RawValue`, explicit.
///
/// Processes share nothing by default: after `fork` a child's writes to
/// ordinary memory are invisible to its parent. A `Shared<T>` is the
/// exception you ask for. It hands out only `&T`, since other processes may
/// change the value at any moment; `T` is therefore an atomic, a procsync
/// primitive (such as a `Mutex<U>`), or a `#[derive(ShmSafe)]` struct of
/// those.
///
/// - [`Shared::new`] makes an anonymous one, shared with every child forked
///   after it.
/// - [`Shared::create`], [`Shared::open`] and [`Shared::open_or_create`] use
///   a name under `/dev/shm`, so unrelated processes can meet. The creating
///   handle removes the name when dropped (unless you call
///   [`persist`](Shared::persist)); handles in forked children never do.
///
/// `T`'s destructor never runs: another process may still use the value.
///
/// # Example
///
/// ```
/// use shm::Shared;
/// use std::sync::atomic::{AtomicI64, Ordering};
///
/// let n = Shared::new(AtomicI64::new(100))?;
/// let child = daemon::Process::new(|| {
///     n.fetch_sub(1, Ordering::SeqCst);
/// })
/// .start()?;
/// child.join()?;
/// assert_eq!(n.load(Ordering::SeqCst), 99); // the child's write is visible
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A plain number cannot be assigned through it (E0594, "trait `DerefMut`
/// is required"): make it an atomic, as above (`shm::atomic::AtomicF64` for
/// a float, Python's `Value('d')`), or put it in a lock,
/// `sync_lock::Mutex::shared(0u64)`, whose guard gives `&mut u64`.
///
/// ```compile_fail,E0594
/// let n = shm::Shared::new(0u64)?;
/// *n = 5; // E0594: no `&mut` into memory other processes read
/// # Ok::<(), shm::Error>(())
/// ```
#[derive(Debug)]
pub struct Shared<T: ShmSafe + Sync> {
    region: Region,
    _value: PhantomData<T>,
}

// SAFETY: the handle gives out only `&T`, and `T: Sync` makes `&T` safe to
// use from several threads; the mapping itself is plain memory.
unsafe impl<T: ShmSafe + Sync> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe + Sync> Sync for Shared<T> {}

impl<T: ShmSafe + Sync> Shared<T> {
    /// Puts `value` in anonymous shared memory, which children forked
    /// afterwards share with this process.
    pub fn new(value: T) -> Result<Shared<T>> {
        let region = Region::anonymous(&Layout::value::<T>())?;
        // SAFETY: the fresh region is big enough and aligned for T (page
        // aligned), and nothing else refers to it yet.
        unsafe { region.data_ptr().cast::<T>().write(value) };
        Ok(Shared::from_region(region))
    }

    /// Creates the named segment `name` (`"jobs"` or `"/jobs"`) holding
    /// `value`, mode 0600. Fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if the name is taken. Dropping this handle removes the name.
    pub fn create(name: &str, value: T) -> Result<Shared<T>> {
        Shared::create_with_mode(name, value, DEFAULT_MODE)
    }

    /// [`create`](Shared::create) with permission bits `mode` (for example
    /// `0o660` to let the owner's group open it too), applied exactly,
    /// whatever the umask.
    pub fn create_with_mode(name: &str, value: T, mode: u32) -> Result<Shared<T>> {
        let region = Region::create(name, &Layout::value::<T>(), mode, |data| {
            // SAFETY: `data` is aligned for T and T-sized; not yet published.
            unsafe { data.cast::<T>().write(value) }
        })?;
        Ok(Shared::from_region(region))
    }

    /// Opens the named segment `name`, made by another process with
    /// [`create`](Shared::create) for the same `T`. Waits up to two seconds
    /// for its creator to finish initialising it.
    ///
    /// A segment of another type, kind or size, one made by something other
    /// than procsync, or one whose creator never finished gives a distinct
    /// [`Error`](crate::Error), never a wrongly typed reference.
    pub fn open(name: &str) -> Result<Shared<T>> {
        Shared::open_timeout(name, DEFAULT_OPEN_TIMEOUT)
    }

    /// [`open`](Shared::open), waiting at most `timeout` for the creator.
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Shared<T>> {
        let region = Region::open(name, &Layout::value::<T>(), timeout)?;
        Ok(Shared::from_region(region))
    }

    /// Opens `name`, or creates it with the value `init` returns if it does
    /// not exist. Exactly one of any number of racing callers runs `init`;
    /// the others wait until it has finished. Only the creating handle owns
    /// the name (see [`owns_name`](Shared::owns_name)).
    pub fn open_or_create(name: &str, init: impl FnOnce() -> T) -> Result<Shared<T>> {
        let (region, _created) =
            Region::open_or_create(name, &Layout::value::<T>(), DEFAULT_OPEN_TIMEOUT, |data| {
                // SAFETY: as in `create`.
                unsafe { data.cast::<T>().write(init()) }
            })?;
        Ok(Shared::from_region(region))
    }

    /// Removes the name `name` from the system. Processes that have the
    /// segment open keep using it; its memory is freed when the last one
    /// drops its handle.
    pub fn unlink(name: &str) -> Result<()> {
        region::unlink(name)
    }

    /// The segment's name, or `None` for an anonymous one.
    pub fn name(&self) -> Option<&str> {
        self.region.name()
    }

    /// Whether dropping this handle removes the name: true for the handle
    /// that created it, in the process that created it.
    pub fn owns_name(&self) -> bool {
        self.region.owns_name()
    }

    /// Keeps the name after this handle is dropped, so processes started
    /// later can still open it. Remove it with [`Shared::unlink`].
    pub fn persist(&mut self) {
        self.region.persist();
    }

    fn from_region(region: Region) -> Shared<T> {
        Shared {
            region,
            _value: PhantomData,
        }
    }
}

impl<T: ShmSafe + Sync> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the region holds an initialised T (written by the creator
        // before publishing, or checked by type on open), aligned, and mapped
        // for as long as `self` lives.
        unsafe { &*self.region.data_ptr().cast::<T>() }
    }
}
