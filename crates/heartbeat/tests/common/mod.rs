//! Helpers shared by the heartbeat test binaries.

use std::net::{SocketAddr, UdpSocket};

use heartbeat::Beat;
use testkit::GENEROUS;

/// A socket receiving beats, and its address.
pub(crate) fn beat_receiver() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(GENEROUS)).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// The next beat on `socket`, failing the test after [`GENEROUS`].
pub(crate) fn next_beat(socket: &UdpSocket) -> Beat {
    let mut buf = [0u8; 65536];
    let n = socket.recv(&mut buf).expect("a beat within GENEROUS");
    serde_json::from_slice(&buf[..n]).unwrap()
}
