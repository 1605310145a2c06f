//! The UDP path tells the truth (issue #15, defects 2 and 11–17): what is
//! queued is read, restarts and duplicates are seen, forged or oversized
//! beats do not hide a death, the monitor's memory is bounded, and
//! reporters started together do not beat together.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use daemon::Process;
use heartbeat::{Beat, Monitor};

/// A beat as a simulated reporter sends it.
fn beat(id: &str, seq: u64, interval_ms: u64) -> Beat {
    Beat {
        id: id.into(),
        host: "sim".into(),
        pid: shm::pid::Pid::from_u32(1).unwrap(),
        seq,
        progress: seq,
        sent_at_ms: 0,
        interval_ms,
    }
}

/// Sends `beats` to `addr` from another process, and returns once they
/// are all sent (on loopback: queued at the monitor's socket).
fn send_from_another_process(addr: SocketAddr, beats: Vec<Beat>) {
    Process::new(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for beat in &beats {
            socket
                .send_to(&serde_json::to_vec(beat).unwrap(), addr)
                .unwrap();
        }
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
}

// ---- 11: poll(ZERO) drains what is queued ----

#[test]
fn poll_of_zero_reads_the_beats_already_queued() {
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    send_from_another_process(addr, (0..25).map(|s| beat("queued", s, 100)).collect());
    monitor.poll(Duration::ZERO).unwrap();
    assert_eq!(monitor.beats_received(), 25);
    assert_eq!(monitor.reporters()[0].seq, 24);
}
