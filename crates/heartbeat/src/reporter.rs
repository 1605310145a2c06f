//! The reporting side: [`Reporter`] starts a daemon that beats on an
//! absolute schedule; [`Heartbeat`] is the main process's handle on it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, Process};
use shm::Shared;

#[cfg(feature = "sqlite")]
use crate::sinks::open_database;
use crate::sinks::Sinks;
use crate::wire::{unix_ms, Beat};
use crate::{sys, HeartbeatError, DEFAULT_INTERVAL, MAX_HOST_BYTES, MAX_ID_BYTES, MIN_INTERVAL};

/// Configures a heartbeat reporter (see the [crate](crate) documentation).
#[derive(Debug, Clone)]
#[must_use = "a Reporter does nothing until started"]
pub struct Reporter {
    pub(crate) id: String,
    pub(crate) interval: Duration,
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) database: Option<PathBuf>,
}

impl Reporter {
    /// A reporter named `id`, every [`DEFAULT_INTERVAL`], to nowhere yet.
    /// An id longer than [`MAX_ID_BYTES`] (or a host name longer than
    /// [`MAX_HOST_BYTES`]) makes [`start`](Reporter::start) fail with
    /// [`HeartbeatError::TooLong`], before any daemon is started.
    pub fn new(id: impl Into<String>) -> Reporter {
        Reporter {
            id: id.into(),
            interval: DEFAULT_INTERVAL,
            udp: None,
            database: None,
        }
    }

    /// Reports every `interval` (at least [`MIN_INTERVAL`]).
    pub fn interval(mut self, interval: Duration) -> Reporter {
        self.interval = interval.max(MIN_INTERVAL);
        self
    }

    /// Sends each beat as a UDP datagram to `monitor` ("send").
    pub fn udp(mut self, monitor: SocketAddr) -> Reporter {
        self.udp = Some(monitor);
        self
    }

    /// Upserts each beat into the table `heartbeats` of the SQLite file
    /// `path` ("写数据库"), creating both if needed.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, path: impl Into<PathBuf>) -> Reporter {
        self.database = Some(path.into());
        self
    }

    /// Starts the reporting daemon and returns the handle whose progress
    /// counter this process bumps. The daemon ends when this process's
    /// main code ends, when this process dies, or when the handle is
    /// dropped.
    pub fn start(self) -> Result<Heartbeat, HeartbeatError> {
        if self.udp.is_none() && self.database.is_none() {
            return Err(HeartbeatError::NoSink);
        }
        for (what, len, max) in [
            ("id", self.id.len(), MAX_ID_BYTES),
            ("host name", sys::hostname().len(), MAX_HOST_BYTES),
        ] {
            if len > max {
                return Err(HeartbeatError::TooLong { what, len, max });
            }
        }
        let progress = Shared::new(AtomicU64::new(0))?;
        let main_pid = shm::pid::current();
        let instance = sys::random_u64();
        let phase = random_phase(self.interval);
        // Open the sinks here, so that errors reach the caller. SQLite
        // connections must not cross a fork: the child opens its own.
        #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
        let mut sinks = Sinks::open(&self)?;
        #[cfg(feature = "sqlite")]
        sinks.database.take();
        let child = Process::new(|| {
            #[cfg(feature = "sqlite")]
            if let Some(path) = &self.database {
                sinks.database = open_database(path).ok().map(|db| (db, path.clone()));
            }
            report_forever(&self, &sinks, &progress, main_pid, instance, phase)
        })
        .name(format!("heartbeat-{}", self.id))
        .daemon(true)
        .start()?;
        Ok(Heartbeat { progress, child })
    }
}

/// The daemon's loop: a beat at once, then one at each tick `start +
/// phase + k * interval` (an absolute schedule, so late wake-ups do not
/// accumulate into drift). The phase is random in [0, interval), so
/// reporters started together do not beat together for ever (a burst the
/// monitor's receive buffer may not hold, losing the same reporters each
/// interval); the first gap is between one and two intervals. After a
/// pause (the daemon stopped, the machine suspended) it beats once and goes
/// on at the next tick in the future: the beats missed are not sent in a
/// burst.
fn report_forever(
    config: &Reporter,
    sinks: &Sinks,
    progress: &AtomicU64,
    main_pid: shm::pid::Pid,
    instance: u64,
    phase: Duration,
) {
    let host = sys::hostname();
    let now = Instant::now();
    let start = now.checked_add(phase).unwrap_or(now);
    for seq in 0.. {
        sinks.send(&Beat {
            id: config.id.clone(),
            host: host.clone(),
            pid: main_pid,
            seq,
            progress: progress.load(Ordering::Relaxed),
            sent_at_ms: unix_ms(),
            interval_ms: config.interval.as_millis() as u64,
            instance,
        });
        let now = Instant::now();
        match next_tick(start, config.interval, now) {
            Some(next) => std::thread::sleep(next.saturating_duration_since(now)),
            // Past the end of the clock (an interval of `Duration::MAX`):
            // no more beats after the first.
            None => loop {
                std::thread::park();
            },
        }
    }
}

/// A random offset in [0, `interval`).
fn random_phase(interval: Duration) -> Duration {
    let nanos = u128::from(sys::random_u64()) % interval.as_nanos().max(1);
    // Below `interval`, so it fits.
    Duration::new(
        u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
        (nanos % 1_000_000_000) as u32,
    )
}

/// The first tick `start + k * interval` (k >= 1) after `now` (`start`
/// may be later than `now`); `None` past
/// the end of the clock. Computed in 128 bits: no overflow however many
/// intervals have passed.
fn next_tick(start: Instant, interval: Duration, now: Instant) -> Option<Instant> {
    let interval = interval.as_nanos().max(1);
    let ticks = now.saturating_duration_since(start).as_nanos() / interval + 1;
    let offset = ticks.checked_mul(interval)?;
    let secs = u64::try_from(offset / 1_000_000_000).ok()?;
    start.checked_add(Duration::new(secs, (offset % 1_000_000_000) as u32))
}

/// The running reporter of this process.
#[derive(Debug)]
pub struct Heartbeat {
    progress: Shared<AtomicU64>,
    child: Child<()>,
}

impl Heartbeat {
    /// Adds `amount` to the progress counter the beats carry.
    pub fn progress(&self, amount: u64) {
        self.progress.fetch_add(amount, Ordering::Relaxed);
    }

    /// The progress counter's value.
    pub fn progress_value(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// The reporting daemon's pid.
    pub fn pid(&self) -> shm::pid::Pid {
        self.child.pid()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.join_timeout(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_tick_is_the_first_in_the_future() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_tick(start, ms(10), start), Some(start + ms(10)));
        assert_eq!(
            next_tick(start, ms(10), start + ms(9)),
            Some(start + ms(10))
        );
        assert_eq!(
            next_tick(start, ms(10), start + ms(10)),
            Some(start + ms(20))
        );
        // A pause of 3 s: the next tick after it, not the 300 missed.
        assert_eq!(
            next_tick(start, ms(10), start + ms(3_005)),
            Some(start + ms(3_010))
        );
    }

    #[test]
    fn the_next_tick_never_overflows() {
        let start = Instant::now();
        // More than 2^32 intervals after the start.
        let ms = Duration::from_millis;
        let far = start + ms(1 << 33);
        assert_eq!(next_tick(start, ms(1), far), Some(far + ms(1)));
        assert_eq!(next_tick(start, Duration::MAX, start), None);
    }
}
