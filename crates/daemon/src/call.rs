//! How the fork server learns which function to run: two code addresses,
//! sent as numbers (the `pool` crate's idea, in this crate's own small
//! version). With `sys`, the only module with `unsafe` code.
//!
//! A [`Call`] is made from a plain `fn(A) -> R` and carries two addresses:
//! the function's and a *runner*'s, a copy of [`run`] monomorphized for `A`
//! and `R`, whose own signature names no user type. The served child turns
//! the runner's address back into that pointer type and calls it; the
//! runner turns the function's address back into `fn(A) -> R`, the very
//! type it was made from, decodes the argument, calls the function and
//! encodes the result.
//!
//! Why the addresses are valid in the served child: the fork server is a
//! `fork(2)` of the process that started it (never an `exec`), and each
//! child it serves is a fork of the server, so their address spaces are
//! copies of the starter's: the executable and every library are mapped at
//! the same addresses (ASLR is decided at `exec`, not at `fork`). A
//! [`ForkServer`](crate::ForkServer) takes requests only from the process
//! that started it (it refuses `spawn` anywhere else), over an anonymous
//! socket pair that only that process and its forks hold; a process able
//! to write there could already write anywhere in the starter (same user,
//! ptrace rights).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{encode_result, Encoded};

/// A runner: decodes the argument, calls the function at the address and
/// encodes its result (into `small` when it fits), giving the exit code
/// too; panics (an argument that does not decode, the function's own)
/// unwind out of it.
type Runner = fn(usize, &[u8], &mut [u8]) -> (Encoded, i32);

/// A function to run in a served child: its address and its runner's,
/// made together by [`Call::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    /// The runner's address.
    pub(crate) runner: usize,
    /// The function's address.
    pub(crate) func: usize,
}

impl Call {
    /// A call of `f` on one decoded argument.
    pub(crate) fn new<A, R>(f: fn(A) -> R) -> Call
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        let runner: Runner = run::<A, R>;
        Call {
            runner: runner as usize,
            func: f as usize,
        }
    }

    /// Runs the call on `arg` (encoded) in this process, a fork of a fork
    /// of the process that made the `Call`: the encoded outcome and the
    /// exit code. Panics unwind out of here (the served child catches
    /// them).
    ///
    /// Only for a `Call` made by [`Call::new`] and carried unchanged from
    /// the process that made it, through the fork server's request socket.
    pub(crate) fn run(self, arg: &[u8], small: &mut [u8]) -> (Encoded, i32) {
        // SAFETY: `self.runner` was made by `Call::new` from a function
        // item coerced to `Runner` (`run::<A, R>`) in the process that
        // started the fork server; this process is a fork of the server,
        // itself a fork of that process, so the address names the same code
        // here (see the module's documentation), and `usize` and a fn
        // pointer have the same size and representation on every Linux
        // target. The `Call` came unchanged over the server's request
        // socket, which only the starter writes to (`ForkServer::spawn`
        // refuses any other process).
        let runner = unsafe { std::mem::transmute::<usize, Runner>(self.runner) };
        runner(self.func, arg, small)
    }
}

/// [`Runner`] for `fn(A) -> R`.
fn run<A: DeserializeOwned, R: Serialize>(
    func: usize,
    arg: &[u8],
    small: &mut [u8],
) -> (Encoded, i32) {
    // SAFETY: this monomorphization of `run` is only ever paired (in
    // `Call::new`) with the address of an `f: fn(A) -> R` of exactly these
    // `A` and `R`, and runs in a fork of a fork of the process that took
    // the address (see `Call::run`), where it names the same function.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let a = match postcard::from_bytes::<A>(arg) {
        Ok(a) => a,
        Err(e) => panic!(
            "the argument did not decode as `{}`: {e}",
            std::any::type_name::<A>()
        ),
    };
    encode_result(f(a), small)
}
