//! Helpers shared by the heartbeat test binaries.

// Each binary uses some of them.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;

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

/// A fresh directory for one test's files (a database, say), removed on
/// drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(testkit::unique_name(tag));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The database's path in it.
    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("beats.sqlite")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Another program's connection holding the database file `db` in SQLite's
/// default (rollback) mode, exclusively, until it commits: opening the file
/// waits past the busy timeout meanwhile.
pub(crate) fn hold_exclusively(db: &std::path::Path) -> rusqlite::Connection {
    let locker = rusqlite::Connection::open(db).unwrap();
    locker
        .execute_batch(
            "CREATE TABLE other (n INTEGER); BEGIN EXCLUSIVE; INSERT INTO other VALUES (1)",
        )
        .unwrap();
    locker
}
