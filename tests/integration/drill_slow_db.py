#!/usr/bin/python3
"""Drill: slow database queries (the guide's "Issue: Slow Database
Queries"; rules/genesis/issues.lua, slow_db_queries).

The simulator's slow_queries fault: one order in 20 runs a report that
scans the unindexed trades table (plus pg_sleep(0.06)), and every 3 s a
transaction holds a position row for 1 s. Checks that vigil, with the
shipped conf/genesis.ini and the drill levels, opens a critical
slow_db_queries incident within the bound; that its evidence is the
guide's investigation: running queries, blocking, the slow query log
(the report, over 50 ms), index hints naming trades, the SQLite plan,
and the recent errors with the simulator's traceback; that the
recommendations say to add the missing index; that the cancel_runaway
remediation is a dry-run whose choice matches the evidence; and that the
incident resolves once the fault is off.

Bounds (drill levels: every 1 s, hold 5 s, clear hold 5 s, db_window
10 s): open within 25 s (the pg plugin sees the new report statement at
its next collection, up to 5 s, and publishes its first mean over the
next 5 s interval, a statement's first sighting having none; then a
condition run, 1 s, and the hold, 5 s: 16 s, and 9 s of margin for a
loaded box); resolve within 30 s (the last slow mean, up to 5 s after
the switch, leaves the 10 s window, then 1 s and the 5 s clear hold:
21 s, and 9 s of margin).

`make demo` runs this drill with --demo: each stage is announced with
the dashboard's address and waits for Enter on a terminal.
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from drill import Drill, check  # noqa: E402

RUNAWAY_S = 0.5  # the drill levels' runaway_query_s


def check_open(d, inc):
    i = inc["incident"]
    check(i["state"] == "critical",
          "slow_db_queries is critical (a statement's mean above 50 ms): %s"
          % i["state"])
    value = inc["transitions"][0]["value"]
    check(value is not None and value > 50,
          "the worst statement's mean when it opened: %s ms (> 50)" % value)

    running = d.step_ok(inc, "pg.running_queries", "the running queries")
    blocking = d.step_ok(inc, "pg.blocking", "who blocks whom")
    check(blocking is not None and "waits" in blocking,
          "pg.blocking: %s session(s) waiting on a lock"
          % (blocking or {}).get("count"))

    slow = d.step_ok(inc, "pg.slow_queries", "the slow query log") or {}
    report = [q for q in slow.get("queries", [])
              if "FROM trades" in q.get("query", "")]
    check(report and report[0]["mean_ms"] > 50,
          "pg.slow_queries: the report over trades, mean %s ms (> 50)"
          % (report and round(report[0]["mean_ms"], 1)))

    hints = d.step_ok(inc, "pg.index_hints", "missing indexes") or {}
    trades = [t for t in hints.get("tables", []) if t["table"] == "trades"] \
        + [c for c in hints.get("columns", []) if c["table"] == "trades"]
    check(trades, "pg.index_hints: trades needs an index (%s)"
          % (trades and (trades[0].get("suggestion") or
                         "%s sequential scans" % trades[0].get("seq_scan"))))

    plan = d.step_ok(inc, "sqlite.plan", "the SQLite query's plan") or {}
    check("orders" in plan.get("full_scans", []),
          "sqlite.plan: open_orders scans orders (%s)"
          % plan.get("full_scans"))

    recs = d.recommendations(inc)
    check(any(r.startswith("Add missing database indexes") and
              "trades" in r for r in recs),
          "recommendation: add missing database indexes on trades")
    check(any(r.startswith("Optimize slow queries") and
              "pg_sleep($2)::text FROM trades" in r for r in recs),
          "recommendation: optimize the slow report over trades")
    check(any(r.startswith("Add missing database indexes (SQLite)")
              for r in recs), "recommendation: the SQLite index")

    # cancel_runaway: dry-run (levels.lua: cancel_mode), with the pid of
    # a query running over runaway_query_s that the evidence found, or
    # skipped when it found none. Which one depends on when the incident
    # opened in the simulator's 3 s lock cycle; either must match the
    # evidence.
    acts = d.actions(i["id"], "cancel_runaway")
    act = acts[0] if acts else {}
    runaways = [q for q in (running or {}).get("queries", [])
                if (q.get("duration_s") or 0) > RUNAWAY_S]
    if runaways:
        pid = re.search(r'"pid":\s*(\d+)', act.get("reason", ""))
        check(act.get("result") == "dry-run" and pid and
              int(pid[1]) == runaways[0]["pid"],
              "cancel_runaway dry-run for pid %s, running %.1f s: %s"
              % (runaways[0]["pid"], runaways[0]["duration_s"],
                 act.get("reason")))
    else:
        check(act.get("result") == "skipped" and
              "when predicate said no" in act.get("reason", ""),
              "cancel_runaway skipped: no query ran over %.1f s when the "
              "evidence was taken (%s)" % (RUNAWAY_S, act.get("reason")))
    check(all(a["result"] in ("dry-run", "skipped") for a in acts),
          "nothing was cancelled for real (%s)"
          % [a["result"] for a in acts])

    d.log_has(inc, r"ERROR - persist failed for order.*\nTraceback \(most "
              r"recent call last\):.*genesis_sim\.py.*LockNotAvailableError",
              "the simulator's 'persist failed' with its traceback, down "
              "to LockNotAvailableError")


def check_resolved(d, inc):
    t = inc["transitions"]
    check(t[-1]["to"] == "ok", "the last transition is to ok (%s)"
          % [(x["from"], x["to"]) for x in t])


if __name__ == "__main__":
    sys.exit(Drill("slow database queries", "slow_db_queries",
                   "slow_queries", open_bound_s=25,
                   resolve_bound_s=30).run(check_open, check_resolved))
