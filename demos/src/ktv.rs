//! Seed §4, 信号量: a KTV with N rooms; at most N people sing at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use daemon::Process;
use shm::{Shared, ShmSafe};
use sync_sem::RobustSemaphore;

use crate::context::{Context, DemoError, Summary};

/// Arguments of `demos ktv`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// How many rooms (the semaphore's permits).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    rooms: u32,
    /// How many people come to sing (one process each).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    users: u32,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            rooms: 2,
            users: 10,
        }
    }
}

/// What every user process shares: the rooms and a head count.
#[derive(ShmSafe)]
#[repr(C)]
struct Ktv {
    /// Robust: a singer thrown out (killed) gives the room back.
    rooms: RobustSemaphore,
    inside: AtomicU32,
    max_inside: AtomicU32,
    served: AtomicU32,
}

/// The seed's `time.sleep(random.randint(3, 10))`, from a small per-user
/// pseudo-random sequence.
fn stay(user: u32) -> Duration {
    let mut x = u64::from(user).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
    x ^= x >> 29;
    Duration::from_secs(3 + x % 8)
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<Summary, DemoError> {
    ctx.say(
        format!(
            "# 假设商场里有{}个迷你唱吧,所以同时可以进去{}个人,如果来了第{}个人就要在外面等待",
            args.rooms,
            args.rooms,
            args.rooms + 1
        ),
        format!(
            "A mall has {} KTV rooms; {} people come; the rest wait outside.",
            args.rooms, args.users
        ),
    );
    let ktv = Shared::new(Ktv {
        rooms: RobustSemaphore::new(args.rooms),
        inside: AtomicU32::new(0),
        max_inside: AtomicU32::new(0),
        served: AtomicU32::new(0),
    })?;
    let go_ktv = |user: u32| -> Result<(), String> {
        let room = ktv.rooms.acquire().map_err(|e| e.to_string())?;
        let now = ktv.inside.fetch_add(1, Ordering::SeqCst) + 1;
        ktv.max_inside.fetch_max(now, Ordering::SeqCst);
        ctx.say(
            format!("{user}在ktv中"),
            format!("{user} is in the KTV ({now} inside)"),
        );
        std::thread::sleep(ctx.scaled(stay(user)));
        ctx.say(format!("{user}走出了ktv"), format!("{user} left the KTV"));
        ktv.inside.fetch_sub(1, Ordering::SeqCst);
        ktv.served.fetch_add(1, Ordering::SeqCst);
        drop(room);
        Ok(())
    };
    let users = (0..args.users)
        .map(|user| {
            Process::new(move || go_ktv(user))
                .name(format!("ktv-user-{user}"))
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for user in users {
        user.join()??;
    }
    let max_inside = ktv.max_inside.load(Ordering::SeqCst);
    ctx.say(
        format!(
            "# 信号量的本质: 多把钥匙对应一把锁, lock+count计数 — 最多同时 {max_inside} 人在ktv中"
        ),
        format!(
            "-> never more than {max_inside} inside: a semaphore is a lock with {} keys.",
            args.rooms
        ),
    );
    let summary = Summary::default()
        .with("users", args.users)
        .with("rooms", args.rooms)
        .with("served", ktv.served.load(Ordering::SeqCst))
        .with("max_inside", max_inside);
    summary.print();
    Ok(summary)
}
