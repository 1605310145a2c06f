//! Seed §3, 锁: buyers of a JSON ticket "db", with and without a Lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::Process;
use serde::{Deserialize, Serialize};
use shm::Shared;
use sync_lock::Lock;

use crate::context::{Context, DemoError, Summary};

/// Arguments of `demos tickets`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// How many buyer processes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    buyers: u32,
    /// How many tickets the db starts with.
    #[arg(long, default_value_t = 1)]
    tickets: u32,
    /// Buy without the lock, to see the last ticket sold more than once.
    #[arg(long)]
    no_lock: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            buyers: 10,
            tickets: 1,
            no_lock: false,
        }
    }
}

/// The seed's db file: `{"count": N}`.
#[derive(Serialize, Deserialize)]
struct Db {
    count: u32,
}

/// The seed pauses 0.2 s between reading the db and acting on it: the
/// window in which another buyer reads the same count.
const PAUSE: Duration = Duration::from_millis(200);

fn read_db(path: &Path) -> Result<Db, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", path.display()))
}

/// Writes through a temporary file and a rename, so that a reader never sees
/// half a file even when buyers race without the lock.
fn write_db(path: &Path, db: &Db) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let text = serde_json::to_string(db).map_err(|e| e.to_string())?;
    fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}

/// `n` and `noun`, plural unless `n` is 1 ("1 ticket", "0 tickets"). For
/// the English lines; Chinese has no plural ("还剩1个票").
fn count_of(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The seed's search(i): look at the db.
fn search(ctx: &Context, db: &Path, i: u32) -> Result<(), String> {
    let content = read_db(db)?;
    std::thread::sleep(ctx.scaled(PAUSE));
    ctx.say(
        format!("第{i}个用户正在查看,还剩{}个票", content.count),
        format!(
            "buyer {i} is looking: {} left",
            count_of(content.count, "ticket")
        ),
    );
    Ok(())
}

/// The seed's buy(i): read, pause, and buy if any ticket is left.
fn buy(ctx: &Context, db: &Path, i: u32) -> Result<bool, String> {
    let mut content = read_db(db)?;
    std::thread::sleep(ctx.scaled(PAUSE));
    ctx.say(
        format!("第{i}个用户正在查看,还剩{}个票", content.count),
        format!(
            "buyer {i} is looking: {} left",
            count_of(content.count, "ticket")
        ),
    );
    if content.count == 0 {
        return Ok(false);
    }
    ctx.say(
        format!("第{i}个用户购票成功!"),
        format!("buyer {i} bought a ticket!"),
    );
    content.count -= 1;
    write_db(db, &content)?;
    Ok(true)
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<Summary, DemoError> {
    let dir = TempDir::new()?;
    let db = dir.path().join("db");
    write_db(
        &db,
        &Db {
            count: args.tickets,
        },
    )?;
    ctx.say(
        format!(
            "db: {{\"count\": {}}}, {} 个用户, {}",
            args.tickets,
            args.buyers,
            if args.no_lock {
                "不加锁"
            } else {
                "加锁 lock.acquire() / lock.release()"
            }
        ),
        format!(
            "db: {{\"count\": {}}}, {}, {}",
            args.tickets,
            count_of(args.buyers, "buyer"),
            if args.no_lock {
                "no lock"
            } else {
                "buying under a Lock"
            }
        ),
    );

    // Anonymous shared memory: every buyer is forked from here, as in the
    // seed, so it inherits the lock; no name to clean up if we crash.
    let lock = Shared::new(Lock::new())?;
    let test = |i: u32| -> Result<bool, String> {
        search(ctx, &db, i)?;
        if args.no_lock {
            return buy(ctx, &db, i);
        }
        // A buyer that died holding the lock cannot have written half a db
        // (writes are atomic renames), so a reported death needs no repair.
        let _guard = lock.lock().unwrap_or_else(|died| died.into_inner());
        buy(ctx, &db, i)
    };
    let buyers = (0..args.buyers)
        .map(|i| {
            Process::new(move || test(i))
                .name(format!("buyer-{i}"))
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut sold = 0u32;
    for buyer in buyers {
        if buyer.join()?? {
            sold += 1;
        }
    }
    let remaining = read_db(&db)?.count;
    let oversold = sold.saturating_sub(args.tickets);
    if oversold > 0 {
        ctx.say(
            format!("# 当多个进程共享一段数据的时候,数据会出现不安全的现象: 卖出了 {sold} 张, 只有 {} 张", args.tickets),
            format!("-> oversold: {sold} sold, only {} existed. Shared data needs a lock.", args.tickets),
        );
    } else {
        ctx.say(
            "# 需要加锁来维护数据的安全性",
            "-> the lock kept the db safe: nothing was oversold.",
        );
    }
    let summary = Summary::default()
        .with("buyers", args.buyers)
        .with("tickets", args.tickets)
        .with("sold", sold)
        .with("remaining", remaining)
        .with("oversold", oversold);
    summary.print();
    Ok(summary)
}

/// A private directory for the db, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("procsync-tickets-{}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Forked buyers leave with _exit and never run this.
        let _ = fs::remove_dir_all(&self.0);
    }
}
