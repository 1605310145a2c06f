//! Shared helpers for the procsync benches (pinning, cross-process harnesses).
