//! Messages between processes that no killed peer can corrupt or wedge:
//! Python's `Queue`, `SimpleQueue`, `JoinableQueue`, `Pipe` and
//! `connection.wait`, in shared memory and over sockets.

#![deny(unsafe_code)]
