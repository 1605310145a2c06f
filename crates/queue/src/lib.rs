//! Messages between processes that no killed peer can corrupt or wedge:
//! Python's `Queue`, `SimpleQueue`, `JoinableQueue`, `Pipe` and
//! `connection.wait`, in shared memory and over sockets.

#![deny(unsafe_code)]

mod pipe;
// The OS layer: its one `unsafe` block (keeping a descriptor number while
// replacing what it refers to, `dup3`) is argued there.
#[allow(unsafe_code)]
mod sys;
mod wait;

pub use pipe::{pipe, pipe_oneway, Connection, PipeError, Receiver, Sender, MAX_FRAME_LEN};
pub use wait::{wait, Waitable, FDLESS_FIRST_PAUSE, FDLESS_MAX_PAUSE};
