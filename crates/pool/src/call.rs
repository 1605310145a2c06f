//! How a worker learns which function to run: two code addresses, sent as
//! numbers. The only module with `unsafe` code.
//!
//! A [`Call`] is made in the pool's owner from a plain `fn` pointer and
//! carries two addresses: the user's function and a *runner*, a copy of
//! [`run_one`] (or [`run_two`]) monomorphized for the function's argument and
//! result types, whose own signature names no user type
//! (`fn(usize, &[u8], &mut Vec<u8>) -> Result<(), String>`). The worker turns the runner's address
//! back into that pointer type and calls it; the runner turns the
//! function's address back into `fn(A) -> R`, the very type it was made
//! from, decodes the argument and appends the encoded result to the
//! worker's buffer of outcomes.
//!
//! Why the addresses are valid in the worker: every worker is a `fork(2)` of
//! the owner (never an `exec`), so its address space is a copy of the
//! owner's: the executable and every library are mapped at the same
//! addresses (ASLR is decided at `exec`, not at `fork`). A code address of
//! the owner is the same code in the worker. A `Call` reaches a worker only
//! through the pool's anonymous task queues, which only the owner and its
//! forks map; a process able to write there could already write anywhere in
//! the owner (same user, ptrace rights).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::wire::{encode_into, serde_failure};

/// A runner: decodes the argument, calls the function at the address,
/// appends the encoded result to the buffer; or says why it could not
/// (the argument did not decode, or the result did not encode).
type Runner = fn(usize, &[u8], &mut Vec<u8>) -> Result<(), String>;

/// A function to run in a worker: its address and its runner's, both made
/// together by [`Call::one`] or [`Call::two`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Call {
    runner: usize,
    func: usize,
}

impl Call {
    /// A call of `f` on one decoded argument.
    pub(crate) fn one<A, R>(f: fn(A) -> R) -> Call
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        let runner: Runner = run_one::<A, R>;
        Call {
            runner: runner as usize,
            func: f as usize,
        }
    }

    /// A call of `f` on the two halves of a decoded pair (`starmap`).
    pub(crate) fn two<A, B, R>(f: fn(A, B) -> R) -> Call
    where
        A: DeserializeOwned,
        B: DeserializeOwned,
        R: Serialize,
    {
        let runner: Runner = run_two::<A, B, R>;
        Call {
            runner: runner as usize,
            func: f as usize,
        }
    }

    /// Runs the call on `arg` (encoded) in this process, a fork of the
    /// process that made the `Call`, appending the encoded result to
    /// `result` (which may hold a partial encoding after an `Err`). Panics
    /// of the function unwind out of here (the worker catches them).
    pub(crate) fn run(self, arg: &[u8], result: &mut Vec<u8>) -> Result<(), String> {
        // SAFETY: `self.runner` was made by `Call::one` or `Call::two` from
        // a function item coerced to `Runner` (`run_one::<A, R>` or
        // `run_two::<A, B, R>`), in the pool's owner; this process is a
        // fork of that owner (workers are only ever started by
        // `daemon::Process::start`, a fork without exec), so the address
        // names the same code here (see the module's documentation), and
        // `usize` and a fn pointer have the same size and representation on
        // every Linux target. The `Call` came unchanged through the pool's
        // anonymous queue (postcard round trip of two integers).
        let runner = unsafe { std::mem::transmute::<usize, Runner>(self.runner) };
        runner(self.func, arg, result)
    }
}

/// [`Runner`] for `fn(A) -> R`.
fn run_one<A: DeserializeOwned, R: Serialize>(
    func: usize,
    arg: &[u8],
    result: &mut Vec<u8>,
) -> Result<(), String> {
    // SAFETY: this monomorphization of `run_one` is only ever paired (in
    // `Call::one`) with the address of an `f: fn(A) -> R` of exactly these
    // `A` and `R`, and runs in a fork of the process that took the address
    // (see `Call::run`), where it names the same function.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let a = postcard::from_bytes::<A>(arg)
        .map_err(|e| serde_failure("the argument did not decode", &e))?;
    encode(&f(a), result)
}

/// [`Runner`] for `fn(A, B) -> R` on an encoded `(A, B)`.
fn run_two<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    func: usize,
    arg: &[u8],
    result: &mut Vec<u8>,
) -> Result<(), String> {
    // SAFETY: as in `run_one`: paired only (in `Call::two`) with the
    // address of an `f: fn(A, B) -> R` of these very types, and run in a
    // fork of the process that took it.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(func) };
    let (a, b) = postcard::from_bytes::<(A, B)>(arg)
        .map_err(|e| serde_failure("the arguments did not decode", &e))?;
    encode(&f(a, b), result)
}

/// Appends `value`'s encoding to `result`.
fn encode<R: Serialize>(value: &R, result: &mut Vec<u8>) -> Result<(), String> {
    encode_into(value, result).map_err(|e| serde_failure("the result did not encode", &e))
}
