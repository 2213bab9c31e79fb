#!/usr/bin/python3
"""Incidents end to end in the real daemon with a real runbook: a metric
pushed over critical opens one incident, its steps leave evidence (a
snapshot, a command, a plugin diagnostic, a missing one, one that times
out), its exec action runs a script with the incident in VIGIL_* variables,
dry-run records without running, a failing predicate and a missing command
are recorded, the incident resolves when the metric clears; the store
keeps it all for `vigil incidents`; cooldown, rate limit, circuit breaker
and approval each hold an action back; and an action interrupted by
kill -9 shows as interrupted after a restart."""

import http.server
import json
import os
import socket
import threading
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import (PLUGINS, TEST_PLUGINS, VIGIL, Daemon, check,  # noqa
                       summary, write)

RUNBOOK = r"""
local vigil = require "vigil"

vigil.threshold "big_file" {
  title = "The watched file is big",
  metric = "hello.file.size_bytes", warn = 50, crit = 100,
  nodata = false, runbook = "shrink",
}

vigil.runbook "shrink" {
  title = "Shrink the file",
  immediate = {
    vigil.step "snapshot" { series = "hello.*", window = "1m" },
    vigil.step "exec" { argv = { "/bin/echo", "looked" } },
    vigil.step "good.echo" { asked = "politely" },
    vigil.step "nosuch.diag" {},
  },
  short_term = {
    vigil.step "exec" { argv = { "/bin/sleep", "30" }, timeout = "300ms" },
  },
  remediate = {
    vigil.action "fix" { exec = { "@SCRIPT@", "@MARKER@" }, mode = "on",
                         cooldown = "1h" },
    vigil.action "rehearse" { exec = { "/usr/bin/touch", "@DRY@" },
                              mode = "dry-run" },
    vigil.action "picky" { exec = { "/usr/bin/touch", "@NEVER@" },
                           mode = "on",
                           when = function(i) return i.value > 1e9 end },
    vigil.action "broken" { exec = { "/nonexistent/vigil-fix" },
                            mode = "on" },
    vigil.action "once_an_hour" { exec = { "/bin/true" }, mode = "on",
                                  max_per_hour = 1 },
    vigil.action "breaker" { exec = { "/bin/true" }, mode = "on",
                             on = "warning", breaker = 1 },
    vigil.action "ask" { exec = { "/bin/true" }, mode = "approve" },
    vigil.action "page" { webhook = { url = "@HOOK@",
                                      headers = { "X-Token: t0k" } },
                          mode = "on", max_per_hour = 1 },
    vigil.action "page_dead" { webhook = { url = "@DEADHOOK@", retries = 1 },
                               mode = "on", max_per_hour = 1 },
  },
}
"""

SLOW_RUNBOOK = r"""
local vigil = require "vigil"
vigil.threshold "big_file" {
  metric = "hello.file.size_bytes", crit = 100, nodata = false,
  runbook = "slow",
}
vigil.runbook "slow" {
  remediate = {
    vigil.action "hang" { exec = { "/bin/sleep", "60" }, mode = "on",
                          timeout = "2m" },
  },
}
"""


class Hooks(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: keeps every POST and answers 204."""
    got = []
    event = threading.Event()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        Hooks.got.append((self.headers.get("X-Token"),
                          json.loads(self.rfile.read(n))))
        self.send_response(204)
        self.end_headers()
        Hooks.event.set()

    def log_message(self, *args):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


HOOK = http.server.HTTPServer(("127.0.0.1", 0), Hooks)
threading.Thread(target=HOOK.serve_forever, daemon=True).start()


def setup(d, runbook):
    pdir = os.path.join(d, "plugins")
    rules = os.path.join(d, "rules")
    os.makedirs(pdir, exist_ok=True)
    os.makedirs(rules, exist_ok=True)
    for name in ("hello", "good"):
        shutil.copy(os.path.join(TEST_PLUGINS, name + ".so"), pdir)
    shutil.copy(os.path.join(PLUGINS, "webhook.so"), pdir)
    script = write(d, "fix.sh", "#!/bin/sh\n"
                   'echo "$VIGIL_INCIDENT_ID $VIGIL_RULE $VIGIL_STATE '
                   '$VIGIL_ACTION $VIGIL_MODE" > "$1"\n')
    os.chmod(script, 0o755)
    text = (runbook.replace("@SCRIPT@", script)
            .replace("@MARKER@", os.path.join(d, "marker"))
            .replace("@DRY@", os.path.join(d, "dry"))
            .replace("@NEVER@", os.path.join(d, "never"))
            .replace("@HOOK@", "http://127.0.0.1:%d/hook" %
                     HOOK.server_address[1])
            .replace("@DEADHOOK@", "http://127.0.0.1:%d/" % free_port()))
    write(rules, "file.lua", text)
    watched = write(d, "watched", "x" * 10)
    conf = write(d, "vigil.ini", "\n".join([
        "[vigil]",
        "interval = 100ms",
        "plugin_dir = plugins",
        "[rules]",
        "dir = rules",
        "[store]",
        "path = vigil.db",
        "flush = 100ms",
        "[actions]",
        "mode = on",
        "[plugin hello]",
        "path = " + watched,
        "[plugin good a]",
        "target = t",
        "interval = 1h",
        "[plugin webhook]",
        "timeout = 2s",
        "",
    ]))
    return conf, watched


def vigil(*args):
    return subprocess.run([VIGIL] + list(args), capture_output=True,
                          text=True)


def grow(path, size):
    with open(path, "w") as f:
        f.write("x" * size)


def action_line(v, name, word, deadline=10):
    return v.wait_for("err", lambda l: "action: %s %s" % (name, word) in l,
                      deadline)


def test_incident(d):
    conf, watched = setup(d, RUNBOOK)
    v = Daemon(["-c", conf])
    check(v.wait_for("err", lambda l: "store" in l and "vigil.db" in l, 10)
          is not None, "the store opens")
    grow(watched, 70)                         # warning: breaker acts
    check(action_line(v, "breaker", "ok") is not None,
          "an action for warning runs at warning")
    grow(watched, 500)                        # critical: the rest
    check(v.wait_for("err", lambda l: "escalated" in l, 10) is not None,
          "the incident escalates instead of opening a second one")
    check(action_line(v, "fix", "ok") is not None, "the exec action ran")
    with open(os.path.join(d, "marker")) as f:
        marker = f.read().split()
    check(marker[1:] == ["big_file", "critical", "fix", "on"],
          "the script saw VIGIL_* variables: %s" % marker)
    check(action_line(v, "rehearse", "dry-run") is not None and
          not os.path.exists(os.path.join(d, "dry")),
          "dry-run records but does not run")
    check(action_line(v, "picky", "skipped: its when") is not None and
          not os.path.exists(os.path.join(d, "never")),
          "a predicate that says no holds the action back")
    broken = action_line(v, "broken", "failed")
    check(broken is not None and "vigil-fix" in broken,
          "a missing command fails with its name")
    check(action_line(v, "breaker", "skipped: circuit breaker") is not None,
          "the circuit breaker holds back a second attempt")
    ask = action_line(v, "ask", "awaiting approval")
    check(ask is not None, "approve mode waits")
    ask_id = ask.split("vigil incidents approve ")[1].split('"')[0] \
        if ask else "0"
    r = vigil("incidents", "approve", ask_id, "-c", conf)
    check(r.returncode == 0 and "approved" in r.stdout,
          "vigil incidents approve takes the approval")
    check(action_line(v, "ask", "ok") is not None,
          "the daemon runs the approved action")
    r = vigil("incidents", "approve", ask_id, "-c", conf)
    check(r.returncode != 0 and "waiting for approval" in r.stderr,
          "an action is approved once")
    check(action_line(v, "page", "ok") is not None and Hooks.event.wait(5),
          "the webhook action posts")
    token, body = Hooks.got[0] if Hooks.got else (None, {})
    check(token == "t0k" and body.get("action") == "page" and
          body.get("incident", {}).get("rule") == "big_file" and
          body.get("vigil") == "vigil.incident.v1",
          "the webhook carries its headers and the incident: %s" % body)
    dead = action_line(v, "page_dead", "failed", 15)
    check(dead is not None and "2 attempts" in dead,
          "a webhook target that is down fails after its retries")
    check(v.wait_for("err", lambda l: "step: exec timeout" in l, 10)
          is not None, "a step over its budget is recorded as timeout")
    grow(watched, 10)
    check(v.wait_for("err", lambda l: "resolved" in l, 10) is not None,
          "the incident resolves when the metric clears")
    # A second incident: cooldown and the hourly limit hold actions back.
    grow(watched, 500)
    check(action_line(v, "fix", "skipped: cooldown") is not None,
          "cooldown holds back the same action on the same instance")
    check(action_line(v, "once_an_hour", "skipped: rate limit") is not None,
          "the hourly limit holds back a second run")
    check(v.finish(signal.SIGTERM) == 0, "stops cleanly")

    r = vigil("incidents", "list", "--json", "-c", conf)
    rows = json.loads(r.stdout) if r.returncode == 0 else []
    check(len(rows) == 2 and rows[0]["open"] and not rows[1]["open"],
          "incidents list shows one open and one resolved incident")
    first = rows[-1]["id"] if rows else 0
    r = vigil("incidents", "show", str(first), "--json", "-c", conf)
    inc = json.loads(r.stdout) if r.returncode == 0 else {}
    ev = {e["name"] + "/" + e["phase"]: e for e in inc.get("evidence", [])}
    check(ev.get("exec/immediate", {}).get("output", {}).get("output")
          == "looked\n", "the exec step's output is evidence")
    check(ev.get("good.echo/immediate", {}).get("output") ==
          {"asked": "politely"}, "a plugin diagnostic is evidence")
    check(ev.get("nosuch.diag/immediate", {}).get("status") == "failed",
          "a missing diagnostic is recorded as failed")
    check(ev.get("exec/short_term", {}).get("status") == "timeout",
          "the slow step is recorded as timeout")
    snap = ev.get("snapshot/immediate", {}).get("output", {})
    check(any(k.startswith("hello.file.size_bytes") for k in snap),
          "the snapshot holds the metric's window")
    acts = {a["name"]: a["result"] for a in inc.get("actions", [])}
    check(acts.get("fix") == "ok" and acts.get("rehearse") == "dry-run" and
          acts.get("broken") == "failed" and acts.get("ask") == "ok",
          "the audit holds every action: %s" % acts)
    trs = [t["to"] for t in inc.get("transitions", [])]
    check(trs == ["warning", "critical", "ok"],
          "the transitions are recorded: %s" % trs)
    r = vigil("incidents", "show", str(first), "--md", "-c", conf)
    check(r.returncode == 0 and "# Incident %d" % first in r.stdout and
          "## Evidence" in r.stdout, "the Markdown report renders")
    r = vigil("incidents", "show", "99999", "-c", conf)
    check(r.returncode != 0 and "99999" in r.stderr,
          "an unknown incident is a clear error")
    r = vigil("history", "hello.file.size_bytes{path=%s}" % watched,
              "--since", "1h", "-c", conf)
    check(r.returncode == 0 and len(r.stdout.splitlines()) > 5,
          "history reads the samples back")


def test_crash(d):
    conf, watched = setup(d, SLOW_RUNBOOK)
    v = Daemon(["-c", conf])
    grow(watched, 500)
    check(v.wait_for("err", lambda l: "opened" in l, 10) is not None,
          "an incident opens")
    # The intent is committed before the action starts; once it has
    # started, kill vigil outright.
    check(action_line(v, "hang", "started") is not None,
          "the action starts")
    pids = subprocess.run(["pgrep", "-f", "/bin/sleep 60"],
                          capture_output=True, text=True).stdout.split()
    v.p.send_signal(signal.SIGKILL)
    v.finish(timeout=5)
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    # The next start finds the intent without a result.
    v = Daemon(["-c", conf, "--for", "300ms"])
    check(v.finish(timeout=10) == 0, "vigil starts again on the same store")
    r = vigil("incidents", "list", "--json", "-c", conf)
    rows = json.loads(r.stdout) if r.returncode == 0 else []
    check(len(rows) == 1 and rows[0]["open"],
          "the incident survived kill -9")
    r = vigil("incidents", "show", str(rows[0]["id"] if rows else 0),
              "--json", "-c", conf)
    inc = json.loads(r.stdout) if r.returncode == 0 else {}
    results = [a["result"] for a in inc.get("actions", [])]
    check(results == ["interrupted"],
          "the action shows as interrupted: %s" % results)
    # Cleared while vigil was down: the next start resolves it.
    grow(watched, 10)
    v = Daemon(["-c", conf])
    check(v.wait_for("err", lambda l: "resolved" in l and
                     "after a restart" in l, 15) is not None,
          "an incident left open resolves once its rule is seen ok")
    check(v.finish(signal.SIGTERM) == 0, "stops cleanly")


def main():
    with tempfile.TemporaryDirectory() as d:
        test_incident(d)
    with tempfile.TemporaryDirectory() as d:
        test_crash(d)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
