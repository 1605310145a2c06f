//! Messages between processes that no killed peer can corrupt or wedge:
//! Python's `Queue`, `SimpleQueue`, `JoinableQueue`, `Pipe` and
//! `connection.wait`, in shared memory and over sockets.

#![deny(unsafe_code)]

mod error;
mod line;
#[cfg(loom)]
#[doc(hidden)]
pub mod model;
#[cfg(not(loom))]
pub mod pipe;
mod queue;
mod ring;
// The OS layer: its one `unsafe` block (keeping a descriptor number while
// replacing what it refers to, `dup3`) is argued there.
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod sys;
#[cfg(not(loom))]
mod wait;

pub use crate::error::{GetError, PutError, PutErrorKind, QueueError};
#[cfg(not(loom))]
pub use crate::pipe::{pipe, pipe_oneway, Connection, PipeError, MAX_FRAME_LEN};
pub use crate::queue::{
    inspect, JoinReport, Queue, QueueBuilder, QueueState, Receiver, Sender,
    DEFAULT_MAX_MESSAGE_BYTES,
};
pub use crate::ring::{MAX_ENDPOINTS, QUEUE_CRASH_POINTS};
#[cfg(not(loom))]
pub use crate::wait::{wait, Waitable, FDLESS_FIRST_PAUSE, FDLESS_MAX_PAUSE};
