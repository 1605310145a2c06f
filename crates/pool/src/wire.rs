//! What crosses the pool's queues: tasks to a worker, and the events the
//! manager reads (results, a worker's exit, a wake-up).

use serde::{Deserialize, Serialize};

use crate::call::Call;

/// A chunk of tasks for one worker: items get the task ids
/// `first_tid .. first_tid + args.len()`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) first_tid: u64,
    pub(crate) call: Call,
    pub(crate) args: Vec<Vec<u8>>,
}

/// What became of one task in a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The function returned; its encoded result.
    Ok(Vec<u8>),
    /// The function panicked, with this message.
    Panicked(String),
    /// The argument did not decode or the result did not encode.
    Failed(String),
    /// The encoded result is larger than a message may be.
    TooLarge { size: usize, max: usize },
}

impl Outcome {
    /// The encoded `value`, or why it could not be encoded.
    pub(crate) fn encode<R: Serialize>(value: &R) -> Outcome {
        match postcard::to_allocvec(value) {
            Ok(bytes) => Outcome::Ok(bytes),
            Err(e) => Outcome::Failed(serde_failure("the result did not encode", &e)),
        }
    }

    /// Its encoded size, exactly (postcard: a one-byte variant tag, then a
    /// varint length and the bytes, or two varints): a result as large as
    /// an accepted argument must fit where the argument did (review 7: a
    /// loose bound of 16 extra bytes refused it).
    pub(crate) fn size(&self) -> usize {
        1 + match self {
            Outcome::Ok(bytes) => varint_len(bytes.len()) + bytes.len(),
            Outcome::Panicked(message) | Outcome::Failed(message) => {
                varint_len(message.len()) + message.len()
            }
            Outcome::TooLarge { size, max } => varint_len(*size) + varint_len(*max),
        }
    }
}

/// What the manager reads from its inbox.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Event {
    /// Outcomes of the items `offset ..` of the chunk `first_tid`, sent by
    /// the worker of `slot`.
    Results {
        slot: u32,
        first_tid: u64,
        offset: u32,
        outcomes: Vec<Outcome>,
    },
    /// The worker of `slot` in its `generation` has exited (the watcher
    /// saw its pidfd readable). Comes after every result it committed.
    Exited { slot: u32, generation: u64 },
    /// Look at the submissions and the control flags.
    Wake,
}

/// Why a value did not encode or decode (`what`, then postcard's reason),
/// naming the cause when it is postcard's limit: it is not a
/// self-describing format, so types whose serde impls need one (they call
/// `deserialize_any`, or serialize a map or sequence of unknown length)
/// never cross.
pub(crate) fn serde_failure(what: &str, e: &postcard::Error) -> String {
    match e {
        postcard::Error::WontImplement | postcard::Error::SerializeSeqLengthUnknown => format!(
            "{what}: {e}: the pool's encoding (postcard) is not self-describing, and this type \
             needs a format that is (`#[serde(untagged)]`, `#[serde(flatten)]`, \
             `serde_json::Value`, ...: see the pool crate's documentation)"
        ),
        _ => format!("{what}: {e}"),
    }
}

/// How many bytes postcard's varint encoding of `n` takes (7 bits each).
fn varint_len(n: usize) -> usize {
    (usize::BITS as usize - n.leading_zeros() as usize)
        .div_ceil(7)
        .max(1)
}

/// Bytes a message needs beyond its items (enum tag, ids, lengths).
pub(crate) const MESSAGE_OVERHEAD: usize = 64;
/// Bytes an item needs beyond its own (its length prefix).
pub(crate) const ITEM_OVERHEAD: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    /// `size` is what postcard writes, for lengths around each varint step.
    #[test]
    fn an_outcomes_size_is_its_encoded_length() {
        for len in [0, 1, 127, 128, 16_383, 16_384, 65_462, 2_097_152] {
            for outcome in [
                Outcome::Ok(vec![1; len]),
                Outcome::Failed("x".repeat(len.min(70_000))),
                Outcome::TooLarge {
                    size: len,
                    max: 65_462,
                },
            ] {
                let encoded = postcard::to_allocvec(&outcome).expect("encode").len();
                assert_eq!(outcome.size(), encoded, "{len}");
            }
        }
    }
}
