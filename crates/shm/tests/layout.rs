//! Named segments are checked by layout, not by Rust path: separately built
//! programs that declare the same struct in different modules share a
//! segment; one whose struct differs is refused with the field named.
//!
//! The programs are this crate's examples `layout_point_a`, `_b` and `_c`
//! (each its own crate, compiled separately). `cargo test` builds examples
//! beside the test binaries (`target/<profile>/examples`), which is where
//! these tests look first; run alone (`cargo test --test layout`), cargo
//! skips the examples, and the test builds them itself with the cargo that
//! built it, into `<target>/layout-examples` (a directory of its own, so it
//! never waits for the lock of the build that runs it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::mpsc;

use shm::{Error, Shared, ShmSafe};
use testkit::{unique_name, GENEROUS};

mod a {
    pub(crate) mod geo {
        #[derive(Debug, shm::ShmSafe)]
        #[repr(C)]
        pub(crate) struct Point {
            pub(crate) x: u32,
            pub(crate) y: u32,
        }
    }
}

mod b {
    pub(crate) mod shapes {
        pub(crate) mod geo {
            #[derive(Debug, shm::ShmSafe)]
            #[repr(C)]
            pub(crate) struct Point {
                pub(crate) x: u32,
                pub(crate) y: u32,
            }
        }
    }
}

mod wider {
    #[derive(Debug, shm::ShmSafe)]
    #[repr(C)]
    pub(crate) struct Point {
        pub(crate) x: u32,
        pub(crate) y: u64,
    }
}

mod renamed {
    #[derive(Debug, shm::ShmSafe)]
    #[repr(C)]
    pub(crate) struct Point {
        pub(crate) x: u32,
        pub(crate) z: u32,
    }
}

#[derive(Debug, ShmSafe)]
#[repr(C)]
struct Stats {
    hits: AtomicU64,
    slots: [AtomicU32; 4],
}

mod elsewhere {
    use std::sync::atomic::{AtomicU32, AtomicU64};

    #[derive(Debug, shm::ShmSafe)]
    #[repr(C)]
    pub(crate) struct Stats {
        pub(crate) hits: AtomicU64,
        pub(crate) slots: [AtomicU32; 5],
    }
}

#[test]
fn the_same_struct_in_another_module_opens() {
    let name = unique_name("layout-same");
    let _mine = Shared::create(&name, a::geo::Point { x: 3, y: 4 }).unwrap();
    let theirs = Shared::<b::shapes::geo::Point>::open(&name).unwrap();
    assert_eq!((theirs.x, theirs.y), (3, 4));
}

#[test]
fn a_field_of_another_type_is_named() {
    let name = unique_name("layout-wider");
    let _mine = Shared::create(&name, a::geo::Point { x: 3, y: 4 }).unwrap();
    let err = Shared::<wider::Point>::open(&name).unwrap_err();
    let Error::TypeMismatch { difference, .. } = &err else {
        panic!("expected a type mismatch, got {err:?}")
    };
    assert_eq!(difference, "field `y`: `u64` here, `u32` in the segment");
    assert!(err.to_string().contains(difference.as_str()), "{err}");
}

#[test]
fn a_renamed_field_is_named() {
    let name = unique_name("layout-renamed");
    let _mine = Shared::create(&name, a::geo::Point { x: 3, y: 4 }).unwrap();
    let err = Shared::<renamed::Point>::open(&name).unwrap_err();
    let Error::TypeMismatch { difference, .. } = &err else {
        panic!("expected a type mismatch, got {err:?}")
    };
    assert_eq!(difference, "field 2 is `z` here, `y` in the segment");
}

#[test]
fn an_array_of_another_length_is_named() {
    let name = unique_name("layout-array");
    let _mine = Shared::create(
        &name,
        Stats {
            hits: AtomicU64::new(0),
            slots: Default::default(),
        },
    )
    .unwrap();
    let err = Shared::<elsewhere::Stats>::open(&name).unwrap_err();
    let Error::TypeMismatch { difference, .. } = &err else {
        panic!("expected a type mismatch, got {err:?}")
    };
    assert_eq!(
        difference,
        "field `slots`: `[AtomicU32; 5]` here, `[AtomicU32; 4]` in the segment"
    );
}

#[test]
fn a_segment_of_the_previous_layout_version_gets_the_version_error() {
    // A published segment as layout version 2 wrote it: magic, state READY,
    // version 2, in a file of 192 bytes (its header and one u64).
    let name = unique_name("layout-v2");
    let mut bytes = vec![0u8; 192];
    bytes[..8].copy_from_slice(b"PROCSYNC");
    bytes[8..12].copy_from_slice(&0x5244_5921u32.to_ne_bytes());
    bytes[12..16].copy_from_slice(&2u32.to_ne_bytes());
    std::fs::write(std::path::Path::new("/dev/shm").join(&name), bytes).unwrap();
    let err = Shared::<AtomicU64>::open(&name).unwrap_err();
    Shared::<AtomicU64>::unlink(&name).unwrap();
    assert!(
        matches!(err, Error::LayoutVersion { found: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn separately_built_programs_share_a_struct_by_layout() {
    let name = unique_name("layout-programs");
    let mut creator = Command::new(example("layout_point_a"))
        .arg(&name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = creator.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(GENEROUS)
        .expect("program A never got ready");
    assert_eq!(line.trim(), "ready");

    let same = run(&example("layout_point_b"), &name);
    let wider = run(&example("layout_point_c"), &name);

    drop(creator.stdin.take()); // program A drops its segment and exits
    assert!(creator.wait().unwrap().success());
    assert!(!testkit::name_exists(&name), "A removed its name");

    assert_eq!(same, (true, "opened x=3 y=4".to_string()));
    assert!(!wider.0, "{}", wider.1);
    assert!(
        wider
            .1
            .contains("field `y`: `u64` here, `u32` in the segment"),
        "{}",
        wider.1
    );
}

#[test]
fn zz_this_suite_left_no_names_behind() {
    assert_eq!(
        testkit::leaked_names(shm::pid::current()),
        Vec::<String>::new()
    );
}

/// Runs `program NAME` to its end (it opens with a 2 s timeout, so ends);
/// its success and first line of output.
fn run(program: &PathBuf, name: &str) -> (bool, String) {
    let out = Command::new(program).arg(name).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        text.lines().next().unwrap_or_default().to_string(),
    )
}

/// The path of this crate's example `name`, built as described at the top.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let beside = profile_dir.join("examples").join(name);
    if beside.exists() {
        return beside;
    }
    let target = profile_dir.parent().unwrap().join("layout-examples");
    build_examples_once(&target);
    target.join("debug").join("examples").join(name)
}

fn build_examples_once(target: &std::path::Path) {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "shm",
                "--examples",
                "--target-dir",
            ])
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "building the layout examples failed");
    });
}

/// A procsync primitive is described by its protocol, not its fields: a
/// user's struct of the same shape as the lock word (one `Futex64` named
/// `word`) does not pass for it (review 3: with field descriptions only, a
/// `Mutex<T>` over a user's raw lock of that shape matched one over
/// `RawLock`).
#[test]
fn a_struct_shaped_like_the_lock_word_is_not_the_lock_word() {
    #[derive(shm::ShmSafe)]
    #[repr(C)]
    struct LookAlike {
        word: shm::Futex64,
    }
    assert_eq!(
        std::mem::size_of::<LookAlike>(),
        std::mem::size_of::<shm::lockword::RawLock>()
    );
    assert_ne!(
        shm::layout::fingerprint::<LookAlike>(),
        shm::layout::fingerprint::<shm::lockword::RawLock>()
    );
}
