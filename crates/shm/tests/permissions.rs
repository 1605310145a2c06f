//! Named segments are private to their owner: another user cannot open one.

use std::sync::atomic::AtomicU64;

use daemon::Process;
use shm::{Error, Shared};
use testkit::unique_name;

/// The unprivileged user the check switches to.
const NOBODY: libc::uid_t = 65534;

#[test]
fn another_user_cannot_open_a_segment() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "skipped: switching to another user needs root, and this test does not run as root"
        );
        return;
    }
    let name = unique_name("other-user");
    let value = Shared::create(&name, AtomicU64::new(1)).unwrap();
    let outcome = Process::new(|| {
        // SAFETY: dropping privileges in a forked child that does nothing
        // else with them.
        let dropped = unsafe { libc::setgid(NOBODY) == 0 && libc::setuid(NOBODY) == 0 };
        if !dropped {
            return "could not become nobody".to_string();
        }
        match Shared::<AtomicU64>::open(&name) {
            Err(Error::PermissionDenied { .. }) => "denied".to_string(),
            other => format!("{other:?}"),
        }
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(outcome, "denied");
    drop(value);
}
