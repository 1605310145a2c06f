//! # conformance: CPython's own tests, run against procsync
//!
//! A test-only crate (this library is empty). Its suites port, case by
//! case, the tests CPython 3.11 runs on its own primitives:
//!
//! | suite (`tests/…`) | CPython sources |
//! |---|---|
//! | `lock.rs` | `lock_tests.BaseLockTests`, `LockTests`; `_test_multiprocessing._TestLock` |
//! | `rlock.rs` | `lock_tests.BaseLockTests`, `RLockTests`; `_TestLock::test_rlock` |
//! | `condition.rs` | `lock_tests.ConditionTests`; `_test_multiprocessing._TestCondition` |
//! | `semaphore.rs` | `lock_tests.BaseSemaphoreTests`, `SemaphoreTests`, `BoundedSemaphoreTests`; `_TestSemaphore` |
//! | `event.rs` | `lock_tests.EventTests`; `_TestEvent` |
//! | `barrier.rs` | `lock_tests.BarrierTests`; `_TestBarrier` |
//! | `process.rs` | `_test_multiprocessing._TestProcess` |
//!
//! Each Rust test keeps the Python test's name (`lock_tests_<class>_<case>`
//! for `lock_tests.py`, `mp_<class>_<case>` for `_test_multiprocessing.py`)
//! and a comment citing `Class::method`. Where Python uses threads, the port
//! uses processes (`daemon::Process`) sharing the primitive through
//! anonymous `shm::Shared` memory; a few cases meet an unrelated process
//! (the test binary re-executed as a helper) through a named segment.
//!
//! Every file starts with a table of the Python cases that do not apply
//! (Python-only API such as `repr`, weak references or private hooks,
//! thread-specific behaviour) and why, so nothing is left out silently.
//! Where procsync deliberately differs from Python (errors instead of
//! exceptions, `Duration` timeouts, `OwnerDied` reports, guards instead of
//! `release()`), the test asserts procsync's behaviour and says so.
//!
//! Tests that fail because of a known defect are `#[ignore]`d with the
//! defect's number; run them with `cargo test -p conformance -- --ignored`.
//!
//! This suite found two hangs of forking from a multi-threaded test binary
//! (a stdout lock held by another thread at the fork; a fork during another
//! thread's first pid lookup); both are fixed, and their reproducers are
//! the last tests of `process.rs`.
//!
//! No test sleeps to synchronise: processes signal progress through futex
//! words (`testkit::raise` / `testkit::wait_for`), and where Python waits
//! "until the threads are blocked" the port waits until the kernel reports
//! the process asleep (`/proc/<pid>/stat`). Every wait has a timeout that
//! fails the test instead of hanging it. Python's timeouts of 0.5 s are
//! scaled down to 0.1 s to keep the suite fast.
