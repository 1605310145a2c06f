//! The watching side: [`Monitor`] takes in beats and judges each reporter
//! [`Health::Alive`], [`Health::Stuck`] or [`Health::Silent`].

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
#[cfg(feature = "sqlite")]
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[cfg(feature = "sqlite")]
use crate::sinks;
use crate::wire::Beat;
use crate::{io_error, sys, HeartbeatError, DEFAULT_SILENT_AFTER, DEFAULT_STUCK_AFTER};

/// How a monitor judges a reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// Beats arrive and progress moves (or has not yet had time to).
    Alive,
    /// Beats arrive, but progress has not moved for `stuck_after` intervals.
    Stuck,
    /// No beat for `silent_after` intervals: the main process is presumed dead.
    Silent,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Alive => "ALIVE",
            Health::Stuck => "STUCK",
            Health::Silent => "SILENT",
        })
    }
}

/// What a monitor knows of one reporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterState {
    /// The reporter's id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// Its main process's pid.
    pub pid: shm::pid::Pid,
    /// The last sequence number seen.
    pub seq: u64,
    /// The last progress value seen.
    pub progress: u64,
    /// The verdict now.
    pub health: Health,
    /// Time since the last beat.
    pub since_last_beat: Duration,
}

/// A change of a reporter's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The reporter's id.
    pub id: String,
    /// The health before.
    pub from: Health,
    /// The health now.
    pub to: Health,
}

#[derive(Debug)]
struct Tracked {
    beat: Beat,
    last_seen: Instant,
    progress_moved: Instant,
    interval: Duration,
    health: Health,
}

/// Watches reporters (see the [crate](crate) documentation).
#[derive(Debug)]
pub struct Monitor {
    socket: Option<UdpSocket>,
    silent_after: u32,
    stuck_after: u32,
    tracked: HashMap<String, Tracked>,
    alerts: Vec<Alert>,
    beats: u64,
    bad_rows: u64,
}

impl Monitor {
    /// A monitor receiving UDP beats on `addr` (`"0.0.0.0:9999"`, or
    /// `"127.0.0.1:0"` for any free port: see
    /// [`local_addr`](Monitor::local_addr)).
    pub fn udp(addr: impl ToSocketAddrs) -> Result<Monitor, HeartbeatError> {
        let socket = UdpSocket::bind(addr).map_err(io_error("bind the monitor's UDP socket"))?;
        sys::enlarge_receive_buffer(&socket);
        Ok(Monitor {
            socket: Some(socket),
            ..Monitor::without_socket()
        })
    }

    /// A monitor that only reads databases (see [`read_database`](Monitor::read_database)).
    pub fn without_socket() -> Monitor {
        Monitor {
            socket: None,
            silent_after: DEFAULT_SILENT_AFTER,
            stuck_after: DEFAULT_STUCK_AFTER,
            tracked: HashMap::new(),
            alerts: Vec::new(),
            beats: 0,
            bad_rows: 0,
        }
    }

    /// Counts a reporter silent after `intervals` missed intervals (at least 1).
    pub fn silent_after(mut self, intervals: u32) -> Monitor {
        self.silent_after = intervals.max(1);
        self
    }

    /// Counts a reporter stuck after `intervals` intervals without progress
    /// (at least 1).
    pub fn stuck_after(mut self, intervals: u32) -> Monitor {
        self.stuck_after = intervals.max(1);
        self
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, HeartbeatError> {
        match &self.socket {
            Some(socket) => socket
                .local_addr()
                .map_err(io_error("read the monitor's address")),
            None => Err(HeartbeatError::NoSink),
        }
    }

    /// Receives beats for `duration`, then re-judges every reporter.
    /// `Duration::MAX` receives for ever.
    pub fn poll(&mut self, duration: Duration) -> Result<(), HeartbeatError> {
        // `None`: no end (`Duration::MAX`, or past the end of the clock).
        let until = Instant::now().checked_add(duration);
        let mut buf = [0u8; 2048];
        if let Some(socket) = self.socket.take() {
            let result = loop {
                let left = until.map(|u| u.saturating_duration_since(Instant::now()));
                if left.is_some_and(|l| l.is_zero()) {
                    break Ok(());
                }
                socket
                    .set_read_timeout(left)
                    .map_err(io_error("set the monitor's timeout"))?;
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        if let Some(beat) = Beat::from_json(&buf[..n]) {
                            self.record(beat, Instant::now());
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(io_error("receive heartbeats")(e)),
                }
            };
            self.socket = Some(socket);
            result?;
        } else {
            std::thread::sleep(duration);
        }
        self.judge(Instant::now());
        Ok(())
    }

    /// Takes in one beat received at `now` (from any transport).
    pub fn record(&mut self, beat: Beat, now: Instant) {
        self.beats += 1;
        let interval = Duration::from_millis(beat.interval_ms.max(1));
        match self.tracked.get_mut(&beat.id) {
            Some(t) => {
                if beat.seq < t.beat.seq && beat.pid == t.beat.pid {
                    return; // reordered datagram: older news
                }
                if beat.progress != t.beat.progress || beat.pid != t.beat.pid {
                    t.progress_moved = now;
                }
                t.beat = beat;
                t.last_seen = now;
                t.interval = interval;
            }
            None => {
                self.tracked.insert(
                    beat.id.clone(),
                    Tracked {
                        beat,
                        last_seen: now,
                        progress_moved: now,
                        interval,
                        health: Health::Alive,
                    },
                );
            }
        }
    }

    /// Re-judges every reporter as of `now`, recording changes as alerts.
    pub fn judge(&mut self, now: Instant) {
        for (id, t) in &mut self.tracked {
            // Saturating: the interval comes from the beat (the network).
            let silent = now.saturating_duration_since(t.last_seen)
                > t.interval.saturating_mul(self.silent_after);
            let stuck = now.saturating_duration_since(t.progress_moved)
                > t.interval.saturating_mul(self.stuck_after);
            let health = if silent {
                Health::Silent
            } else if stuck {
                Health::Stuck
            } else {
                Health::Alive
            };
            if health != t.health {
                self.alerts.push(Alert {
                    id: id.clone(),
                    from: t.health,
                    to: health,
                });
                t.health = health;
            }
        }
    }

    /// Every reporter seen, sorted by id.
    pub fn reporters(&self) -> Vec<ReporterState> {
        let now = Instant::now();
        let mut all: Vec<ReporterState> = self
            .tracked
            .values()
            .map(|t| ReporterState {
                id: t.beat.id.clone(),
                host: t.beat.host.clone(),
                pid: t.beat.pid,
                seq: t.beat.seq,
                progress: t.beat.progress,
                health: t.health,
                since_last_beat: now.saturating_duration_since(t.last_seen),
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The health of reporter `id`, if seen.
    pub fn health(&self, id: &str) -> Option<Health> {
        self.tracked.get(id).map(|t| t.health)
    }

    /// How many reporters are in each state: (alive, stuck, silent).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.tracked
            .values()
            .fold((0, 0, 0), |(a, st, si), t| match t.health {
                Health::Alive => (a + 1, st, si),
                Health::Stuck => (a, st + 1, si),
                Health::Silent => (a, st, si + 1),
            })
    }

    /// Takes the health changes recorded since the last call.
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }

    /// Beats received so far.
    pub fn beats_received(&self) -> u64 {
        self.beats
    }

    /// Database rows skipped so far because they are no beat (a pid out of
    /// range, a negative number, a text where a number belongs, ...). Each
    /// read counts them again.
    pub fn bad_rows(&self) -> u64 {
        self.bad_rows
    }

    /// Reads the `heartbeats` table of a reporter's SQLite file, then
    /// re-judges.
    ///
    /// Rows are judged by this monitor's monotonic clock, never by the
    /// writers' wall clocks (`sent_at_ms`): a row seen for the first time,
    /// or whose `seq` (or pid) changed since the last read, is a beat
    /// arriving now; an unchanged row is no news. So a writer whose clock is
    /// off, or a step of the wall clock here, makes no false alarm and hides
    /// no silence. Read at least once per interval for silence to be
    /// noticed on time (it is noticed at the first read after
    /// `silent_after` intervals without a change).
    ///
    /// A row that is no beat is skipped and counted ([`bad_rows`](Monitor::bad_rows));
    /// the others are judged. If SQLite itself fails (a file that is no
    /// database, a lock held past the busy timeout), nothing is judged and
    /// the error is returned: no verdict changes on no news; call again.
    #[cfg(feature = "sqlite")]
    pub fn read_database(&mut self, path: impl AsRef<Path>) -> Result<(), HeartbeatError> {
        let now = sinks::read_database(path.as_ref(), |rows| {
            let now = Instant::now();
            for beat in rows {
                let Some(beat) = beat? else {
                    self.bad_rows += 1;
                    continue;
                };
                let seen = self.tracked.get(&beat.id).map(|t| (t.beat.seq, t.beat.pid));
                if seen == Some((beat.seq, beat.pid)) {
                    continue; // nothing new
                }
                self.record(beat, now);
            }
            Ok(now)
        })?;
        self.judge(now);
        Ok(())
    }
}
