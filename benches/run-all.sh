#!/usr/bin/env bash
# Runs every benchmark (criterion groups W1-W6, W2N, W9-W9N and W10, the W7/W8/W11 outcome
# binary, the Python peer) and rebuilds docs/benchmarks.md and its chart
# from that one run. Takes about seven minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/procsync-bench
mkdir -p "$out"
cargo bench -p benches
cargo run --release -q -p benches --bin outcomes > "$out/outcomes.jsonl"
python3 benches/python/peer.py > "$out/python.jsonl"
cargo run --release -q -p benches --bin report
