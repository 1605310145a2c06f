//! Every system call of the test kit, in one place.

/// Sends SIGKILL to `pid` (errors ignored: it may be gone already).
pub(crate) fn sigkill(pid: shm::pid::Pid) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid.as_raw()) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Whether this process runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Ends the process at once with `code` (`_exit(2)`): no exit handlers,
/// no destructors, nothing of the parent's that a forked child copied.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Lowers this process's descriptor limit (soft and hard) to `limit`.
pub(crate) fn limit_descriptors(limit: u64) {
    let new = rustix::process::Rlimit {
        current: Some(limit),
        maximum: Some(limit),
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, new)
        .expect("lower the descriptor limit");
}
