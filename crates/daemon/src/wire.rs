//! The wire format between a child and its parent: the child's
//! [`Outcome`] encoded with `postcard` (on the child's stack when small),
//! and what the parent has [`Received`] of it (inline when small). A result
//! up to [`INLINE_RESULT_LIMIT`] waits in the socket buffer until the child
//! has exited; a larger one is announced and streamed.

use serde::{Deserialize, Serialize};

/// The exit code of a child whose closure panicked (Rust's own code for a
/// panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;
/// The exit code of a child whose result could not be serialized.
pub const UNSENDABLE_RESULT_EXIT_CODE: i32 = 102;

/// What the child sends back over the socket.
#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome<T> {
    Returned(T),
    Panicked(String),
}

/// A child's encoded outcome: in the caller's stack buffer, or on the heap.
pub(crate) enum Encoded {
    Inline(usize),
    Heap(Vec<u8>),
}

/// Encodes the closure's result. Once encoded it belongs to the parent
/// (like a thread's result, moved to whoever joins): the child forgets its
/// copy instead of dropping it. A result that cannot be encoded is dropped
/// here.
pub(crate) fn encode_result<T: Serialize>(value: T, small: &mut [u8]) -> (Encoded, i32) {
    let encoded = match postcard::to_slice(&Outcome::Returned(&value), small) {
        Ok(bytes) => Encoded::Inline(bytes.len()),
        Err(_) => match postcard::to_stdvec(&Outcome::Returned(&value)) {
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

pub(crate) fn encode_panic(message: String) -> Vec<u8> {
    postcard::to_stdvec(&Outcome::<()>::Panicked(message)).unwrap_or_default()
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
pub(crate) struct Received {
    inline: [std::mem::MaybeUninit<u8>; INLINE_RECEIVED],
    inline_len: usize,
    heap: Vec<u8>,
}

impl Default for Received {
    fn default() -> Received {
        Received {
            inline: [std::mem::MaybeUninit::uninit(); INLINE_RECEIVED],
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
    /// Room for the next read: the rest of the inline buffer, or (once on
    /// the heap, or when `streaming` a big result) 64 KiB of heap.
    pub(crate) fn spare(&mut self, streaming: bool) -> &mut [std::mem::MaybeUninit<u8>] {
        if self.heap.is_empty() && !streaming && self.inline_len < INLINE_RECEIVED {
            return &mut self.inline[self.inline_len..];
        }
        if self.heap.is_empty() {
            // SAFETY: the first inline_len bytes were written by recv.
            let inline = unsafe {
                std::slice::from_raw_parts(self.inline.as_ptr().cast::<u8>(), self.inline_len)
            };
            self.heap.extend_from_slice(inline);
        }
        self.heap.reserve(64 * 1024);
        self.heap.spare_capacity_mut()
    }

    /// Records that the first `n` bytes of the last [`spare`](Received::spare)
    /// were written.
    ///
    /// # Safety
    ///
    /// Those `n` bytes must have been initialised.
    pub(crate) unsafe fn filled(&mut self, n: usize) {
        if self.heap.is_empty() && self.heap.capacity() == 0 {
            self.inline_len += n;
        } else {
            // SAFETY: the caller wrote n bytes into the spare capacity.
            unsafe { self.heap.set_len(self.heap.len() + n) };
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.heap.capacity() == 0 {
            // SAFETY: the first inline_len bytes were written by recv.
            unsafe {
                std::slice::from_raw_parts(self.inline.as_ptr().cast::<u8>(), self.inline_len)
            }
        } else {
            &self.heap
        }
    }
}

/// Results up to this size are left in the socket buffer (about 200 KiB
/// by default on Linux) for the parent to read after the exit.
pub(crate) const INLINE_RESULT_LIMIT: usize = 64 * 1024;
