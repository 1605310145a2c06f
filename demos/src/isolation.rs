//! Seed §1, 进程之间的数据隔离: processes do not share memory.

use std::sync::atomic::{AtomicI64, Ordering};

use daemon::Process;
use shm::Shared;

use crate::context::{Context, DemoError, Summary};

/// The seed's global `n = 100`. (An atomic only because Rust wants globals
/// to be safe to change; it is ordinary, process-private memory, which `fork`
/// copies.)
static N: AtomicI64 = AtomicI64::new(100);

pub(crate) fn run(ctx: &Context) -> Result<Summary, DemoError> {
    ctx.say("n = 100", "n = 100 (a plain global)");

    // The seed's fun(): n -= 1 in a child process, and return n.
    let child = Process::new(|| {
        let n = N.fetch_sub(1, Ordering::SeqCst) - 1;
        ctx.say("子进程: n -= 1", "child: n -= 1");
        n
    })
    .name("fun")
    .start()?;
    // "父进程如何获取子进程的执行结果???" — over a socket.
    let plain_in_child = child.join()?;
    let plain_in_parent = N.load(Ordering::SeqCst);
    ctx.say(
        format!("子进程的执行结果 (父子进程之间通过socket通信): n = {plain_in_child}"),
        format!("the child's result, sent back over a socket pair: n = {plain_in_child}"),
    );
    ctx.say(
        format!("主进程: print(n) -> {plain_in_parent}"),
        format!("parent: print(n) -> {plain_in_parent}"),
    );
    ctx.say(
        "# 进程与进程之间的数据是隔离的, 内存空间是不能共享的",
        "-> the child changed its own copy: processes do not share memory.",
    );

    // The same, with the memory shared on purpose.
    let shared = Shared::new(AtomicI64::new(100))?;
    let child = Process::new(|| {
        shared.fetch_sub(1, Ordering::SeqCst);
    })
    .name("fun-shared")
    .start()?;
    child.join()?;
    let shared_in_parent = shared.load(Ordering::SeqCst);
    ctx.say(
        format!("用 shm::Shared 共享内存之后, 主进程: n = {shared_in_parent}"),
        format!("with shm::Shared, parent: n = {shared_in_parent}"),
    );
    ctx.say(
        "# 所以要想进行通信,必须借助其他手段: 共享内存 (shm::Shared) 或 socket",
        "-> to share, say so: shm::Shared puts the value in memory both processes map.",
    );

    let summary = Summary::default()
        .with("plain_in_child", plain_in_child)
        .with("plain_in_parent", plain_in_parent)
        .with("shared_in_parent", shared_in_parent);
    summary.print();
    Ok(summary)
}
