//! The wire format: a [`Beat`] is one JSON object, in one UDP datagram
//! (or one row of the SQLite table, see `sinks`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One report.
///
/// A datagram with a field not named here is no beat (it is counted
/// [`Rejections::malformed`](crate::Rejections::malformed)): a monitor
/// takes in only what a reporter of this version sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beat {
    /// The reporter's name, unique among those a monitor watches.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// The pid of the main process it reports for.
    pub pid: shm::pid::Pid,
    /// 0, 1, 2, ... one per beat of this start: after a pause the
    /// intervals missed are skipped, not counted.
    pub seq: u64,
    /// The main process's progress counter.
    pub progress: u64,
    /// Wall-clock time of sending, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The reporter's interval, so a monitor knows when to expect the next.
    pub interval_ms: u64,
    /// Random per start of a reporter: tells a restarted reporter (whose
    /// `seq` starts again at 0, maybe with the same pid, as pid 1 of a
    /// container is) from the one before it. 0 in beats of older
    /// reporters that did not send it.
    #[serde(default)]
    pub instance: u64,
    /// The beat's MAC, 64 lowercase hexadecimal characters, from a reporter
    /// given a key ([`Reporter::key`](crate::Reporter::key); see
    /// [`Key::sign`](crate::Key::sign) for what it covers); `None` (and
    /// left out of the JSON) from one without. Database rows carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Beat {
    /// The beat as one datagram's JSON.
    pub(crate) fn to_json(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self).ok()
    }

    /// A beat from one datagram; `None` if it is not one.
    pub(crate) fn from_json(bytes: &[u8]) -> Option<Beat> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
