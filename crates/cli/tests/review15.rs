//! Review 15: hostile review of the `procsync` command (issue #17). Each
//! test reproduced a defect (it failed on the code it was written against,
//! as its doc says) and now guards its fix.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use daemon::Process;
use shm::Shared;
use testkit::{raise, unique_name, wait_for};

mod common;
use common::{field, kill, listed, parked_child, procsync, procsync_to, signal, ShmFile};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first bytes of a procsync header (they keep their offsets in every
/// layout version): magic, state READY, `version`, creator pid.
fn header_start(version: u32, creator_pid: u32) -> Vec<u8> {
    let mut bytes = b"PROCSYNC".to_vec();
    bytes.extend_from_slice(&0x5244_5921_u32.to_ne_bytes()); // READY
    bytes.extend_from_slice(&version.to_ne_bytes());
    bytes.extend_from_slice(&creator_pid.to_ne_bytes());
    bytes
}

/// Promise 5: "`procsync` with stdout closed or piped into `head` does not
/// panic". Any write error on stdout (a reader that has gone: EPIPE; a
/// full device: ENOSPC) makes `println!` panic: exit code 101 and a
/// backtrace on stderr.
#[test]
fn ls_into_a_closed_pipe_or_a_full_device_does_not_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // `procsync ls | head -0`: the reader has gone
    let piped = procsync_to(&["ls", "--all"], Stdio::from(writer));
    let full = procsync_to(
        &["ls", "--all"],
        Stdio::from(std::fs::File::create("/dev/full").unwrap()),
    );
    for (how, out) in [("closed pipe", piped), ("/dev/full", full)] {
        let err = text(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 1)) && !err.contains("panicked"),
            "{how}: exit {:?}, stderr: {err}",
            out.status.code()
        );
    }
}

/// Promise 1: `ls` lists every procsync segment (and `--all` "every name in
/// /dev/shm"), for any name. A name that is not UTF-8 is dropped silently
/// (`list` keeps only `into_string().ok()` names): a procsync segment renamed
/// to one is invisible to `ls`, `ls --all` and `gc`.
#[test]
fn ls_lists_a_segment_whose_name_is_not_utf8() {
    let name = unique_name("r15-bytes");
    let segment = Shared::create(&name, AtomicU64::new(1)).unwrap();
    let mut odd = name.clone().into_bytes();
    odd.extend_from_slice(b"-\xff\xfe");
    std::fs::rename(ShmFile::path(name.as_bytes()), ShmFile::path(&odd)).unwrap();
    let _cleanup = ShmFile(odd);
    for args in [&["ls", "--json"][..], &["ls", "--all", "--json"][..]] {
        let out = procsync(args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed = json
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"].as_str().is_some_and(|n| n.starts_with(&name)));
        assert!(
            listed,
            "procsync {args:?} does not list {name}-\\xff\\xfe:\n{json}"
        );
    }
    drop(segment);
}

/// The rest of promise 1 for a name that is not UTF-8: `inspect` and `rm`
/// take it as bytes from argv, and `gc` collects it once its creator has
/// died (a child that made a segment, renamed it, and ended).
#[test]
fn inspect_gc_and_rm_take_a_name_that_is_not_utf8() {
    let base = unique_name("r15-bytes-gc");
    let odd = |suffix: &[u8]| {
        let mut odd = base.clone().into_bytes();
        odd.extend_from_slice(suffix);
        std::ffi::OsString::from_vec(odd)
    };
    let (dead, live) = (odd(b"-dead-\xff"), odd(b"-live-\xfe"));
    let made = {
        let (base, dead) = (base.clone(), dead.clone());
        Process::new(move || {
            let segment = Shared::create(&base, AtomicU64::new(1)).unwrap();
            std::fs::rename(
                ShmFile::path(base.as_bytes()),
                ShmFile::path(dead.as_bytes()),
            )
            .unwrap();
            // Its creator ends without removing it: abandoned.
            std::mem::forget(segment);
        })
        .start()
        .unwrap()
    };
    made.join().unwrap();
    let _dead_file = ShmFile(dead.as_bytes().to_vec());
    let segment = Shared::create(&base, AtomicU64::new(2)).unwrap();
    std::fs::rename(
        ShmFile::path(base.as_bytes()),
        ShmFile::path(live.as_bytes()),
    )
    .unwrap();
    let _live_file = ShmFile(live.as_bytes().to_vec());

    let out = procsync(&[OsStr::new("inspect"), &live]);
    let seen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        field(&seen, "name"),
        Some(format!("{base}-live-\\xfe")),
        "{seen}"
    );
    let out = procsync(&["gc", "--prefix", &base]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), format!("removed {base}-dead-\\xff\n")),
        "{out:?}"
    );
    assert!(!ShmFile::path(dead.as_bytes()).exists());
    let out = procsync(&[OsStr::new("rm"), &live]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "in use by this process: {out:?}"
    );
    let out = procsync(&[OsStr::new("rm"), OsStr::new("--force"), &live]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!ShmFile::path(live.as_bytes()).exists());
    drop(segment);
}

/// Promise 5 and `inventory::inspect`'s doc: a file "shorter than a header"
/// is `Truncated` (exit 1, listed as `truncated`). A file that has the magic
/// and the first words but stops before the header's end (here 100 of 2048
/// bytes) is shown as a healthy procsync segment instead: `inspect` exits 0
/// with "kind: unknown", `ls` lists it as `procsync: true`.
#[test]
fn a_file_cut_short_after_the_first_header_words_is_truncated() {
    let name = unique_name("r15-short");
    let mut bytes = header_start(4, 999_999);
    bytes.resize(100, 0);
    let _file = ShmFile::write(name.as_bytes(), &bytes);

    inspect_says_truncated(&name);
    let entry = listed(&["ls", "--all", "--json"], &name).expect("listed");
    assert_eq!(entry["status"], "truncated", "{entry}");
}

/// Runs `procsync inspect NAME` and expects exit code 1 with "truncated".
fn inspect_says_truncated(name: &str) {
    let out = procsync(&["inspect", name]);
    let err = text(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("truncated"),
        "inspect: exit {:?}\nstdout:\n{}stderr: {err}",
        out.status.code(),
        text(&out.stdout)
    );
}

/// As above, for a whole header whose data the file does not hold: a copy
/// of a published segment's header and its data's first bytes.
#[test]
fn a_file_cut_short_before_its_data_ends_is_truncated() {
    let whole = Shared::create(&unique_name("r15-whole"), [7u64; 1024]).unwrap();
    let bytes = std::fs::read(format!("/dev/shm/{}", whole.name().unwrap())).unwrap();
    drop(whole);
    let name = unique_name("r15-cut-data");
    let _file = ShmFile::write(name.as_bytes(), &bytes[..bytes.len() - 4096]);
    inspect_says_truncated(&name);
}

/// A user's own type that happens to be called `Mutex` (as
/// `parking_lot::Mutex<u64>` or any `Mutex<T>` of another crate would be).
#[derive(shm::ShmSafe)]
#[repr(C)]
struct Mutex<T> {
    value: T,
}

/// Promise 2 ("a type name that lies") and the README: "a user's type that
/// happens to share the name is not misread". `Mutex<T>` is recognised by
/// its type name alone, and its first eight bytes are decoded as a lock
/// word: a plain counter is reported as a locked Mutex with a holder.
#[test]
fn a_users_type_named_mutex_is_not_read_as_a_lock() {
    let name = unique_name("r15-fake-mutex");
    let fake = Shared::create(
        &name,
        Mutex {
            value: 0x0000_0001_0000_3039_u64,
        },
    )
    .unwrap();
    let out = procsync(&["inspect", &name]);
    let seen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        field(&seen, "type").as_deref(),
        Some("Mutex<u64>"),
        "{seen}"
    );
    assert_eq!(
        field(&seen, "primitive"),
        None,
        "a user's type read as sync_lock::Mutex:\n{seen}"
    );
    drop(fake);
}

/// Promise 1: `ls` shows every segment with its correct name. A name may
/// hold any byte but '/' and NUL (`shm::Shared::create` accepts a newline
/// or an escape sequence); the table prints it raw, so one segment becomes
/// two lines and the second line looks like another row (or, with ESC,
/// drives the terminal).
#[test]
fn ls_table_keeps_a_name_with_a_newline_on_its_row() {
    let name = format!(
        "{}\nFORGED value Lock 1 0600 root 1 yes no 0",
        unique_name("r15-nl")
    );
    let segment = Shared::create(&name, AtomicU64::new(1)).unwrap();
    let out = procsync(&["ls"]);
    let table = text(&out.stdout);
    assert!(
        !table.lines().any(|l| l.starts_with("FORGED")),
        "a row no segment has:\n{table}"
    );
    drop(segment);
}

/// As above, for `inspect`'s text: a name with a newline and an escape
/// sequence stays on its `name:` line, escaped, and no ESC byte is printed.
#[test]
fn inspect_escapes_control_characters_in_a_name() {
    let name = format!("{}\nholder: pid 1 (alive)\x1b[2J", unique_name("r15-esc"));
    let segment = Shared::create(&name, AtomicU64::new(1)).unwrap();
    let out = procsync(&["inspect", &name]);
    let seen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        !seen.lines().any(|l| l.starts_with("holder")) && !out.stdout.contains(&0x1b),
        "a forged line or a raw ESC:\n{seen}"
    );
    assert_eq!(
        field(&seen, "name"),
        Some(shm::inventory::escape(name.as_bytes())),
        "{seen}"
    );
    drop(segment);
}

/// Promise 2: `inspect` never crashes "on a file shrunk while it is read".
/// It maps the segment (`queue::inspect`, `Shared::open`) and reads it
/// through the mapping: a page the file no longer covers raises SIGBUS and
/// kills `procsync`. Here a queue's file is shrunk to its first page and
/// grown back, over and over (its content in the first page unchanged),
/// while `inspect` runs; each run must end with an exit code.
#[test]
fn inspect_survives_a_queue_file_shrunk_while_it_is_read() {
    let name = unique_name("r15-shrink");
    let q = queue::Queue::<u64>::builder()
        .capacity(64)
        .create(&name)
        .unwrap();
    let path = format!("/dev/shm/{name}");
    let full = std::fs::metadata(&path).unwrap().len();
    assert!(full > 3 * 4096, "a queue spanning pages: {full}");
    let ready = signal();
    let shrinker = {
        let path = path.clone();
        parked_child(&ready, move || {
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let limit = testkit::deadline(testkit::GENEROUS);
            // Started, then shrinks and grows until killed (bounded).
            std::thread::spawn(move || {
                while Instant::now() < limit {
                    file.set_len(4096).unwrap();
                    file.set_len(full).unwrap();
                }
            })
        })
    };
    let mut crashes = Vec::new();
    for _ in 0..300 {
        let out = procsync(&["inspect", &name]);
        if out.status.code().is_none() {
            crashes.push(format!("{:?}", out.status));
            break;
        }
    }
    kill(shrinker);
    // Whole again before this process's handle touches it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full)
        .unwrap();
    drop(q);
    assert_eq!(crashes, Vec::<String>::new(), "inspect killed by a signal");
}

/// Promise 1: "a dead creator whose pid was reused by another process must
/// not show alive". A segment whose header has no creator identity (made by
/// an older procsync: layout version 3) is judged by pid alone: once its
/// creator has died and a new process has its pid, `ls` says ALIVE `yes`
/// (and `creator_alive: true` in JSON) where it cannot know.
#[test]
fn ls_does_not_call_a_reused_pid_alive_without_an_identity() {
    if testkit::skip_unless_pids_can_be_forced() {
        return;
    }
    let name = unique_name("r15-v3");
    // The creator (an older procsync) writes its header and dies.
    let creator = {
        let name = name.clone();
        Process::new(move || {
            let me = std::process::id();
            let mut bytes = header_start(3, me);
            bytes.resize(4096, 0);
            std::fs::write(format!("/dev/shm/{name}"), bytes).unwrap();
        })
        .start()
        .unwrap()
    };
    let pid = creator.pid();
    creator.join().unwrap();
    let _file = ShmFile(name.clone().into_bytes());
    // Another process now runs under its pid.
    let ready = signal();
    let ready_ref = &*ready;
    let newcomer = testkit::start_with_pid(pid, move || {
        raise(ready_ref);
        testkit::park_until_killed();
    });
    wait_for(&ready, 1);
    let entry = listed(&["ls", "--json"], &name).expect("listed");
    newcomer.kill().unwrap();
    let _ = newcomer.join();
    assert_eq!(entry["creator_pid"], pid.get());
    assert_ne!(
        entry["creator_alive"], true,
        "pid {pid} is another process now: {entry}"
    );
}

/// Promise 5: an invalid name (`//x`: only one leading '/' is allowed, as
/// `inspect` says) is exit 2. `rm` strips one slash before the library
/// strips another, so `procsync rm //NAME` removes NAME.
#[test]
fn rm_of_a_name_with_two_leading_slashes_is_an_invalid_name() {
    let name = unique_name("r15-slashes");
    let _file = ShmFile::write(name.as_bytes(), &header_start(4, 999_999));
    let doubled = format!("//{name}");
    let inspected = procsync(&["inspect", &doubled]);
    assert_eq!(inspected.status.code(), Some(2), "{inspected:?}");
    let removed = procsync(&["rm", &doubled]);
    assert!(
        removed.status.code() == Some(2) && testkit::name_exists(&name),
        "rm {doubled}: exit {:?}, {} {}; the name exists: {}",
        removed.status.code(),
        text(&removed.stdout),
        text(&removed.stderr),
        testkit::name_exists(&name)
    );
}

/// Promise 2: the queue depth shown is the queue's. With garbage in its
/// tail word (a crafted or corrupted file) `inspect` reports more messages
/// than the queue has room for.
#[test]
fn inspect_never_shows_more_messages_than_capacity() {
    let name = unique_name("r15-garbage-queue");
    let q = queue::Queue::<u64>::builder()
        .capacity(4)
        .create(&name)
        .unwrap();
    let info = shm::inventory::inspect(&name).unwrap();
    let data = info.data_offset().unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    // Word 32 of the queue's lines is its tail.
    file.write_all_at(&u64::MAX.to_ne_bytes(), data + 32 * 8)
        .unwrap();
    let out = procsync(&["inspect", &name]);
    let seen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let messages = field(&seen, "messages").unwrap_or_default();
    let depth: u64 = messages
        .split(" of ")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(depth <= 4, "messages: {messages}");
    assert!(
        field(&seen, "state").is_some_and(|s| s.starts_with("corrupt: ")),
        "said corrupt:\n{seen}"
    );
    drop(q);
}

/// Helper for [`rm_refuses_a_segment_held_open_through_another_mount`]:
/// run by it inside a mount namespace of its own where `/dev/shm` is also
/// mounted at `DIR`; holds `DIR/NAME` open, says so, and waits to be killed.
#[test]
fn helper_hold_open_through_another_mount() {
    let Some(args) = testkit::helper_args() else {
        return;
    };
    let [dir, name] = &args[..] else {
        panic!("helper args: {args:?}")
    };
    let held = std::fs::File::open(format!("{dir}/{name}")).expect("open through the mount");
    println!("holding");
    testkit::park_until_killed();
    drop(held);
}

/// Promise 4: `rm` refuses while a live process "maps it or holds it open".
/// Users are found in `/proc/PID/{maps,fd}` only under paths that start with
/// `/dev/shm`: a process that reached the same file through another mount
/// of that tmpfs (a container given the host's `/dev/shm` at another path,
/// a bind mount) is not seen, so `rm` removes the name it holds open and
/// `ls` shows USERS 0. (`gc` is not fooled: its lease sees every open.)
#[test]
fn rm_refuses_a_segment_held_open_through_another_mount() {
    if !std::path::Path::new("/usr/bin/unshare").exists() || !is_root() {
        eprintln!("skipped: needs root and unshare");
        return;
    }
    let name = unique_name("r15-mount");
    let mut bytes = header_start(4, 999_999);
    bytes.resize(4096, 0);
    let file = ShmFile::write(name.as_bytes(), &bytes);
    let dir = std::env::temp_dir().join(unique_name("r15-mountpoint"));
    std::fs::create_dir(&dir).unwrap();
    let dir_text = dir.to_str().unwrap().to_string();
    let mut holder = Command::new("/usr/bin/unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind /dev/shm "$1" && exec "$2" helper_hold_open_through_another_mount --exact --nocapture --test-threads=1"#)
        .args(["sh", &dir_text])
        .arg(std::env::current_exe().unwrap())
        .env(testkit::HELPER_ENV, format!("{dir_text}\x1f{name}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = holder.stdout.take().unwrap();
    let said = testkit::within(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        lines.any(|l| l.is_ok_and(|l| l.contains("holding")))
    });
    let out = procsync(&["rm", &file.name()]);
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = std::fs::remove_dir(&dir);
    assert!(said, "the helper never held the file");
    assert_eq!(
        out.status.code(),
        Some(3),
        "rm while pid {} holds it open: {}{}",
        holder.id(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Promise 2 (held): `inspect` changes no byte of any primitive's segment,
/// each in a state worth showing.
#[test]
fn inspect_changes_no_byte_of_any_primitive() {
    let bytes_of = |name: &str| std::fs::read(format!("/dev/shm/{name}")).unwrap();
    let check = |name: &str, primitive: &str| {
        let before = bytes_of(name);
        let out = procsync(&["inspect", name]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let seen = text(&out.stdout);
        assert_eq!(
            field(&seen, "primitive").as_deref(),
            Some(primitive),
            "{seen}"
        );
        assert!(
            before == bytes_of(name),
            "inspect changed {primitive}'s bytes"
        );
    };
    let lock = Shared::create(&unique_name("r15-b-lock"), sync_lock::Lock::new()).unwrap();
    let held = lock.lock().unwrap();
    check(lock.name().unwrap(), "Lock");
    drop(held);
    let mutex = Shared::create(&unique_name("r15-b-mutex"), sync_lock::Mutex::new(1u32)).unwrap();
    let held = mutex.lock().unwrap();
    check(mutex.name().unwrap(), "Mutex");
    drop(held);
    let rlock = Shared::create(&unique_name("r15-b-rlock"), sync_lock::RLock::new()).unwrap();
    let held = rlock.lock().unwrap();
    check(rlock.name().unwrap(), "RLock");
    drop(held);
    let cv = Shared::create(&unique_name("r15-b-cv"), sync_lock::Condvar::new()).unwrap();
    check(cv.name().unwrap(), "Condvar");
    let sem = Shared::create(&unique_name("r15-b-sem"), sync_sem::Semaphore::new(2)).unwrap();
    let permit = sem.acquire();
    check(sem.name().unwrap(), "Semaphore");
    drop(permit);
    let rsem = Shared::create(
        &unique_name("r15-b-rsem"),
        sync_sem::RobustSemaphore::new(2),
    )
    .unwrap();
    let permit = rsem.acquire().unwrap();
    check(rsem.name().unwrap(), "RobustSemaphore");
    drop(permit);
    let event = Shared::create(&unique_name("r15-b-event"), sync_event::Event::new()).unwrap();
    event.set();
    check(event.name().unwrap(), "Event");
    let barrier = Shared::create(
        &unique_name("r15-b-barrier"),
        sync_event::Barrier::new(1).unwrap(),
    )
    .unwrap();
    barrier.wait().unwrap();
    check(barrier.name().unwrap(), "Barrier");
    let qname = unique_name("r15-b-queue");
    let q = queue::Queue::<u64>::builder()
        .capacity(4)
        .create(&qname)
        .unwrap();
    let tx = q.sender().unwrap();
    tx.put(7).unwrap();
    check(&qname, "Queue");
    drop(tx);
    drop((q, lock, mutex, rlock, cv, sem, rsem, event, barrier));
}

#[test]
fn zz_this_suite_left_no_names_behind() {
    assert_eq!(
        testkit::leaked_names(shm::pid::current()),
        Vec::<String>::new()
    );
}
