#!/usr/bin/env bash
# The cluster-cost benchmark of BENCHMARKS.md (issue 19): 1,000 Sigma-like
# rules on 1 million process-creation documents, one tick, on a real
# OpenSearch node: esalert with its defaults, esalert with batching and
# folding off, and ElastAlert 2; requests, node CPU, wall time, outcomes.
#
# Needs Java 17 and Maven (the node, as tests/cluster.rs) and Python 3 with
# venv (ElastAlert 2 is installed into target/elastalert2-venv as .ci/run
# does). The data set is indexed on the first run (several minutes) and kept
# under target/tmp/cluster-cost/; later runs reuse it.
# ESALERT_COST_DOCS / ESALERT_COST_RULES change the size;
# ESALERT_COST_SPAN=24h spreads the documents over a day (a live index) and
# gives every rule a one-minute window (its own data set); an existing
# ESALERT_ELASTALERT_PYTHON is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ESALERT_ELASTALERT_PYTHON:-}" ]; then
  venv="$PWD/target/elastalert2-venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import elastalert, pytz' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'elastalert2==2.19.*' pytz
  fi
  export ESALERT_ELASTALERT_PYTHON="$venv/bin/python"
fi
export ESALERT_COST_DOCS="${ESALERT_COST_DOCS:-1000000}"
export ESALERT_COST_RULES="${ESALERT_COST_RULES:-1000}"
cargo build --bin esalert --test cluster_cost
cargo test --test cluster_cost -- --nocapture
echo "table: target/tmp/cluster-cost/v*-$ESALERT_COST_DOCS${ESALERT_COST_SPAN:+-span*}.last.md"
