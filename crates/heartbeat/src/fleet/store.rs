//! What a store keeps and the [`Store`] trait both stores implement.

use std::time::Duration;

use crate::monitor::Health;

use super::watch::FleetAlert;

/// The version of the store's tables this crate writes. A store made by
/// an older version is migrated when opened; one made by a newer version
/// is refused ([`StoreError`]) rather than written wrongly.
pub const SCHEMA_VERSION: i64 = 1;

/// One reporter as its collector last judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterRow {
    /// The reporter's id.
    pub id: String,
    /// Which start of the reporter ([`Beat::instance`](crate::Beat::instance)).
    pub instance: u64,
    /// Its main process's pid.
    pub pid: u32,
    /// The last sequence number its collector accepted.
    pub seq: u64,
    /// Its last progress value.
    pub progress: u64,
    /// Its interval, in milliseconds.
    pub interval_ms: u64,
    /// The collector's verdict.
    pub health: Health,
    /// Time from its last beat to the collector's write (on the collector's
    /// monotonic clock; the store dates the beat by its own clock minus this).
    pub since_last_beat: Duration,
}

/// One collector's whole machine, written as one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorReport {
    /// The machine's name: the reporters' beats name it as their host.
    pub host: String,
    /// Random per start of the collector.
    pub instance: u64,
    /// The collector's pid.
    pub pid: u32,
    /// How often the collector writes: the fleet monitor judges the
    /// machine silent when no write came for longer than this and its slack.
    pub interval: Duration,
    /// Beats the collector received since it started (rejected ones included).
    pub beats_received: u64,
    /// Beats it rejected (forged, replayed, malformed, of another host, ...).
    pub beats_rejected: u64,
    /// Its reporters by health: (alive, stuck, silent).
    pub counts: (u64, u64, u64),
    /// The reporters to write: all of them when `complete`, else those
    /// whose health changed since the last write that succeeded (see
    /// [`Collector`](super::Collector)).
    pub reporters: Vec<ReporterRow>,
    /// Whether `reporters` is every reporter the collector tracks.
    pub complete: bool,
    /// With a `complete` report, rows of this machine's reporters that no
    /// write has named for this long (forgotten by the collector, or by a
    /// collector before it) are deleted by the same statement.
    pub forget_after: Duration,
}

/// A machine as the store last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    /// The machine's name.
    pub host: String,
    /// Which start of its collector wrote last.
    pub instance: u64,
    /// That collector's pid.
    pub pid: u32,
    /// That collector's interval.
    pub interval: Duration,
    /// Time since that collector's last write, on the store's clock.
    pub since_last_write: Duration,
    /// Beats the collector had received at its last write.
    pub beats_received: u64,
    /// Beats it had rejected.
    pub beats_rejected: u64,
    /// Its reporters by health at its last write: (alive, stuck, silent).
    pub counts: (u64, u64, u64),
}

/// A reporter row read back from the store, with the machine it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReporter {
    /// The machine.
    pub host: String,
    /// The row.
    pub reporter: ReporterRow,
}

/// Milliseconds since the Unix epoch on the *store's* clock (PostgreSQL's
/// `now()`): where a fleet monitor reads changes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreTime(pub i64);

/// A store failed: unreachable, refused the statement, or holds tables of
/// a newer version.
#[derive(Debug, thiserror::Error)]
#[error("heartbeat store: {what}: {source}")]
pub struct StoreError {
    /// What was being done.
    pub what: String,
    /// The cause (never carries a password).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// An error of `what`, caused by `source`.
    pub fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Where collectors write and fleet monitors read: [`SqliteStore`](super::SqliteStore)
/// or `PgStore` (feature `postgres`). Both pass one conformance suite
/// (`tests/fleet_store.rs`).
pub trait Store: Send {
    /// Writes one collector's report in one statement (one transaction):
    /// its machine's row, dated by the store's clock, the reporter rows it
    /// carries (each beat dated by the store's clock less
    /// [`ReporterRow::since_last_beat`]; a row's change time moves only
    /// when its health does), and, if the report is
    /// [`complete`](CollectorReport::complete), the deletion of its
    /// machine's rows unnamed for [`CollectorReport::forget_after`].
    fn write(&mut self, report: &CollectorReport) -> Result<(), StoreError>;

    /// Every machine, with the time since its last write on the store's clock.
    fn read_hosts(&mut self) -> Result<Vec<HostRow>, StoreError>;

    /// The store's clock now, and the reporters whose health changed at or
    /// after `since` (of any health), or with `None` every reporter whose
    /// health is not [`Health::Alive`].
    fn read_changes(
        &mut self,
        since: Option<StoreTime>,
    ) -> Result<(StoreTime, Vec<StoredReporter>), StoreError>;

    /// Every reporter row of `host`: what a collector restarted on that
    /// machine takes over (see [`Collector`](super::Collector)).
    fn read_reporters(&mut self, host: &str) -> Result<Vec<ReporterRow>, StoreError>;

    /// Appends alerts to the `alerts` table.
    fn record_alerts(&mut self, alerts: &[FleetAlert]) -> Result<(), StoreError>;

    /// The last `limit` alerts of the `alerts` table, oldest first.
    fn read_alerts(&mut self, limit: usize) -> Result<Vec<FleetAlert>, StoreError>;
}

/// A boxed store is a store: for a store chosen at run time
/// (`Box<dyn Store>`).
impl<S: Store + ?Sized> Store for Box<S> {
    fn write(&mut self, report: &CollectorReport) -> Result<(), StoreError> {
        (**self).write(report)
    }
    fn read_hosts(&mut self) -> Result<Vec<HostRow>, StoreError> {
        (**self).read_hosts()
    }
    fn read_changes(
        &mut self,
        since: Option<StoreTime>,
    ) -> Result<(StoreTime, Vec<StoredReporter>), StoreError> {
        (**self).read_changes(since)
    }
    fn read_reporters(&mut self, host: &str) -> Result<Vec<ReporterRow>, StoreError> {
        (**self).read_reporters(host)
    }
    fn record_alerts(&mut self, alerts: &[FleetAlert]) -> Result<(), StoreError> {
        (**self).record_alerts(alerts)
    }
    fn read_alerts(&mut self, limit: usize) -> Result<Vec<FleetAlert>, StoreError> {
        (**self).read_alerts(limit)
    }
}

/// A health as the stores spell it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn health_name(health: Health) -> &'static str {
    match health {
        Health::Alive => "alive",
        Health::Stuck => "stuck",
        Health::Silent => "silent",
    }
}

/// A health from its stored name.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn health_from_name(name: &str) -> Option<Health> {
    match name {
        "alive" => Some(Health::Alive),
        "stuck" => Some(Health::Stuck),
        "silent" => Some(Health::Silent),
        _ => None,
    }
}

/// Milliseconds of a duration, for a store's integer column.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration from a store's (maybe negative, maybe fractional) milliseconds.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn duration_ms(ms: f64) -> Duration {
    Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(1e12))
}
