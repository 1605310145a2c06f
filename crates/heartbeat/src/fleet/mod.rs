//! Heartbeats for a fleet: one collector per machine, one shared store, one
//! monitor (the lesson's 100 machines x 100 processes).
//!
//! A one-machine [`Monitor`](crate::Monitor) hears every reporter itself.
//! At fleet scale that stops working twice over: 10,000 reporters cannot
//! each hold a database connection (PostgreSQL allows 100 by default), and
//! one monitor cannot tell a dead machine from 100 dead processes. So:
//!
//! - every reporter beats over UDP to the [`Collector`] of its own machine
//!   (loopback: nothing crosses the network per beat);
//! - the collector judges its reporters with a [`Monitor`](crate::Monitor)
//!   (on its machine's monotonic clock) and writes the whole machine's
//!   state to the [`Store`] in **one statement per interval** (and once more
//!   at once when a reporter's health changes, so an alert waits for no
//!   interval): that write is also the machine's own heartbeat;
//! - the [`FleetMonitor`] reads the store and judges each machine by the
//!   time since its collector's last write **on the store's clock**
//!   (PostgreSQL's `now()`), so a machine whose clock is wrong is neither
//!   falsely silent nor falsely alive. A machine whose collector stopped is
//!   one [`FleetAlertKind::HostSilent`] alert, not one per reporter; a
//!   reporter the collector judged SILENT or STUCK is one alert of its own.
//!
//! At 10,000 reporters on 100 machines beating each second the store takes
//! 100 statements a second (one per machine), writing 10,000 rows a second,
//! plus the monitor's two reads of a few rows per poll: see
//! `docs/guide.md` ("A fleet") and `docs/benchmarks.md` (W12) for measured
//! figures.
//!
//! Stores: [`SqliteStore`] (feature `sqlite`, the embedded default: one
//! machine, one file) and `PgStore` (feature `postgres`).

mod collector;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod watch;

pub use collector::{Collector, CollectorStatus, DEFAULT_COLLECT_INTERVAL, FULL_WRITE_EVERY};
#[cfg(feature = "metrics")]
pub use metrics::{
    MetricsServer, CONTENT_TYPE, MAX_CONNECTIONS, MAX_REQUEST_BYTES, REQUEST_TIMEOUT,
    RESPONSE_TIMEOUT,
};
#[cfg(feature = "postgres")]
pub use pg::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{
    CollectorReport, HostRow, ReporterRow, Store, StoreError, StoreTime, StoredReporter,
    SCHEMA_VERSION,
};
pub use watch::{
    FleetAlert, FleetAlertKind, FleetMonitor, FleetStatus, HostHealth, DEFAULT_HOST_SLACK,
    DEFAULT_READ_TIMEOUT, MAX_PENDING_ALERTS,
};
