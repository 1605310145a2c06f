//! Review 3: named segments checked by layout fingerprint.

use std::sync::atomic::{AtomicU32, Ordering};

use daemon::Process;
use shm::lockword::RawLock;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::Mutex;
use testkit::{raise, unique_name, wait_for};

/// Another program's view of a `Mutex<u64>`: the same field names, offsets
/// and types, but the data is a plain `u64`, not inside an `UnsafeCell`.
#[derive(ShmSafe)]
#[repr(C)]
struct Peek {
    raw: RawLock,
    data: u64,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Signals {
    opened: Futex,
    written: Futex,
    /// 1: the opener was refused with `TypeMismatch`; 2: it opened.
    outcome: AtomicU32,
}

/// `Mutex<T>` describes its `data` field as `T`, so a plain
/// `#[repr(C)] struct { raw: RawLock, data: T }` has the same fingerprint
/// and opens a named `Mutex<T>`: the opener holds a `&u64` to memory the
/// lock's holders change through `&mut u64` (a data race in safe code, and
/// a shared reference whose pointee changes under it).
#[test]
fn a_named_mutex_is_refused_to_a_struct_without_its_unsafe_cell() {
    let name = unique_name("peek");
    let mutex = Shared::create(&name, Mutex::new(0u64)).unwrap();
    let signals = Shared::new(Signals {
        opened: Futex::new(0),
        written: Futex::new(0),
        outcome: AtomicU32::new(0),
    })
    .unwrap();
    let s = &*signals;
    let opener_name = name.clone();
    let opener = Process::new(move || -> (u64, u64) {
        match Shared::<Peek>::open(&opener_name) {
            Err(shm::Error::TypeMismatch { .. }) => {
                s.outcome.store(1, Ordering::SeqCst);
                raise(&s.opened);
                (0, 0)
            }
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(peek) => {
                s.outcome.store(2, Ordering::SeqCst);
                let data: &u64 = &peek.data;
                // SAFETY: `data` is a valid, aligned reference; the read is
                // volatile so that the second one really looks again (the
                // race it shows is the library's defect, not this read's).
                let before = unsafe { std::ptr::read_volatile(data) };
                raise(&s.opened);
                wait_for(&s.written, 1);
                // SAFETY: as above.
                let after = unsafe { std::ptr::read_volatile(data) };
                (before, after)
            }
        }
    })
    .start()
    .unwrap();
    wait_for(&s.opened, 1);
    if s.outcome.load(Ordering::SeqCst) == 2 {
        *mutex.lock().unwrap() = 42;
    }
    raise(&s.written);
    let (before, after) = opener.join().unwrap();
    drop(mutex);
    assert!(!testkit::name_exists(&name));
    assert_eq!(
        s.outcome.load(Ordering::SeqCst),
        1,
        "a plain struct opened a named Mutex<u64>; its &u64 read {before}, then {after} \
         after another process wrote through the lock"
    );
}
