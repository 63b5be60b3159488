#!/usr/bin/env bash
# Side by side with ElastAlert 2 (issue 20): the release esalert and
# ElastAlert 2 with the same N terms-aggregation rules, one-minute schedule,
# against the same stand-in (examples/es_standin.rs), in interleaved runs.
# Prints one table (see benches/peer/peer.py for what each figure is).
#
#   bash benches/peer/run.sh                 # N = 100, 1,000, 10,000 (about 30 minutes)
#   N=100 bash benches/peer/run.sh           # quick form (about 7 minutes)
#   RUNS=3 bash benches/peer/run.sh          # medians of 3 runs each
#
# A benchmark, not a CI test. ElastAlert 2 goes into target/peer-venv
# (Python 3.12 if present, else python3; elastalert2 2.19.x and pytz).
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --quiet --bin esalert --example es_standin

py=""
for c in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
  if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    py="$c"
    break
  fi
done
py=${py:-python3}

venv=target/peer-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import elastalert.elastalert, pytz' 2>/dev/null; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet 'elastalert2==2.19.*' pytz
fi

exec "$venv/bin/python" benches/peer/peer.py \
  --esalert target/release/esalert \
  --standin target/release/examples/es_standin \
  --elastalert-python "$venv/bin/python" \
  --n "${N:-100 1000 10000}" \
  --runs "${RUNS:-1}" \
  ${PEER_ARGS:-}
