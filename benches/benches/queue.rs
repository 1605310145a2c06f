//! W9, W9lat and W9N: procsync's `Queue` between processes against a Unix
//! socketpair (one write per message), `ipc-channel` across fork, and
//! `crossbeam-channel` between two threads (the in-process floor).
//!
//! Messages are 64 bytes. The queue carries a [`Msg64`] (a `[u8; 64]`
//! encoded as one byte string: postcard's length byte and one copy) and,
//! to show what serde's element-by-element path costs, a `Vec<u8>` of 64
//! bytes; `ipc-channel` carries a `Vec<u8>`; the sockets carry the bytes.
//! The first 8 bytes of every message are its id, which consumers check.

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benches::{pin_to_cpu, race, scaled, share};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use queue::{GetError, Queue};
use serde::de::{DeserializeOwned, Deserializer, Error as _, Visitor};
use serde::{Serialize, Serializer};
use shm::Shared;

/// Bytes in every message.
const MESSAGE_BYTES: usize = 64;

/// Messages a queue holds at most: the builder's default.
const CAPACITY: usize = 1024;

/// The largest encoded message the queues accept: 64 bytes and postcard's
/// one-byte length prefix fit, and a slot stays two cache lines.
const MAX_MESSAGE_BYTES: usize = MESSAGE_BYTES + 8;

/// The id that tells a consumer to stop (W9N).
const STOP: u64 = u64::MAX;

/// A 64-byte message serialised as one byte string (what `serde_bytes`
/// does for a `Vec<u8>`): postcard writes a length byte and copies the
/// bytes once, where serde's `Vec<u8>` goes element by element.
#[derive(Clone, Copy)]
struct Msg64([u8; MESSAGE_BYTES]);

impl Serialize for Msg64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Msg64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Msg64, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Msg64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{MESSAGE_BYTES} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Msg64, E> {
                bytes
                    .try_into()
                    .map(Msg64)
                    .map_err(|_| E::invalid_length(bytes.len(), &self))
            }
        }
        deserializer
            .deserialize_bytes(Bytes)
            .map_err(|e| D::Error::custom(format!("Msg64: {e}")))
    }
}

/// A message as the benches see it: 64 bytes whose first 8 are an id.
trait Message: Serialize + DeserializeOwned {
    fn with_id(id: u64) -> Self;
    fn id(&self) -> u64;
}

fn bytes_with_id(id: u64) -> [u8; MESSAGE_BYTES] {
    let mut bytes = [0x5a; MESSAGE_BYTES];
    bytes[..8].copy_from_slice(&id.to_le_bytes());
    bytes
}

fn id_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

impl Message for Msg64 {
    fn with_id(id: u64) -> Msg64 {
        Msg64(bytes_with_id(id))
    }
    fn id(&self) -> u64 {
        id_of(&self.0)
    }
}

impl Message for Vec<u8> {
    fn with_id(id: u64) -> Vec<u8> {
        bytes_with_id(id).to_vec()
    }
    fn id(&self) -> u64 {
        id_of(self)
    }
}

fn new_queue<T: Message>() -> Queue<T> {
    Queue::builder()
        .capacity(CAPACITY)
        .max_message_bytes(MAX_MESSAGE_BYTES)
        .anonymous()
        .expect("an anonymous queue")
}

/// A value that forked workers share by reference though its type is not
/// `Sync` (`ipc-channel`'s endpoints).
struct PerProcess<T>(T);

// SAFETY: the benches' workers are forked, single-threaded processes: each
// uses its own copy of the value, from one thread; the parent does not use
// it while they run.
unsafe impl<T> Sync for PerProcess<T> {}

impl<T> PerProcess<T> {
    /// The value (a method, so closures capture the wrapper, not the field).
    fn get(&self) -> &T {
        &self.0
    }
}

// ----- sockets ------------------------------------------------------------

/// `socketpair(AF_UNIX, kind)`.
fn socketpair(kind: libc::c_int) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: a valid out-array of two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh descriptors, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// One `write` of the whole message.
fn send(fd: RawFd, bytes: &[u8]) {
    loop {
        // SAFETY: a live buffer of `bytes.len()` bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n >= 0 {
            assert_eq!(n as usize, bytes.len(), "a short write");
            return;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "write: {e}");
    }
}

/// Reads one message: one `read` (a whole packet on SOCK_SEQPACKET; on a
/// stream, more only if the kernel splits the 64 bytes).
fn recv(fd: RawFd, buffer: &mut [u8; MESSAGE_BYTES]) {
    let mut got = 0;
    while got < MESSAGE_BYTES {
        // SAFETY: writes at most the rest of a live buffer.
        let n = unsafe { libc::read(fd, buffer[got..].as_mut_ptr().cast(), MESSAGE_BYTES - got) };
        if n > 0 {
            got += n as usize;
            continue;
        }
        let e = std::io::Error::last_os_error();
        assert!(
            n < 0 && e.kind() == std::io::ErrorKind::Interrupted,
            "read: {n} {e}"
        );
    }
}

// ----- W9: one producer process, one consumer process ---------------------

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// `messages` through a fresh queue, producer on CPU 0, consumer on CPU 1.
fn queue_1p1c<T: Message>(messages: u64) -> Duration {
    let q = new_queue::<T>();
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    let (elapsed, _) = race(2, false, |i, _| {
        if i == 0 {
            for id in 0..messages {
                tx.put(T::with_id(id))
                    .unwrap_or_else(|e| panic!("put: {e}"));
            }
        } else {
            for id in 0..messages {
                let m = rx.get().unwrap_or_else(|e| panic!("get: {e}"));
                assert_eq!(m.id(), id, "out of order");
            }
        }
    });
    elapsed
}

/// The same over a SOCK_STREAM socketpair: one write and one read per
/// message.
fn socketpair_1p1c(messages: u64) -> Duration {
    let (a, b) = socketpair(libc::SOCK_STREAM);
    let (elapsed, _) = race(2, false, |i, _| {
        if i == 0 {
            for id in 0..messages {
                send(a.as_raw_fd(), &bytes_with_id(id));
            }
        } else {
            let mut buffer = [0; MESSAGE_BYTES];
            for id in 0..messages {
                recv(b.as_raw_fd(), &mut buffer);
                assert_eq!(id_of(&buffer), id, "out of order");
            }
        }
    });
    elapsed
}

/// The same over an `ipc-channel` made before the fork.
fn ipc_channel_1p1c(messages: u64) -> Duration {
    let (tx, rx) = ipc_channel::ipc::channel::<Vec<u8>>().expect("an ipc channel");
    let (tx, rx) = (PerProcess(tx), PerProcess(rx));
    let (elapsed, _) = race(2, false, |i, _| {
        if i == 0 {
            for id in 0..messages {
                tx.get().send(Vec::with_id(id)).expect("ipc send");
            }
        } else {
            for id in 0..messages {
                let m = rx.get().recv().expect("ipc recv");
                assert_eq!(m.id(), id, "out of order");
            }
        }
    });
    elapsed
}

/// The in-process floor: a bounded crossbeam channel between two threads
/// pinned to CPUs 0 and 1.
fn crossbeam_1p1c(messages: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<Msg64>(CAPACITY);
    let start = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            start.wait();
            for id in 0..messages {
                tx.send(Msg64::with_id(id)).expect("send");
            }
        });
        s.spawn(|| {
            pin_to_cpu(1);
            start.wait();
            for id in 0..messages {
                let m = rx.recv().expect("recv");
                assert_eq!(m.id(), id, "out of order");
            }
        });
        start.wait();
        let began = Instant::now();
        // The scope joins both threads before it returns.
        began
    })
    .elapsed()
}

fn add(group: &mut Group<'_>, name: &str, run: fn(u64) -> Duration) {
    group.bench_function(name, |b| b.iter_custom(|n| scaled(n, run)));
}

/// W9: 1 producer process -> 1 consumer process, 64-byte messages.
fn queue_1p1c_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("W9_queue_1p1c");
    group.throughput(Throughput::Elements(1));
    add(&mut group, "procsync-Queue", queue_1p1c::<Msg64>);
    add(&mut group, "procsync-Queue-Vec", queue_1p1c::<Vec<u8>>);
    add(&mut group, "socketpair", socketpair_1p1c);
    add(&mut group, "ipc-channel", ipc_channel_1p1c);
    add(&mut group, "crossbeam-channel", crossbeam_1p1c);
    group.finish();
}

// ----- W9lat: round trips --------------------------------------------------

/// Round trips per sample: enough to hide forking the two workers.
const MIN_ROUNDS: u64 = 2_000;

/// `rounds` round trips through two fresh queues: worker 0 pings and
/// waits for the pong, worker 1 answers.
fn queue_roundtrip(rounds: u64) -> Duration {
    let (ping, pong) = (new_queue::<Msg64>(), new_queue::<Msg64>());
    let (ping_tx, ping_rx) = (ping.sender().unwrap(), ping.receiver().unwrap());
    let (pong_tx, pong_rx) = (pong.sender().unwrap(), pong.receiver().unwrap());
    let (elapsed, _) = race(2, false, |i, _| {
        for id in 0..rounds {
            if i == 0 {
                ping_tx
                    .put(Msg64::with_id(id))
                    .unwrap_or_else(|e| panic!("put: {e}"));
                let m = pong_rx.get().unwrap_or_else(|e| panic!("get: {e}"));
                assert_eq!(m.id(), id);
            } else {
                let m = ping_rx.get().unwrap_or_else(|e| panic!("get: {e}"));
                pong_tx.put(m).unwrap_or_else(|e| panic!("put: {e}"));
            }
        }
    });
    elapsed
}

/// The same over two SOCK_STREAM socketpairs.
fn socketpair_roundtrip(rounds: u64) -> Duration {
    let (ping_a, ping_b) = socketpair(libc::SOCK_STREAM);
    let (pong_a, pong_b) = socketpair(libc::SOCK_STREAM);
    let (elapsed, _) = race(2, false, |i, _| {
        let mut buffer = [0; MESSAGE_BYTES];
        for id in 0..rounds {
            if i == 0 {
                send(ping_a.as_raw_fd(), &bytes_with_id(id));
                recv(pong_b.as_raw_fd(), &mut buffer);
                assert_eq!(id_of(&buffer), id);
            } else {
                recv(ping_b.as_raw_fd(), &mut buffer);
                send(pong_a.as_raw_fd(), &buffer);
            }
        }
    });
    elapsed
}

/// W9lat: ping through one queue, pong through another, on two CPUs.
fn queue_roundtrip_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("W9lat_queue_roundtrip");
    let run = |ping: fn(u64) -> Duration, iters: u64| {
        let rounds = iters.max(MIN_ROUNDS);
        ping(rounds).mul_f64(iters as f64 / rounds as f64)
    };
    group.bench_function("procsync-Queue", |b| {
        b.iter_custom(|n| run(queue_roundtrip, n))
    });
    group.bench_function("socketpair", |b| {
        b.iter_custom(|n| run(socketpair_roundtrip, n))
    });
    group.finish();
}

// ----- W9N: N producers, N consumers --------------------------------------

/// What the consumers of a W9N run got, added up by each at its end.
#[derive(Default)]
#[repr(C)]
struct Tally {
    /// Messages received (stops not counted).
    received: AtomicU64,
    /// The sum of their ids (wrapping): with the count, tells a message
    /// delivered twice and another lost from a clean run.
    id_sum: AtomicU64,
    /// Producers that have put their share.
    producers_done: AtomicU64,
}

// SAFETY: atomics only.
unsafe impl shm::ShmSafe for Tally {}

impl Tally {
    /// Asserts every one of `messages` ids `0..messages` came exactly once.
    fn check(&self, messages: u64) {
        let expected_sum = (0..messages).fold(0u64, |s, id| s.wrapping_add(id));
        assert_eq!(
            self.received.load(Ordering::SeqCst),
            messages,
            "messages lost or duplicated"
        );
        assert_eq!(
            self.id_sum.load(Ordering::SeqCst),
            expected_sum,
            "a message lost and another duplicated"
        );
    }

    /// A consumer's count and id sum.
    fn add(&self, received: u64, id_sum: u64) {
        self.received.fetch_add(received, Ordering::SeqCst);
        self.id_sum.fetch_add(id_sum, Ordering::SeqCst);
    }

    /// A producer finished; true for the last one, which then puts one
    /// stop per consumer (after every message, so no consumer stops early).
    fn last_producer(&self, producers: usize) -> bool {
        self.producers_done.fetch_add(1, Ordering::SeqCst) + 1 == producers as u64
    }
}

/// The ids producer `i` of `n` puts: its share of `messages`, interleaved.
fn ids(messages: u64, n: usize, i: usize) -> impl Iterator<Item = u64> {
    (0..share(messages, n, i)).map(move |k| k * n as u64 + i as u64)
}

/// `messages` through one queue from `n` producer processes to `n`
/// consumer processes (workers `0..n` produce, `n..2n` consume; pinned
/// round robin by `race`).
fn queue_npnc(n: usize, messages: u64) -> Duration {
    let q = new_queue::<Msg64>();
    let senders: Vec<_> = (0..n).map(|_| q.sender().unwrap()).collect();
    let receivers: Vec<_> = (0..n).map(|_| q.receiver().unwrap()).collect();
    let tally = Shared::new(Tally::default()).unwrap();
    let (elapsed, _) = race(2 * n, false, |i, _| {
        if i < n {
            let tx = &senders[i];
            for id in ids(messages, n, i) {
                tx.put(Msg64::with_id(id))
                    .unwrap_or_else(|e| panic!("put: {e}"));
            }
            if tally.last_producer(n) {
                for _ in 0..n {
                    tx.put(Msg64::with_id(STOP))
                        .unwrap_or_else(|e| panic!("put: {e}"));
                }
            }
        } else {
            let rx = &receivers[i - n];
            let (mut received, mut id_sum) = (0u64, 0u64);
            loop {
                match rx.get() {
                    Ok(m) if m.id() == STOP => break,
                    Ok(m) => {
                        received += 1;
                        id_sum = id_sum.wrapping_add(m.id());
                    }
                    Err(GetError::Disconnected) => panic!("producers gone before the stops"),
                    Err(e) => panic!("get: {e}"),
                }
            }
            tally.add(received, id_sum);
        }
    });
    tally.check(messages);
    elapsed
}

/// The same over one SOCK_SEQPACKET socketpair: the `n` producers write
/// to one end, the `n` consumers read the other (each read one packet).
fn socketpair_npnc(n: usize, messages: u64) -> Duration {
    let (a, b) = socketpair(libc::SOCK_SEQPACKET);
    let tally = Shared::new(Tally::default()).unwrap();
    let (elapsed, _) = race(2 * n, false, |i, _| {
        if i < n {
            for id in ids(messages, n, i) {
                send(a.as_raw_fd(), &bytes_with_id(id));
            }
            if tally.last_producer(n) {
                for _ in 0..n {
                    send(a.as_raw_fd(), &bytes_with_id(STOP));
                }
            }
        } else {
            let mut buffer = [0; MESSAGE_BYTES];
            let (mut received, mut id_sum) = (0u64, 0u64);
            loop {
                recv(b.as_raw_fd(), &mut buffer);
                let id = id_of(&buffer);
                if id == STOP {
                    break;
                }
                received += 1;
                id_sum = id_sum.wrapping_add(id);
            }
            tally.add(received, id_sum);
        }
    });
    tally.check(messages);
    elapsed
}

/// W9N: N producers -> N consumers, N = 1, 2, 4, 8, all processes.
fn queue_npnc_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("W9N_queue_NpNc");
    group.throughput(Throughput::Elements(1));
    for n in [1, 2, 4, 8] {
        group.bench_function(BenchmarkId::new("procsync-Queue", n), |b| {
            b.iter_custom(|iters| scaled(iters, |m| queue_npnc(n, m)))
        });
        group.bench_function(BenchmarkId::new("socketpair-seqpacket", n), |b| {
            b.iter_custom(|iters| scaled(iters, |m| socketpair_npnc(n, m)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::criterion_config(10, Duration::from_secs(2));
    targets = queue_1p1c_group, queue_roundtrip_group, queue_npnc_group
}
criterion_main!(benches);
