#!/usr/bin/python3
"""Drill: event-loop blocking (the guide's "Issue: Event Loop Blocking";
rules/genesis/issues.lua, event_loop_blocking).

The simulator's block fault: a coroutine calls time.sleep for 200-500 ms,
then yields, again and again. Checks that vigil, with the shipped
conf/genesis.ini and the drill levels, opens a critical
event_loop_blocking incident within the bound (the app's blocking
detector, genesis.loop.lag_ms, over 50 ms, and event processing over
20 ms or the service's own WebSocket slow), with the guide's evidence:
the detector's figures and the order stages, the service's feed
measured now (its pongs come late), the recent errors with the
simulator's traceback (a strategy dropping a stale tick), a profile and
the process snapshot; recommendations naming the slowest stage and the
longest block; and the restart remediation waiting for a person: the
runbook gives it mode "approve", and this drill runs vigil with
GENESIS_ACTIONS=on so that the approval is really asked for (nobody
gives it). Then the fault goes off and the incident resolves.

Bounds (drill levels: StatsD flushed every 5 s, loop_window 10 s, the
event-processing row's 10 s average, hold 5 s, clear hold 5 s): open
within 25 s (the first flush with the lag, up to 5 s; a condition run,
1 s, and the hold, 5 s: 11 s, and 14 s of margin for a loaded box);
resolve within 30 s (the last lag report leaves the 10 s window after up
to 15 s, then 1 s and the clear hold, 5 s: 21 s, and 9 s of margin).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from drill import Drill, check  # noqa: E402


def check_open(d, inc):
    i = inc["incident"]
    value = inc["transitions"][0]["value"]
    check(i["state"] == "critical" and value > 50,
          "event_loop_blocking critical, the loop blocked for %.0f ms "
          "(> 50)" % value)

    snap = d.step_ok(inc, "snapshot", "the blocking detector and the "
                     "order's stages") or {}
    lag = snap.get("genesis.loop.lag_ms.max") or {}
    check((lag.get("max") or 0) > 150,
          "snapshot: genesis.loop.lag_ms.max up to %s ms" % lag.get("max"))
    stages = [k for k in snap if k.startswith("genesis.order.stage_ms.p95")]
    check(len(stages) == 4, "snapshot: the four stages of an order (%s)"
          % len(stages))

    ws = d.step_ok(inc, "ws.measure", "the service's feed, now") or {}
    # 20 pings 100 ms apart: a block of 200 ms or more holds one sent
    # in its first 100 ms (the baseline's pongs take about 1 ms).
    check(ws.get("url") == d.ready["feed"] and ws.get("ok", 0) > 0 and
          ws.get("max_ms", 0) > 50,
          "ws.measure of the service's feed %s: pongs up to %s ms late "
          "(> 50)" % (ws.get("url"), ws.get("max_ms") and
                      round(ws["max_ms"])))

    d.log_has(inc, r"ERROR - strategy \d+ dropped a stale tick.*\n"
              r"Traceback \(most recent call last\):.*genesis_sim\.py.*"
              r"StaleTick", "the simulator's 'dropped a stale tick' with "
              "its traceback, down to StaleTick")
    prof = d.step_ok(inc, "exec", "a CPU profile of the service") or {}
    check("profiling pid %d " % d.sim.pid in prof.get("output", ""),
          "the profile is the simulator's (pid %d)" % d.sim.pid)
    d.step_ok(inc, "proc.snapshot", "the service's process")

    recs = d.recommendations(inc)
    check(any(r.startswith("Move blocking operations to a thread pool")
              for r in recs),
          "recommendation: move the slowest stage off the loop (%s)"
          % [r[:100] for r in recs if r.startswith("Move")])
    check(any(r.startswith("Break up long computations: the loop was "
                           "blocked for up to") for r in recs),
          "recommendation: break up long computations")

    acts = d.actions(i["id"], "restart")
    check(acts and acts[0]["result"] == "awaiting approval" and
          acts[0]["mode"] == "approve",
          "restart: mode approve, awaiting a person's approval (%s, %s)"
          % (acts and acts[0]["mode"], acts and acts[0]["result"]))


def check_resolved(d, inc):
    acts = inc.get("actions", [])
    check(acts and all(a["result"] == "awaiting approval" for a in acts),
          "the restart never ran: nobody approved it (%s)"
          % [a["result"] for a in acts])


if __name__ == "__main__":
    sys.exit(Drill("event-loop blocking", "event_loop_blocking", "block",
                   open_bound_s=25, resolve_bound_s=30,
                   env={"GENESIS_ACTIONS": "on"}).run(check_open,
                                                      check_resolved))
