//! The wire format between a child and its parent: the child's
//! [`Outcome`] encoded with `postcard` (on the child's stack when small),
//! and what the parent has [`Received`] of it (inline when small). A result
//! up to [`INLINE_RESULT_LIMIT`] waits in the socket buffer until the child
//! has exited; a larger one is announced and streamed.

use std::io;
use std::os::fd::BorrowedFd;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::sys;

/// The exit code of a child whose closure panicked (Rust's own code for a
/// panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;
/// The exit code of a child whose result could not be serialized.
pub const UNSENDABLE_RESULT_EXIT_CODE: i32 = 102;
/// The exit code of a child whose [`Process::try_new`](crate::Process::try_new)
/// closure returned an `Err` (Python's exit code for an uncaught exception).
pub const FAILED_EXIT_CODE: i32 = 1;

/// What the child sends back over the socket: a tag byte, then the
/// payload in `postcard` (the bytes postcard itself gives such an enum,
/// written by hand so that this crate needs no serde derive).
pub(crate) enum Outcome<T> {
    Returned(T),
    Panicked(String),
    /// An `Err` of a `try_new` closure: its message and causes.
    Failed(String, Vec<String>),
}

/// The tag of [`Outcome::Returned`].
const RETURNED: u8 = 0;
/// The tag of [`Outcome::Panicked`].
const PANICKED: u8 = 1;
/// The tag of [`Outcome::Failed`].
const FAILED: u8 = 2;

impl<T: DeserializeOwned> Outcome<T> {
    /// Decodes what a child sent; `None` for bytes that are not an
    /// outcome of a `T`.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Outcome<T>> {
        let (&tag, payload) = bytes.split_first()?;
        match tag {
            RETURNED => postcard::from_bytes(payload).ok().map(Outcome::Returned),
            PANICKED => postcard::from_bytes(payload).ok().map(Outcome::Panicked),
            FAILED => postcard::from_bytes(payload)
                .ok()
                .map(|(message, causes)| Outcome::Failed(message, causes)),
            _ => None,
        }
    }
}

/// A child's encoded outcome: in the caller's stack buffer, or on the heap.
///
/// `pub` only because the sealed trait that makes it (`output::sealed::
/// Encode`, a supertrait of the public `Returnable`) names it; outside this
/// crate it can be neither named nor made.
pub enum Encoded {
    /// The first this many bytes of the caller's buffer.
    Inline(usize),
    /// These bytes.
    Heap(Vec<u8>),
}

/// Encodes the closure's result. Once encoded it belongs to the parent
/// (like a thread's result, moved to whoever joins): the child forgets its
/// copy instead of dropping it. A result that cannot be encoded is dropped
/// here.
pub(crate) fn encode_result<T: Serialize>(value: T, small: &mut [u8]) -> (Encoded, i32) {
    let inline = match small.split_first_mut() {
        Some((tag, rest)) => {
            *tag = RETURNED;
            postcard::to_slice(&value, rest).map(|bytes| bytes.len() + 1)
        }
        None => Err(postcard::Error::SerializeBufferFull),
    };
    let encoded = match inline {
        Ok(len) => Encoded::Inline(len),
        Err(_) => match postcard::to_extend(&value, vec![RETURNED]) {
            Ok(bytes) => Encoded::Heap(bytes),
            Err(e) => {
                drop(value);
                return (
                    Encoded::Heap(encode_panic(format!(
                        "the child's result could not be serialized: {e}"
                    ))),
                    UNSENDABLE_RESULT_EXIT_CODE,
                );
            }
        },
    };
    std::mem::forget(value);
    (encoded, 0)
}

/// Runs `run`, which encodes a child's result into `small` (or on the
/// heap) and says its exit code, and catches a panic of it: the bytes to
/// send (in `small`, or in `large`) and the exit code.
pub(crate) fn run_catching<'a>(
    small: &'a mut [u8; INLINE_RECEIVED],
    large: &'a mut Vec<u8>,
    run: impl FnOnce(&mut [u8; INLINE_RECEIVED]) -> (Encoded, i32),
) -> (&'a [u8], i32) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut *small))) {
        Ok((Encoded::Inline(len), code)) => (&small[..len], code),
        Ok((Encoded::Heap(bytes), code)) => {
            *large = bytes;
            (large, code)
        }
        Err(payload) => {
            *large = encode_panic(panic_message(payload.as_ref()));
            // Never dropped: a payload's destructor is user code that could
            // panic again, and the child's `_exit` frees everything anyway.
            std::mem::forget(payload);
            (large, PANIC_EXIT_CODE)
        }
    }
}

pub(crate) fn encode_panic(message: String) -> Vec<u8> {
    postcard::to_extend(&message, vec![PANICKED]).unwrap_or_default()
}

/// Encodes a `try_new` closure's error: its message and causes.
pub(crate) fn encode_failed(message: &str, causes: &[String]) -> Vec<u8> {
    postcard::to_extend(&(message, causes), vec![FAILED]).unwrap_or_default()
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "the child panicked with a non-string payload".to_string()
    }
}

/// Bytes of a result kept inline in the `Child` before spilling to the heap.
pub(crate) const INLINE_RECEIVED: usize = 256;

/// What the child sent so far: inline while small, on the heap beyond.
/// A small result then costs the parent no allocation, and so no
/// copy-on-write fault on the allocator's pages (measured: the allocation
/// and free of a Vec were a third of the extra page faults of a start+join).
/// The heap is in use once it has any capacity.
pub(crate) struct Received {
    inline: [u8; INLINE_RECEIVED],
    inline_len: usize,
    heap: Vec<u8>,
}

impl Default for Received {
    fn default() -> Received {
        Received {
            inline: [0; INLINE_RECEIVED],
            inline_len: 0,
            heap: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("len", &self.as_slice().len())
            .finish()
    }
}

impl Received {
    /// One read from `socket`, without waiting, into the room for it: the
    /// rest of the inline buffer, or (once on the heap, or when `streaming`
    /// a big result) 64 KiB of heap. Returns the bytes read (0: the child
    /// closed its end); nothing there yet is `WouldBlock`.
    pub(crate) fn recv(&mut self, socket: BorrowedFd<'_>, streaming: bool) -> io::Result<usize> {
        if self.heap.capacity() == 0 && !streaming && self.inline_len < INLINE_RECEIVED {
            let n = sys::recv_now(socket, &mut self.inline[self.inline_len..])?;
            self.inline_len += n;
            return Ok(n);
        }
        if self.heap.capacity() == 0 {
            self.heap.extend_from_slice(&self.inline[..self.inline_len]);
        }
        self.heap.reserve(64 * 1024);
        sys::recv_now_appending(socket, &mut self.heap)
    }

    /// Everything received.
    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.heap.capacity() == 0 {
            &self.inline[..self.inline_len]
        } else {
            &self.heap
        }
    }
}

/// Results up to this size are left in the socket buffer (about 200 KiB
/// by default on Linux) for the parent to read after the exit.
pub(crate) const INLINE_RESULT_LIMIT: usize = 64 * 1024;
