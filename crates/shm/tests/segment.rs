//! `Segment`: raw bytes by name and size.

use daemon::Process;
use shm::{Error, Segment};
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

#[test]
fn zz_this_suite_left_no_names_behind() {
    assert_eq!(
        testkit::leaked_names(std::process::id()),
        Vec::<String>::new()
    );
}
