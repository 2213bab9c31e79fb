#!/usr/bin/python3
"""Runbooks in the real daemon: transitions from live samples, SIGHUP
reload keeping the state of unchanged rules, a broken edit leaving the old
version running, sandbox escapes and runaway handlers contained, repeated
failures quarantined, and `vigil check` naming bad runbook keys."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import TEST_PLUGINS, VIGIL, Daemon, check, summary, write  # noqa


RULES_V1 = """
local vigil = require "vigil"
vigil.threshold "good_high" {
  metric = "good.value{target=x}", crit = 2, nodata = false,
}
vigil.threshold "good_other" {
  metric = "good.value{target=x}", warn = 100, nodata = false,
}
vigil.on("good_high", function(ev)
  vigil.log("info", "handler saw " .. ev.rule .. " " .. ev.to)
end)
"""

SANDBOX = """
local vigil = require "vigil"
vigil.threshold "sandbox_probe" {
  metric = "good.value{target=x}", warn = 1, nodata = false,
}
vigil.on("sandbox_probe", function(ev)
  local ok, err = pcall(function() return io.open("/etc/passwd") end)
  vigil.log("info", "io: " .. tostring(ok))
  while true do end
end)
vigil.every("100ms", function() error("always fails") end)
"""


def config(d, rules):
    pdir = os.path.join(d, "plugins")
    os.makedirs(pdir, exist_ok=True)
    shutil.copy(os.path.join(TEST_PLUGINS, "good.so"), pdir)
    return write(d, "vigil.ini", "\n".join([
        "[vigil]",
        "interval = 100ms",
        "plugin_dir = plugins",
        "[rules]",
        "dir = %s" % rules,
        "budget = 20ms",
        "quarantine_after = 3",
        "[plugin good]",
        "target = x",
        "count = 3",
        "interval = 100ms",
        "",
    ]))


def wait_samples(v, n):
    """Wait until n more samples of good.value were printed: proof that
    the rules saw samples after whatever happened before the call."""
    start = len(v.lines["out"])
    v.wait_for("out", lambda l: len(v.lines["out"]) >= start + n, 10)


def transitions(v, rule):
    return [l for l in v.lines["err"] if "src=rule=%s " % rule in l and
            "->" in l]


def test_reload(d):
    rules = os.path.join(d, "rules")
    os.makedirs(rules)
    rb = write(rules, "good.lua", RULES_V1)
    v = Daemon(["-c", config(d, rules), "--print", "good.value*"])
    check(v.wait_for("err", lambda l: "src=rule=good_high " in l and
                     "ok -> critical" in l, 10) is not None,
          "a live sample over crit makes a transition")
    check(v.wait_for("err", lambda l: "handler saw good_high critical" in l,
                     5) is not None, "the Lua handler runs on it")

    # Unchanged rule: SIGHUP keeps its state (no second transition).
    v.p.send_signal(signal.SIGHUP)
    check(v.wait_for("err", lambda l: "reloaded:" in l, 10) is not None,
          "SIGHUP reloads the runbooks")
    wait_samples(v, 3)
    check(len(transitions(v, "good_high")) == 1,
          "an unchanged rule keeps its state across reload")

    # A broken edit is rejected whole; the old version keeps running.
    write(rules, "good.lua", RULES_V1 + "\nvigil.threshold 'x' { crtical = 1 }\n")
    v.p.send_signal(signal.SIGHUP)
    bad = v.wait_for("err", lambda l: "reload:" in l and "crtical" in l, 10)
    check(bad is not None and "good.lua:" in bad and
          "previous version keeps running" in bad,
          "a broken edit is reported with file:line and rejected")
    wait_samples(v, 3)
    check(len(transitions(v, "good_high")) == 1,
          "the old version keeps its state after a rejected edit")

    # A changed rule starts fresh: a new transition from ok.
    write(rules, "good.lua", RULES_V1.replace("crit = 2", "crit = 1"))
    v.p.send_signal(signal.SIGHUP)
    check(v.wait_for("err", lambda l: "src=rule=good_high " in l and
                     "ok -> critical" in l and
                     len(transitions(v, "good_high")) == 2, 10) is not None,
          "a changed rule starts fresh")
    check(len(transitions(v, "good_other")) == 0,
          "the unchanged rule beside it made no transition")
    check(v.finish(signal.SIGTERM) == 0, "stops cleanly")


def test_sandbox(d):
    rules = os.path.join(d, "rules2")
    os.makedirs(rules)
    write(rules, "sandbox.lua", SANDBOX)
    write(rules, "fine.lua", RULES_V1)
    v = Daemon(["-c", config(d, rules)])
    check(v.wait_for("err", lambda l: "io: false" in l, 10) is not None,
          "io is not reachable from a runbook")
    aborted = v.wait_for("err", lambda l: "time budget" in l, 10)
    check(aborted is not None and "sandbox.lua:" in aborted,
          "a runaway handler is aborted, with its file:line")
    q = v.wait_for("err", lambda l: "quarantined" in l, 10)
    check(q is not None and "schedule" in q,
          "a schedule failing every call is quarantined")
    check(v.wait_for("err", lambda l: "handler saw good_high critical" in l,
                     10) is not None, "the other runbook runs on")
    check(v.finish(signal.SIGTERM) == 0, "stops cleanly")


def test_check(d):
    rules = os.path.join(d, "rules3")
    os.makedirs(rules)
    write(rules, "typo.lua", "\n".join([
        'local vigil = require "vigil"',
        'vigil.threshold "cpu" {',
        '  metric = "sys.cpu.busy_pct", warn = 40,',
        '  crtical = 70,',
        '}',
        "",
    ]))
    r = subprocess.run([VIGIL, "check", "-c", config(d, rules)],
                       capture_output=True, text=True)
    check(r.returncode == 2, "check fails on a runbook typo")
    check(re.search(r"typo\.lua:2: .*unknown key 'crtical'; did you mean "
                    r"'crit'\?", r.stderr) is not None,
          "the typo is named with file:line and a suggestion")
    write(rules, "typo.lua", "\n".join([
        'local vigil = require "vigil"',
        'vigil.threshold "cpu" {',
        '  metric = "sys.cpu.busy_pct", warn = 70, crit = 40,',
        '}',
        "",
    ]))
    r = subprocess.run([VIGIL, "check", "-c", config(d, rules)],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "typo.lua:2:" in r.stderr,
          "levels out of order are refused")
    write(rules, "typo.lua", "\n".join([
        'local vigil = require "vigil"',
        'vigil.threshold "cpu" {',
        '  metric = "sys.cpu.busy_pct", warn = 40, runbook = "tell",',
        '}',
        'vigil.runbook "tell" { remediate = {',
        '  vigil.action "page" { webhook = "http://127.0.0.1:9/" },',
        '} }',
        "",
    ]))
    r = subprocess.run([VIGIL, "check", "-c", config(d, rules)],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "typo.lua:6: action 'page' sends a webhook"
          in r.stderr, "a webhook action without [plugin webhook] is named")


def main():
    with tempfile.TemporaryDirectory() as d:
        test_reload(d)
        test_sandbox(d)
        test_check(d)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
