//! The OS layer: every system call of this crate, each wrapped once. All
//! through `rustix`, so there is no `unsafe` code here either.

use std::net::UdpSocket;

/// A monitor of many reporters receives bursts; the default buffer (about
/// 200 KiB) drops datagrams, which would read as false silence. Asks for 8
/// MiB, beyond the system's limit if privileged (`SO_RCVBUFFORCE`), within
/// it otherwise (`SO_RCVBUF`); best effort.
pub(crate) fn enlarge_receive_buffer(socket: &UdpSocket) {
    const SIZE: usize = 8 << 20;
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, SIZE).is_err() {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, SIZE);
    }
}

/// This machine's name (`uname(2)`'s node name, which is what
/// `gethostname(2)` returns).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
