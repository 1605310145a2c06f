#!/usr/bin/env bash
# Runs every benchmark (criterion groups W1-W6, W2N, W9-W9N and W10, the W7/W8/W11 outcome
# binary, the Python peer, the W12 fleet runs: W12_MINUTES, default 10, on PostgreSQL and
# on SQLite) and rebuilds docs/benchmarks.md and its chart
# from that one run. Takes about seven minutes on two cores, and twice W12_MINUTES more.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/procsync-bench
mkdir -p "$out"
cargo bench -p benches
cargo run --release -q -p benches --bin outcomes > "$out/outcomes.jsonl"
python3 benches/python/peer.py > "$out/python.jsonl"
# W12: the fleet heartbeat, W12_MINUTES (default 10) on each store;
# W12_MINUTES=0 keeps the W12 figures of an earlier run (fleet.jsonl).
if [ "${W12_MINUTES:-10}" != 0 ]; then
  cargo build --release -q -p demos
  cargo run --release -q -p benches --bin fleet > "$out/fleet.jsonl"
fi
cargo run --release -q -p benches --bin report
