//! Beyond the lesson: 进程池 Pool. A pool of worker processes squares
//! numbers; the worker running the middle task is SIGKILLed. That task
//! fails with `WorkerDied`, a new worker takes the dead one's place, and
//! every other task completes: nothing hangs (Python's `Pool.map` would).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use pool::{Pool, TaskError};
use shm::{Futex, Shared, ShmSafe};

use crate::context::{Context, DemoError, Summary};

/// Arguments of `demos pool`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Worker processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    workers: u32,
    /// Tasks (numbers to square); the worker running the middle one is
    /// SIGKILLed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=100_000))]
    tasks: u64,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            workers: 2,
            tasks: 20,
        }
    }
}

/// Shared with the workers (forked after it is made): the doomed task's
/// word, raised with its worker's pid once it runs.
#[derive(ShmSafe)]
#[repr(C)]
struct Doomed {
    running: Futex,
    pid: AtomicU32,
}

/// Set before the pool forks its workers, so every worker has them: a task
/// is a plain `fn`, it captures nothing.
static DOOMED: OnceLock<(Shared<Doomed>, u64)> = OnceLock::new();
/// How long each task takes, in nanoseconds (the lesson's pace / --speed).
static PACE_NS: AtomicU64 = AtomicU64::new(0);

/// The task: `x * x`, slowly; the doomed input waits to be killed.
fn square(x: u64) -> u64 {
    if let Some((doomed, input)) = DOOMED.get() {
        if x == *input {
            doomed
                .pid
                .store(shm::pid::current().get(), Ordering::SeqCst);
            doomed.running.store(1, Ordering::SeqCst);
            doomed.running.wake_all();
            loop {
                std::thread::park();
            }
        }
    }
    std::thread::sleep(Duration::from_nanos(PACE_NS.load(Ordering::Relaxed)));
    x * x
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<Summary, DemoError> {
    ctx.say(
        format!(
            "# 进程池: {} 个工作进程算 {} 个平方数, 中间那个任务的进程会被 kill -9",
            args.workers, args.tasks
        ),
        format!(
            "A pool of {} worker processes squares {} numbers; the worker running the middle one is SIGKILLed.",
            args.workers, args.tasks
        ),
    );
    let middle = args.tasks / 2;
    let doomed = Shared::new(Doomed {
        running: Futex::new(0),
        pid: AtomicU32::new(0),
    })?;
    if DOOMED.set((doomed, middle)).is_err() {
        return Err("demos pool runs once per process".into());
    }
    let (doomed, _) = DOOMED.get().expect("just set");
    PACE_NS.store(
        ctx.scaled(Duration::from_millis(50)).as_nanos() as u64,
        Ordering::Relaxed,
    );
    let pool = Pool::builder().workers(args.workers as usize).build()?;
    let results: Vec<_> = (0..args.tasks)
        .map(|x| pool.apply_async(square, x))
        .collect();

    while doomed.running.load(Ordering::SeqCst) == 0 {
        doomed.running.wait(0, None);
    }
    let pid = doomed.pid.load(Ordering::SeqCst);
    let victim = shm::pid::Pid::from_u32(pid).ok_or("the doomed task's worker has no pid")?;
    crate::sys::sigkill(victim)?;
    ctx.say(
        format!("# 算 {middle} 的工作进程 (pid {pid}) 被 kill -9"),
        format!("the worker squaring {middle} (pid {pid}) is SIGKILLed"),
    );

    let bar = std::io::stdout()
        .is_terminal()
        .then(|| indicatif::ProgressBar::new(args.tasks));
    let (mut ok, mut died, mut other, mut hung) = (0u64, 0u64, 0u64, 0u64);
    for (x, result) in (0..args.tasks).zip(&results) {
        // Generous: a task takes 50 ms at --speed 1.
        match result.get_timeout(Duration::from_secs(60)) {
            Some(Ok(y)) if y == x * x => ok += 1,
            Some(Err(TaskError::WorkerDied { .. })) => {
                died += 1;
                ctx.say(
                    format!("任务 {x}: 工作进程死了 (WorkerDied), 进程池照常工作"),
                    format!("task {x}: WorkerDied; the pool goes on"),
                );
            }
            Some(_) => other += 1,
            None => hung += 1,
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let replaced = pool.workers_replaced();
    ctx.say(
        format!("# 一个进程死了只丢一个任务, 不会卡住整个进程池: {ok} 个成功, {died} 个 WorkerDied, 补了 {replaced} 个新进程"),
        format!("-> a killed worker costs one task, never the pool: {ok} ok, {died} WorkerDied, {replaced} worker replaced."),
    );
    drop(results);
    pool.close();
    pool.join()?;
    let summary = Summary::default()
        .with("tasks", args.tasks)
        .with("ok", ok)
        .with("worker_died", died)
        .with("other_errors", other)
        .with("replaced", replaced)
        .with("hung", hung);
    summary.print();
    Ok(summary)
}
