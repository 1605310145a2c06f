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
use crate::{sys, HeartbeatError, DEFAULT_INTERVAL};

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
    pub fn new(id: impl Into<String>) -> Reporter {
        Reporter {
            id: id.into(),
            interval: DEFAULT_INTERVAL,
            udp: None,
            database: None,
        }
    }

    /// Reports every `interval` (at least a millisecond).
    pub fn interval(mut self, interval: Duration) -> Reporter {
        self.interval = interval.max(Duration::from_millis(1));
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
    /// main code ends, when this process dies, or when this process drops
    /// the handle (a forked child's copy does not stop it).
    pub fn start(self) -> Result<Heartbeat, HeartbeatError> {
        if self.udp.is_none() && self.database.is_none() {
            return Err(HeartbeatError::NoSink);
        }
        let progress = Shared::new(AtomicU64::new(0))?;
        let main_pid = shm::pid::current();
        // Open the sinks here, so that errors reach the caller. SQLite
        // connections must not cross a fork: the child opens its own.
        #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
        let mut sinks = Sinks::open(&self)?;
        #[cfg(feature = "sqlite")]
        sinks.database.take();
        let keep = sinks.descriptors();
        let child = Process::new(|| {
            #[cfg(feature = "sqlite")]
            if let Some(path) = &self.database {
                sinks.database = open_database(path).ok().map(|db| (db, path.clone()));
            }
            report_forever(&self, &sinks, &progress, main_pid)
        })
        .name(format!("heartbeat-{}", self.id))
        .daemon(true)
        // It lives as long as this process: holding copies of this
        // process's descriptors would keep pipes from EOF, listening
        // sockets bound and closed connections from sending FIN.
        .close_descriptors(keep)
        .start()?;
        Ok(Heartbeat {
            progress,
            child,
            creator: main_pid,
        })
    }
}

/// The daemon's loop: a beat at start + k * interval, for k = 0, 1, ...
/// (an absolute schedule, so late wake-ups do not accumulate into drift).
fn report_forever(config: &Reporter, sinks: &Sinks, progress: &AtomicU64, main_pid: shm::pid::Pid) {
    let host = sys::hostname();
    // The next beat's time; `None` once past the end of the clock (an
    // interval of `Duration::MAX`): no more beats after the first.
    let mut next = Some(Instant::now());
    for seq in 0.. {
        sinks.send(&Beat {
            id: config.id.clone(),
            host: host.clone(),
            pid: main_pid,
            seq,
            progress: progress.load(Ordering::Relaxed),
            sent_at_ms: unix_ms(),
            interval_ms: config.interval.as_millis() as u64,
        });
        next = next.and_then(|n| n.checked_add(config.interval));
        match next {
            Some(next) => {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            None => loop {
                std::thread::park();
            },
        }
    }
}

/// The running reporter of this process.
///
/// Dropping it stops the reporter, in the process that started it only: a
/// forked child that drops its copy (returning from the scope that holds it)
/// leaves its parent's reporter running.
#[derive(Debug)]
pub struct Heartbeat {
    progress: Shared<AtomicU64>,
    child: Child<()>,
    /// The process that started the reporter: the only one that stops it.
    creator: shm::pid::Pid,
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
        if shm::pid::current() != self.creator {
            return; // a forked copy: the reporter is not ours to stop
        }
        let _ = self.child.kill();
        let _ = self.child.join_timeout(Duration::from_secs(5));
    }
}
