//! The `procsync` command run as a process against segments these tests
//! make: `ls` (table and JSON), `inspect` of each primitive, `rm`, `gc`,
//! and the errors with their exit codes.

use std::process::{Command, Output};
use std::sync::atomic::AtomicU64;

use daemon::Process;
use shm::Shared;
use testkit::{name_exists, unique_name};

mod common;
use common::{kill, listed, parked_child, procsync, signal, ShmFile};

/// Runs `procsync ARGS`, failing the test if it has not ended within
/// `testkit::GENEROUS`.
fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `procsync ARGS` and expects exit code 0; its stdout.
fn ok(args: &[&str]) -> String {
    let out = procsync(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "procsync {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `procsync ARGS` and expects exit code `code` with a one-line
/// error; that line.
fn fails(args: &[&str], code: i32) -> String {
    let out = procsync(args);
    assert_eq!(out.status.code(), Some(code), "procsync {args:?}: {out:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("procsync: error: "), "{err:?}");
    err
}

/// `inspect`'s value for `key` (its `key: value` lines); fails the test
/// if there is none.
fn field(inspected: &str, key: &str) -> String {
    common::field(inspected, key).unwrap_or_else(|| panic!("no {key:?} in:\n{inspected}"))
}

#[test]
fn ls_shows_a_segment_in_the_table_and_in_json() {
    let name = unique_name("cli-ls");
    let counter = Shared::create(&name, AtomicU64::new(5)).unwrap();
    let me = std::process::id();

    let table = ok(&["ls"]);
    let heading = table.lines().next().unwrap();
    assert!(heading.starts_with("NAME"), "{table}");
    for column in [
        "KIND", "TYPE", "SIZE", "MODE", "OWNER", "CREATOR", "ALIVE", "PERSIST", "USERS",
    ] {
        assert!(heading.contains(column), "{heading}");
    }
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("{name} not listed:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let mode = format!("{:04o}", shm::DEFAULT_MODE);
    let pid = me.to_string();
    let file_size = std::fs::metadata(format!("/dev/shm/{name}"))
        .unwrap()
        .len()
        .to_string();
    assert_eq!(
        [cells[..5].to_vec(), cells[6..].to_vec()].concat(),
        [
            name.as_str(),
            "value",
            "AtomicU64",
            file_size.as_str(),
            mode.as_str(),
            pid.as_str(),
            "yes",
            "no",
            "1"
        ],
        "{row}"
    );
    assert!(!cells[5].is_empty(), "an owner: {row}");
    // Aligned: every cell of the row starts where its heading does.
    for heading_word in ["KIND", "TYPE", "CREATOR", "USERS"] {
        let at = heading.find(heading_word).unwrap();
        assert_ne!(row.as_bytes()[at], b' ', "{heading}\n{row}");
        assert_eq!(row.as_bytes()[at - 1], b' ', "{heading}\n{row}");
    }

    let entry = listed(&["ls", "--json"], &name).unwrap_or_else(|| panic!("{name} not listed"));
    assert_eq!(entry["procsync"], true);
    assert_eq!(entry["kind"], "value");
    assert_eq!(entry["type"], "AtomicU64");
    assert_eq!(entry["element_size"], 8);
    assert_eq!(entry["len"], 1);
    assert_eq!(entry["mode"], mode.as_str());
    assert_eq!(entry["creator_pid"], me);
    assert_eq!(entry["creator_alive"], true);
    assert_eq!(entry["persistent"], false);
    assert_eq!(entry["ready"], true);
    assert_eq!(entry["users"], serde_json::json!([me]));
    assert_eq!(entry["mapped_by"], 1);
    assert!(entry["owner"].is_string() && entry["uid"].is_u64());
    drop(counter);
}

#[test]
fn inspect_a_lock_held_by_a_live_child_names_it_and_then_its_death() {
    let name = unique_name("cli-lock");
    let lock = Shared::create(&name, sync_lock::Lock::new()).unwrap();
    let ready = signal();
    let holder = parked_child(&ready, || lock.lock().unwrap());
    let pid = holder.pid();

    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "Lock");
    assert_eq!(field(&seen, "locked"), "yes");
    assert_eq!(field(&seen, "holder"), format!("pid {pid} (alive)"));
    assert_eq!(field(&seen, "sleepers"), "no");
    assert_eq!(field(&seen, "type"), "Lock");
    // Inspecting took nothing: the child still holds it.
    assert_eq!(lock.owner(), Some(pid));

    kill(holder);
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "holder"), format!("pid {pid} (dead)"));
    drop(lock);
}

#[test]
fn inspect_a_mutex_reads_its_lock_word_from_the_file() {
    let name = unique_name("cli-mutex");
    let mutex = Shared::create(&name, sync_lock::Mutex::new(7u32)).unwrap();
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "type"), "Mutex<u32>");
    assert_eq!(field(&seen, "primitive"), "Mutex");
    assert_eq!(field(&seen, "locked"), "no");
    assert_eq!(field(&seen, "holder"), "none");

    let ready = signal();
    let holder = parked_child(&ready, || mutex.lock().unwrap());
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "locked"), "yes");
    assert_eq!(
        field(&seen, "holder"),
        format!("pid {} (alive)", holder.pid())
    );
    kill(holder);
    drop(mutex);
}

#[test]
fn inspect_an_rlock_and_a_condvar_with_a_waiter() {
    let name = unique_name("cli-rlock");
    let rlock = Shared::create(&name, sync_lock::RLock::new()).unwrap();
    let ready = signal();
    let holder = parked_child(&ready, || [rlock.lock().unwrap(), rlock.lock().unwrap()]);
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "RLock");
    assert_eq!(
        field(&seen, "holder"),
        format!("pid {} (alive)", holder.pid())
    );
    assert_eq!(field(&seen, "depth"), "2");
    kill(holder);
    drop(rlock);

    let name = unique_name("cli-condvar");
    let cv = Shared::create(&name, sync_lock::Condvar::new()).unwrap();
    let go = Shared::new(sync_lock::Mutex::new(false)).unwrap();
    assert_eq!(field(&ok(&["inspect", &name]), "waiting"), "0");
    let waiter = Process::new(|| {
        let guard = go.lock().unwrap();
        drop(cv.wait_while(guard, |go| !*go).unwrap());
    })
    .start()
    .unwrap();
    testkit::wait_until("the child waits", || cv.n_waiting() == 1);
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "Condvar");
    assert_eq!(field(&seen, "waiting"), "1");
    *go.lock().unwrap() = true;
    cv.notify_all();
    waiter.join().unwrap();
    drop(cv);
}

#[test]
fn inspect_semaphores_show_permits_and_holders() {
    let name = unique_name("cli-sem");
    let sem = Shared::create(&name, sync_sem::Semaphore::bounded(3)).unwrap();
    let permit = sem.acquire();
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "Semaphore");
    assert_eq!(field(&seen, "permits"), "2");
    assert_eq!(field(&seen, "bound"), "3");
    assert_eq!(field(&seen, "sleepers"), "no");
    drop(permit);
    drop(sem);

    let name = unique_name("cli-robust-sem");
    let sem = Shared::create(&name, sync_sem::RobustSemaphore::new(4)).unwrap();
    let ready = signal();
    let holder = parked_child(&ready, || [sem.acquire().unwrap(), sem.acquire().unwrap()]);
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "RobustSemaphore");
    assert_eq!(field(&seen, "permits"), "2");
    assert_eq!(field(&seen, "bound"), "none");
    assert_eq!(
        field(&seen, "holders"),
        format!("pid {} (alive) x2", holder.pid())
    );
    kill(holder);
    drop(sem);
}

#[test]
fn inspect_an_event_a_barrier_and_a_queue() {
    let name = unique_name("cli-event");
    let event = Shared::create(&name, sync_event::Event::new()).unwrap();
    assert_eq!(field(&ok(&["inspect", &name]), "flag"), "clear");
    event.set();
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "Event");
    assert_eq!(field(&seen, "flag"), "set");
    drop(event);

    let name = unique_name("cli-barrier");
    let barrier = Shared::create(&name, sync_event::Barrier::new(1).unwrap()).unwrap();
    barrier.wait().unwrap();
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "Barrier");
    assert_eq!(field(&seen, "parties"), "1");
    assert_eq!(field(&seen, "waiting"), "0");
    assert_eq!(field(&seen, "generation"), "1");
    assert_eq!(field(&seen, "broken"), "no");
    drop(barrier);

    let name = unique_name("cli-queue");
    let q = queue::Queue::<String>::builder()
        .capacity(4)
        .create(&name)
        .unwrap();
    let tx = q.sender().unwrap();
    tx.put("one".into()).unwrap();
    tx.put("two".into()).unwrap();
    let seen = ok(&["inspect", &name]);
    assert_eq!(field(&seen, "primitive"), "Queue");
    assert_eq!(field(&seen, "message type"), "String");
    assert_eq!(field(&seen, "messages"), "2 of 4");
    assert_eq!(field(&seen, "producers"), "1");
    assert_eq!(field(&seen, "consumers"), "0");
    assert_eq!(field(&seen, "producer lock"), "none");
    // Inspecting took nothing out.
    assert_eq!(q.len(), 2);
    drop(tx);
    drop(q);
}

#[test]
fn rm_refuses_while_a_live_process_maps_the_segment_unless_forced() {
    let name = unique_name("cli-rm");
    let ready = signal();
    let creator = {
        let name = name.clone();
        parked_child(&ready, move || {
            Shared::create(&name, AtomicU64::new(1)).unwrap()
        })
    };
    let pid = creator.pid();

    let err = fails(&["rm", &name], 3);
    assert!(err.contains(&pid.to_string()), "names the user: {err}");
    assert!(name_exists(&name));

    let out = ok(&["rm", "--force", &name]);
    assert_eq!(out.trim(), format!("removed {name}"));
    assert!(!name_exists(&name));
    kill(creator);
}

#[test]
fn gc_removes_a_dead_creators_name_and_keeps_a_live_ones() {
    let prefix = unique_name("cli-gc");
    let (dead_name, live_name) = (format!("{prefix}-dead"), format!("{prefix}-live"));
    let untracked_creator = |name: String| {
        move || {
            // The tracker would remove the dead one first.
            shm::tracker::disable();
            Shared::create(&name, AtomicU64::new(1)).unwrap()
        }
    };
    let ready = signal();
    let dead = parked_child(&ready, untracked_creator(dead_name.clone()));
    kill(dead);
    let ready = signal();
    let live = parked_child(&ready, untracked_creator(live_name.clone()));

    let out = ok(&["gc", "--dry-run", "--prefix", &prefix]);
    assert_eq!(out.trim(), format!("would remove {dead_name}"));
    assert!(name_exists(&dead_name));

    let out = ok(&["gc", "--prefix", &prefix]);
    assert_eq!(out.trim(), format!("removed {dead_name}"));
    assert!(!name_exists(&dead_name));
    assert!(name_exists(&live_name), "a live creator's name is kept");

    kill(live);
    // Its creator is dead now (and no tracker watched it): gc takes it.
    assert_eq!(
        ok(&["gc", "--prefix", &prefix]).trim(),
        format!("removed {live_name}")
    );
    assert_eq!(ok(&["gc", "--prefix", &prefix]).trim(), "nothing to remove");
}

#[test]
fn foreign_truncated_missing_and_invalid_names_are_clear_errors() {
    let foreign = ShmFile::new(
        "cli-foreign",
        b"another program's shared memory, not procsync's",
    );
    let err = fails(&["inspect", &foreign.name()], 1);
    assert!(err.contains("is not a procsync segment"), "{err}");
    let err = fails(&["rm", &foreign.name()], 1);
    assert!(err.contains("not removed"), "{err}");
    assert!(
        name_exists(&foreign.name()),
        "a foreign file is never removed"
    );

    let truncated = ShmFile::new("cli-truncated", b"PROCSYNC");
    let err = fails(&["inspect", &truncated.name()], 1);
    assert!(err.contains("truncated"), "{err}");

    // Listed only with --all, as what they are.
    assert!(!ok(&["ls"]).contains(&foreign.name()));
    let json: serde_json::Value = serde_json::from_str(&ok(&["ls", "--all", "--json"])).unwrap();
    let status = |name: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| (e["procsync"].clone(), e["status"].clone()))
    };
    assert_eq!(
        status(&foreign.name()),
        Some((false.into(), "foreign".into()))
    );
    assert_eq!(
        status(&truncated.name()),
        Some((false.into(), "truncated".into()))
    );
    let table = ok(&["ls", "--all"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&foreign.name()))
        .unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("foreign"));

    let missing = unique_name("cli-missing");
    let err = fails(&["inspect", &missing], 1);
    assert!(err.contains("does not exist"), "{err}");
    fails(&["rm", &missing], 1);

    let err = fails(&["inspect", "no/slashes"], 2);
    assert!(err.contains("invalid segment name"), "{err}");
    // Usage errors are clap's, exit code 2 too.
    assert_eq!(procsync(&["ls", "--bogus"]).status.code(), Some(2));
}

#[test]
fn another_users_segment_is_a_clear_error() {
    // Needs root (to create as one user and look as another) and setpriv.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !is_root || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let name = unique_name("cli-other-user");
    let private = Shared::create_with_mode(&name, AtomicU64::new(1), 0o600).unwrap();
    let as_nobody = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        testkit::within(move || {
            Command::new("/usr/bin/setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_procsync"))
                .args(&args)
                .output()
                .expect("run procsync as nobody")
        })
    };
    for args in [["inspect", name.as_str()], ["rm", name.as_str()]] {
        let out = as_nobody(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("permission denied"), "{err}");
        assert!(
            err.contains("owner: root, uid 0; this is uid 65534"),
            "{err}"
        );
    }
    assert!(name_exists(&name));
    drop(private);
}

#[test]
fn zz_this_suite_left_no_names_behind() {
    // Runs last (tests run in name order, one at a time: see .cargo/config.toml).
    assert_eq!(
        testkit::leaked_names(shm::pid::current()),
        Vec::<String>::new()
    );
}
