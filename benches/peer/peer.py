"""Side by side: esalert and ElastAlert 2 with the same N rules against the
same Elasticsearch stand-in (examples/es_standin.rs), one tool at a time,
in interleaved runs. Started by benches/peer/run.sh, which builds and
installs what this needs; it prints one table.

Each rule runs one terms-aggregation search a minute over the last minute
(esalert: a JSON alert with `array_compare` on the buckets; ElastAlert: a
`frequency` rule with `use_terms_query`), and never matches: most alerts,
most of the time.

The driver samples the tool's /proc (user+sys CPU, VmRSS, VmHWM) and the
stand-in's counters (on its uncounted stats port) every 20 ms, and derives:

- pass wall time: from the first search of the second pass to its N-th,
  as the stand-in received them;
- CPU per evaluation: the tool's CPU over that pass (from 0.1 s before
  its first search to 0.5 s after its last) / N;
- idle CPU: CPU over the samples at least 2 s away from any search
  (between ticks), gathered over several gaps until 60 s are collected;
- peak RSS (VmHWM) and steady RSS (VmRSS at the end, after two passes);
- requests per rule: every request the cluster got after the first pass
  (searches, `_msearch`, writeback-index reads and writes) / searches;
- TCP connections the cluster accepted over the whole run.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PERIOD = 60.0
POLL = 0.02
IDLE_WANTED = 60.0
IDLE_MARGIN = 2.0

RESPONSE = {
    "took": 3,
    "timed_out": False,
    "_shards": {"total": 6, "successful": 6, "skipped": 0, "failed": 0},
    "hits": {"total": {"value": 45, "relation": "eq"}, "max_score": None, "hits": []},
    "aggregations": {
        "counts": {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [
                {"key": "Administrator", "doc_count": 30},
                {"key": "svc_backup", "doc_count": 12},
                {"key": "da_jsmith", "doc_count": 3},
            ],
        }
    },
}

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as r:
        return json.loads(r.read())


def write_esalert(d, n, port):
    q = os.path.join(d, "queries")
    os.makedirs(q)
    with open(os.path.join(d, "credentials.json"), "w") as f:
        json.dump(
            {
                "elasticsearch": {"url": f"http://127.0.0.1:{port}", "timeout": "30s"},
                "slack": {"webhook_url": f"http://127.0.0.1:{port}/hooks/T/B/X"},
            },
            f,
        )
    for i in range(n):
        alert = {
            "index": "winlogbeat-*",
            "schedule": "1m",
            "media": ["slack"],
            "body": {
                "size": 0,
                "query": {
                    "bool": {
                        "filter": [
                            {"term": {"event.code": "4624"}},
                            {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}},
                        ]
                    }
                },
                "aggs": {"counts": {"terms": {"field": "winlog.event_data.TargetUserName", "size": 20}}},
            },
            "condition": {
                "array_compare": {
                    "aggregations.counts.buckets": {"path": "doc_count", "gte": {"value": 1000000}}
                }
            },
            "message": "{% for b in aggregations.counts.buckets %}{{ b.key }}: {{ b.doc_count }}\n{% endfor %}",
        }
        with open(os.path.join(q, f"peer_{i:05}.json"), "w") as f:
            json.dump(alert, f)


def write_elastalert(d, n, port):
    r = os.path.join(d, "rules")
    os.makedirs(r)
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write(
            f"""rules_folder: rules
run_every:
  minutes: 1
buffer_time:
  minutes: 1
es_host: 127.0.0.1
es_port: {port}
writeback_index: elastalert_status
alert_time_limit:
  days: 2
"""
        )
    for i in range(n):
        with open(os.path.join(r, f"peer_{i:05}.yaml"), "w") as f:
            f.write(
                f"""name: peer_{i:05}
type: frequency
index: winlogbeat-*
num_events: 1000000
timeframe:
  minutes: 1
use_terms_query: true
query_key: winlog.event_data.TargetUserName
terms_size: 20
doc_type: _doc
filter:
- term:
    event.code: "4624"
alert:
- debug
"""
            )


class Run:
    """One tool with N rules against a fresh stand-in."""

    def __init__(self, args, tool, n):
        self.args, self.tool, self.n = args, tool, n
        self.dir = tempfile.mkdtemp(prefix=f"esalert-peer-{tool}-{n}-")
        resp = os.path.join(self.dir, "response.json")
        with open(resp, "w") as f:
            json.dump(RESPONSE, f, separators=(",", ":"))
        self.standin = subprocess.Popen(
            [args.standin, "--response", resp], stdout=subprocess.PIPE, text=True
        )
        self.port = int(self.standin.stdout.readline().split()[1])
        self.stats_port = int(self.standin.stdout.readline().split()[1])
        log = open(os.path.join(self.dir, "tool.log"), "w")
        if tool == "esalert":
            write_esalert(self.dir, n, self.port)
            cmd = [os.path.abspath(args.esalert), "run"]
        else:
            write_elastalert(self.dir, n, self.port)
            cmd = [args.elastalert_python, "-m", "elastalert.elastalert", "--config", "config.yaml"]
        self.started = time.time()
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        except OSError:
            self.standin.kill()
            self.standin.wait()
            raise
        self.samples = []  # (t, cpu, rss_kb, hwm_kb, stats)

    def sample(self):
        pid = self.proc.pid
        t = time.time()
        s = stats(self.stats_port)
        c = cpu_secs(pid)
        self.samples.append((t, c, status_kb(pid, "VmRSS:"), status_kb(pid, "VmHWM:"), s))
        return s

    def idle(self):
        """(seconds, CPU seconds) over samples ≥ IDLE_MARGIN from any search
        after the first pass."""
        times = [x[0] for x in self.samples]
        moved = [
            x[0]
            for a, x in zip(self.samples, self.samples[1:])
            if x[4]["searches"] != a[4]["searches"] or x[4]["requests"] != a[4]["requests"]
        ]
        first_pass_end = next(
            (x[0] for x in self.samples if x[4]["searches"] >= self.n), None
        )
        if first_pass_end is None:
            return 0.0, 0.0
        secs = cpu = 0.0
        j = 0
        for a, b in zip(self.samples, self.samples[1:]):
            if a[0] < first_pass_end + IDLE_MARGIN:
                continue
            while j < len(moved) and moved[j] < a[0] - IDLE_MARGIN:
                j += 1
            if j < len(moved) and moved[j] <= b[0] + IDLE_MARGIN:
                continue
            secs += b[0] - a[0]
            cpu += b[1] - a[1]
        del times
        return secs, cpu

    def measure(self):
        n = self.n
        deadline = time.time() + self.args.max_run
        # Wait for the tool to come up (ElastAlert loads its rules first).
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.tool} exited; see {self.dir}/tool.log")
            try:
                s = self.sample()
            except (OSError, ValueError):
                time.sleep(POLL)
                continue
            if s["searches"] >= 2 * n:
                secs, _ = self.idle()
                if secs >= IDLE_WANTED or s["searches"] >= 4 * n or time.time() > deadline:
                    break
            elif time.time() > deadline + 600:
                raise SystemExit(f"{self.tool} with {n} rules: no second pass; see {self.dir}")
            time.sleep(POLL)
        return self.result()

    def result(self):
        n, smp = self.n, self.samples
        first = lambda k: next(i for i, x in enumerate(smp) if x[4]["searches"] >= k)
        # The second pass: searches n+1 … 2n.
        i0 = first(n + 1)
        i1 = first(2 * n)
        t0, t1 = smp[i0][0] - POLL, smp[i1][0]
        # The stand-in's clock is exact where the polls are not: the pass
        # started with the first search after a gap, and ended with the
        # latest search when the N-th was counted.
        start = smp[i0][4]["pass_start_ms"] / 1000.0
        if t0 - 1.0 <= start <= t0 + POLL:
            t0 = start
        t1 = min(t1, smp[i1][4]["last_search_ms"] / 1000.0)
        c0 = next((x[1] for x in reversed(smp[: i0 + 1]) if x[0] <= t0 - 0.1), smp[0][1])
        c1 = next((x[1] for x in smp[i1:] if x[0] >= t1 + 0.5), smp[-1][1])
        p1 = first(n)
        last = smp[-1]
        d_req = last[4]["requests"] - smp[p1][4]["requests"]
        d_search = last[4]["searches"] - smp[p1][4]["searches"]
        idle_s, idle_cpu = self.idle()
        return {
            "tool": self.tool,
            "n": n,
            "cpu_per_eval_ms": (c1 - c0) * 1000.0 / n,
            "pass_wall_s": t1 - t0,
            "rss_peak_mb": last[3] / 1024.0,
            "rss_steady_mb": last[2] / 1024.0,
            "idle_cpu_pct": (idle_cpu / idle_s * 100.0) if idle_s > 0 else None,
            "idle_window_s": idle_s,
            "requests_per_rule": d_req / d_search if d_search else None,
            "connections": last[4]["connections"],
            "first_search_after_s": smp[first(1)][0] - self.started,
        }

    def close(self):
        for p in (self.proc, self.standin):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def fmt(v, unit=""):
    if v is None:
        return "—"
    if unit == " s" and v < 0.001:
        # Every search of the pass came in one `_msearch` request.
        return "< 0.001 s"
    if isinstance(v, float):
        if v >= 100:
            s = f"{v:,.0f}"
        elif v >= 10:
            s = f"{v:.1f}"
        elif v >= 1:
            s = f"{v:.2f}"
        else:
            s = f"{v:.3f}"
    else:
        s = f"{v:,}"
    return s + unit


def ratio(e, a):
    if e is None or a is None:
        return "—"
    if e == 0:
        return "∞" if a else "="
    r = a / e
    if r < 0.1:
        return "< 0.1×"
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"


ROWS = [
    ("CPU / evaluation", "cpu_per_eval_ms", " ms"),
    ("pass wall time (N searches)", "pass_wall_s", " s"),
    ("peak RSS", "rss_peak_mb", " MB"),
    ("steady RSS (after 2 passes)", "rss_steady_mb", " MB"),
    ("idle CPU (between ticks)", "idle_cpu_pct", " %"),
    ("requests / rule", "requests_per_rule", ""),
    ("TCP connections (whole run)", "connections", ""),
]


def median(results, key):
    vals = [r[key] for r in results if r[key] is not None]
    return statistics.median(vals) if vals else None


def table(all_results, ns):
    lines = [
        "| metric | N | esalert | ElastAlert 2 | ElastAlert 2 ÷ esalert |",
        "|---|---|---|---|---|",
    ]
    for label, key, unit in ROWS:
        for n in ns:
            e = median([r for r in all_results if r["n"] == n and r["tool"] == "esalert"], key)
            a = median([r for r in all_results if r["n"] == n and r["tool"] == "elastalert"], key)
            lines.append(f"| {label} | {n:,} | {fmt(e, unit)} | {fmt(a, unit)} | {ratio(e, a)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--esalert", default="target/release/esalert")
    p.add_argument("--standin", default="target/release/examples/es_standin")
    p.add_argument("--elastalert-python", default="target/peer-venv/bin/python")
    p.add_argument("--n", default="100 1000 10000")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--max-run", type=float, default=300.0, help="seconds after start before a run ends once it has two passes")
    p.add_argument("--json", help="also write every run's figures here")
    p.add_argument("--keep", action="store_true", help="keep each run's directory")
    p.add_argument("--table-from", help="print the table of a --json file and exit")
    args = p.parse_args()
    if args.table_from:
        with open(args.table_from) as f:
            results = json.load(f)
        print(table(results, sorted({r["n"] for r in results})))
        return
    # The tools run in their own directories (not resolving the venv's link).
    args.esalert, args.standin, args.elastalert_python = (
        os.path.abspath(x) for x in (args.esalert, args.standin, args.elastalert_python)
    )
    ns = [int(x) for x in args.n.replace(",", " ").split()]
    results = []
    for run in range(args.runs):
        for n in ns:
            # Interleaved, and alternating which tool goes first.
            order = ["esalert", "elastalert"] if (run + ns.index(n)) % 2 == 0 else ["elastalert", "esalert"]
            for tool in order:
                print(f"run {run + 1}/{args.runs}: {tool} with {n:,} rules …", file=sys.stderr, flush=True)
                r = Run(args, tool, n)
                try:
                    res = r.measure()
                finally:
                    r.close()
                print("  " + json.dumps(res), file=sys.stderr, flush=True)
                results.append(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(table(results, ns))


if __name__ == "__main__":
    main()
