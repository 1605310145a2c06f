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

/// Sends `signal` to `pid` (errors ignored: it may be gone already).
pub(crate) fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Makes `command`'s process receive `signal` when the thread that spawns
/// it ends (the parent-death signal, `PR_SET_PDEATHSIG`), and refuse to
/// start if that parent is already gone.
pub(crate) fn die_with_parent(
    command: &mut std::process::Command,
    signal: rustix::process::Signal,
) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child between fork and exec,
    // where only async-signal-safe calls are allowed: it makes two raw
    // system calls (prctl and getppid, through rustix, which neither
    // allocates nor takes a lock) and builds an io::Error from a raw errno
    // value or a constant kind, which does not allocate either. It runs
    // after std's setuid/setgid, which would clear the parent-death signal
    // if they came after it.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(signal))?;
            // The parent may have died between fork and prctl: then no
            // signal would ever come.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::ErrorKind::Other.into());
            }
            Ok(())
        });
    }
}
