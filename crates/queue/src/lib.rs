//! Messages between processes that no killed peer can corrupt or wedge:
//! Python's `Queue`, `SimpleQueue`, `JoinableQueue`, `Pipe` and
//! `connection.wait`, in shared memory and over sockets.

#![deny(unsafe_code)]

mod error;
mod line;
mod queue;
mod ring;

pub use crate::error::{GetError, PutError, PutErrorKind, QueueError};
pub use crate::queue::{
    JoinReport, Queue, QueueBuilder, Receiver, Sender, DEFAULT_MAX_MESSAGE_BYTES,
};
pub use crate::ring::{MAX_ENDPOINTS, QUEUE_CRASH_POINTS};
