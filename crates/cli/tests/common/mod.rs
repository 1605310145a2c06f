//! What the `procsync` command's test files share: running the binary,
//! reading `inspect`'s lines, children that hold segments, files made by
//! hand in /dev/shm.

// Each test file uses a part of these.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output, Stdio};

use daemon::{Child, Process};
use shm::{Futex, Shared};
use testkit::{raise, unique_name, wait_for};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_procsync");

/// Runs `procsync ARGS` with `stdout` as its standard output, failing the
/// test if it has not ended within `testkit::GENEROUS`.
pub(crate) fn procsync_to<A: AsRef<OsStr>>(args: &[A], stdout: Stdio) -> Output {
    let args: Vec<std::ffi::OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    testkit::within(move || {
        Command::new(BIN)
            .args(&args)
            .stdout(stdout)
            .output()
            .expect("run procsync")
    })
}

/// Runs `procsync ARGS`, its output captured.
pub(crate) fn procsync<A: AsRef<OsStr>>(args: &[A]) -> Output {
    procsync_to(args, Stdio::piped())
}

/// `inspect`'s value for `key` (its `key: value` lines), if it printed one.
pub(crate) fn field(inspected: &str, key: &str) -> Option<String> {
    inspected
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

/// The entry named `name` in `procsync ARGS` (an `ls ... --json`), if it
/// lists one; fails the test if the command fails or its output is not a
/// JSON array.
pub(crate) fn listed(args: &[&str], name: &str) -> Option<serde_json::Value> {
    let out = procsync(args);
    assert_eq!(out.status.code(), Some(0), "procsync {args:?}: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    json.as_array()
        .expect("an array")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

/// A flag in anonymous shared memory: children say "I got this far".
pub(crate) fn signal() -> Shared<Futex> {
    Shared::new(Futex::new(0)).expect("a shared futex")
}

/// A child that runs `setup` (which keeps what it makes alive by returning
/// it), raises `ready`, and waits to be killed.
pub(crate) fn parked_child<S, F>(ready: &Shared<Futex>, setup: F) -> Child<()>
where
    F: FnOnce() -> S,
{
    let ready = &**ready;
    let child = Process::new(move || {
        let kept = setup();
        raise(ready);
        testkit::park_until_killed();
        drop(kept);
    })
    .start()
    .expect("start a child");
    wait_for(ready, 1);
    child
}

/// Kills and reaps `child`.
pub(crate) fn kill(child: Child<()>) {
    child.kill().expect("kill the child");
    assert!(child.join().is_err(), "the child was killed");
}

/// A file made by hand under /dev/shm (its name as bytes), removed when
/// dropped.
pub(crate) struct ShmFile(pub(crate) Vec<u8>);

impl ShmFile {
    pub(crate) fn path(name: &[u8]) -> std::path::PathBuf {
        let mut path = b"/dev/shm/".to_vec();
        path.extend_from_slice(name);
        std::path::PathBuf::from(OsStr::from_bytes(&path))
    }

    /// A file of `bytes` under a unique name made from `tag`.
    pub(crate) fn new(tag: &str, bytes: &[u8]) -> ShmFile {
        ShmFile::write(unique_name(tag).as_bytes(), bytes)
    }

    /// A file of `bytes` named `name`.
    pub(crate) fn write(name: &[u8], bytes: &[u8]) -> ShmFile {
        std::fs::write(ShmFile::path(name), bytes).unwrap();
        ShmFile(name.to_vec())
    }

    /// Its name, which must be UTF-8.
    pub(crate) fn name(&self) -> String {
        String::from_utf8(self.0.clone()).expect("a UTF-8 name")
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(ShmFile::path(&self.0));
    }
}
