"""Runs one ElastAlert 2 rule window by window over a fixed range, against
a cluster (the test's stand-in), and prints the (window end, query key)
pairs it would have alerted on, one JSON object.

    python elastalert_driver.py ES_URL RULE.yaml START END

The windows are ElastAlert's own `run_rule(rule, end, start)` calls, one
per `run_every`, contiguous as esalert's are; ElastAlert's clock
(`ts_now`) is each window's end, so `realert` silences count in the
replayed time. Alerts are recorded instead of sent (debug mode), and the
writeback index is a mock, as `elastalert-test-rule` does.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
from unittest import mock
from urllib.parse import urlparse

import yaml


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def main():
    es_url, rule_path, start, end = sys.argv[1:5]
    u = urlparse(es_url)
    with tempfile.TemporaryDirectory() as d:
        rules_dir = os.path.join(d, "rules")
        os.mkdir(rules_dir)
        cfg_path = os.path.join(d, "config.yaml")
        with open(cfg_path, "w") as f:
            yaml.safe_dump(
                {
                    "rules_folder": rules_dir,
                    "es_host": u.hostname,
                    "es_port": u.port,
                    "writeback_index": "wb",
                    "run_every": {"minutes": 1},
                    "buffer_time": {"minutes": 1},
                    "alert_time_limit": {"days": 2},
                    "old_query_limit": {"weeks": 1},
                    "max_query_size": 10000,
                    "disable_rules_on_error": False,
                },
                f,
            )
        from elastalert import elastalert as ea
        from elastalert.config import load_conf

        args = argparse.Namespace(
            config=cfg_path, debug=True, verbose=False, es_debug=False, es_debug_trace=None
        )
        conf = load_conf(args, {})
        loader = conf["rules_loader"]
        # new_term learns its baseline when the rule is built, up to "now":
        # the start of the replayed range.
        with mock.patch("elastalert.ruletypes.ts_now", side_effect=lambda: ts(start)):
            rule = loader.load_configuration(rule_path, conf)
        run_every = rule.get("run_every", conf["run_every"])

        with mock.patch.object(loader, "get_hashes"), mock.patch.object(loader, "load") as load_rules:
            load_rules.return_value = [rule]
            with mock.patch("elastalert.elastalert.load_conf") as lc:
                lc.return_value = conf
                client = ea.ElastAlerter(["--debug"])
        client.writeback_es = mock.MagicMock()
        client.writeback_es.search.return_value = {"hits": {"hits": []}}
        rule = client.rules[0]

        alerts = []
        now = {"t": ts(start)}

        def record(matches, r, alert_time=None, retried=False):
            for m in matches:
                key = client.get_query_key_value(r, m)
                if key == "all" and "query_key" not in r:
                    # Flatline's key without query_key; esalert's is "".
                    key = ""
                alerts.append([now["t"].strftime("%Y-%m-%dT%H:%M:%S.000Z"), key or ""])

        t = ts(start)
        stop = ts(end)
        with mock.patch.object(client, "writeback"), mock.patch.object(
            client, "alert", side_effect=record
        ), mock.patch("elastalert.elastalert.ts_now", side_effect=lambda: now["t"]):
            while t + run_every <= stop:
                now["t"] = t + run_every
                client.run_rule(rule, t + run_every, t)
                t = t + run_every
        print(json.dumps({"alerts": alerts}))


if __name__ == "__main__":
    main()
