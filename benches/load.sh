#!/usr/bin/env bash
# The load benchmark matrix of BENCHMARKS.md: N = 100, 1,000, 10,000 alerts,
# 0 ms and 50 ms cluster latency, 3 runs each (take the median).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin esalert --example es_standin --example load
runs=${RUNS:-3}
for lat in 0 50; do
  for n in 100 1000 10000; do
    c=32
    [ "$n" -ge 10000 ] && c=64
    target/release/examples/load --alerts "$n" --latency-ms "$lat" --concurrency "$c" --runs "$runs"
  done
done
