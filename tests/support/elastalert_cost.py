"""ElastAlert 2 for the cluster-cost benchmark (tests/cluster_cost.rs):
one pass of every rule in a folder against a real cluster, as ElastAlert's
scheduler would run them at one tick, with its real writeback index.

    python elastalert_cost.py setup ES_URL WRITEBACK_INDEX
    python elastalert_cost.py run ES_URL RULES_DIR WRITEBACK_INDEX START END

`setup` creates the writeback indices (as elastalert-create-index does)
when they are missing. `run` loads the rules, runs each one once over
START..END (`--start`/`--end`, as ElastAlert's own one-off runs do) on
`max_threads` threads, as the scheduler's thread pool does, and prints
one JSON object: the names of the rules that alerted, any errors, and
the pass's wall time in seconds (without Python's start-up).
Alerts go to each rule's alerters (`debug`: a log line) and are written
to the writeback index, as in production; nothing is mocked.
"""

import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import yaml


def config(es_url, rules_dir, writeback, d):
    u = urlparse(es_url)
    path = os.path.join(d, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(
            {
                "rules_folder": rules_dir,
                "es_host": u.hostname,
                "es_port": u.port,
                "writeback_index": writeback,
                "run_every": {"minutes": 1},
                # One segment: the data set's window may be long past.
                "buffer_time": {"days": 365},
                "old_query_limit": {"days": 365},
                "alert_time_limit": {"days": 2},
                "max_query_size": 10000,
                "max_threads": 10,
                "disable_rules_on_error": False,
            },
            f,
        )
    return path


def setup(es_url, writeback):
    from elastalert.create_index import create_index_mappings
    from elasticsearch import Elasticsearch

    u = urlparse(es_url)
    es = Elasticsearch(host=u.hostname, port=u.port, timeout=60)
    create_index_mappings(es, writeback)


def run(es_url, rules_dir, writeback, start, end):
    from elastalert import elastalert as ea

    with tempfile.TemporaryDirectory() as d:
        cfg = config(es_url, rules_dir, writeback, d)
        client = ea.ElastAlerter(["--config", cfg, "--start", start, "--end", end])
        matched, errors = set(), []
        lock = threading.Lock()
        send = client.alert

        def alert(matches, rule, alert_time=None, retried=False):
            with lock:
                matched.add(rule["name"])
            return send(matches, rule, alert_time=alert_time, retried=retried)

        def handle_error(message, data=None):
            with lock:
                errors.append(str(message))

        client.alert = alert
        client.handle_error = handle_error
        client.handle_uncaught_exception = lambda e, rule: handle_error("%s: %r" % (rule["name"], e))
        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=client.conf.get("max_threads", 10)) as pool:
            list(pool.map(client.handle_rule_execution, client.rules))
        seconds = time.monotonic() - t
        print(json.dumps({"rules": len(client.rules), "matched": sorted(matched), "errors": errors,
                          "seconds": seconds}))


def main():
    if sys.argv[1] == "setup":
        setup(*sys.argv[2:4])
    else:
        run(*sys.argv[2:7])


if __name__ == "__main__":
    main()
