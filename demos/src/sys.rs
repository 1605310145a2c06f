//! The demos' OS layer: the one system call a scenario makes itself (the
//! others go through procsync's crates).

use shm::pid::Pid;

/// Sends SIGKILL to process `pid` through a pidfd, so that the signal can
/// only reach the process that has this pid now (never a later one that
/// reused it while the call ran).
pub(crate) fn sigkill(pid: Pid) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid.as_raw())
        .ok_or_else(|| std::io::Error::other("pid 0"))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL)?;
    Ok(())
}

/// CPU time this process has used so far (every thread), in nanoseconds.
pub(crate) fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}
