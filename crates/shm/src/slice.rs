//! [`SharedSlice<T>`]: a fixed-length array in memory shared between processes.

use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use crate::region::{self, Layout, Region, DEFAULT_MODE, DEFAULT_OPEN_TIMEOUT};
use crate::{Result, ShmSafe};

/// A fixed-length slice of `T` in memory shared between processes: Python's
/// `Array`.
///
/// Like [`Shared`](crate::Shared), anonymous ([`SharedSlice::from_fn`],
/// inherited by children forked afterwards) or named
/// ([`SharedSlice::create`], [`SharedSlice::open`]), handed out as `&[T]`.
/// A named slice records its length; [`open`](SharedSlice::open) takes
/// whatever length the creator chose.
///
/// # Example
///
/// ```
/// use shm::SharedSlice;
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// let squares = SharedSlice::from_fn(4, |_| AtomicU32::new(0))?;
/// let child = daemon::Process::new(|| {
///     for (i, slot) in squares.iter().enumerate() {
///         slot.store((i * i) as u32, Ordering::Relaxed);
///     }
/// })
/// .start()?;
/// child.join()?;
/// let seen: Vec<u32> = squares.iter().map(|s| s.load(Ordering::Relaxed)).collect();
/// assert_eq!(seen, [0, 1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Changing elements: atomics, or one lock for the whole
///
/// Every process sees the same elements at the same time, so a
/// `SharedSlice` hands out `&[T]` only, never `&mut [T]`. Assigning to an
/// element of a `SharedSlice<u64>` is refused with E0594 ("cannot assign to
/// data in dereference of `SharedSlice<u64>`", "trait `DerefMut` is
/// required"):
///
/// ```compile_fail,E0594
/// let counts = shm::SharedSlice::from_fn(4, |_| 0u64)?;
/// counts[0] = 5; // E0594: no `&mut` into memory other processes read
/// # Ok::<(), shm::Error>(())
/// ```
///
/// Python's `Array('i', 4)` is a slice of atomics (`AtomicI32`,
/// `AtomicU64`, ...: each element changed on its own, by any process), and
/// `Array('d', 4)` a slice of [`AtomicF64`](crate::atomic::AtomicF64):
///
/// ```
/// use shm::{atomic::AtomicF64, SharedSlice};
/// use std::sync::atomic::Ordering;
///
/// let prices = SharedSlice::from_fn(4, |_| AtomicF64::new(0.0))?;
/// prices[0].store(9.5, Ordering::Relaxed);
/// prices[1].fetch_add(0.25, Ordering::Relaxed);
/// assert_eq!(prices[0].load(Ordering::Relaxed) + prices[1].load(Ordering::Relaxed), 9.75);
/// # Ok::<(), shm::Error>(())
/// ```
///
/// For elements changed together under one lock (Python's
/// `Array(..., lock=True)` with `get_lock()`), put an array in a lock
/// instead: `sync_lock::Mutex::shared([0u64; 4])`, whose guard derefs to
/// `&mut [u64; 4]`.
#[derive(Debug)]
pub struct SharedSlice<T: ShmSafe + Sync> {
    region: Region,
    len: usize,
    _values: PhantomData<T>,
}

// SAFETY: only `&[T]` is handed out and `T: Sync`.
unsafe impl<T: ShmSafe + Sync> Send for SharedSlice<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe + Sync> Sync for SharedSlice<T> {}

impl<T: ShmSafe + Sync> SharedSlice<T> {
    /// An anonymous shared slice of `len` elements, element `i` being `f(i)`.
    pub fn from_fn(len: usize, f: impl FnMut(usize) -> T) -> Result<SharedSlice<T>> {
        let region = Region::anonymous(&Layout::slice::<T>(Some(len)))?;
        fill(region.data_ptr(), len, f);
        Ok(SharedSlice::from_region(region, len))
    }

    /// An anonymous shared slice holding copies of `values`.
    pub fn from_slice(values: &[T]) -> Result<SharedSlice<T>>
    where
        T: Clone,
    {
        SharedSlice::from_fn(values.len(), |i| values[i].clone())
    }

    /// Creates the named slice `name` of `len` elements, element `i` being
    /// `f(i)`; mode 0600. Dropping this handle removes the name.
    pub fn create(name: &str, len: usize, f: impl FnMut(usize) -> T) -> Result<SharedSlice<T>> {
        SharedSlice::create_with_mode(name, len, DEFAULT_MODE, f)
    }

    /// [`create`](SharedSlice::create) with permission bits `mode`, applied
    /// exactly, whatever the umask.
    pub fn create_with_mode(
        name: &str,
        len: usize,
        mode: u32,
        f: impl FnMut(usize) -> T,
    ) -> Result<SharedSlice<T>> {
        let region = Region::create(name, &Layout::slice::<T>(Some(len)), mode, |data| {
            fill(data, len, f)
        })?;
        Ok(SharedSlice::from_region(region, len))
    }

    /// Opens the named slice `name`, whatever its length, if it holds `T`s.
    /// Waits up to two seconds for its creator to finish.
    pub fn open(name: &str) -> Result<SharedSlice<T>> {
        SharedSlice::open_timeout(name, DEFAULT_OPEN_TIMEOUT)
    }

    /// [`open`](SharedSlice::open), waiting at most `timeout` for the creator.
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<SharedSlice<T>> {
        let region = Region::open(name, &Layout::slice::<T>(None), timeout)?;
        let len = region.data_len() / size_of::<T>().max(1);
        Ok(SharedSlice::from_region(region, len))
    }

    /// Opens `name` if it exists (it must have exactly `len` elements), or
    /// creates it. Exactly one racing caller runs `f`.
    pub fn open_or_create(
        name: &str,
        len: usize,
        f: impl FnMut(usize) -> T,
    ) -> Result<SharedSlice<T>> {
        let (region, _created) = Region::open_or_create(
            name,
            &Layout::slice::<T>(Some(len)),
            DEFAULT_OPEN_TIMEOUT,
            |data| fill(data, len, f),
        )?;
        Ok(SharedSlice::from_region(region, len))
    }

    /// Removes the name `name`; see [`Shared::unlink`](crate::Shared::unlink).
    pub fn unlink(name: &str) -> Result<()> {
        region::unlink(name)
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

    fn from_region(region: Region, len: usize) -> SharedSlice<T> {
        SharedSlice {
            region,
            len,
            _values: PhantomData,
        }
    }
}

fn fill<T>(data: *mut u8, len: usize, mut f: impl FnMut(usize) -> T) {
    let data = data.cast::<T>();
    for i in 0..len {
        // SAFETY: the region has room for `len` aligned T's and is not yet
        // visible to anyone else. If `f` panics the region is discarded.
        unsafe { data.add(i).write(f(i)) };
    }
}

impl<T: ShmSafe + Sync> Deref for SharedSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised, aligned T's, mapped while `self` lives.
        unsafe { std::slice::from_raw_parts(self.region.data_ptr().cast::<T>(), self.len) }
    }
}
