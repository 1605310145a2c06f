//! [`Line`]: the unit a queue's shared memory is made of.

use shm::layout::LayoutWriter;
use shm::{Futex64, ShmSafe};

/// One cache line of eight 64-bit words, each usable as an atomic or a
/// futex. A queue's header, endpoint rows and message slots are runs of
/// lines; what each word means is the queue's protocol (see `ring`).
///
/// Whole lines keep what producers write and what consumers write apart:
/// a word one side changes on every message never shares a line with a
/// word the other side changes on every message.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line(pub(crate) [Futex64; 8]);

// SAFETY: eight `Futex64`s (each one `AtomicU64`): plain data, no pointers,
// valid for every bit pattern and at any 64-aligned address; the futex key
// of each word is the shared page, not this process's address.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Line {
    /// By protocol, not fields: what the words mean is the queue's
    /// protocol, and its version is part of the name.
    fn describe_layout(out: &mut LayoutWriter) {
        out.protocol::<Line>("queue line v1");
    }
}

impl Line {
    /// A line of zero words.
    pub(crate) fn zeroed() -> Line {
        Line::default()
    }

    /// A line holding `words`.
    pub(crate) fn of(words: [u64; 8]) -> Line {
        Line(words.map(Futex64::new))
    }
}
