#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each).
# Needs a nightly toolchain and cargo-fuzz: `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
for t in loader elastalert condition logfmt painless; do
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -max_len=65536
done
