//! One machine's collector: hears its reporters, writes the machine's state
//! to the store once per interval.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::monitor::Monitor;
use crate::{sys, HeartbeatError};

use super::store::{CollectorReport, ReporterRow, Store};

/// How often a collector writes, unless told otherwise
/// ([`Collector::interval`]).
pub const DEFAULT_COLLECT_INTERVAL: Duration = Duration::from_secs(1);

/// What a collector has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorStatus {
    /// Reports written to the store.
    pub writes: u64,
    /// Reporter rows written (each write carries the reporters whose health
    /// changed, and every [`FULL_WRITE_EVERY`] writes all of them).
    pub rows_written: u64,
    /// Writes that failed (the store down, unreachable, refusing).
    pub write_failures: u64,
    /// Whether the last write succeeded.
    pub store_up: bool,
    /// The last write's error, if it failed.
    pub last_error: Option<String>,
    /// Beats received (rejected ones included).
    pub beats_received: u64,
    /// Beats rejected.
    pub beats_rejected: u64,
    /// Reporters tracked by health: (alive, stuck, silent).
    pub reporters: (usize, usize, usize),
}

/// Every this many writes, a report carries every reporter (refreshing
/// their seq, progress and last beat, and deleting forgotten rows); in
/// between, only the reporters whose health changed.
pub const FULL_WRITE_EVERY: u32 = 10;

/// What the store holds of this machine's reporters, as far as the writer
/// knows: what lets a report carry only the changes.
#[derive(Default)]
struct RowsWritten {
    health: std::collections::HashMap<(String, u64), crate::Health>,
    /// Writes since the last complete one; `None` until one succeeded (or
    /// after a failure: the store may have lost anything meanwhile).
    since_complete: Option<u32>,
}

impl RowsWritten {
    /// `report` (every reporter) cut to what the store lacks.
    fn delta(&self, mut report: CollectorReport) -> CollectorReport {
        if self
            .since_complete
            .is_some_and(|n| n + 1 < FULL_WRITE_EVERY)
        {
            report
                .reporters
                .retain(|r| self.health.get(&(r.id.clone(), r.instance)) != Some(&r.health));
            report.complete = false;
        }
        report
    }

    /// Takes note of `report`'s write and whether it succeeded.
    fn written(&mut self, report: &CollectorReport, ok: bool) {
        if !ok {
            self.since_complete = None;
            return;
        }
        if report.complete {
            self.health.clear();
            self.since_complete = Some(0);
        } else {
            self.since_complete = self.since_complete.map(|n| n + 1);
        }
        for r in &report.reporters {
            self.health.insert((r.id.clone(), r.instance), r.health);
        }
    }
}

/// The latest report waiting for the writer thread, and what it did.
#[derive(Default)]
struct Slot {
    /// The report waiting, with its number.
    report: Option<(u64, CollectorReport)>,
    /// Reports submitted so far; the last one's number.
    submitted: u64,
    /// The number of the last report written (or failed).
    done: u64,
    stop: bool,
    status: CollectorStatus,
    /// The machine whose reporter rows the collector asks for, before it
    /// hears its first beat (see [`Collector::take_over`]).
    seed_for: Option<String>,
    /// Those rows, once read, for the collector to take over (once).
    seed: Option<Vec<ReporterRow>>,
    /// The read failed (the store down): the collector stops waiting, and
    /// the writer tries again before each write.
    seed_failed: bool,
}

/// Hands reports to a thread that writes them: a slow or unreachable store
/// delays the rows, never the beats' reception or the judging. A report
/// not yet taken when the next comes is replaced by it (the latest beat of
/// every reporter is all a store needs).
struct Writer {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // The writer thread holds no invariant across a panic of the store.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    fn start(mut store: Box<dyn Store>) -> Result<Writer, HeartbeatError> {
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let shared = Arc::clone(&slot);
        let thread = std::thread::Builder::new()
            .name("heartbeat-collector-writer".into())
            .spawn(move || {
                let mut rows = RowsWritten::default();
                // The machine whose rows are still to be read, if any.
                let mut unseeded: Option<String> = None;
                loop {
                    let (slot, wake) = &*shared;
                    let (number, report) = {
                        let mut s = lock(slot);
                        while s.report.is_none() && s.seed_for.is_none() && !s.stop {
                            s = wake.wait(s).unwrap_or_else(PoisonError::into_inner);
                        }
                        if let Some(host) = s.seed_for.take() {
                            drop(s);
                            let found = store.read_reporters(&host);
                            let mut s = lock(slot);
                            match found {
                                Ok(found) => s.seed = Some(found),
                                Err(_) => {
                                    s.seed_failed = true;
                                    unseeded = Some(host);
                                }
                            }
                            wake.notify_all();
                            continue;
                        }
                        match s.report.take() {
                            Some(r) => r,
                            None => return, // stopped, nothing left to write
                        }
                    };
                    // The store was down when the collector started: its
                    // machine's rows are read before the first write that
                    // can be made.
                    if let Some(host) = &unseeded {
                        if let Ok(found) = store.read_reporters(host) {
                            lock(slot).seed = Some(found);
                            unseeded = None;
                        }
                    }
                    let report = rows.delta(report);
                    let result = store.write(&report);
                    rows.written(&report, result.is_ok());
                    let mut s = lock(slot);
                    s.done = number;
                    match result {
                        Ok(()) => {
                            s.status.writes += 1;
                            s.status.rows_written += report.reporters.len() as u64;
                            s.status.store_up = true;
                            s.status.last_error = None;
                        }
                        Err(e) => {
                            s.status.write_failures += 1;
                            s.status.store_up = false;
                            s.status.last_error = Some(e.to_string());
                        }
                    }
                    wake.notify_all();
                }
            })
            .map_err(crate::io_error("start the collector's writer thread"))?;
        Ok(Writer {
            slot,
            thread: Some(thread),
        })
    }

    fn submit(&self, report: CollectorReport) {
        let (slot, wake) = &*self.slot;
        let mut s = lock(slot);
        s.submitted += 1;
        s.report = Some((s.submitted, report));
        drop(s);
        wake.notify_all();
    }

    fn status(&self) -> CollectorStatus {
        lock(&self.slot.0).status.clone()
    }

    /// The rows to take over, once found.
    fn take_seed(&self) -> Option<Vec<ReporterRow>> {
        lock(&self.slot.0).seed.take()
    }

    /// Asks for `host`'s rows and waits for them at most `timeout`: the
    /// rows, or `None` (the store down or slow: they come later, through
    /// [`take_seed`](Writer::take_seed)).
    fn seed(&self, host: &str, timeout: Duration) -> Option<Vec<ReporterRow>> {
        let (slot, wake) = &*self.slot;
        let until = Instant::now() + timeout;
        let mut s = lock(slot);
        s.seed_for = Some(host.to_owned());
        wake.notify_all();
        while s.seed.is_none() && !s.seed_failed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            s = wake
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.seed.take()
    }

    /// Waits until the writer has written (or failed) the last report
    /// submitted, at most `timeout`; whether it did.
    fn drain(&self, timeout: Duration) -> bool {
        let (slot, wake) = &*self.slot;
        let until = Instant::now() + timeout;
        let mut s = lock(slot);
        let target = s.submitted;
        while s.done < target {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = wake
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let (slot, wake) = &*self.slot;
        lock(slot).stop = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One machine's collector: receives its reporters' UDP beats, judges them
/// (a [`Monitor`] with `silent_after(1).slack(0.5)`), and writes the
/// machine's state to a [`Store`] once per interval (see the
/// [module](super) docs).
///
/// Only beats naming this machine as their host are kept: the collector
/// serves its own machine's reporters, over loopback by default. A
/// collector restarted takes over, before it takes in a beat (waiting up to
/// an interval, at most 2 s, for the store), the reporters its machine has
/// in the store: one that died while no collector listened is reported
/// SILENT all the same, and a STUCK one stays STUCK. Writes
/// happen on a thread of their own: a store that is down or slow delays
/// the rows, never the reception of beats; the latest state is written
/// when the store is back.
///
/// # Example
///
/// ```
/// use heartbeat::fleet::{Collector, FleetMonitor, SqliteStore};
/// use heartbeat::Reporter;
/// use std::time::Duration;
///
/// let dir = std::env::temp_dir().join(format!("collector-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let db = dir.join("fleet.db");
/// let mut collector = Collector::bind("127.0.0.1:0", SqliteStore::open(&db)?)?
///     .interval(Duration::from_millis(100));
/// let beat = Reporter::new("worker-1")
///     .interval(Duration::from_millis(100))
///     .udp(collector.local_addr()?)
///     .start()?;
/// for _ in 0..4 {
///     beat.progress(1); // the work moves: not STUCK
///     collector.run_for(Duration::from_millis(100))?;
/// }
/// collector.flush(Duration::from_secs(5));
///
/// let mut monitor = FleetMonitor::new(SqliteStore::open(&db)?);
/// assert!(monitor.check().is_empty());
/// assert_eq!(monitor.status().reporters, (1, 0, 0));
/// # drop(beat);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Collector {
    monitor: Monitor,
    host: String,
    instance: u64,
    pid: u32,
    interval: Duration,
    forget_after: Duration,
    /// When the next write is due; the first at a random phase of the
    /// interval, so that collectors started together (a fleet rebooted)
    /// do not write together.
    next_write: Option<Instant>,
    writer: Writer,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("host", &self.host)
            .field("interval", &self.interval)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector receiving beats on `addr` (`"127.0.0.1:9999"`: its
    /// machine's reporters beat over loopback) and writing to `store`.
    pub fn bind(
        addr: impl ToSocketAddrs,
        store: impl Store + 'static,
    ) -> Result<Collector, HeartbeatError> {
        let host = sys::hostname();
        let monitor = Monitor::udp(addr)?
            .silent_after(1)
            .slack(0.5)
            .only_host(host.clone());
        let interval = DEFAULT_COLLECT_INTERVAL;
        Ok(Collector {
            monitor,
            host,
            instance: sys::random_u64(),
            pid: shm::pid::current().get(),
            interval,
            forget_after: interval.saturating_mul(100),
            next_write: None,
            writer: Writer::start(Box::new(store))?,
        })
    }

    /// The machine's name (default: [`hostname`](crate::hostname)): beats
    /// naming another host are not kept.
    pub fn host(mut self, host: impl Into<String>) -> Collector {
        self.host = host.into();
        self.monitor = self.monitor.only_host(self.host.clone());
        self
    }

    /// Takes in only beats signed with `key` (see [`Key`](crate::Key)):
    /// unsigned, forged, replayed and stale beats are dropped and counted
    /// ([`Monitor::rejections`]). Every reporter of the machine must be
    /// started with the same key ([`Reporter::key`](crate::Reporter::key)).
    pub fn key(mut self, key: crate::Key) -> Collector {
        self.monitor = self.monitor.key(key);
        self
    }

    /// How often the collector writes (default [`DEFAULT_COLLECT_INTERVAL`],
    /// at least 10 ms, at most a day): the fleet monitor judges the machine silent after
    /// this and its slack without a write.
    pub fn interval(mut self, interval: Duration) -> Collector {
        // A day at most: a deadline an interval from now stays within the
        // clock (`Duration::MAX` panicked).
        self.interval = interval.clamp(Duration::from_millis(10), Duration::from_secs(86_400));
        self.forget_after = self.interval.saturating_mul(100);
        self
    }

    /// Judges the reporters with `monitor`'s settings instead of the
    /// default (`silent_after(1).slack(0.5)`); its socket is replaced by
    /// the collector's.
    pub fn judge_with(mut self, configure: impl FnOnce(Monitor) -> Monitor) -> Collector {
        self.monitor = configure(self.monitor);
        self
    }

    /// The address the collector receives beats on.
    pub fn local_addr(&self) -> Result<SocketAddr, HeartbeatError> {
        self.monitor.local_addr()
    }

    /// Receives, judges and writes for `duration`: a report every interval,
    /// and one at once when a reporter's health changes.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), HeartbeatError> {
        let end = Instant::now().checked_add(duration);
        // Judged ten times an interval: a silence is seen within a tenth
        // of an interval of its threshold.
        let tick = self.interval / 10;
        let interval = self.interval;
        if self.next_write.is_none() {
            // Before the first beat is heard: what the collector before
            // this one left of the machine (a beat heard first would make
            // its reporter new, ALIVE, and a STUCK one `reporter_back`).
            if let Some(rows) = self
                .writer
                .seed(&self.host, interval.min(Duration::from_secs(2)))
            {
                self.take_over(rows);
            }
        }
        let next_write = self
            .next_write
            .get_or_insert_with(|| Instant::now() + sys::random_phase(interval));
        let mut next_write = *next_write;
        loop {
            self.next_write = Some(next_write);
            let now = Instant::now();
            if end.is_some_and(|end| now >= end) {
                return Ok(());
            }
            let mut until = next_write.min(now + tick);
            if let Some(end) = end {
                until = until.min(end);
            }
            self.monitor.poll(until.saturating_duration_since(now))?;
            if let Some(rows) = self.writer.take_seed() {
                self.take_over(rows);
            }
            let changed = self
                .monitor
                .take_alerts()
                .iter()
                .any(|alert| alert.host == self.host);
            let now = Instant::now();
            if changed || now >= next_write {
                self.submit();
                if now >= next_write {
                    next_write += self.interval;
                    if next_write <= now {
                        // Fell behind (stopped, starved): the next write one
                        // interval from now, not a burst to catch up.
                        next_write = now + self.interval;
                    }
                }
            }
        }
    }

    /// Takes over the machine's reporters that a collector before this one
    /// wrote to the store (it was restarted): each is expected to beat
    /// within its threshold from now, so one that died meanwhile is still
    /// reported SILENT, and a STUCK one stays STUCK without a new alert
    /// (see [`Monitor::expect`]).
    fn take_over(&mut self, rows: Vec<ReporterRow>) {
        let now = Instant::now();
        for row in rows {
            let Some(pid) = shm::pid::Pid::from_u32(row.pid) else {
                continue;
            };
            let beat = crate::Beat {
                id: row.id,
                host: self.host.clone(),
                pid,
                seq: row.seq,
                progress: row.progress,
                sent_at_ms: 0,
                interval_ms: row.interval_ms,
                instance: row.instance,
                mac: None,
            };
            self.monitor.expect(beat, row.health, now);
        }
    }

    /// Receives, judges and writes until an error.
    pub fn run(&mut self) -> Result<std::convert::Infallible, HeartbeatError> {
        loop {
            self.run_for(Duration::from_secs(3600))?;
        }
    }

    /// Writes the current state now and waits until it is written (or
    /// failed), at most `timeout`; whether the write was done in time.
    pub fn flush(&mut self, timeout: Duration) -> bool {
        self.submit();
        self.writer.drain(timeout)
    }

    fn submit(&mut self) {
        let mut counts = (0, 0, 0);
        let reporters: Vec<ReporterRow> = self
            .monitor
            .reporters()
            .into_iter()
            .inspect(|r| match r.health {
                crate::Health::Alive => counts.0 += 1,
                crate::Health::Stuck => counts.1 += 1,
                crate::Health::Silent => counts.2 += 1,
            })
            .map(|r| ReporterRow {
                id: r.id,
                instance: r.instance,
                pid: r.pid.get(),
                seq: r.seq,
                progress: r.progress,
                interval_ms: super::store::millis(r.interval) as u64,
                health: r.health,
                since_last_beat: r.since_last_beat,
            })
            .collect();
        self.writer.submit(CollectorReport {
            host: self.host.clone(),
            instance: self.instance,
            pid: self.pid,
            interval: self.interval,
            beats_received: self.monitor.beats_received(),
            beats_rejected: self.monitor.beats_rejected(),
            counts,
            reporters,
            complete: true,
            forget_after: self.forget_after,
        });
    }

    /// What the collector has done so far.
    pub fn status(&self) -> CollectorStatus {
        let (a, st, si) = self.monitor.counts();
        CollectorStatus {
            beats_received: self.monitor.beats_received(),
            beats_rejected: self.monitor.beats_rejected(),
            reporters: (a, st, si),
            ..self.writer.status()
        }
    }

    /// The judging monitor, to read its counts (beats rejected by reason:
    /// [`Monitor::rejections`]).
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }
}
