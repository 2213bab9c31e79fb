#!/usr/bin/python3
"""The pg plugin's diagnostics and actions inside the daemon, run by a
runbook, against a PostgreSQL 15 server of this test's own (tests/pg/).

A threshold on pg.query.longest_s opens an incident when a query runs
long; the runbook's steps (pg.running_queries, pg.blocking,
pg.slow_queries, pg.statements, pg.index_hints) become its evidence
while the collection goes on every 500 ms without a gap; at critical its
actions run: pg.cancel of the daemon's own backend is refused, pg.cancel
of the queries running 2 s or more cancels the long one. Then the lock
is released, the incident resolves, and `vigil incidents show` holds it
all.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "pg"))

SKIP = 77
try:
    import vigiltest as vt
except KeyError as e:
    print(f"skip: {e} not set (run through ctest)")
    sys.exit(SKIP)
import pgtest  # noqa: E402
from pgtest import Session, backend, psql  # noqa: E402

DEADLINE_S = 30.0
LAG_MAX_MS = float(os.environ.get("VIGIL_TEST_LAG_MAX_MS", "100"))
check = vt.check

RUNBOOK = r"""
local vigil = require "vigil"

vigil.threshold "pg_long_query" {
  title = "A query runs long",
  metric = "pg.query.longest_s{instance=main}", warn = 1, crit = 2,
  nodata = false, runbook = "pg_slow",
}

vigil.runbook "pg_slow" {
  title = "Slow database queries",
  immediate = {
    vigil.step "pg.running_queries" { min_age = "1s" },
    vigil.step "pg.blocking" {},
  },
  short_term = {
    vigil.step "pg.slow_queries" { min_mean_ms = 100, limit = 5 },
    vigil.step "pg.statements" {},
  },
  deep = { vigil.step "pg.index_hints" {} },
  remediate = {
    vigil.action "cancel_self" { run = "pg.cancel",
                                 args = { pid = @SELF@ }, mode = "on" },
    vigil.action "cancel_long" { run = "pg.cancel",
                                 args = { min_age = "2s" }, mode = "on" },
  },
}
"""


def vigil(*args):
    return subprocess.run([vt.VIGIL] + list(args), capture_output=True,
                          text=True, timeout=60)


def prepare(uri):
    psql(uri, """
CREATE EXTENSION pg_stat_statements;
CREATE TABLE big(id int, k int);
INSERT INTO big SELECT g, (g * 7919) % 5000 FROM generate_series(1, 20000) g;
ANALYZE big;
CREATE TABLE locked(id int PRIMARY KEY, v int);
INSERT INTO locked VALUES (1, 0);
""")
    psql(uri, "SELECT pg_sleep(0.2); SELECT pg_sleep(0.2)")
    return psql(uri, "SELECT queryid FROM pg_stat_statements "
                "WHERE query = 'SELECT pg_sleep($1)'")


def write_conf(tmp, srv):
    rules = os.path.join(tmp, "rules")
    os.mkdir(rules)
    conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 500ms

[rules]
dir = {rules}

[store]
path = {os.path.join(tmp, "vigil.db")}
flush = 100ms

[actions]
mode = on

[plugin pg main]
dsn = host=127.0.0.1 port={srv.port} user=postgres dbname=postgres application_name=vigil-rb
interval = 500ms
""")
    return conf, rules


def incident(conf):
    r = vigil("incidents", "list", "--json", "-c", conf)
    rows = json.loads(r.stdout) if r.returncode == 0 else []
    check(len(rows) == 1 and not rows[0]["open"],
          f"one incident, resolved: {rows}")
    r = vigil("incidents", "show", str(rows[0]["id"] if rows else 0),
              "--json", "-c", conf)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def check_evidence(inc, pids, qid):
    ev = {e["name"] + "/" + e["phase"]: e for e in inc.get("evidence", [])}
    out = {k: e.get("output") or {} for k, e in ev.items()}
    status = [(k, e.get("status")) for k, e in ev.items()]
    check(all(st == "ok" for _, st in status) and len(ev) == 5,
          f"five steps, all ok: {status}")
    run = out.get("pg.running_queries/immediate", {})
    check(pids["vt-long"] in [q["pid"] for q in run.get("queries", [])],
          "pg.running_queries found the long query")
    blk = out.get("pg.blocking/immediate", {})
    check(blk.get("root_blockers") == [pids["vt-holder"]],
          f"pg.blocking names the holder as the root blocker: {blk}")
    slow = out.get("pg.slow_queries/short_term", {})
    check(qid in [q["queryid"] for q in slow.get("queries", [])],
          "pg.slow_queries found pg_sleep")
    st = out.get("pg.statements/short_term", {})
    texts = {x["queryid"]: x["query"] for x in st.get("statements", [])}
    check(st.get("available") is True and
          texts.get(qid) == "SELECT pg_sleep($1)",
          f"pg.statements: the collection's top with its text: {texts}")
    hints = out.get("pg.index_hints/deep", {})
    check(("big", "k") in [(c["table"], c["column"])
                           for c in hints.get("columns", [])],
          "pg.index_hints suggests an index on big.k")


def check_actions(inc, pids):
    acts = {a["name"]: a for a in inc.get("actions", [])}
    me = acts.get("cancel_self", {})
    check(me.get("result") == "failed" and
          "vigil's own connection" in me.get("reason", ""),
          f"pg.cancel of vigil's own backend is refused: {me}")
    lg = acts.get("cancel_long", {})
    got = lg.get("output") or {}
    check(lg.get("result") == "ok" and got.get("done") is True and
          [b["pid"] for b in got.get("backends", [])] == [pids["vt-long"]],
          f"pg.cancel min_age=2s canceled the long query only: {lg}")


def check_collection(d):
    samples = [pgtest.parse_line(vt, line) for line in d.lines["out"]]
    ups = [(ts, v) for n, lab, v, ts in filter(None, samples)
           if n == "pg.up" and lab.get("instance") == "main"]
    gaps = [b[0] - a[0] for a, b in zip(ups, ups[1:])]
    check(ups and all(v == 1 for _, v in ups) and max(gaps) <= 1000,
          f"the collection went on every 500 ms while the runbook ran "
          f"({len(ups)} samples, largest gap {max(gaps) if gaps else None} "
          f"ms)")
    lags = [v for n, _, v, _ in filter(None, samples)
            if n == "vigil.loop.lag_ms"]
    check(lags and max(lags) <= LAG_MAX_MS,
          f"vigil.loop.lag_ms under {LAG_MAX_MS} ms (max "
          f"{max(lags) if lags else None})")


def run(tmp, srv):
    qid = prepare(srv.uri)
    conf, rules = write_conf(tmp, srv)
    d = vt.Daemon(["-c", conf, "--print", "pg.up",
                   "--print", "vigil.loop.lag_ms"])
    try:
        # The daemon's own backend, before any diagnostic opens another,
        # goes into the runbook; a reload takes it.
        self_pid = pgtest.Samples(vt, d).wait(
            lambda: backend(srv.uri, "vigil-rb"), DEADLINE_S)
        check(self_pid, f"the daemon's collection backend: {self_pid}")
        vt.write(rules, "pg.lua", RUNBOOK.replace("@SELF@", str(self_pid)))
        d.p.send_signal(signal.SIGHUP)
        check(d.wait_for("err", lambda l: "reloaded: 1 runbooks" in l,
                         DEADLINE_S), "the runbook is loaded")

        sessions = {app: Session(srv.uri, app)
                    for app in ("vt-long", "vt-holder", "vt-waiter")}
        sessions["vt-long"].send("SELECT pg_sleep(60);")
        sessions["vt-holder"].send(
            "BEGIN; UPDATE locked SET v = 1 WHERE id = 1;")
        s = pgtest.Samples(vt, d)
        s.wait(lambda: backend(srv.uri, "vt-holder",
                               "state = 'idle in transaction'"), DEADLINE_S)
        sessions["vt-waiter"].send("UPDATE locked SET v = 2 WHERE id = 1;")
        pids = {app: s.wait(lambda: backend(srv.uri, app), DEADLINE_S)
                for app in sessions}
        for name in ("cancel_self", "cancel_long"):
            check(d.wait_for("err", lambda l: "action: " + name in l,
                             DEADLINE_S), f"the action {name} ran")
        sessions["vt-holder"].send("ROLLBACK;")
        check(d.wait_for("err", lambda l: "resolved" in l, DEADLINE_S),
              "the incident resolves once the lock is released")
        errs = {app: sess.close()[1] for app, sess in sessions.items()}
        check("canceling statement due to user request" in errs["vt-long"],
              f"the long query was canceled: {errs['vt-long']}")
        check("canceling" not in errs["vt-waiter"],
              "the waiter, younger, was left alone")
        rc = d.finish(signal.SIGTERM, timeout=20)
        check(rc == 0, f"vigil stops cleanly (rc {rc})")
    finally:
        if d.p.poll() is None:
            d.p.kill()
    check_collection(d)
    inc = incident(conf)
    check_evidence(inc, pids, qid)
    check_actions(inc, pids)


def main():
    if not os.path.exists(os.path.join(vt.PLUGINS, "pg.so")):
        print("skip: pg.so not built")
        return SKIP
    srv = pgtest.Server()
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-pgrb-") as tmp:
            run(tmp, srv)
    finally:
        srv.close()
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
