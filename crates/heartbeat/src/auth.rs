//! Signed beats: a [`Key`] read from a file only its owner may read, and
//! the HMAC-SHA256 of a beat's fields that a keyed reporter sends and a
//! keyed monitor checks (see [`Reporter::key`](crate::Reporter::key) and
//! [`Monitor::key`](crate::Monitor::key)).
//!
//! The MAC is computed over a fixed binary encoding of the beat (see
//! [`Key::sign`]), not over its JSON text: JSON has many texts for one
//! beat (spacing, field order, escapes), so a MAC over the text would tie
//! the check to one serializer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::Beat;
use crate::{sys, HeartbeatError};

/// The shortest key a key file may hold, in bytes.
pub const MIN_KEY_BYTES: usize = 16;
/// The longest key file read, in bytes: a longer one is refused (no key
/// needs more; [`Key::generate_file`] writes 65).
pub const MAX_KEY_FILE_BYTES: u64 = 4096;
/// What every MAC begins with: a beat's MAC is never valid for another
/// kind of message signed with the same key.
const DOMAIN: &[u8] = b"procsync-beat-v1";

/// A key that signs and checks beats (HMAC-SHA256).
///
/// Read from a file only ([`Key::from_file`], [`Key::generate_file`]):
/// there is no way to give one on a command line, where every user of the
/// machine could read it (`ps`, `/proc/PID/cmdline`). It never prints its
/// bytes: `Debug` shows `Key(..)`.
#[derive(Clone)]
pub struct Key {
    /// The HMAC state keyed once, cloned for each beat.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a key file was refused (see [`Key::from_file`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// It could not be opened, read or written.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// It is no regular file (a directory, a FIFO, a device, ...).
    #[error("not a regular file")]
    NotRegular,
    /// Its group or others may read or write it.
    #[error("readable or writable by group or others (mode {mode:04o}): chmod 600 {path}")]
    Exposed {
        /// Its permission bits.
        mode: u32,
        /// The file, to put in the advice.
        path: String,
    },
    /// Another user owns it.
    #[error("owned by uid {owner}, not by this process's effective uid {euid}")]
    NotOwned {
        /// Its owner.
        owner: u32,
        /// This process's effective user.
        euid: u32,
    },
    /// It holds fewer than [`MIN_KEY_BYTES`] bytes (a trailing newline not
    /// counted).
    #[error("holds {len} bytes of key, fewer than the {MIN_KEY_BYTES} a key needs")]
    TooShort {
        /// The key's length.
        len: usize,
    },
    /// It is longer than [`MAX_KEY_FILE_BYTES`].
    #[error("holds more than {MAX_KEY_FILE_BYTES} bytes: no key file")]
    TooLong,
    /// [`Key::generate_file`] found a file (or anything else) at the path:
    /// it never overwrites one.
    #[error("already exists: a new key is never written over it")]
    Exists,
}

impl Key {
    /// The key in the file at `path`: its bytes, one trailing newline
    /// (`\n` or `\r\n`) left out, are the key.
    ///
    /// Refused with [`HeartbeatError::KeyFile`] when the file (a symbolic
    /// link is followed: the file it names is judged) is no regular file
    /// ([`KeyProblem::NotRegular`]), is readable or writable by its group
    /// or others (mode & 0o077 != 0: [`KeyProblem::Exposed`], which says
    /// `chmod 600 PATH`), is not owned by this process's effective user
    /// ([`KeyProblem::NotOwned`]), holds fewer than [`MIN_KEY_BYTES`]
    /// bytes of key ([`KeyProblem::TooShort`]) or more than
    /// [`MAX_KEY_FILE_BYTES`] ([`KeyProblem::TooLong`]), or cannot be read
    /// ([`KeyProblem::Io`]). A FIFO is refused without waiting for a
    /// writer.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Key, HeartbeatError> {
        let path = path.as_ref();
        let refuse = |problem| key_file_error(path, problem);
        // Non-blocking: the open of a FIFO must not wait for a writer.
        let mut file =
            sys::open_for_reading_without_waiting(path).map_err(|e| refuse(KeyProblem::Io(e)))?;
        // Judged on the file opened, not on the path again: no other file
        // can be put there between the check and the read.
        let meta = file.metadata().map_err(|e| refuse(KeyProblem::Io(e)))?;
        if !meta.file_type().is_file() {
            return Err(refuse(KeyProblem::NotRegular));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(refuse(KeyProblem::Exposed {
                mode,
                path: path.display().to_string(),
            }));
        }
        let euid = sys::effective_uid();
        if meta.uid() != euid {
            return Err(refuse(KeyProblem::NotOwned {
                owner: meta.uid(),
                euid,
            }));
        }
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| refuse(KeyProblem::Io(e)))?;
        if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(refuse(KeyProblem::TooLong));
        }
        let key = trim_newline(&bytes);
        if key.len() < MIN_KEY_BYTES {
            return Err(refuse(KeyProblem::TooShort { len: key.len() }));
        }
        Ok(Key::from_bytes(key))
    }

    /// Makes a new key file at `path` and returns its key: 32 random bytes
    /// (`getrandom(2)`) written as 64 lowercase hexadecimal characters and
    /// a newline (the 64 characters are the key), in a file of mode 0600
    /// created for it (`O_EXCL`).
    ///
    /// Never overwrites: anything at `path` (a file, a symbolic link, even
    /// one to nowhere) makes it fail with [`KeyProblem::Exists`]. A file it
    /// made but could not write whole is removed.
    pub fn generate_file(path: impl AsRef<Path>) -> Result<Key, HeartbeatError> {
        let path = path.as_ref();
        let refuse = |problem| key_file_error(path, problem);
        let mut random = [0u8; 32];
        sys::fill_random(&mut random).map_err(|e| refuse(KeyProblem::Io(e)))?;
        let mut text = hex(&random);
        text.push('\n');
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => refuse(KeyProblem::Exists),
                _ => refuse(KeyProblem::Io(e)),
            })?;
        // Exactly 0600 whatever the umask (which may only have taken bits
        // away), before a byte of key is in it.
        let written = file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(refuse(KeyProblem::Io(e)));
        }
        Ok(Key::from_bytes(trim_newline(text.as_bytes())))
    }

    fn from_bytes(bytes: &[u8]) -> Key {
        Key {
            // HMAC takes keys of any length (longer ones are hashed).
            mac: <Hmac<Sha256> as Mac>::new_from_slice(bytes)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        }
    }

    /// Signs `beat`: sets its [`mac`](Beat::mac) to the HMAC-SHA256, in 64
    /// lowercase hexadecimal characters, of this encoding of every other
    /// field (integers little-endian):
    ///
    /// `"procsync-beat-v1"`, `len(id)` (u32), `id`, `len(host)` (u32),
    /// `host`, `pid` (u32), `seq`, `progress`, `sent_at_ms`,
    /// `interval_ms`, `instance` (u64 each).
    pub fn sign(&self, beat: &mut Beat) {
        beat.mac = Some(hex(&self.keyed(beat).finalize().into_bytes()));
    }

    /// Whether `beat` carries the MAC of its fields under this key (see
    /// [`sign`](Key::sign)); compared in constant time. An unsigned beat,
    /// or one whose MAC is not 64 lowercase hexadecimal characters, does
    /// not.
    pub fn verify(&self, beat: &Beat) -> bool {
        let Some(mac) = beat.mac.as_deref().and_then(unhex) else {
            return false;
        };
        self.keyed(beat).verify_slice(&mac).is_ok()
    }

    /// The HMAC state having taken in `beat`'s encoding.
    fn keyed(&self, beat: &Beat) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&encode(beat));
        mac
    }
}

/// The bytes a beat's MAC is computed over (see [`Key::sign`]).
pub(crate) fn encode(beat: &Beat) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 8 + beat.id.len() + beat.host.len() + 44);
    out.extend_from_slice(DOMAIN);
    for text in [&beat.id, &beat.host] {
        // A beat's strings fit a datagram: far below 4 GiB.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&beat.pid.get().to_le_bytes());
    for n in [
        beat.seq,
        beat.progress,
        beat.sent_at_ms,
        beat.interval_ms,
        beat.instance,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

fn key_file_error(path: &Path, problem: KeyProblem) -> HeartbeatError {
    HeartbeatError::KeyFile {
        path: PathBuf::from(path),
        problem,
    }
}

/// `bytes` without one trailing `\n` or `\r\n`.
fn trim_newline(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The 32 bytes of 64 lowercase hexadecimal characters; `None` for
/// anything else.
fn unhex(text: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Beat {
        Beat {
            id: "worker-1".into(),
            host: "h".into(),
            pid: shm::pid::Pid::from_u32(4242).unwrap(),
            seq: 7,
            progress: 1_000,
            sent_at_ms: 1_700_000_000_000,
            interval_ms: 1_000,
            instance: 0x0123_4567_89ab_cdef,
            mac: None,
        }
    }

    #[test]
    fn the_encoding_is_fixed() {
        let mut expected = b"procsync-beat-v1".to_vec();
        expected.extend_from_slice(&[8, 0, 0, 0]);
        expected.extend_from_slice(b"worker-1");
        expected.extend_from_slice(&[1, 0, 0, 0]);
        expected.extend_from_slice(b"h");
        expected.extend_from_slice(&4242u32.to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&1_000u64.to_le_bytes());
        expected.extend_from_slice(&1_700_000_000_000u64.to_le_bytes());
        expected.extend_from_slice(&1_000u64.to_le_bytes());
        expected.extend_from_slice(&[0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
        assert_eq!(encode(&sample()), expected);
        // The mac itself is not encoded.
        let mut signed = sample();
        signed.mac = Some("x".into());
        assert_eq!(encode(&signed), expected);
    }

    #[test]
    fn length_prefixes_tell_id_from_host() {
        let mut a = sample();
        a.id = "ab".into();
        a.host = "c".into();
        let mut b = sample();
        b.id = "a".into();
        b.host = "bc".into();
        assert_ne!(encode(&a), encode(&b));
    }

    /// The MAC of the sample beat under the key `0123456789abcdef`,
    /// computed once (by this code, and checked with `openssl dgst -sha256
    /// -mac HMAC` over the encoding) and pinned: a change of the encoding
    /// or of the MAC breaks every deployed reporter.
    #[test]
    fn a_known_vector() {
        let key = Key::from_bytes(b"0123456789abcdef");
        let mut beat = sample();
        key.sign(&mut beat);
        assert_eq!(beat.mac.as_deref(), Some(PINNED));
        assert!(key.verify(&beat));
    }

    const PINNED: &str = "fb789befb30b7251b5eb3ce789cef3451da38d3ffb082edafd027fb0948d8181";

    #[test]
    fn a_changed_field_or_mac_fails() {
        let key = Key::from_bytes(b"0123456789abcdef");
        let mut beat = sample();
        key.sign(&mut beat);
        let mut tampered = beat.clone();
        tampered.progress += 1;
        assert!(!key.verify(&tampered));
        let other = Key::from_bytes(b"fedcba9876543210");
        assert!(!other.verify(&beat));
        let upper = beat.mac.as_deref().unwrap().to_uppercase();
        assert!(!key.verify(&Beat {
            mac: Some(upper),
            ..beat.clone()
        }));
        assert!(!key.verify(&Beat { mac: None, ..beat }));
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..32).map(|n| n * 8 + 1).collect();
        assert_eq!(unhex(&hex(&bytes)).unwrap().to_vec(), bytes);
        assert_eq!(unhex("0g"), None);
    }

    #[test]
    fn the_debug_form_hides_the_key() {
        assert_eq!(
            format!("{:?}", Key::from_bytes(b"secret-secret-secret")),
            "Key(..)"
        );
    }

    #[test]
    fn one_trailing_newline_is_trimmed() {
        assert_eq!(trim_newline(b"abc\n"), b"abc");
        assert_eq!(trim_newline(b"abc\r\n"), b"abc");
        assert_eq!(trim_newline(b"abc\n\n"), b"abc\n");
        assert_eq!(trim_newline(b"abc"), b"abc");
    }
}
