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

#[test]
fn the_mode_is_0600_by_default_and_exactly_what_is_asked_otherwise() {
    use std::os::unix::fs::PermissionsExt;
    let mode_of = |name: &str| {
        std::fs::metadata(std::path::Path::new("/dev/shm").join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    let name = unique_name("mode-default");
    let default = Shared::create(&name, AtomicU64::new(0)).unwrap();
    assert_eq!(mode_of(&name), 0o600);
    drop(default);

    let name = unique_name("mode-group");
    // 0o660 survives any umask: the mode is set after creation.
    let group = shm::Segment::create_with_mode(&name, 16, 0o660).unwrap();
    assert_eq!(mode_of(&name), 0o660);
    drop(group);

    let name = unique_name("mode-bad");
    assert!(matches!(
        shm::SharedSlice::<u8>::create_with_mode(&name, 4, 0o4755, |_| 0),
        Err(Error::InvalidMode { mode: 0o4755 })
    ));
    assert!(!testkit::name_exists(&name));
}
