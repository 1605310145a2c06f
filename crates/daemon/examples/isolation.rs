//! The lesson's §1, 进程之间的数据隔离: a child changes a global; the
//! parent's copy stays as it was.
//!
//! `cargo run -p procsync-daemon --example isolation`

use std::sync::atomic::{AtomicI64, Ordering};

use daemon::Process;

// n = 100 (an atomic only because Rust wants a global to be safe to change:
// it is still this process's own memory, which the fork copies)
static N: AtomicI64 = AtomicI64::new(100);

// def fun(): global n; n -= 1; return n
fn fun() -> i64 {
    N.fetch_sub(1, Ordering::SeqCst) - 1
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // p = Process(target=fun); p.start()
    let p = Process::new(fun).start()?;
    // 父进程如何获取子进程的执行结果? join returns what fun returned, sent
    // back over a socket pair (父子进程之间通过socket通信).
    let in_child = p.join()?;
    println!("child: n = {in_child}");
    // print(n)
    let in_parent = N.load(Ordering::SeqCst);
    println!("parent: n = {in_parent}");
    // 进程与进程之间的数据是隔离的: the child changed its own copy.
    assert_eq!((in_child, in_parent), (99, 100));
    Ok(())
}
