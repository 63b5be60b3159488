#!/usr/bin/env bash
# Idle cost and memory of the real daemon (issue 20): N alerts doing the
# load benchmark's terms-aggregation search against es_standin.
#
#   benches/idle.sh idle N            # hourly alerts, default flags: CPU over 60 s of idle
#   benches/idle.sh passes N          # every-20s alerts: RSS after two full passes
#   benches/idle.sh flat N SCHED MIN  # every-SCHED alerts: RSS each 30 s for MIN minutes
#
# CPU is user+sys from /proc/<pid>/stat; RSS is VmRSS (VmHWM: the peak).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?idle|passes|flat}
n=${2:?number of alerts}
bin=${BIN:-target/release}
[ -x "$bin/esalert" ] && [ -x "$bin/examples/es_standin" ] ||
  cargo build --release --bin esalert --example es_standin
bin=$(cd "$bin" && pwd)
case $mode in
  idle) sched=1h ;;
  passes) sched=20s ;;
  flat) sched=${3:-5s} ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
dir=$(mktemp -d /tmp/esalert-idle.XXXXXX)
mkdir -p "$dir/queries"
coproc STANDIN { exec "$bin/examples/es_standin" --latency-ms 0 --total 0; }
read -r line <&"${STANDIN[0]}"
port=${line#PORT }
cleanup() {
  kill "$ESA" "$STANDIN_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
printf '{"elasticsearch": {"url": "http://127.0.0.1:%s", "timeout": "30s"}, "slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}}\n' "$port" >"$dir/credentials.json"
for ((i = 0; i < n; i++)); do
  printf '{"index": "winlogbeat-%d", "schedule": "%s", "throttle_period": "15m", "media": ["slack"], "body": {"size": 0, "query": {"bool": {"filter": [{"term": {"event.code": "4624"}}, {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}]}}, "aggs": {"users": {"terms": {"field": "winlog.event_data.TargetUserName", "size": 20}}}}, "condition": {"compare": {"hits.total": {"gt": 0}}}, "message": "{%% for b in aggregations.users.buckets %%}{{ b.key }}: {{ b.doc_count }}\\n{%% endfor %%}"}\n' \
    $((i % 50)) "$sched" >"$dir/queries/load_$(printf %05d "$i").json"
done
(cd "$dir" && exec "$bin/esalert" run >/dev/null 2>&1) &
ESA=$!
until grep -q event=started "$dir/alerts.log" 2>/dev/null; do sleep 0.2; done
cpu() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$ESA/stat"; }
kb() { awk -v k="$1" '$1 == k { print $2 }' "/proc/$ESA/status"; }
hz=$(getconf CLK_TCK)
outcomes() { grep -c ' outcome=' "$dir/alerts.log" || true; }
case $mode in
  idle)
    sleep 5
    c0=$(cpu)
    sleep 60
    c1=$(cpu)
    echo "alerts=$n idle_cpu_pct=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.4f", (b - a) / hz / 60 * 100 }') cpu_ticks=$((c1 - c0)) rss_mb=$(($(kb VmRSS:) / 1024)) outcomes=$(outcomes)"
    ;;
  passes)
    until [ "$(outcomes)" -ge $((2 * n)) ]; do sleep 0.5; done
    at_end=$(($(kb VmRSS:) / 1024))
    sleep 8 # past the trim after a burst
    echo "alerts=$n after_two_passes rss_mb=$at_end rss_8s_later_mb=$(($(kb VmRSS:) / 1024)) peak_mb=$(($(kb VmHWM:) / 1024))"
    ;;
  flat)
    minutes=${4:-10}
    for ((t = 0; t <= minutes * 60; t += 30)); do
      echo "t=${t}s outcomes=$(outcomes) rss_mb=$(($(kb VmRSS:) / 1024)) peak_mb=$(($(kb VmHWM:) / 1024)) skipped=$(grep -c outcome=skipped "$dir/alerts.log" || true)"
      sleep 30
    done
    ;;
esac
