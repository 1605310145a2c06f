//! `shm::pid`: the cached pid follows forks; zombies count as dead.

use daemon::Process;
use shm::pid;
use testkit::GENEROUS;

#[test]
fn the_cached_pid_is_right_in_a_forked_child() {
    assert_eq!(pid::current(), std::process::id());
    let child = Process::new(|| (pid::current(), std::process::id()))
        .start()
        .unwrap();
    let child_pid = child.pid();
    let (cached, real) = child.join().unwrap();
    assert_eq!(cached, real);
    assert_eq!(cached, child_pid);
    assert_ne!(cached, pid::current());
}

#[test]
fn running_dead_and_zombie_processes() {
    assert!(pid::is_running(pid::current()));
    // The largest pid_t: above any pid_max, so no process has it.
    assert!(!pid::is_running(pid::Pid::from_raw(i32::MAX).unwrap()));
    assert_eq!(pid::Pid::from_raw(0), None);
    assert_eq!(pid::Pid::from_u32(u32::MAX), None);

    let mut child = Process::new(|| -> () { daemon::exit(0) }).start().unwrap();
    let child_pid = child.pid();
    // Wait until it has exited but do not reap it (`exit_code` would). Poll
    // the liveness check itself, which must turn false for the zombie.
    let limit = testkit::deadline(GENEROUS);
    while pid::is_running(child_pid) {
        assert!(std::time::Instant::now() < limit, "child never exited");
        std::thread::yield_now();
    }
    let stat = std::fs::read_to_string(format!("/proc/{child_pid}/stat")).unwrap();
    assert!(stat.contains(") Z "), "still unreaped, a zombie: {stat}");
    let _ = child.join_timeout(GENEROUS);
    assert!(!pid::is_running(child_pid));
    let _ = child.is_alive();
}
