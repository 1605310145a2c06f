//! The watching side: [`Monitor`] takes in beats and judges each reporter
//! [`Health::Alive`], [`Health::Stuck`] or [`Health::Silent`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
#[cfg(feature = "sqlite")]
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth;
#[cfg(feature = "sqlite")]
use crate::sinks;
use crate::wire::{unix_ms, Beat};
use crate::{
    io_error, sys, HeartbeatError, DEFAULT_SILENT_AFTER, DEFAULT_STUCK_AFTER, MAX_HOST_BYTES,
    MAX_ID_BYTES,
};

/// How a monitor judges a reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// Beats arrive and progress moves (or has not yet had time to).
    Alive,
    /// Beats arrive, but progress has not moved for `stuck_after` intervals
    /// (from the beat where it last moved to the last beat).
    Stuck,
    /// No beat for `silent_after` intervals and one more (see
    /// [`Monitor::silent_after`]): the main process is presumed dead.
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
    /// Which start of the reporter the last beat came from (see
    /// [`Beat::instance`]).
    pub instance: u64,
    /// The last sequence number seen.
    pub seq: u64,
    /// The last progress value seen.
    pub progress: u64,
    /// The verdict now.
    pub health: Health,
    /// Time since the last beat.
    pub since_last_beat: Duration,
    /// Its interval (as its beats say, at most [`Monitor::max_interval`]).
    pub interval: Duration,
}

/// A change of a reporter's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The reporter's id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// The health before.
    pub from: Health,
    /// The health now.
    pub to: Health,
}

/// A reporter is one start ([`Beat::instance`]) of one id on one host: two
/// processes reporting under one id are two reporters, and killing either
/// is seen.
type Key = (String, String, u64);

fn key_of(beat: &Beat) -> Key {
    (beat.host.clone(), beat.id.clone(), beat.instance)
}

#[derive(Debug)]
struct Tracked {
    first_seen: Instant,
    beat: Beat,
    last_seen: Instant,
    progress_moved: Instant,
    interval: Duration,
    health: Health,
    /// The last beat rejected for its `seq` leap, and when: should the next
    /// beats go on from it, the leap was real (beats lost while one was
    /// delayed), not forged.
    leap: Option<(u64, Instant)>,
    /// Not to be judged SILENT at this judgement: its row is in a database
    /// file whose write lock is held (see [`Monitor::read_database`]).
    spared: bool,
    /// The `seq` of the last signed beat taken in (a keyed monitor): a
    /// signed beat with no greater `seq` is a replay.
    signed_seq: Option<u64>,
}

impl Tracked {
    /// A reporter start first heard from at `now`: ALIVE, its progress
    /// moving from now.
    fn first_heard(
        beat: Beat,
        now: Instant,
        interval: Duration,
        signed_seq: Option<u64>,
    ) -> Tracked {
        Tracked {
            first_seen: now,
            beat,
            last_seen: now,
            progress_moved: now,
            interval,
            health: Health::Alive,
            leap: None,
            spared: false,
            signed_seq,
        }
    }
}

/// A reporter expected ([`Monitor::expect_reporter`]) and not yet heard
/// from.
#[derive(Debug)]
struct Awaited {
    /// When it was expected: its silence counts from then.
    since: Instant,
    interval: Duration,
    /// ALIVE while it has time to beat, SILENT once it has not.
    health: Health,
}

/// Beats rejected so far, by reason (see [`Monitor::rejections`]): each
/// rejected beat is counted once, under the first reason found, in this
/// order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rejections {
    /// Datagrams that are no beat: not JSON, not a beat's fields (a field
    /// missing, a number out of range, ...) or with a field a beat does not
    /// have.
    pub malformed: u64,
    /// Beats whose id is longer than [`MAX_ID_BYTES`] or whose host name is
    /// longer than [`MAX_HOST_BYTES`]: no reporter sends them.
    pub too_long: u64,
    /// Beats that no start of the reporter they name could have sent: an
    /// interval other than that start's, or a `seq` leaping further than
    /// the time passed allows (see [`Monitor::record`]).
    pub implausible: u64,
    /// Beats without a MAC, at a monitor given a key ([`Monitor::key`]).
    pub unsigned: u64,
    /// Beats whose MAC is not that of their fields under the monitor's
    /// key: forged, signed with another key, or changed after signing.
    pub bad_mac: u64,
    /// Signed beats whose `seq` is not greater than the last signed beat
    /// taken in from the same reporter start (tracked or forgotten): a
    /// captured beat sent again.
    pub replayed: u64,
    /// Signed beats whose `sent_at_ms` is further from this monitor's wall
    /// clock than [`Monitor::max_clock_skew`]: a captured beat sent again
    /// long after (say to a monitor restarted since, which has no `seq` to
    /// compare with).
    pub stale: u64,
    /// Beats naming another host than the only one the monitor takes
    /// ([`Monitor::only_host`]: a fleet's collector serves its own
    /// machine).
    pub foreign_host: u64,
}

impl Rejections {
    /// Every rejection, whatever the reason: what
    /// [`Monitor::beats_rejected`] returns.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.too_long
            + self.implausible
            + self.unsigned
            + self.bad_mac
            + self.replayed
            + self.stale
            + self.foreign_host
    }
}

/// Watches reporters (see the [crate](crate) documentation).
#[derive(Debug)]
pub struct Monitor {
    socket: Option<UdpSocket>,
    silent_after: u32,
    /// Slack beyond `silent_after` intervals, in thousandths of an interval.
    slack_milli: u32,
    stuck_after: u32,
    max_interval: Duration,
    max_reporters: usize,
    forget_after: u32,
    tracked: HashMap<Key, Tracked>,
    /// Reporters expected by id and not yet heard from (any host, any
    /// start): see [`Monitor::expect_reporter`].
    awaited: HashMap<String, Awaited>,
    /// An upper bound of the SILENT reporters in `tracked` (exact after
    /// `judge`): 0 spares a full monitor the search for room.
    silent: usize,
    alerts: VecDeque<Alert>,
    alerts_dropped: u64,
    beats: u64,
    rejections: Rejections,
    refused: u64,
    bad_rows: u64,
    /// When the socket's queue was last found empty: every datagram
    /// received since arrived after it.
    drained: Instant,
    /// The last (seq, pid) of reporters forgotten, so that a database row
    /// that never changed since (a dead reporter's) is not taken for a new
    /// reporter; at most `max_reporters`, the oldest dropped first.
    forgotten: HashMap<Key, (u64, shm::pid::Pid)>,
    forgotten_order: VecDeque<Key>,
    database_stalls: u64,
    /// Beats taken in from the network must be signed with it.
    key: Option<auth::Key>,
    max_clock_skew: Duration,
    only_host: Option<String>,
}

/// How far a signed beat's `sent_at_ms` may be from a keyed monitor's wall
/// clock, unless told otherwise ([`Monitor::max_clock_skew`]).
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// How many reporters a monitor tracks at most, unless told otherwise
/// ([`Monitor::max_reporters`]); it keeps as many alerts pending.
pub const DEFAULT_MAX_REPORTERS: usize = 50_000;

/// Intervals of silence after which a SILENT reporter (already reported
/// by its alert) is forgotten, unless told otherwise
/// ([`Monitor::forget_after`]).
pub const DEFAULT_FORGET_AFTER: u32 = 100;

/// The longest interval a monitor believes a beat's `interval_ms` about,
/// unless told otherwise ([`Monitor::max_interval`]): a beat claiming more
/// is judged as if it said this.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(3600);

impl Monitor {
    /// A monitor receiving UDP beats on `addr` (`"0.0.0.0:9999"`, or
    /// `"127.0.0.1:0"` for any free port: see
    /// [`local_addr`](Monitor::local_addr)).
    pub fn udp(addr: impl ToSocketAddrs) -> Result<Monitor, HeartbeatError> {
        let socket = UdpSocket::bind(addr).map_err(io_error("bind the monitor's UDP socket"))?;
        // Non-blocking: `poll` drains what is queued, then waits in poll(2).
        socket
            .set_nonblocking(true)
            .map_err(io_error("make the monitor's socket non-blocking"))?;
        sys::enlarge_receive_buffer(&socket);
        // Each beat is judged by when it arrived, not when it was read
        // (see `poll`). Without timestamps, by when it was read.
        let _ = sys::enable_receive_timestamps(&socket);
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
            slack_milli: 1000,
            stuck_after: DEFAULT_STUCK_AFTER,
            max_interval: DEFAULT_MAX_INTERVAL,
            max_reporters: DEFAULT_MAX_REPORTERS,
            forget_after: DEFAULT_FORGET_AFTER,
            tracked: HashMap::new(),
            awaited: HashMap::new(),
            silent: 0,
            alerts: VecDeque::new(),
            alerts_dropped: 0,
            beats: 0,
            rejections: Rejections::default(),
            refused: 0,
            bad_rows: 0,
            drained: Instant::now(),
            forgotten: HashMap::new(),
            forgotten_order: VecDeque::new(),
            database_stalls: 0,
            key: None,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            only_host: None,
        }
    }

    /// Takes in only beats signed with `key` (by reporters given the same
    /// key: [`Reporter::key`](crate::Reporter::key)) from then on, through
    /// [`poll`](Monitor::poll) and [`record`](Monitor::record). Each other
    /// beat is dropped and counted by its reason ([`rejections`](Monitor::rejections)):
    /// unsigned, a MAC that is not its fields' under this key (forged,
    /// another key, a field changed after signing), a replay (a `seq` not
    /// greater than the last signed beat taken in from that reporter start,
    /// or than the last one of a start since forgotten), or stale (a
    /// `sent_at_ms` further from this monitor's wall clock than
    /// [`max_clock_skew`](Monitor::max_clock_skew)). So a datagram captured
    /// on the network and sent again keeps no dead reporter alive: within
    /// the skew its `seq` is old, after it its time is.
    ///
    /// Rows read from a database ([`read_database`](Monitor::read_database))
    /// carry no MAC and are not checked: the file's permissions protect
    /// them.
    pub fn key(mut self, key: auth::Key) -> Monitor {
        self.key = Some(key);
        self
    }

    /// Rejects a signed beat (at a keyed monitor: see [`key`](Monitor::key))
    /// whose `sent_at_ms` is further than `skew` from this monitor's wall
    /// clock at its arrival (default [`DEFAULT_MAX_CLOCK_SKEW`], 30 s),
    /// either way. The collector of a fleet runs on its reporters' own
    /// machine, so the reporter and the monitor read one clock: the skew
    /// covers only the beat's way through the network and the monitor's
    /// queue, not clocks set apart. Between machines, keep the clocks
    /// within it (NTP) or raise it; the longer it is, the longer a beat
    /// captured before the monitor restarted can be replayed after.
    pub fn max_clock_skew(mut self, skew: Duration) -> Monitor {
        self.max_clock_skew = skew;
        self
    }

    /// Takes in only beats naming `host`; others are rejected, counted in
    /// [`Rejections::foreign_host`]. A fleet's
    /// [`Collector`](crate::fleet::Collector) serves its own machine: a beat
    /// naming another is misdirected or forged.
    pub fn only_host(mut self, host: impl Into<String>) -> Monitor {
        self.only_host = Some(host.into());
        self
    }

    /// Counts a reporter silent after `intervals` missed beats (at least 1;
    /// default [`DEFAULT_SILENT_AFTER`]): SILENT once it has been without a
    /// beat for `intervals + 1` of its intervals. The one more is slack for
    /// what delays a beat that is not missed: the reporter's wake-up, the
    /// network, the monitor's own poll (with no slack, `silent_after(1)`
    /// judged SILENT a reporter that missed no beat, at about every poll).
    pub fn silent_after(mut self, intervals: u32) -> Monitor {
        self.silent_after = intervals.max(1);
        self
    }

    /// The slack after `silent_after` missed intervals before a reporter is
    /// SILENT, as a fraction of its interval (default 1.0: one interval;
    /// clamped to 0.05..=100). A fleet's collector, which hears its
    /// reporters over loopback, uses `silent_after(1).slack(0.5)`: a kill is
    /// seen within 1.5 intervals of the last beat.
    pub fn slack(mut self, intervals: f64) -> Monitor {
        let clamped = if intervals.is_nan() {
            1.0
        } else {
            intervals.clamp(0.05, 100.0)
        };
        self.slack_milli = (clamped * 1000.0).round() as u32;
        self
    }

    /// Counts a reporter stuck after `intervals` intervals without progress
    /// (at least 1).
    pub fn stuck_after(mut self, intervals: u32) -> Monitor {
        self.stuck_after = intervals.max(1);
        self
    }

    /// Judges a beat that claims an interval longer than `interval` (at
    /// least a millisecond) as if it said `interval` (default
    /// [`DEFAULT_MAX_INTERVAL`]): a beat from the network cannot make a
    /// reporter count as alive for longer than `silent_after` times this.
    pub fn max_interval(mut self, interval: Duration) -> Monitor {
        self.max_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Tracks at most `reporters` reporters (at least 1; default
    /// [`DEFAULT_MAX_REPORTERS`]) and keeps at most as many alerts pending,
    /// so that made-up ids from the network cannot exhaust memory.
    /// Expectations ([`expect_reporter`](Monitor::expect_reporter)) hold
    /// places too, and an expected id's first start takes its
    /// expectation's place. A new reporter arriving at the limit takes the
    /// place of those already reported SILENT; with none, its beat is
    /// refused (counted by [`reporters_refused`](Monitor::reporters_refused)). Past the alert
    /// limit the oldest pending alert is dropped (counted by
    /// [`alerts_dropped`](Monitor::alerts_dropped)).
    pub fn max_reporters(mut self, reporters: usize) -> Monitor {
        self.max_reporters = reporters.max(1);
        self
    }

    /// Forgets a SILENT reporter (already reported by its alert) once it
    /// has been without a beat for `intervals` of its intervals (at least
    /// `silent_after`; default [`DEFAULT_FORGET_AFTER`]). Should it beat
    /// again, it is a new reporter (its database row unchanged since is no
    /// beat: see [`read_database`](Monitor::read_database)).
    pub fn forget_after(mut self, intervals: u32) -> Monitor {
        self.forget_after = intervals;
        self
    }

    /// The receive buffer of its UDP socket, in bytes, as the kernel
    /// reports it (on Linux twice what was asked). [`udp`](Monitor::udp)
    /// asks for 8 MiB: beyond `net.core.rmem_max` with `CAP_NET_ADMIN`,
    /// within it otherwise, where the kernel's default `rmem_max` gives
    /// 425,984. Too small a buffer drops beats in bursts, so a monitor of
    /// many reporters should say what it got.
    pub fn receive_buffer(&self) -> Result<usize, HeartbeatError> {
        match &self.socket {
            Some(socket) => {
                sys::receive_buffer(socket).map_err(io_error("read the monitor's receive buffer"))
            }
            None => Err(HeartbeatError::NoSink),
        }
    }

    /// Asks for a receive buffer of `bytes` (`SO_RCVBUF`, within
    /// `net.core.rmem_max`), replacing what [`udp`](Monitor::udp) got, and
    /// returns the buffer obtained (see [`receive_buffer`](Monitor::receive_buffer)).
    pub fn set_receive_buffer(&mut self, bytes: usize) -> Result<usize, HeartbeatError> {
        match &self.socket {
            Some(socket) => sys::set_receive_buffer(socket, bytes)
                .map_err(io_error("set the monitor's receive buffer"))?,
            None => return Err(HeartbeatError::NoSink),
        }
        self.receive_buffer()
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

    /// Takes in every beat already queued, then receives beats until
    /// `duration` has passed, then re-judges every reporter.
    /// `Duration::ZERO` only takes in what is queued; `Duration::MAX`
    /// receives for ever.
    ///
    /// A beat counts from when the kernel received it (`SO_TIMESTAMPNS`),
    /// not from when it is read: beats queued while the monitor did not
    /// poll (busy, stopped, a slow loop) are as old as they are, so a
    /// reporter killed meanwhile is SILENT at the next poll. (The stamp is
    /// the wall clock's; the age it gives is bounded by the last time the
    /// queue was found empty, so a step of the clock cannot date a beat
    /// before that.) Should the receive buffer fill meanwhile, the kernel
    /// drops the newest beats and keeps the oldest: a live reporter may be
    /// SILENT at that poll, ALIVE again at its next beat. Poll more often
    /// than `silent_after` intervals.
    pub fn poll(&mut self, duration: Duration) -> Result<(), HeartbeatError> {
        // `None`: no end (`Duration::MAX`, or past the end of the clock).
        let until = Instant::now().checked_add(duration);
        if let Some(socket) = self.socket.take() {
            let result = self.receive(&socket, until);
            self.socket = Some(socket);
            result?;
        } else {
            std::thread::sleep(duration);
        }
        self.judge(Instant::now());
        Ok(())
    }

    /// Drains `socket` (non-blocking), then waits for more until `until`.
    fn receive(
        &mut self,
        socket: &UdpSocket,
        until: Option<Instant>,
    ) -> Result<(), HeartbeatError> {
        // Any UDP datagram fits: a beat is never cut short.
        let mut buf = vec![0u8; 65_536];
        loop {
            loop {
                match sys::recv_stamped(socket, &mut buf) {
                    Ok((n, stamp)) => match Beat::from_json(&buf[..n]) {
                        Some(beat) => {
                            let arrived = arrival(stamp, Instant::now(), self.drained);
                            self.record(beat, arrived);
                        }
                        None => {
                            self.beats += 1;
                            self.rejections.malformed += 1;
                        }
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.drained = Instant::now();
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error("receive heartbeats")(e)),
                }
            }
            let left = until.map(|u| u.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(());
            }
            sys::wait_readable(socket, left).map_err(io_error("wait for heartbeats"))?;
        }
    }

    /// Takes in one beat received at `now` (from any transport).
    ///
    /// At a monitor given a key ([`key`](Monitor::key)), the beat must be
    /// signed with it, and neither replayed nor stale: rejected (counted by
    /// [`rejections`](Monitor::rejections), changing nothing) otherwise.
    ///
    /// A reporter is keyed by (host, id, instance). A beat is rejected
    /// (counted by [`beats_rejected`](Monitor::beats_rejected), changing
    /// nothing) when it cannot come from the reporter start it names: its
    /// interval differs from that start's, or its `seq` leaps further than
    /// the time since the last beat allows (a forged `seq = u64::MAX`)
    /// and the next beat does not go on from it (as it does when beats
    /// were lost while the last one accepted was delayed).
    /// A lower `seq` of the same start is a reordered datagram, ignored
    /// (at a keyed monitor, it and an equal `seq` are a replay, counted).
    /// A beat whose id is longer than [`MAX_ID_BYTES`] or whose host name
    /// is longer than [`MAX_HOST_BYTES`] is rejected too (no reporter can
    /// send it: [`Reporter::start`](crate::Reporter::start) refuses them),
    /// so that a made-up reporter costs the monitor at most about 9 KB
    /// (its id is kept twice): about 450 MB at [`DEFAULT_MAX_REPORTERS`],
    /// where ids of a whole datagram (60,000 bytes) took 5-6 GB.
    pub fn record(&mut self, beat: Beat, now: Instant) {
        self.take_in(beat, now, true);
    }

    /// [`record`](Monitor::record), with the MAC checked (`checked`, at a
    /// keyed monitor) or not (a database row).
    fn take_in(&mut self, beat: Beat, now: Instant, checked: bool) {
        self.beats += 1;
        if beat.id.len() > MAX_ID_BYTES || beat.host.len() > MAX_HOST_BYTES {
            self.rejections.too_long += 1;
            return;
        }
        // No store keeps a NUL in a text (PostgreSQL refuses the row, and
        // with it the machine's whole write), and no reporter sends one
        // (`Reporter::start` refuses it).
        if beat.id.contains('\0') || beat.host.contains('\0') {
            self.rejections.malformed += 1;
            return;
        }
        if self.only_host.as_ref().is_some_and(|h| *h != beat.host) {
            self.rejections.foreign_host += 1;
            return;
        }
        let signed = checked && self.key.is_some();
        if let Some(key) = self.key.as_ref().filter(|_| checked) {
            if beat.mac.is_none() {
                self.rejections.unsigned += 1;
                return;
            }
            if !key.verify(&beat) {
                self.rejections.bad_mac += 1;
                return;
            }
            let key = key_of(&beat);
            let last = match self.tracked.get(&key) {
                Some(t) => t.signed_seq,
                None => self.forgotten.get(&key).map(|&(seq, _)| seq),
            };
            if last.is_some_and(|last| beat.seq <= last) {
                self.rejections.replayed += 1;
                return;
            }
            let skew = u64::try_from(self.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
            if beat.sent_at_ms.abs_diff(wall_ms_at(now)) > skew {
                self.rejections.stale += 1;
                return;
            }
        }
        let signed_seq = signed.then_some(beat.seq);
        let interval = Duration::from_millis(beat.interval_ms.max(1)).min(self.max_interval);
        let key = key_of(&beat);
        match self.tracked.get_mut(&key) {
            Some(t) => {
                // Beats of an older reporter (no instance) tell starts
                // apart by pid only.
                let same_start = beat.pid == t.beat.pid;
                if same_start {
                    if beat.seq < t.beat.seq {
                        return; // reordered datagram: older news
                    }
                    if interval != t.interval {
                        self.rejections.implausible += 1;
                        return;
                    }
                    let leap_from = |seq: u64, seen: Instant| {
                        beat.seq - seq <= possible_leap(t.interval, seen, now)
                    };
                    let plausible = leap_from(t.beat.seq, t.last_seen)
                        || t.leap
                            .is_some_and(|(seq, seen)| beat.seq > seq && leap_from(seq, seen));
                    if !plausible {
                        t.leap = Some((beat.seq, now));
                        self.rejections.implausible += 1;
                        return;
                    }
                    t.leap = None;
                }
                if beat.progress != t.beat.progress || !same_start {
                    t.progress_moved = t.progress_moved.max(now);
                }
                t.beat = beat;
                // (A beat from one source may have arrived before the last
                // one taken from another.)
                t.last_seen = t.last_seen.max(now);
                t.interval = interval;
                if signed_seq.is_some() {
                    t.signed_seq = signed_seq;
                }
            }
            None => {
                if !self.has_room_for(&key.1, now) {
                    self.refused += 1;
                    return;
                }
                let tracked = Tracked::first_heard(beat, now, interval, signed_seq);
                self.tracked.insert(key.clone(), tracked);
                self.heard_from(&key);
            }
        }
    }

    /// Whether a new reporter start of `id` may be tracked: expectations
    /// hold their places (`max_reporters` counts them), and an expected
    /// id's first start takes its expectation's place; else room is made
    /// by forgetting SILENT reporters, if there are any.
    fn has_room_for(&mut self, id: &str, now: Instant) -> bool {
        self.awaited.contains_key(id)
            || self.tracked.len() + self.awaited.len() < self.max_reporters
            || (self.make_room(now) && self.tracked.len() + self.awaited.len() < self.max_reporters)
    }

    /// A reporter start is tracked now: if its id was awaited, the
    /// expectation is met (and ends: the start is judged by its beats from
    /// now on). One that was SILENT, already reported, is ALIVE: an alert
    /// says so.
    fn heard_from(&mut self, (host, id, _): &Key) {
        if self.awaited.is_empty() {
            return;
        }
        if let Some(awaited) = self.awaited.remove(id) {
            if awaited.health != Health::Alive {
                let alert = Alert {
                    id: id.clone(),
                    host: host.clone(),
                    from: awaited.health,
                    to: Health::Alive,
                };
                push_alert(
                    &mut self.alerts,
                    &mut self.alerts_dropped,
                    self.max_reporters,
                    alert,
                );
            }
        }
    }

    /// Expects a reporter with this `id` (on any host, of any start) that
    /// beats every `interval`, before any beat of it arrives: should none
    /// arrive within `silent_after` intervals and the slack (see
    /// [`silent_after`](Monitor::silent_after)) from now, it turns SILENT,
    /// with the usual [`Alert`] (its `host` empty: not known). So a
    /// reporter whose process dies before its first beat is reported, where
    /// a monitor that knows reporters only from their beats never hears of
    /// it.
    ///
    /// Its first beat (any host, any start: the key it will be tracked by
    /// is not known in advance) ends the expectation: from then it is an
    /// ordinary reporter, judged by its beats, and nothing is left behind to
    /// turn SILENT beside it (if it was SILENT already, an alert says it is
    /// ALIVE). Until then it counts in [`counts`](Monitor::counts) (ALIVE,
    /// then SILENT) and [`health`](Monitor::health), and is listed by
    /// [`awaited`](Monitor::awaited), not by [`reporters`](Monitor::reporters)
    /// (no beat: no host, pid or start to show). Forgotten as other SILENT
    /// reporters are ([`forget_after`](Monitor::forget_after),
    /// [`forget`](Monitor::forget)).
    ///
    /// Whether it was taken in: not if a reporter of this id is tracked or
    /// expected already, if the id is one no reporter can send (longer than
    /// [`MAX_ID_BYTES`], or with a NUL), or if the monitor tracks
    /// [`max_reporters`](Monitor::max_reporters) already. (The lower-level
    /// [`expect`](Monitor::expect) takes in a known start, from a beat.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use heartbeat::{Health, Monitor, Reporter};
    ///
    /// let mut monitor = Monitor::udp("127.0.0.1:0")?.silent_after(1).slack(0.5);
    /// // A worker that dies before its first beat: it never reports...
    /// assert!(monitor.expect_reporter("worker-1", Duration::from_millis(20)));
    /// assert_eq!(monitor.health("worker-1"), Some(Health::Alive));
    /// // ...and is SILENT after 1.5 intervals without a beat.
    /// while monitor.health("worker-1") != Some(Health::Silent) {
    ///     monitor.poll(Duration::from_millis(10))?;
    /// }
    /// let alert = &monitor.take_alerts()[0];
    /// assert_eq!((alert.id.as_str(), alert.to), ("worker-1", Health::Silent));
    /// assert_eq!(monitor.counts(), (0, 0, 1));
    /// # Ok::<(), heartbeat::HeartbeatError>(())
    /// ```
    pub fn expect_reporter(&mut self, id: impl Into<String>, interval: Duration) -> bool {
        let id = id.into();
        if id.len() > MAX_ID_BYTES
            || id.contains('\0')
            || self.awaited.contains_key(&id)
            || self
                .tracked
                .keys()
                .any(|(_, tracked_id, _)| *tracked_id == id)
            || self.tracked.len() + self.awaited.len() >= self.max_reporters
        {
            return false;
        }
        let awaited = Awaited {
            since: Instant::now(),
            interval: interval
                .max(Duration::from_millis(1))
                .min(self.max_interval),
            health: Health::Alive,
        };
        self.awaited.insert(id, awaited);
        true
    }

    /// The reporters expected ([`expect_reporter`](Monitor::expect_reporter))
    /// and not yet heard from, sorted by id, with their health: ALIVE while
    /// they have time to beat, SILENT once they are overdue.
    pub fn awaited(&self) -> Vec<(String, Health)> {
        let mut all: Vec<(String, Health)> = self
            .awaited
            .iter()
            .map(|(id, a)| (id.clone(), a.health))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Takes in a reporter start known from elsewhere, as heard from at
    /// `now` with the health it had there (a fleet's collector, restarted,
    /// takes over its machine's reporters from the store): should no beat
    /// of it follow, it turns SILENT after `silent_after` intervals and the
    /// slack, so a death while nobody listened is still reported; a STUCK
    /// one stays STUCK, without a new alert, until its progress moves. A
    /// start tracked already, a SILENT one (reported already) and one
    /// beyond `max_reporters` are left out; whether it was taken in. Not
    /// counted as a beat; at a keyed monitor, its `seq` is the last signed
    /// one (a replay of an older beat is refused).
    pub fn expect(&mut self, beat: Beat, health: Health, now: Instant) -> bool {
        let key = key_of(&beat);
        if health == Health::Silent
            || self.tracked.contains_key(&key)
            || !self.has_room_for(&key.1, now)
        {
            return false;
        }
        let interval = Duration::from_millis(beat.interval_ms.max(1)).min(self.max_interval);
        // STUCK: progress last moved long enough ago to be judged so again.
        let still = interval.saturating_mul(self.stuck_after) + Duration::from_millis(1);
        let progress_moved = match health {
            Health::Stuck => now.checked_sub(still).unwrap_or(now),
            _ => now,
        };
        let signed_seq = self.key.is_some().then_some(beat.seq);
        let tracked = Tracked {
            progress_moved,
            health,
            ..Tracked::first_heard(beat, now, interval, signed_seq)
        };
        self.tracked.insert(key.clone(), tracked);
        self.heard_from(&key);
        true
    }

    /// Forgets the reporters already reported SILENT that are silent still
    /// at `now`; whether any were.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.silent == 0 {
            return false;
        }
        let before = self.tracked.len();
        let (silent_after, slack) = (self.silent_after, self.slack_milli);
        self.forget_where(|_, t| {
            t.health == Health::Silent && is_silent(t, now, silent_after, slack)
        });
        self.silent = 0;
        self.tracked.len() < before
    }

    /// Forgets every reporter with this id (on any host, of any start),
    /// and its expectation ([`expect_reporter`](Monitor::expect_reporter));
    /// how many there were. A later beat of the id makes a new reporter
    /// (an unchanged database row is none).
    pub fn forget(&mut self, id: &str) -> usize {
        let before = self.tracked.len();
        self.forget_where(|(_, tracked_id, _), _| tracked_id == id);
        let awaited = usize::from(self.awaited.remove(id).is_some());
        before - self.tracked.len() + awaited
    }

    /// Forgets the reporters `which` picks, remembering each one's last
    /// (seq, pid): an unchanged database row of theirs is no news (see
    /// [`read_database`](Monitor::read_database)).
    fn forget_where(&mut self, mut which: impl FnMut(&Key, &Tracked) -> bool) {
        let gone: Vec<Key> = self
            .tracked
            .iter()
            .filter(|(key, t)| which(key, t))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(t) = self.tracked.remove(&key) {
                if self.forgotten.len() >= self.max_reporters {
                    if let Some(oldest) = self.forgotten_order.pop_front() {
                        self.forgotten.remove(&oldest);
                    }
                }
                self.forgotten.insert(key.clone(), (t.beat.seq, t.beat.pid));
                self.forgotten_order.push_back(key);
            }
        }
    }

    /// Re-judges every reporter as of `now`, recording changes as alerts.
    ///
    /// A reporter that has missed its beats while another start of the same
    /// id on the same host began after its last beat was restarted: it is
    /// forgotten without an alert (a restart is not a death). A start is
    /// the restart of one earlier start at most (of its own pid if there is
    /// one, else of the one heard from last before it began): two processes
    /// on one id, one killed and the other restarted, are one restart and
    /// one death. Two
    /// starts beating side by side are two reporters, and each one's
    /// silence is an alert.
    pub fn judge(&mut self, now: Instant) {
        self.judge_sparing(now, false);
    }

    /// [`judge`](Monitor::judge); with `spare_awaited`, no expected
    /// reporter turns SILENT (a stalled database read: its first row may be
    /// waiting behind the write lock too).
    fn judge_sparing(&mut self, now: Instant, spare_awaited: bool) {
        let (silent_after, slack) = (self.silent_after, self.slack_milli);
        let is_silent = |t: &Tracked| is_silent(t, now, silent_after, slack);
        // Reported SILENT long ago: forgotten.
        let forget_after = self.forget_after.max(silent_after);
        self.forget_where(|_, t| t.health == Health::Silent && is_silent_for(t, now, forget_after));
        // Restarted: silent, and a later start of the same (host, id) began
        // after its last beat. Each later start is the restart of one start
        // at most: of its own pid if one stopped beating before it began
        // (pid 1 of a container), else of the one heard from last before it
        // began, silent yet or not. So two processes on one id, one killed
        // and the other restarted, are one restart and one death, whichever
        // turns silent first. (Only the (host, id) of silent starts are
        // looked at, so a monitor of many live reporters does not build a
        // map each time.)
        let mut groups: HashMap<(&str, &str), Vec<&Key>> = self
            .tracked
            .iter()
            .filter(|(_, t)| is_silent(t))
            .map(|((host, id, _), _)| ((host.as_str(), id.as_str()), Vec::new()))
            .collect();
        if !groups.is_empty() {
            for key in self.tracked.keys() {
                if let Some(starts) = groups.get_mut(&(key.0.as_str(), key.1.as_str())) {
                    starts.push(key);
                }
            }
        }
        let mut restarted: Vec<Key> = Vec::new();
        for mut starts in groups.into_values() {
            // Those restarted from: heard from last first.
            let mut pool = starts.clone();
            pool.sort_by_key(|k| std::cmp::Reverse(self.tracked[*k].last_seen));
            // Those that may be restarts: newest first.
            starts.sort_by_key(|k| std::cmp::Reverse(self.tracked[*k].first_seen));
            for later in starts {
                let l = &self.tracked[later];
                let before = |k: &&Key| *k != later && self.tracked[*k].last_seen < l.first_seen;
                let pick = pool
                    .iter()
                    .position(|k| before(k) && self.tracked[*k].beat.pid == l.beat.pid)
                    .or_else(|| pool.iter().position(before));
                if let Some(i) = pick {
                    let earlier = pool.remove(i);
                    if is_silent(&self.tracked[earlier]) {
                        restarted.push(earlier.clone());
                    }
                }
            }
        }
        if !restarted.is_empty() {
            // Remembered, as every forgotten start is: its unchanged row is
            // no news, and at a keyed monitor its beats replayed are
            // counted, not a new reporter (that turned SILENT: a false
            // alarm for a restart).
            let restarted: HashSet<Key> = restarted.into_iter().collect();
            self.forget_where(|key, _| restarted.contains(key));
        }
        self.silent = 0;
        for ((host, id, _), t) in &mut self.tracked {
            // Measured to the last beat, not to now: STUCK is for beats
            // that arrive without progress; a reporter whose beats stopped
            // turns SILENT, never STUCK on its way there.
            let stuck = t.last_seen.saturating_duration_since(t.progress_moved)
                > t.interval.saturating_mul(self.stuck_after);
            let health = if is_silent(t) {
                Health::Silent
            } else if stuck {
                Health::Stuck
            } else {
                Health::Alive
            };
            if health == Health::Silent {
                self.silent += 1;
            }
            if health != t.health {
                let alert = Alert {
                    id: id.clone(),
                    host: host.clone(),
                    from: t.health,
                    to: health,
                };
                push_alert(
                    &mut self.alerts,
                    &mut self.alerts_dropped,
                    self.max_reporters,
                    alert,
                );
                t.health = health;
            }
        }
        // Expected, never heard from: SILENT once overdue (the host is not
        // known), forgotten as other SILENT reporters are.
        self.awaited.retain(|_, a| {
            a.health != Health::Silent || !overdue(a.since, a.interval, now, forget_after, 0)
        });
        for (id, a) in &mut self.awaited {
            if a.health == Health::Alive
                && !spare_awaited
                && overdue(a.since, a.interval, now, silent_after, slack)
            {
                let alert = Alert {
                    id: id.clone(),
                    host: String::new(),
                    from: Health::Alive,
                    to: Health::Silent,
                };
                push_alert(
                    &mut self.alerts,
                    &mut self.alerts_dropped,
                    self.max_reporters,
                    alert,
                );
                a.health = Health::Silent;
            }
        }
    }

    /// Every reporter seen, sorted by id, then host, then first beat.
    pub fn reporters(&self) -> Vec<ReporterState> {
        let now = Instant::now();
        let mut by_start = self
            .tracked
            .values()
            .map(|t| (t.first_seen, t))
            .collect::<Vec<_>>();
        by_start.sort_by_key(|(first_seen, _)| *first_seen);
        let mut all: Vec<ReporterState> = by_start
            .into_iter()
            .map(|(_, t)| ReporterState {
                id: t.beat.id.clone(),
                host: t.beat.host.clone(),
                pid: t.beat.pid,
                instance: t.beat.instance,
                seq: t.beat.seq,
                progress: t.beat.progress,
                health: t.health,
                since_last_beat: now.saturating_duration_since(t.last_seen),
                interval: t.interval,
            })
            .collect();
        all.sort_by(|a, b| (&a.id, &a.host).cmp(&(&b.id, &b.host)));
        all
    }

    /// The health of reporter `id`, if seen or expected
    /// ([`expect_reporter`](Monitor::expect_reporter)): the worst of every
    /// reporter with that id (on any host, of any start), so that the death
    /// of one of two processes reporting under one id is SILENT here.
    pub fn health(&self, id: &str) -> Option<Health> {
        self.tracked
            .iter()
            .filter(|((_, tracked_id, _), _)| tracked_id == id)
            .map(|(_, t)| t.health)
            .chain(self.awaited.get(id).map(|a| a.health))
            .max_by_key(|h| match h {
                Health::Alive => 0,
                Health::Stuck => 1,
                Health::Silent => 2,
            })
    }

    /// How many reporters are in each state: (alive, stuck, silent).
    /// Reporters expected and not yet heard from
    /// ([`expect_reporter`](Monitor::expect_reporter)) count too: ALIVE
    /// while they have time to beat, SILENT once overdue.
    pub fn counts(&self) -> (usize, usize, usize) {
        self.tracked
            .values()
            .map(|t| t.health)
            .chain(self.awaited.values().map(|a| a.health))
            .fold((0, 0, 0), |(a, st, si), health| match health {
                Health::Alive => (a + 1, st, si),
                Health::Stuck => (a, st + 1, si),
                Health::Silent => (a, st, si + 1),
            })
    }

    /// Takes the health changes recorded since the last call.
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts).into()
    }

    /// Alerts dropped so far, oldest first, because more than
    /// `max_reporters` were pending (see [`max_reporters`](Monitor::max_reporters)).
    pub fn alerts_dropped(&self) -> u64 {
        self.alerts_dropped
    }

    /// Beats of new reporters refused so far because the monitor tracked
    /// `max_reporters` and none of them was SILENT.
    pub fn reporters_refused(&self) -> u64 {
        self.refused
    }

    /// Beats received so far (rejected ones included, and datagrams that
    /// are no beat).
    pub fn beats_received(&self) -> u64 {
        self.beats
    }

    /// Beats rejected so far, whatever the reason: the sum of
    /// [`rejections`](Monitor::rejections) (datagrams that are no beat,
    /// beats with an id or host name longer than a reporter may send, beats
    /// impossible for the reporter start they name (see
    /// [`record`](Monitor::record)), and at a keyed monitor unsigned,
    /// forged, replayed and stale beats).
    pub fn beats_rejected(&self) -> u64 {
        self.rejections.total()
    }

    /// Beats rejected so far, counted by reason: for a fleet's metrics (a
    /// rising `bad_mac` or `replayed` is someone at work on the network,
    /// a rising `malformed` a sender of another version).
    pub fn rejections(&self) -> Rejections {
        self.rejections
    }

    /// Database reads so far that found the file's write lock held, at
    /// which no reporter of the file was judged SILENT (see
    /// [`read_database`](Monitor::read_database)). Growing at every read:
    /// a writer is stuck inside its write, and the file tells nothing.
    pub fn database_stalls(&self) -> u64 {
        self.database_stalls
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
    /// or whose `seq` (or pid) changed since the last read (a new instance
    /// is a reporter of its own: see [`record`](Monitor::record)), is a beat
    /// arriving now; an unchanged row is no news. So a writer whose clock is
    /// off, or a step of the wall clock here, makes no false alarm and hides
    /// no silence. Read at least once per interval for silence to be
    /// noticed on time (it is noticed at the first read after
    /// `silent_after` intervals without a change). A reporter forgotten
    /// ([`forget_after`](Monitor::forget_after), [`forget`](Monitor::forget),
    /// to make room, or as restarted: see [`judge`](Monitor::judge)) stays
    /// forgotten while its row is unchanged: the
    /// monitor remembers the last `seq` and pid of up to `max_reporters`
    /// forgotten reporters (the oldest dropped first).
    ///
    /// A row that is no beat is skipped and counted ([`bad_rows`](Monitor::bad_rows));
    /// the others are judged. If SQLite itself fails (a file that is no
    /// database, a lock held past the busy timeout), nothing is judged and
    /// the error is returned: no verdict changes on no news; call again.
    ///
    /// A read that finds the file's write lock held (in WAL mode, by
    /// `fcntl(F_GETLK)` on its `-shm` file) judges no reporter of the file
    /// SILENT, and is counted ([`database_stalls`](Monitor::database_stalls)):
    /// every writer waits for that lock, so unchanged rows are no sign of
    /// death. A writer stopped inside its write (SIGSTOP, a debugger, a
    /// Ctrl-Z) holds it for as long as it is stopped: rather than judging
    /// every reporter of the file SILENT (false alarms for all), the
    /// monitor then judges none of them SILENT, nor any expected reporter
    /// (its first row may wait behind the same lock; a death meanwhile is
    /// seen once the lock is released), and says so by the count. A short write
    /// holding the lock delays silence by one read.
    ///
    /// But a file that is not there (deleted, a volume unmounted) is an
    /// error after which the reporters are judged all the same: nobody
    /// writes it (a live reporter makes it afresh at its next beat), so
    /// those killed meanwhile turn SILENT.
    /// A path that is no regular file (a FIFO, a device, a directory) is
    /// refused with [`HeartbeatError::Io`] before it is opened: the open of
    /// a FIFO would wait for a writer for ever.
    #[cfg(feature = "sqlite")]
    pub fn read_database(&mut self, path: impl AsRef<Path>) -> Result<(), HeartbeatError> {
        let stalled = sinks::write_lock_held(path.as_ref());
        self.database_stalls += u64::from(stalled);
        let mut spared = Vec::new();
        let now = sinks::read_database(path.as_ref(), |rows| {
            let now = Instant::now();
            for beat in rows {
                let Some(beat) = beat? else {
                    self.bad_rows += 1;
                    continue;
                };
                let key = key_of(&beat);
                if stalled {
                    spared.push(key.clone());
                }
                let seen = self.tracked.get(&key).map(|t| (t.beat.seq, t.beat.pid));
                if seen == Some((beat.seq, beat.pid)) {
                    continue; // nothing new
                }
                // A forgotten reporter's row, unchanged since: still no news
                // (a dead reporter's row stays in the table for ever).
                if let Some(&last) = self.forgotten.get(&key) {
                    if last == (beat.seq, beat.pid) {
                        continue;
                    }
                    self.forgotten.remove(&key);
                }
                // Rows carry no MAC: the file's permissions protect them.
                self.take_in(beat, now, false);
            }
            Ok(now)
        });
        let now = match now {
            Ok(now) => now,
            Err(e) => {
                // No file: no news, but no writer either (a live reporter
                // makes the file afresh at its next beat): time passes.
                if e.is_missing_file() {
                    self.judge(Instant::now());
                }
                return Err(e);
            }
        };
        for key in &spared {
            if let Some(t) = self.tracked.get_mut(key) {
                t.spared = true;
            }
        }
        self.judge_sparing(now, stalled);
        for key in &spared {
            if let Some(t) = self.tracked.get_mut(key) {
                t.spared = false;
            }
        }
        Ok(())
    }
}

/// When a datagram stamped `stamp` (the wall clock's time of its arrival)
/// and read at `now` arrived on the monotonic clock: `now` less its age,
/// never before `floor` (when the queue was last found empty, so a step of
/// the wall clock cannot date it earlier) nor after `now`. No stamp: `now`.
fn arrival(stamp: Option<std::time::SystemTime>, now: Instant, floor: Instant) -> Instant {
    let Some(stamp) = stamp else {
        return now;
    };
    let age = std::time::SystemTime::now()
        .duration_since(stamp)
        .unwrap_or(Duration::ZERO);
    now.checked_sub(age)
        .map_or(floor, |a| a.max(floor))
        .min(now)
}

/// The wall clock's time, in milliseconds since the Unix epoch, at the
/// monotonic instant `at` (near now: a beat's arrival).
fn wall_ms_at(at: Instant) -> u64 {
    let (wall, now) = (unix_ms(), Instant::now());
    match now.checked_duration_since(at) {
        Some(ago) => wall.saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX)),
        None => wall.saturating_add(
            u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
        ),
    }
}

/// How far a reporter's `seq` may have moved from a beat seen at `seen`, by
/// `now`: one per interval passed, and two more for beats delayed and then
/// on time.
fn possible_leap(interval: Duration, seen: Instant, now: Instant) -> u64 {
    let passed = now.saturating_duration_since(seen).as_nanos() / interval.as_nanos().max(1);
    u64::try_from(passed).unwrap_or(u64::MAX).saturating_add(2)
}

/// Whether `t` has missed `silent_after` beats by `now`: no beat for
/// `silent_after` intervals and the slack (thousandths of an interval; see
/// [`Monitor::silent_after`] and [`Monitor::slack`]).
fn is_silent(t: &Tracked, now: Instant, silent_after: u32, slack_milli: u32) -> bool {
    !t.spared && overdue(t.last_seen, t.interval, now, silent_after, slack_milli)
}

/// Whether, by `now`, more than `intervals` intervals and the slack
/// (thousandths of an interval) have passed since `since`.
fn overdue(
    since: Instant,
    interval: Duration,
    now: Instant,
    intervals: u32,
    slack_milli: u32,
) -> bool {
    let slack = interval.saturating_mul(slack_milli) / 1000;
    now.saturating_duration_since(since) > interval.saturating_mul(intervals).saturating_add(slack)
}

/// Records `alert`, dropping the oldest pending one (counted in `dropped`)
/// if `max` are pending.
fn push_alert(alerts: &mut VecDeque<Alert>, dropped: &mut u64, max: usize, alert: Alert) {
    if alerts.len() >= max {
        alerts.pop_front();
        *dropped += 1;
    }
    alerts.push_back(alert);
}

/// Whether `t` has been without a beat for more than `intervals` of its
/// intervals by `now` (saturating: the interval comes from the network).
fn is_silent_for(t: &Tracked, now: Instant, intervals: u32) -> bool {
    overdue(t.last_seen, t.interval, now, intervals, 0)
}
