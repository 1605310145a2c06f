//! The fleet's monitor: reads the store, judges machines on the store's
//! clock, and turns changes into alerts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::monitor::Health;

use super::store::{HostRow, Store, StoreError, StoreTime};

/// What an alert says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FleetAlertKind {
    /// A machine's collector has not written for longer than its interval
    /// and the slack: the machine (or its collector, or its way to the
    /// store) is down. Its reporters are *unknown*, not each an alert.
    HostSilent,
    /// A silent machine's collector writes again.
    HostBack,
    /// A reporter its collector judged SILENT: its process is presumed dead.
    ReporterSilent,
    /// A reporter whose beats arrive but whose progress does not move.
    ReporterStuck,
    /// A SILENT or STUCK reporter is ALIVE again.
    ReporterBack,
    /// The store could not be read: nothing is judged until it can.
    StoreUnreachable,
    /// The store can be read again.
    StoreBack,
}

impl FleetAlertKind {
    /// The kind as stored in the `alerts` table and printed:
    /// `host_silent`, `host_back`, `reporter_silent`, `reporter_stuck`,
    /// `reporter_back`, `store_unreachable`, `store_back`.
    pub fn name(self) -> &'static str {
        match self {
            FleetAlertKind::HostSilent => "host_silent",
            FleetAlertKind::HostBack => "host_back",
            FleetAlertKind::ReporterSilent => "reporter_silent",
            FleetAlertKind::ReporterStuck => "reporter_stuck",
            FleetAlertKind::ReporterBack => "reporter_back",
            FleetAlertKind::StoreUnreachable => "store_unreachable",
            FleetAlertKind::StoreBack => "store_back",
        }
    }

    /// The kind of a stored name.
    pub fn from_name(name: &str) -> Option<FleetAlertKind> {
        ALL_KINDS.into_iter().find(|k| k.name() == name)
    }
}

/// Every alert kind, for counting by kind.
pub(crate) const ALL_KINDS: [FleetAlertKind; 7] = [
    FleetAlertKind::HostSilent,
    FleetAlertKind::HostBack,
    FleetAlertKind::ReporterSilent,
    FleetAlertKind::ReporterStuck,
    FleetAlertKind::ReporterBack,
    FleetAlertKind::StoreUnreachable,
    FleetAlertKind::StoreBack,
];

/// One alert: a row of the `alerts` table and a line on the monitor's stdout.
///
/// # Example
///
/// ```
/// use heartbeat::fleet::{FleetAlert, FleetAlertKind};
///
/// let alert = FleetAlert::new(FleetAlertKind::HostSilent, "web-7", "no write for 1.6 s");
/// assert_eq!(alert.to_string(), "ALERT host_silent host=web-7 no write for 1.6 s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetAlert {
    /// When the monitor raised it (its wall clock; the stored row is
    /// dated so too).
    pub at: StoreTime,
    /// What it says.
    pub kind: FleetAlertKind,
    /// The machine (empty for the store's own alerts).
    pub host: String,
    /// The reporter, for a reporter's alert.
    pub id: Option<String>,
    /// Which start of the reporter.
    pub instance: Option<u64>,
    /// Details for a person.
    pub detail: String,
}

impl FleetAlert {
    /// An alert of `kind` about `host`, raised now.
    pub fn new(kind: FleetAlertKind, host: impl Into<String>, detail: impl Into<String>) -> Self {
        let at = i64::try_from(crate::wire::unix_ms()).unwrap_or(i64::MAX);
        FleetAlert {
            at: StoreTime(at),
            kind,
            host: host.into(),
            id: None,
            instance: None,
            detail: detail.into(),
        }
    }

    fn reporter(kind: FleetAlertKind, host: &str, id: &str, instance: u64, detail: String) -> Self {
        FleetAlert {
            id: Some(id.to_owned()),
            instance: Some(instance),
            ..FleetAlert::new(kind, host, detail)
        }
    }
}

impl fmt::Display for FleetAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ALERT {}", self.kind.name())?;
        if !self.host.is_empty() {
            write!(f, " host={}", self.host)?;
        }
        if let Some(id) = &self.id {
            write!(f, " id={id}")?;
        }
        if let Some(instance) = self.instance {
            write!(f, " instance={instance:016x}")?;
        }
        if !self.detail.is_empty() {
            write!(f, " {}", self.detail)?;
        }
        Ok(())
    }
}

/// How the fleet monitor judges a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostHealth {
    /// Its collector writes on time.
    Alive,
    /// Its collector has not written for longer than its interval and the
    /// slack, on the store's clock.
    Silent,
}

/// What the fleet monitor knows after its last [`check`](FleetMonitor::check).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetStatus {
    /// Whether the last read of the store succeeded.
    pub store_up: bool,
    /// Every machine, with the monitor's verdict.
    pub hosts: Vec<(HostRow, HostHealth)>,
    /// Reporters of live machines by their collectors' verdicts:
    /// (alive, stuck, silent).
    pub reporters: (u64, u64, u64),
    /// Reporters of silent machines: nobody knows.
    pub unknown: u64,
    /// How long the last read of the store took.
    pub read_latency: Duration,
    /// Reads so far, and how many of them failed.
    pub reads: u64,
    /// Failed reads so far.
    pub read_failures: u64,
    /// Beats received by every collector, at their last writes.
    pub beats_received: u64,
    /// Beats rejected by every collector, at their last writes.
    pub beats_rejected: u64,
    /// Alerts raised so far, by kind name.
    pub alerts: BTreeMap<&'static str, u64>,
    /// Alerts that could not be written to the store yet (kept, written
    /// when it is back; at most [`MAX_PENDING_ALERTS`]).
    pub alerts_pending: usize,
}

/// Alerts kept for the store while it is unreachable; older ones are
/// dropped past this (they were printed all the same).
pub const MAX_PENDING_ALERTS: usize = 100_000;

/// How far back each read looks for changed reporters: a collector's write
/// is dated by its transaction's start on the store's clock, and may commit
/// after a read that began later. Changes read twice are told apart from
/// news by the monitor's own memory of each reporter.
const CHANGES_OVERLAP: Duration = Duration::from_secs(30);

/// Reads of changes between two full reads of every reporter that is not
/// ALIVE (which forgets rows deleted meanwhile).
const FULL_READ_EVERY: u64 = 600;

type ReporterKey = (String, String, u64);

/// Watches a fleet through its store (see the [module](super) docs).
///
/// # Example
///
/// ```
/// use heartbeat::fleet::{FleetMonitor, SqliteStore};
///
/// let dir = std::env::temp_dir().join(format!("fleet-watch-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let mut monitor = FleetMonitor::new(SqliteStore::open(dir.join("fleet.db"))?);
/// let alerts = monitor.check();
/// assert!(alerts.is_empty());
/// assert!(monitor.status().store_up);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FleetMonitor {
    store: Arc<Mutex<Box<dyn Store>>>,
    /// The read under way, if the last one did not answer in time.
    in_flight: Option<mpsc::Receiver<Result<Read, StoreError>>>,
    read_timeout: Duration,
    slack_milli: u32,
    hosts: HashMap<String, HostHealth>,
    /// Reporters known not to be ALIVE, with their health.
    problems: HashMap<ReporterKey, Health>,
    since: Option<StoreTime>,
    /// `None` before the first read.
    store_up: Option<bool>,
    unreachable_since: Option<Instant>,
    /// No machine is judged silent before this: the store was unreachable,
    /// and its collectors have yet to write again.
    /// When the store came back (or a stall of every machine ended): a
    /// machine is not judged silent before one of its own intervals and
    /// the slack after it, time for its collector to write again.
    back_at: Option<Instant>,
    /// Since when every machine alive before is late at once: the store
    /// (or the way to it) stalls, not every machine.
    stalled_since: Option<Instant>,
    checks: u64,
    pending: Vec<super::FleetAlert>,
    status: FleetStatus,
}

impl fmt::Debug for FleetMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetMonitor")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// How long a check waits for the store's answer, unless told otherwise
/// ([`FleetMonitor::read_timeout`]).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// One read's findings.
struct Read {
    hosts: Vec<HostRow>,
    now: StoreTime,
    full: bool,
    changes: Vec<super::store::StoredReporter>,
    /// How many of the pending alerts the read recorded.
    alerts_recorded: usize,
}

fn lock_store(store: &Mutex<Box<dyn Store>>) -> MutexGuard<'_, Box<dyn Store>> {
    // A store that panicked mid-read holds no invariant of the monitor's.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A machine's silence threshold: its interval and the slack
/// (thousandths of an interval).
fn threshold(interval: Duration, slack_milli: u32) -> Duration {
    interval + interval * slack_milli / 1000
}

/// The fleet monitor's default slack: a machine is silent after 1.5 of its
/// collector's intervals without a write.
pub const DEFAULT_HOST_SLACK: f64 = 0.5;

impl FleetMonitor {
    /// A monitor reading `store`.
    pub fn new(store: impl Store + 'static) -> FleetMonitor {
        FleetMonitor {
            store: Arc::new(Mutex::new(Box::new(store))),
            in_flight: None,
            read_timeout: DEFAULT_READ_TIMEOUT,
            slack_milli: (DEFAULT_HOST_SLACK * 1000.0) as u32,
            hosts: HashMap::new(),
            problems: HashMap::new(),
            since: None,
            store_up: None,
            unreachable_since: None,
            back_at: None,
            stalled_since: None,
            checks: 0,
            pending: Vec::new(),
            status: FleetStatus::default(),
        }
    }

    /// A machine is silent once its collector has not written for its
    /// interval and this much more, as a fraction of the interval (default
    /// [`DEFAULT_HOST_SLACK`]; clamped to 0.05..=100).
    pub fn slack(mut self, intervals: f64) -> FleetMonitor {
        let clamped = if intervals.is_nan() {
            DEFAULT_HOST_SLACK
        } else {
            intervals.clamp(0.05, 100.0)
        };
        self.slack_milli = (clamped * 1000.0).round() as u32;
        self
    }

    /// Reads the store, judges every machine and returns the new alerts
    /// (also written to the store's `alerts` table, or kept until it can
    /// be). Call it a few times per collector interval: a machine's silence
    /// is seen at the first check after it began.
    ///
    /// A store that cannot be read is one [`FleetAlertKind::StoreUnreachable`]
    /// alert, and nothing is judged meanwhile: no machine is called silent
    /// because its collector could not write. Once the store is back
    /// ([`FleetAlertKind::StoreBack`]) machines are judged again after one
    /// interval and the slack, time for every collector to write again.
    pub fn check(&mut self) -> Vec<super::FleetAlert> {
        let mut alerts = Vec::new();
        let started = Instant::now();
        self.status.reads += 1;
        let read = self.read();
        self.status.read_latency = started.elapsed();
        match read {
            Err(e) => {
                self.status.read_failures += 1;
                if self.store_up != Some(false) {
                    alerts.push(FleetAlert::new(
                        FleetAlertKind::StoreUnreachable,
                        "",
                        e.to_string(),
                    ));
                    self.unreachable_since = Some(Instant::now());
                }
                self.store_up = Some(false);
                self.status.store_up = false;
            }
            Ok(read) => {
                self.pending
                    .drain(..read.alerts_recorded.min(self.pending.len()));
                if self.store_up == Some(false) {
                    let down = self
                        .unreachable_since
                        .map_or(Duration::ZERO, |t| t.elapsed());
                    alerts.push(FleetAlert::new(
                        FleetAlertKind::StoreBack,
                        "",
                        format!("unreachable for {:.1} s", down.as_secs_f64()),
                    ));
                    self.back_at = Some(Instant::now());
                }
                self.store_up = Some(true);
                self.status.store_up = true;
                self.since = Some(StoreTime(read.now.0 - CHANGES_OVERLAP.as_millis() as i64));
                self.judge_hosts(read.hosts, &mut alerts);
                self.judge_reporters(read.full, read.changes, &mut alerts);
            }
        }
        for alert in &alerts {
            *self.status.alerts.entry(alert.kind.name()).or_default() += 1;
        }
        // Written at the next read (on the reader's thread).
        self.pending.extend(alerts.iter().cloned());
        if self.pending.len() > MAX_PENDING_ALERTS {
            let excess = self.pending.len() - MAX_PENDING_ALERTS;
            self.pending.drain(..excess);
        }
        self.status.alerts_pending = self.pending.len();
        alerts
    }

    /// One read of the store on a thread of its own, waited for at most
    /// the read timeout: a store that hangs (a frozen server, a network
    /// that drops everything) is unreachable, never a hung monitor. A read
    /// still running is waited for again at the next check, not doubled.
    /// The alerts pending are recorded by the same thread after its read.
    fn read(&mut self) -> Result<Read, StoreError> {
        let answer = match self.in_flight.take() {
            Some(answer) => answer,
            None => {
                let since = self
                    .since
                    .filter(|_| !self.checks.is_multiple_of(FULL_READ_EVERY));
                self.checks += 1;
                let store = Arc::clone(&self.store);
                let pending = if self.store_up == Some(true) {
                    self.pending.clone()
                } else {
                    Vec::new()
                };
                let (tell, answer) = mpsc::sync_channel(1);
                std::thread::Builder::new()
                    .name("heartbeat-fleet-reader".into())
                    .spawn(move || {
                        let mut store = lock_store(&store);
                        let read = store.read_hosts().and_then(|hosts| {
                            let (now, changes) = store.read_changes(since)?;
                            let alerts_recorded =
                                if !pending.is_empty() && store.record_alerts(&pending).is_ok() {
                                    pending.len()
                                } else {
                                    0
                                };
                            Ok(Read {
                                hosts,
                                now,
                                full: since.is_none(),
                                changes,
                                alerts_recorded,
                            })
                        });
                        let _ = tell.send(read);
                    })
                    .map_err(|e| StoreError::new("start a read of the store", e))?;
                answer
            }
        };
        match answer.recv_timeout(self.read_timeout) {
            Ok(read) => read,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.in_flight = Some(answer);
                Err(StoreError::new(
                    "read the store",
                    format!("no answer within {:.1} s", self.read_timeout.as_secs_f64()),
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::new(
                "read the store",
                "the reading thread ended without an answer (the store panicked)",
            )),
        }
    }

    /// The silence threshold of a machine whose collector writes every
    /// `interval`.
    fn threshold(&self, interval: Duration) -> Duration {
        threshold(interval, self.slack_milli)
    }

    fn judge_hosts(&mut self, hosts: Vec<HostRow>, alerts: &mut Vec<super::FleetAlert>) {
        let now = Instant::now();
        let slack_milli = self.slack_milli;
        // A read that waited for the store waited as long as the writes
        // did (a stall ended just before this answer, one machine's write
        // landing before it and another's just after): that long does not
        // count against a machine. A dead one is seen one slow read later.
        let waited = self.status.read_latency;
        let late = |row: &HostRow| {
            row.since_last_write > threshold(row.interval, slack_milli).saturating_add(waited)
        };
        // Every machine alive before late at once (two or more): the store
        // stalled (a slow disk, a lock, a pause shorter than the read
        // timeout), whose writes wait; not a hundred deaths. Judged so for
        // as long as twice the longest threshold, then as deaths after
        // all; once any machine writes again, the others have the grace
        // of their interval to do so too.
        let alive_before: Vec<&HostRow> = hosts
            .iter()
            .filter(|row| self.hosts.get(&row.host) == Some(&HostHealth::Alive))
            .collect();
        let longest = hosts.iter().map(|h| h.interval).max().unwrap_or_default();
        let all_late = alive_before.len() >= 2 && alive_before.iter().all(|row| late(row));
        let stalled = if all_late {
            let since = *self.stalled_since.get_or_insert(now);
            now.saturating_duration_since(since) < self.threshold(longest) * 2
        } else {
            if self.stalled_since.take().is_some() {
                self.back_at = Some(now);
            }
            false
        };
        let (mut alive, mut stuck, mut silent, mut unknown) = (0, 0, 0, 0);
        let (mut received, mut rejected) = (0, 0);
        let mut judged = Vec::with_capacity(hosts.len());
        for row in hosts {
            let before = self.hosts.get(&row.host).copied();
            let in_grace = stalled
                || self
                    .back_at
                    .is_some_and(|t| now < t + self.threshold(row.interval));
            let health = match (late(&row), before) {
                // After an outage or a stall of the store, silence is news
                // only once this machine's collector had time to write again.
                (true, Some(HostHealth::Alive)) if in_grace => HostHealth::Alive,
                (true, _) => HostHealth::Silent,
                (false, _) => HostHealth::Alive,
            };
            if before != Some(health) && !(before.is_none() && health == HostHealth::Alive) {
                let (kind, detail) = match health {
                    HostHealth::Silent => (
                        FleetAlertKind::HostSilent,
                        format!(
                            "no write for {:.1} s (interval {:.1} s); its {} reporters are unknown",
                            row.since_last_write.as_secs_f64(),
                            row.interval.as_secs_f64(),
                            row.counts.0 + row.counts.1 + row.counts.2
                        ),
                    ),
                    HostHealth::Alive => (
                        FleetAlertKind::HostBack,
                        format!("collector pid {} writes again", row.pid),
                    ),
                };
                alerts.push(FleetAlert::new(kind, row.host.clone(), detail));
            }
            self.hosts.insert(row.host.clone(), health);
            let (a, st, si) = row.counts;
            match health {
                HostHealth::Alive => {
                    alive += a;
                    stuck += st;
                    silent += si;
                }
                HostHealth::Silent => unknown += a + st + si,
            }
            received += row.beats_received;
            rejected += row.beats_rejected;
            judged.push((row, health));
        }
        self.status.hosts = judged;
        self.status.reporters = (alive, stuck, silent);
        self.status.unknown = unknown;
        self.status.beats_received = received;
        self.status.beats_rejected = rejected;
    }

    fn judge_reporters(
        &mut self,
        full: bool,
        changes: Vec<super::store::StoredReporter>,
        alerts: &mut Vec<super::FleetAlert>,
    ) {
        if full {
            // Every reporter not ALIVE is in `changes`: those remembered
            // but not there were deleted (forgotten by their collectors).
            let listed: std::collections::HashSet<ReporterKey> = changes
                .iter()
                .map(|c| (c.host.clone(), c.reporter.id.clone(), c.reporter.instance))
                .collect();
            self.problems.retain(|k, _| listed.contains(k));
        }
        for change in changes {
            let r = &change.reporter;
            let key = (change.host.clone(), r.id.clone(), r.instance);
            let known = self.problems.get(&key).copied();
            let host_alive = self.hosts.get(&change.host) != Some(&HostHealth::Silent);
            match r.health {
                Health::Alive if self.problems.remove(&key).is_some() && host_alive => {
                    alerts.push(FleetAlert::reporter(
                        FleetAlertKind::ReporterBack,
                        &change.host,
                        &r.id,
                        r.instance,
                        format!("pid {} beats and moves again", r.pid),
                    ));
                }
                Health::Alive => {}
                health if known != Some(health) => {
                    self.problems.insert(key, health);
                    if host_alive {
                        let kind = if health == Health::Silent {
                            FleetAlertKind::ReporterSilent
                        } else {
                            FleetAlertKind::ReporterStuck
                        };
                        alerts.push(FleetAlert::reporter(
                            kind,
                            &change.host,
                            &r.id,
                            r.instance,
                            format!(
                                "pid {}: last beat {:.1} s before its collector's write, progress {}",
                                r.pid,
                                r.since_last_beat.as_secs_f64(),
                                r.progress
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    /// What the last [`check`](FleetMonitor::check) found.
    pub fn status(&self) -> &FleetStatus {
        &self.status
    }

    /// A machine's health at the last check, if the store names it.
    pub fn host_health(&self, host: &str) -> Option<HostHealth> {
        self.hosts.get(host).copied()
    }

    /// The health of reporter `id` on `host` at the last check, as far as
    /// the monitor knows: its collector's verdict for a reporter not ALIVE
    /// (of any start), ALIVE for one it has heard no problem of, `None` on
    /// a silent or unknown machine.
    pub fn reporter_health(&self, host: &str, id: &str) -> Option<Health> {
        if self.hosts.get(host) != Some(&HostHealth::Alive) {
            return None;
        }
        let worst = self
            .problems
            .iter()
            .filter(|((h, i, _), _)| h == host && i == id)
            .map(|(_, health)| *health)
            .max_by_key(|h| *h == Health::Silent);
        Some(worst.unwrap_or(Health::Alive))
    }

    /// Alerts raised so far of `kind`.
    pub fn alerts_raised(&self, kind: FleetAlertKind) -> u64 {
        self.status.alerts.get(kind.name()).copied().unwrap_or(0)
    }

    /// The store, for reading alerts back ([`Store::read_alerts`]); waits
    /// for a read under way.
    pub fn store(&self) -> MutexGuard<'_, Box<dyn Store>> {
        lock_store(&self.store)
    }

    /// Records the alerts not yet written to the store (each check writes
    /// the alerts of the checks before it, with its read), waiting at most
    /// `timeout`; whether none is left. Call it before the monitor ends.
    pub fn flush(&mut self, timeout: Duration) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let store = Arc::clone(&self.store);
        let pending = self.pending.clone();
        let (tell, answer) = mpsc::sync_channel(1);
        let started = std::thread::Builder::new()
            .name("heartbeat-fleet-flush".into())
            .spawn(move || {
                let _ = tell.send(lock_store(&store).record_alerts(&pending).is_ok());
            });
        if started.is_ok() && answer.recv_timeout(timeout) == Ok(true) {
            self.pending.clear();
        }
        self.status.alerts_pending = self.pending.len();
        self.pending.is_empty()
    }

    /// How long a check waits for the store's answer (default
    /// [`DEFAULT_READ_TIMEOUT`]) before calling it unreachable.
    pub fn read_timeout(mut self, timeout: Duration) -> FleetMonitor {
        self.read_timeout = timeout;
        self
    }
}
