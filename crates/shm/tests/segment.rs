//! `Segment`: raw bytes by name and size.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use daemon::Process;
use shm::{Error, Futex, Segment, Shared};
use testkit::{helper_args, helper_report, reported, run_helper, unique_name, GENEROUS};

#[test]
fn an_anonymous_segment_is_shared_with_a_child() {
    let segment = Segment::anonymous(16).unwrap();
    let child = Process::new(|| segment.write(4, b"ping").unwrap())
        .start()
        .unwrap();
    child.join().unwrap();
    let mut buf = [0u8; 8];
    segment.read(2, &mut buf).unwrap();
    assert_eq!(&buf, b"\0\0ping\0\0");
}

/// The unrelated process's side of `an_unrelated_process_reads_and_writes`.
#[test]
fn helper_reply() {
    let Some(args) = helper_args() else { return };
    let segment = Segment::open(&args[0]).expect("open by name");
    let mut buf = [0u8; 5];
    segment.read(0, &mut buf).unwrap();
    helper_report("read", String::from_utf8_lossy(&buf));
    helper_report("len", segment.len());
    segment.write(5, b"world").unwrap();
}

#[test]
fn an_unrelated_process_reads_and_writes() {
    let name = unique_name("segment");
    let segment = Segment::create(&name, 100).unwrap();
    segment.write(0, b"hello").unwrap();
    let out = run_helper("helper_reply", &[&name], GENEROUS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reported(&out, "read").as_deref(), Some("hello"));
    assert_eq!(reported(&out, "len").as_deref(), Some("100"));
    let mut buf = [0u8; 10];
    segment.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"helloworld");
}

#[test]
fn ranges_outside_the_segment_are_errors() {
    let segment = Segment::anonymous(10).unwrap();
    assert!(segment.write(8, b"ab").is_ok());
    for (offset, len) in [(9, 2), (10, 1), (usize::MAX, 2), (0, 11)] {
        let err = segment.write(offset, &vec![0; len]).unwrap_err();
        assert!(matches!(err, Error::OutOfBounds { .. }), "{err:?}");
        let mut buf = vec![0; len];
        assert!(segment.read(offset, &mut buf).is_err());
    }
    // Nothing was written by the refused calls.
    let mut all = [1u8; 10];
    segment.read(0, &mut all).unwrap();
    assert_eq!(all, [0, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
}

#[test]
fn zero_bytes_is_refused() {
    assert!(matches!(
        Segment::anonymous(0),
        Err(Error::InvalidSize { .. })
    ));
    let name = unique_name("zero");
    assert!(matches!(
        Segment::create(&name, 0),
        Err(Error::InvalidSize { .. })
    ));
    assert!(!testkit::name_exists(&name));
}

#[test]
fn a_truncated_segment_gives_an_error_not_sigbus() {
    let name = unique_name("truncated");
    let segment = Segment::create(&name, 8192).unwrap();
    // Another process (here: this one, through the file system) shrinks it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(std::path::Path::new("/dev/shm").join(&name))
        .unwrap()
        .set_len(100)
        .unwrap();
    let mut buf = [0u8; 4];
    let err = segment.read(8000, &mut buf).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { actual: 100, .. }),
        "{err:?}"
    );
    assert!(matches!(Segment::open(&name), Err(Error::Truncated { .. })));
}

#[test]
fn open_or_create_creates_once() {
    let name = unique_name("segment-ooc");
    let first = Segment::open_or_create(&name, 32).unwrap();
    let second = Segment::open_or_create(&name, 32).unwrap();
    assert!(first.owns_name() && !second.owns_name());
    first.write(0, b"x").unwrap();
    let mut b = [0u8];
    second.read(0, &mut b).unwrap();
    assert_eq!(&b, b"x");
    assert!(matches!(
        Segment::open_or_create(&name, 64),
        Err(Error::TypeMismatch { .. })
    ));
}

/// The size of the file behind the named segment `name`.
fn file_len(name: &str) -> u64 {
    std::fs::metadata(std::path::Path::new("/dev/shm").join(name))
        .unwrap()
        .len()
}

#[test]
fn opening_while_another_process_resizes_never_faults() {
    const DATA: usize = 1 << 20;
    let name = unique_name("resized");
    let segment = Segment::create(&name, DATA).unwrap();
    let full = file_len(&name);
    // The header stays whole (the first page is never cut off).
    let short = 1000;
    let ready = Shared::new(Futex::new(0)).unwrap();
    let stop = Shared::new(AtomicU32::new(0)).unwrap();
    let path = std::path::Path::new("/dev/shm").join(&name);
    let resizer = Process::new(|| {
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        testkit::raise(&ready);
        while stop.load(Ordering::Relaxed) == 0 {
            file.set_len(short).unwrap();
            file.set_len(full).unwrap();
        }
    })
    .daemon(true)
    .start()
    .unwrap();
    testkit::wait_for(&ready, 1);
    // In a child of its own: a SIGSEGV or SIGBUS shows as its death.
    let opener = Process::new(|| {
        let (mut opened, mut read_whole) = (0u32, 0u32);
        let mut buf = vec![0u8; DATA];
        for _ in 0..3000 {
            match Segment::open(&name) {
                Ok(seen) => {
                    opened += 1;
                    assert_eq!(seen.len(), DATA);
                    match seen.read(0, &mut buf) {
                        Ok(()) => read_whole += 1,
                        Err(Error::Truncated { .. }) => {}
                        Err(e) => panic!("read: {e:?}"),
                    }
                }
                Err(Error::Truncated { .. }) => {}
                Err(e) => panic!("open: {e:?}"),
            }
        }
        (opened, read_whole)
    })
    .start()
    .unwrap();
    let outcome = opener.join();
    stop.store(1, Ordering::Relaxed);
    resizer.join().unwrap();
    let (opened, _read_whole) = outcome.unwrap();
    assert!(opened > 0, "never opened at full size");
    drop(segment);
}

#[test]
fn a_creators_drop_leaves_a_segment_made_since_under_its_name() {
    let name = unique_name("recreated");
    let first = Segment::create(&name, 16).unwrap();
    Segment::unlink(&name).unwrap();
    // Another process makes a new segment under the same name, and leaves.
    Process::new(|| {
        let mut theirs = Segment::create(&name, 32).unwrap();
        theirs.write(0, b"theirs").unwrap();
        theirs.persist();
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    drop(first);
    assert!(
        testkit::name_exists(&name),
        "the first creator's drop removed a segment it did not make"
    );
    let theirs = Segment::open(&name).unwrap();
    let mut buf = [0u8; 6];
    theirs.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"theirs");
    Segment::unlink(&name).unwrap();
}

#[test]
fn a_creators_drop_still_removes_its_own_segment() {
    let name = unique_name("own");
    drop(Segment::create(&name, 16).unwrap());
    assert!(!testkit::name_exists(&name));
}

#[test]
fn open_timeout_of_duration_max_means_no_limit() {
    let name = unique_name("endless");
    let _segment = Segment::create(&name, 8).unwrap();
    assert_eq!(
        Segment::open_timeout(&name, Duration::MAX).unwrap().len(),
        8
    );
    let _value = Shared::create(&format!("{name}-value"), AtomicU32::new(3)).unwrap();
    let value = Shared::<AtomicU32>::open_timeout(&format!("{name}-value"), Duration::MAX).unwrap();
    assert_eq!(value.load(Ordering::SeqCst), 3);
    let _slice =
        shm::SharedSlice::create(&format!("{name}-slice"), 2, |_| AtomicU32::new(4)).unwrap();
    let slice =
        shm::SharedSlice::<AtomicU32>::open_timeout(&format!("{name}-slice"), Duration::MAX)
            .unwrap();
    assert_eq!(slice.len(), 2);
}

#[test]
fn zz_this_suite_left_no_names_behind() {
    assert_eq!(
        testkit::leaked_names(shm::pid::current()),
        Vec::<String>::new()
    );
}
