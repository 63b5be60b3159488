"""Runs one ElastAlert 2 rule window by window over a fixed range, against
a cluster (the test's stand-in), and prints the (window end, query key)
pairs it would have alerted on, one JSON object.

    python elastalert_driver.py ES_URL RULE.yaml START END

The windows are ElastAlert's own `run_rule(rule, end, start)` calls, one
per `run_every`, contiguous as esalert's are; ElastAlert's clock
(`ts_now`) is each window's end, so `realert` silences count in the
replayed time. Alerts are recorded instead of sent, and the writeback
index (silences, pending aggregations) lives in memory.
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


def as_dt(v):
    return v if isinstance(v, datetime.datetime) else ts(str(v))


class Writeback:
    """ElastAlert's writeback index in memory: the documents it writes
    (silences, pending aggregated alerts) and the searches it makes on them,
    so that `aggregation` and `realert` run as they do against a cluster."""

    def __init__(self):
        self.docs = {}
        self.n = 0

    def resolve_writeback_index(self, index, doc_type):
        return index

    def index(self, index=None, body=None, **_):
        self.n += 1
        _id = "wb%d" % self.n
        self.docs[_id] = dict(body)
        return {"_id": _id}

    def delete(self, index=None, id=None, **_):
        self.docs.pop(id, None)

    def _hits(self, items):
        return {"hits": {"hits": [{"_id": i, "_source": dict(d)} for i, d in items]}}

    def search(self, index=None, body=None, size=None, **_):
        q = json.dumps(body.get("query", {}), default=str)
        items = list(self.docs.items())
        if "!_exists_:aggregate_id AND alert_sent:false" in q:
            now = body["query"]["bool"]["filter"]["range"]["alert_time"]["to"]
            items = [(i, d) for i, d in items if "alert_time" in d and "aggregate_id" not in d
                     and not d.get("alert_sent") and as_dt(d["alert_time"]) <= as_dt(now)]
            items.sort(key=lambda x: as_dt(x[1]["alert_time"]))
        elif "aggregate_id:" in q:
            agg = body["query"]["query_string"]["query"].split('"')[1]
            items = [(i, d) for i, d in items if d.get("aggregate_id") == agg]
        elif "alert_sent" in q:
            must = body["query"]["bool"]["filter"]["bool"]["must"]
            name = must[0]["term"]["rule_name"]
            after = as_dt(must[1]["range"]["alert_time"]["gt"])
            key = must[3]["term"]["aggregation_key"] if len(must) > 3 else None
            items = [(i, d) for i, d in items if d.get("rule_name") == name and "alert_time" in d
                     and as_dt(d["alert_time"]) > after and not d.get("alert_sent")
                     and "aggregate_id" not in d and (key is None or d.get("aggregation_key") == key)]
            items.sort(key=lambda x: as_dt(x[1]["alert_time"]), reverse=True)
        elif "rule_name" in q:
            name = body["query"]["term"]["rule_name"]
            items = [(i, d) for i, d in items if d.get("rule_name") == name and "until" in d]
            items.sort(key=lambda x: as_dt(x[1]["until"]), reverse=True)
        else:
            items = []
        return self._hits(items[: size or 10])


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
                client = ea.ElastAlerter(["--verbose"])
        client.writeback_es = Writeback()
        rule = client.rules[0]

        alerts = []
        now = {"t": ts(start)}

        sent = []

        def record(matches, r, alert_time=None, retried=False):
            alerter = r["alert"][0]
            sent.append({
                "time": now["t"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "count": len(matches),
                "title": alerter.create_title(matches),
                "body": alerter.create_alert_body(matches),
            })
            for m in matches:
                key = client.get_query_key_value(r, m)
                if key == "all" and "query_key" not in r:
                    # Flatline's key without query_key; esalert's is "".
                    key = ""
                alerts.append([now["t"].strftime("%Y-%m-%dT%H:%M:%S.000Z"), key or ""])

        t = ts(start)
        stop = ts(end)
        with mock.patch.object(client, "alert", side_effect=record), mock.patch(
            "elastalert.elastalert.ts_now", side_effect=lambda: now["t"]
        ):
            while t + run_every <= stop:
                now["t"] = t + run_every
                client.run_rule(rule, t + run_every, t)
                # As ElastAlert's loop does after running its rules.
                client.send_pending_alerts()
                t = t + run_every
        print(json.dumps({"alerts": alerts, "sent": sent}))


if __name__ == "__main__":
    main()
