//! A long-lived child closes what it inherited (see
//! [`Process::close_descriptors`](crate::Process::close_descriptors)).

use std::os::fd::RawFd;

use crate::sys;

/// Closes every descriptor of this process except 0, 1, 2 and those in
/// `keep` (sorted, without duplicates). Allocates nothing: it runs in a new
/// child before its closure.
pub(crate) fn close_all_except(keep: &[RawFd]) {
    let mut next: u32 = 3;
    for &fd in keep {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd < next {
            continue;
        }
        if fd > next {
            close_span(next, fd - 1);
        }
        next = fd + 1;
    }
    close_span(next, u32::MAX);
}

/// Closes `first..=last`: one `close_range`, or (before Linux 5.9) each
/// number below the descriptor limit.
fn close_span(first: u32, last: u32) {
    if sys::close_range(first, last).is_ok() {
        return;
    }
    let end = sys::descriptor_limit().min(u64::from(last) + 1);
    for fd in u64::from(first)..end {
        // Below the limit, which fits a descriptor number.
        sys::close_raw(fd as i32);
    }
}
