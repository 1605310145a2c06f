//! `Process::close_descriptors`: a long-lived child keeps only what it
//! needs of its parent's descriptors.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use daemon::Process;

/// The descriptor numbers open in this process.
fn open_descriptors() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn a_child_closes_all_but_the_kept_descriptors_and_still_returns_its_result() {
    let (mut kept, mut kept_peer) = UnixStream::pair().unwrap();
    let (closed, mut closed_peer) = UnixStream::pair().unwrap();
    let keep = kept.as_raw_fd();
    let not_kept = closed.as_raw_fd();
    let child = Process::new(|| {
        kept.write_all(b"k").unwrap();
        let mut fds = open_descriptors();
        // Without the listing's own descriptor, closed by now.
        fds.retain(|&fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok());
        fds
    })
    .close_descriptors([keep])
    .start()
    .unwrap();
    let fds = child.join().unwrap();
    // The kept one worked; the other's copy in the child was closed (only
    // this process's copy holds that pair open now).
    let mut byte = [0u8; 1];
    kept_peer.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"k");
    assert!(fds.contains(&keep), "{fds:?}");
    assert!(!fds.contains(&not_kept), "{fds:?}");
    // stdin, stdout, stderr, the kept one, its channel to this process.
    assert!(fds.len() <= 6, "{fds:?}");
    drop(closed);
    assert_eq!(
        closed_peer.read(&mut byte).unwrap(),
        0,
        "EOF once closed here"
    );
}
