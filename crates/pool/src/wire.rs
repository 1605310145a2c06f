//! What crosses the pool's queues: chunks of tasks to a worker, and the
//! events the manager reads (outcomes, a worker's exit, a wake-up).
//!
//! A chunk's arguments and its outcomes travel as [`Items`]: one buffer of
//! length-prefixed encodings, not a `Vec` per item. With `x -> x + 1` an
//! item is a few bytes, and an allocation (and a free) per item on each
//! side cost more than the task itself: the owner, which encodes every
//! argument and decodes every result alone, was the pool's bottleneck.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::call::Call;
use crate::error::TaskError;

/// Bytes a message needs beyond its items (enum tag, ids, lengths).
pub(crate) const MESSAGE_OVERHEAD: usize = 64;
/// Bytes an item needs beyond its own: its length prefix, and an
/// outcome's tag.
pub(crate) const ITEM_OVERHEAD: usize = 10;

/// Bytes of an item's length prefix (little-endian `u32`: an item is at
/// most a message, and a message is far below 4 GiB).
const PREFIX: usize = 4;

/// Many encoded values in one buffer, each as a 4-byte length and its
/// bytes, in order.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Items {
    bytes: Vec<u8>,
    count: usize,
}

impl fmt::Debug for Items {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Items({} in {} bytes)", self.count, self.bytes.len())
    }
}

impl Items {
    /// No items yet, with room for `bytes` of them (prefixes included).
    pub(crate) fn with_capacity(bytes: usize) -> Items {
        Items {
            bytes: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Items from a buffer of them, if it is one (whole items only).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Option<Items> {
        let count = Items::count_of(&bytes)?;
        Some(Items { bytes, count })
    }

    /// The buffer: the items with their prefixes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many items.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The buffer's length, prefixes included.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one item, written by `write` after the prefix; returns its
    /// length. When `write` fails, nothing is appended.
    pub(crate) fn push_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; PREFIX]);
        if let Err(e) = write(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        let len = self.bytes.len() - start - PREFIX;
        self.bytes[start..start + PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
        self.count += 1;
        Ok(len)
    }

    /// Appends `value`'s postcard encoding as one item; returns its length.
    pub(crate) fn push_encoded<T: Serialize>(
        &mut self,
        value: &T,
    ) -> Result<usize, postcard::Error> {
        self.push_with(|bytes| encode_into(value, bytes))
    }

    /// Appends `item` as it is.
    pub(crate) fn push(&mut self, item: &[u8]) {
        let _ = self.push_with(|bytes| {
            bytes.extend_from_slice(item);
            Ok::<(), ()>(())
        });
    }

    /// Removes the last item (pushed with [`push_with`](Items::push_with)
    /// after `byte_len()` was `mark`).
    pub(crate) fn truncate_to(&mut self, mark: usize, count: usize) {
        self.bytes.truncate(mark);
        self.count = count;
    }

    /// Splits off the items from byte `mark` on (`count` items before
    /// it) into their own `Items`.
    pub(crate) fn split_off(&mut self, mark: usize, count: usize) -> Items {
        let tail = Items {
            bytes: self.bytes.split_off(mark),
            count: self.count - count,
        };
        self.count = count;
        tail
    }

    /// Gives back room beyond `bytes` (or beyond what the items take).
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        self.bytes.shrink_to(bytes);
    }

    /// The items, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        ItemsIter { rest: &self.bytes }
    }

    /// The item count of a buffer of items, if it is one.
    fn count_of(bytes: &[u8]) -> Option<usize> {
        let mut rest = bytes;
        let mut count = 0;
        while !rest.is_empty() {
            let (_, after) = split_item(rest)?;
            rest = after;
            count += 1;
        }
        Some(count)
    }
}

/// Appends `value`'s postcard encoding to `out` (on an error, `out` may
/// hold part of it).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    postcard::serialize_with_flavor(value, Append(out))
}

/// postcard's output straight into a `Vec`, which the caller keeps
/// (`to_extend` takes it and drops it on an error; `to_io` writes byte by
/// byte through `io::Write`).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // postcard hands over a varint (1 to 10 bytes) per integer: a call
        // of `memcpy` for each cost more than the rest of the encoding.
        if data.len() <= 16 {
            for &byte in data {
                self.0.push(byte);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The first item of `bytes` and what follows it.
fn split_item(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let prefix: [u8; PREFIX] = bytes.get(..PREFIX)?.try_into().ok()?;
    let len = u32::from_le_bytes(prefix) as usize;
    let item = bytes.get(PREFIX..PREFIX.checked_add(len)?)?;
    Some((item, &bytes[PREFIX + len..]))
}

struct ItemsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ItemsIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // `Items` are only built by `push_with` or checked on arrival
        // (`count_of`): every prefix is whole.
        let (item, rest) = split_item(self.rest)?;
        self.rest = rest;
        Some(item)
    }
}

/// On the wire, the buffer as one byte string (one copy each way).
impl Serialize for Items {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Items, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a buffer of length-prefixed items")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        let bytes = deserializer.deserialize_byte_buf(BytesVisitor)?;
        Items::from_bytes(bytes)
            .ok_or_else(|| de::Error::custom("a torn item in a buffer of items"))
    }
}

/// A chunk of tasks for one worker: items get the task ids
/// `first_tid .. first_tid + args.len()`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) first_tid: u64,
    pub(crate) call: Call,
    pub(crate) args: Items,
}

/// What became of one task in a worker, as an item of
/// [`Event::Results`]: a tag byte, then the result's encoding (`OK`) or the
/// message (`PANICKED`, `FAILED`) or two little-endian `u64` sizes
/// (`TOO_LARGE`).
pub(crate) mod outcome {
    use super::*;

    /// The function returned; its encoded result follows.
    pub(crate) const OK: u8 = 0;
    /// The function panicked; the message follows.
    pub(crate) const PANICKED: u8 = 1;
    /// The argument did not decode or the result did not encode.
    pub(crate) const FAILED: u8 = 2;
    /// The encoded result (size, max) is larger than a message may be.
    pub(crate) const TOO_LARGE: u8 = 3;

    /// Appends a failure outcome (`PANICKED` or `FAILED`) with `message`.
    pub(crate) fn push_message(items: &mut Items, tag: u8, message: &str) {
        let _ = items.push_with(|bytes| {
            bytes.push(tag);
            bytes.extend_from_slice(message.as_bytes());
            Ok::<(), ()>(())
        });
    }

    /// Appends a `TOO_LARGE` outcome.
    pub(crate) fn push_too_large(items: &mut Items, size: usize, max: usize) {
        let _ = items.push_with(|bytes| {
            bytes.push(TOO_LARGE);
            bytes.extend_from_slice(&(size as u64).to_le_bytes());
            bytes.extend_from_slice(&(max as u64).to_le_bytes());
            Ok::<(), ()>(())
        });
    }

    /// An outcome item as the task's result: the result's encoding, or
    /// the error.
    pub(crate) fn read(item: &[u8]) -> Result<&[u8], TaskError> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match item.split_first() {
            Some((&OK, result)) => Ok(result),
            Some((&PANICKED, message)) => Err(TaskError::Panicked(text(message))),
            Some((&FAILED, message)) => Err(TaskError::Serde(text(message))),
            Some((&TOO_LARGE, sizes)) if sizes.len() == 16 => {
                let word = |i: usize| {
                    let mut b = [0; 8];
                    b.copy_from_slice(&sizes[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(b) as usize
                };
                Err(TaskError::TooLarge {
                    size: word(0),
                    max: word(1),
                })
            }
            _ => Err(TaskError::Serde("an outcome the pool cannot read".into())),
        }
    }
}

/// What the manager reads from its inbox.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Event {
    /// Outcomes (see [`outcome`]) of the items `offset ..` of the chunk
    /// `first_tid`, sent by the worker of `slot`.
    Results {
        slot: u32,
        first_tid: u64,
        offset: u32,
        outcomes: Items,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Items survive the wire (postcard), in order, empty ones included.
    #[test]
    fn items_round_trip() {
        let mut items = Items::default();
        for v in [0u64, 1, 300, u64::MAX] {
            items.push_encoded(&v).expect("encode");
        }
        items.push(&[]);
        let wire = postcard::to_allocvec(&items).expect("encode");
        let back: Items = postcard::from_bytes(&wire).expect("decode");
        assert_eq!(back, items);
        assert_eq!(back.len(), 5);
        let decoded: Vec<u64> = back
            .iter()
            .take(4)
            .map(|b| postcard::from_bytes(b).expect("item"))
            .collect();
        assert_eq!(decoded, [0, 1, 300, u64::MAX]);
        assert_eq!(back.iter().nth(4), Some(&[][..]));
    }

    /// A buffer whose last prefix promises more than is there is refused,
    /// not read past.
    #[test]
    fn a_torn_buffer_is_refused() {
        let mut items = Items::default();
        items.push(&[1, 2, 3]);
        let mut wire = postcard::to_allocvec(&items).expect("encode");
        // Drop the last byte and fix the byte string's own length (one
        // byte of varint, 7 bytes long before).
        wire.pop();
        wire[0] -= 1;
        assert!(postcard::from_bytes::<Items>(&wire).is_err());
    }

    /// Every outcome reads back as what was written.
    #[test]
    fn outcomes_read_back() {
        let mut items = Items::default();
        items
            .push_with(|b| {
                b.push(outcome::OK);
                encode_into(&7u32, b)
            })
            .expect("ok");
        outcome::push_message(&mut items, outcome::PANICKED, "boom");
        outcome::push_message(&mut items, outcome::FAILED, "bad");
        outcome::push_too_large(&mut items, 70_000, 65_462);
        let read: Vec<_> = items.iter().map(outcome::read).collect();
        assert_eq!(read[0], Ok(&[7u8][..]));
        assert_eq!(read[1], Err(TaskError::Panicked("boom".into())));
        assert_eq!(read[2], Err(TaskError::Serde("bad".into())));
        assert_eq!(
            read[3],
            Err(TaskError::TooLarge {
                size: 70_000,
                max: 65_462
            })
        );
    }
}
