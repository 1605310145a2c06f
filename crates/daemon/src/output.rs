//! What a child's closure may return: a value serde can send
//! ([`Returnable`], for [`Process::new`](crate::Process::new)), or a
//! `Result` whose error comes back as a message and its causes
//! ([`ChildError`], for [`Process::try_new`](crate::Process::try_new)).

use std::error::Error;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::Serialize;

use crate::wire::{encode_failed, encode_result, Encoded, FAILED_EXIT_CODE};

/// What the closure of a [`Process`](crate::Process) may return: any
/// `serde::Serialize` type (sent back to the parent, whose
/// [`join`](crate::Child::join) deserializes it), or the [`Fallible`]
/// result of a [`Process::try_new`](crate::Process::try_new) closure.
///
/// Implemented by this crate alone.
#[diagnostic::on_unimplemented(
    message = "a child process's closure must return a value serde can send; `{Self}` is not `serde::Serialize`",
    label = "the closure returns `{Self}`",
    note = "to use `?` in the child, use `Process::try_new` instead of `Process::new`: its closure returns `Result<T, E>` with any `std::error::Error`, `Box<dyn Error>` or `String` as `E`, and `join` gives an `Err` as `JoinError::Failed`",
    note = "to return your own type, derive serde's traits for it: see `daemon::serde`"
)]
pub trait Returnable: sealed::Encode {
    /// What [`join`](crate::Child::join) gives back.
    type Value;
}

/// Encodes a child's result (see `wire`), and gives its exit code.
pub(crate) fn encode<T: Returnable>(value: T, small: &mut [u8]) -> (Encoded, i32) {
    sealed::Encode::encode(value, small)
}

impl<T: Serialize> sealed::Encode for T {
    fn encode(self, small: &mut [u8]) -> (Encoded, i32) {
        encode_result(self, small)
    }
}

// Not recommended: a type that is not `Serialize` is then refused with
// `Returnable`'s own message, not with the first piece of it that serde
// cannot send (`dyn Error: Serialize`), which says nothing of `try_new`.
#[diagnostic::do_not_recommend]
impl<T: Serialize> Returnable for T {
    type Value = T;
}

/// The result of a [`Process::try_new`](crate::Process::try_new) closure,
/// as the child sends it: the `Ok` value, or the error's message and causes
/// ([`ChildError`]). `M` only tells apart how the error is read.
#[derive(Debug)]
pub struct Fallible<T, E, M> {
    result: Result<T, E>,
    how: PhantomData<fn() -> M>,
}

impl<T, E, M> Fallible<T, E, M> {
    pub(crate) fn new(result: Result<T, E>) -> Fallible<T, E, M> {
        Fallible {
            result,
            how: PhantomData,
        }
    }
}

impl<T: Serialize, E: ChildError<M>, M> sealed::Encode for Fallible<T, E, M> {
    fn encode(self, small: &mut [u8]) -> (Encoded, i32) {
        match self.result {
            Ok(value) => encode_result(value, small),
            Err(error) => {
                let (message, causes) = error.describe();
                // Like a value sent back, the error is not dropped here.
                std::mem::forget(error);
                (
                    Encoded::Heap(encode_failed(&message, &causes)),
                    FAILED_EXIT_CODE,
                )
            }
        }
    }
}

impl<T: Serialize, E: ChildError<M>, M> Returnable for Fallible<T, E, M> {
    type Value = T;
}

/// An error a [`Process::try_new`](crate::Process::try_new) closure may
/// return: the parent's [`join`](crate::Child::join) gets its `Display`
/// and, for an error, the `Display` of each of its
/// [`source`](Error::source)s, as [`JoinError::Failed`](crate::JoinError::Failed).
///
/// Implemented (by this crate alone) for
///
/// - every `E: std::error::Error` (`io::Error`, `ParseIntError`, your own
///   error types, `thiserror`'s), causes from `source()`;
/// - every type that derefs to `dyn Error`, `dyn Error + Send` or
///   `dyn Error + Send + Sync`: `Box<dyn Error>` and its `Send` /
///   `Send + Sync` forms, `anyhow::Error`, `eyre::Report`; causes from
///   `source()`;
/// - `String` and `&str`, a message without causes.
///
/// `M` tells these apart; it is inferred, never written. A type that is
/// only `Display` (none of the above) is not accepted as it is: Rust
/// cannot take "`Display`, and its causes if it is an `Error`" as one
/// bound. Return its message instead: `.map_err(|e| e.to_string())?`.
/// (An `Arc<dyn Error>` is both an error and derefs to one, so neither
/// way is chosen: `.map_err(|e| e.to_string())` there too.)
///
/// # Example
///
/// ```
/// use daemon::{JoinError, Process};
///
/// /// Only `Display`: not a `ChildError` itself.
/// #[derive(Debug)]
/// struct NoSeats;
/// impl std::fmt::Display for NoSeats {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("no seats left")
///     }
/// }
///
/// let child = Process::try_new(|| -> Result<u32, String> {
///     let seat = Err(NoSeats).map_err(|e| e.to_string())?;
///     Ok(seat)
/// })
/// .start()?;
/// match child.join() {
///     Err(JoinError::Failed { message, causes, .. }) => {
///         assert_eq!(message, "no seats left");
///         assert!(causes.is_empty());
///     }
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a child process's error",
    label = "`{Self}` is not an error `Process::try_new` can send",
    note = "the error of a `Process::try_new` closure must be a `std::error::Error`, a `Box<dyn Error>` (or `+ Send`, `+ Send + Sync`, or what derefs to one, like `anyhow::Error`), a `String` or a `&str`",
    note = "send another error's message: `.map_err(|e| e.to_string())`"
)]
pub trait ChildError<M>: sealed::Describe<M> {}

impl<E: Error> sealed::Describe<sealed::AnError> for E {
    fn describe(&self) -> (String, Vec<String>) {
        (self.to_string(), causes(self.source()))
    }
}
impl<E: Error> ChildError<sealed::AnError> for E {}

/// The `Display` of `first` and of each source after it.
fn causes(mut next: Option<&(dyn Error + 'static)>) -> Vec<String> {
    let mut causes = Vec::new();
    while let Some(cause) = next {
        if causes.len() == MAX_CAUSES {
            // A chain this long goes round (an error that is its own
            // source, or a cycle): it would never end.
            causes.push(format!("… (cut after {MAX_CAUSES} causes)"));
            break;
        }
        causes.push(cause.to_string());
        next = cause.source();
    }
    causes
}

/// The most causes of a child's error sent back (see [`causes`]).
const MAX_CAUSES: usize = 64;

/// The three `dyn Error` forms: each type derefs to one at most.
macro_rules! deref_to_dyn_error {
    ($marker:ident, $target:ty) => {
        impl<E: Deref<Target = $target>> sealed::Describe<sealed::$marker> for E {
            fn describe(&self) -> (String, Vec<String>) {
                let error: &$target = &**self;
                (error.to_string(), causes(error.source()))
            }
        }
        impl<E: Deref<Target = $target>> ChildError<sealed::$marker> for E {}
    };
}
deref_to_dyn_error!(DynError, dyn Error);
deref_to_dyn_error!(DynErrorSend, dyn Error + Send);
deref_to_dyn_error!(DynErrorSendSync, dyn Error + Send + Sync);

impl sealed::Describe<sealed::AMessage> for String {
    fn describe(&self) -> (String, Vec<String>) {
        (self.clone(), Vec::new())
    }
}
impl ChildError<sealed::AMessage> for String {}

impl sealed::Describe<sealed::AMessage> for &str {
    fn describe(&self) -> (String, Vec<String>) {
        (self.to_string(), Vec::new())
    }
}
impl ChildError<sealed::AMessage> for &str {}

/// What only this crate implements, and the markers that tell
/// [`ChildError`]'s implementations apart.
mod sealed {
    use crate::wire::Encoded;

    /// How a child sends its closure's result.
    pub trait Encode {
        /// Encodes the result (inline in `small` when it fits) and gives
        /// the child's exit code.
        fn encode(self, small: &mut [u8]) -> (Encoded, i32);
    }

    /// How an error becomes its message and causes.
    pub trait Describe<M> {
        /// The error's `Display`, and its sources'.
        fn describe(&self) -> (String, Vec<String>);
    }

    /// A `std::error::Error`.
    #[derive(Debug)]
    pub enum AnError {}
    /// Derefs to `dyn Error`.
    #[derive(Debug)]
    pub enum DynError {}
    /// Derefs to `dyn Error + Send`.
    #[derive(Debug)]
    pub enum DynErrorSend {}
    /// Derefs to `dyn Error + Send + Sync`.
    #[derive(Debug)]
    pub enum DynErrorSendSync {}
    /// A message.
    #[derive(Debug)]
    pub enum AMessage {}
}
