use std::io::Write;
use std::time::Instant;
fn bare() {
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(42)
        }
        let mut s = 0;
        libc::waitpid(pid, &mut s, 0);
    }
}
fn pidfd_poll() {
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(42)
        }
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut p, 1, -1);
        let mut s = 0;
        libc::waitpid(pid, &mut s, libc::WNOHANG);
        libc::close(fd);
    }
}
fn stdout_lock() {
    unsafe {
        let mut o = std::io::stdout().lock();
        let _ = o.flush();
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(42)
        }
        drop(o);
        let mut s = 0;
        libc::waitpid(pid, &mut s, 0);
    }
}
fn child_work() {
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let _ = std::panic::catch_unwind(|| {
                let mut b = [0u8; 256];
                std::hint::black_box(&mut b);
            });
            let _ = std::io::stdout().flush();
            libc::_exit(42)
        }
        let mut s = 0;
        libc::waitpid(pid, &mut s, 0);
    }
}
fn proc_() {
    let c = daemon::Process::new(|| 42u64).start().unwrap();
    assert_eq!(c.join().unwrap(), 42);
}
fn t(name: &str, f: fn()) {
    let n = 2000;
    let s = Instant::now();
    for _ in 0..n {
        f()
    }
    println!(
        "{name}: {:.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
fn main() {
    let _big: Vec<u8> = vec![1u8; 64 << 20];
    for _ in 0..2 {
        t("bare", bare);
        t("pidfd_poll", pidfd_poll);
        t("stdout_lock", stdout_lock);
        t("child_work", child_work);
        t("proc", proc_);
    }
}
