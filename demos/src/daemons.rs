//! Seed §2, 守护进程: a daemon ends when the main code ends; and §1's
//! question, how a parent gets a child's result.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Shared, ShmSafe};

use crate::context::{Context, DemoError, Summary};

/// What the seed's processes report back, in memory the demo shares with
/// them (their own output is just printed, as in the seed).
#[derive(ShmSafe)]
#[repr(C)]
struct Outcome {
    daemon_finished: AtomicU32,
    fun_finished: AtomicU32,
    fun2_lines: AtomicU32,
}

fn outcome() -> Result<Shared<Outcome>, shm::Error> {
    Shared::new(Outcome {
        daemon_finished: AtomicU32::new(0),
        fun_finished: AtomicU32::new(0),
        fun2_lines: AtomicU32::new(0),
    })
}

/// Sleeps until `epoch + at` (scaled): every process of a scenario keeps
/// time against one start, so the seed's interleaving does not drift.
fn sleep_until(ctx: &Context, epoch: Instant, at: Duration) {
    let due = epoch + ctx.scaled(at);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// Runs `main_code` as the seed's main process: in a child of the demo,
/// which ends with `exit`, so procsync's exit rule applies to *its*
/// children as it would to any program's.
fn as_main_process(main_code: impl FnOnce()) -> Result<(), DemoError> {
    let main = Process::new(|| -> u8 {
        main_code();
        std::process::exit(0)
    })
    .name("main")
    .start()?;
    match main.join() {
        Err(daemon::JoinError::Exited { code: 0, .. }) => Ok(()),
        other => Err(format!("the main process ended unexpectedly: {other:?}").into()),
    }
}

/// `demos daemon`: the seed's first daemon example.
pub(crate) fn run_daemon(ctx: &Context) -> Result<Summary, DemoError> {
    let out = outcome()?;
    as_main_process(|| {
        // p = Process(target=fun); p.daemon = True; p.start()
        let started = Process::new(|| {
            ctx.say("start", "start");
            std::thread::sleep(ctx.scaled(Duration::from_secs(3)));
            ctx.say("这是一个好天气", "what fine weather");
            out.daemon_finished.store(1, Ordering::SeqCst);
        })
        .name("fun")
        .daemon(true)
        .start();
        if let Err(e) = started {
            ctx.say(format!("启动失败: {e}"), format!("could not start: {e}"));
            return;
        }
        std::thread::sleep(ctx.scaled(Duration::from_secs(1)));
        ctx.say("主进程结束了!", "the main process is done!");
    })?;
    let finished = out.daemon_finished.load(Ordering::SeqCst) != 0;
    ctx.say(
        "# 守护进程会在主进程的代码执行完毕之后直接结束,无论守护进程是否执行完毕",
        "-> the daemon ended with the main code, before its second line.",
    );
    let summary = Summary::default().with("daemon_finished", finished);
    summary.print();
    Ok(summary)
}

/// `demos daemon-order`: the seed's second example (fun and fun2).
pub(crate) fn run_daemon_order(ctx: &Context) -> Result<Summary, DemoError> {
    let out = outcome()?;
    as_main_process(|| {
        let epoch = Instant::now();
        let fun = Process::new(|| {
            sleep_until(ctx, epoch, Duration::from_millis(300));
            ctx.say("start", "start");
            sleep_until(ctx, epoch, Duration::from_millis(3300));
            ctx.say("今天天气不错", "nice weather today");
            out.fun_finished.store(1, Ordering::SeqCst);
        })
        .name("fun")
        .start();
        let fun2 = Process::new(|| {
            // "in fun2" every 0.5 s, for ever: at 0.1 s, 0.6 s, 1.1 s, ...
            for k in 0u32.. {
                sleep_until(
                    ctx,
                    epoch,
                    Duration::from_millis(100) + Duration::from_millis(500) * k,
                );
                ctx.say("in fun2", "in fun2");
                out.fun2_lines.fetch_add(1, Ordering::SeqCst);
            }
        })
        .name("fun2")
        .daemon(true)
        .start();
        if fun.is_err() || fun2.is_err() {
            ctx.say("启动失败", "could not start the children");
            return;
        }
        sleep_until(ctx, epoch, Duration::from_secs(1));
        ctx.say("主程序结束了", "the main program is done");
        // Leaving main: fun2 (a daemon) is terminated, fun is waited for.
    })?;
    let fun2_lines = out.fun2_lines.load(Ordering::SeqCst);
    let fun_finished = out.fun_finished.load(Ordering::SeqCst) != 0;
    ctx.say(
        format!("# fun2 里面的 in fun2 只运行了 {fun2_lines} 次, 是跟随主函数的"),
        format!("-> fun2 (a daemon) printed {fun2_lines} times and ended with main; fun (not a daemon) was waited for."),
    );
    let summary = Summary::default()
        .with("fun2_lines", fun2_lines)
        .with("fun_finished", fun_finished);
    summary.print();
    Ok(summary)
}

/// `demos result`: a parent gets a child's result back over a socket.
pub(crate) fn run_result(ctx: &Context) -> Result<Summary, DemoError> {
    ctx.say(
        "# 父进程如何获取子进程的执行结果???",
        "How does a parent get a child's result?",
    );
    let numbers: Vec<u64> = (1..=100).collect();
    let child = Process::new(|| numbers.iter().map(|n| n * n).sum::<u64>())
        .name("sum-squares")
        .start()?;
    let pid = child.pid();
    let result = child.join()?;
    let expected: u64 = numbers.iter().map(|n| n * n).sum();
    ctx.say(
        format!("子进程 {pid} 计算 1..100 的平方和, 通过 socket 把结果 {result} 发给父进程"),
        format!(
            "child {pid} summed the squares of 1..=100 and sent {result} back over a socket pair"
        ),
    );
    ctx.say(
        "# 父子进程之间通过socket通信",
        "-> parent and child talk over a socket.",
    );
    let summary = Summary::default()
        .with("result", result)
        .with("expected", expected)
        .with("child_pid", pid);
    summary.print();
    Ok(summary)
}
