#!/usr/bin/python3
"""The vigil binary end to end: check lists every config error with
file:line, run prints samples, stops cleanly on SIGTERM and --for, reloads
on SIGHUP, and survives broken and blocking plugins."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import (LINE, PLUGINS, TEST_PLUGINS, VIGIL, Daemon,  # noqa
                       check, summary, write)


def test_version_and_help():
    r = subprocess.run([VIGIL, "--version"], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith("vigil "), "--version")
    r = subprocess.run([VIGIL, "help", "plugin", "sys"], capture_output=True,
                       text=True, env=dict(os.environ, VIGIL_PLUGIN_DIR=PLUGINS))
    check(r.returncode == 0 and "per_cpu" in r.stdout and
          "interval" in r.stdout, "help plugin sys lists its options")
    r = subprocess.run([VIGIL, "frobnicate"], capture_output=True, text=True)
    check(r.returncode == 2 and "unknown command" in r.stderr,
          "unknown command exits 2")


def test_check(d):
    bad = write(d, "bad.ini", "\n".join([
        "[vigil]",                     # 1
        "intervall = 5s",              # 2  typo
        "log_level = chatty",          # 3
        "[plugin sys]",                # 4
        "per_cpu = perhaps",           # 5
        "[plugin nosuch]",             # 6
        "[mystery]",                   # 7
        "this line has no equals",     # 8
        "[plugin sys second]",         # 9
        "interval = fast",             # 10
        "",
    ]))
    r = subprocess.run([VIGIL, "check", "-c", bad, "--plugin-dir", PLUGINS],
                       capture_output=True, text=True)
    check(r.returncode == 2, "check of a bad config exits 2")
    for line, frag in [(2, "intervall"), (3, "log_level"), (5, "per_cpu"),
                       (6, "nosuch"), (7, "mystery"), (8, ""),
                       (10, "interval")]:
        check(re.search(r"bad\.ini:%d: .*%s" % (line, re.escape(frag)),
                        r.stderr) is not None,
              "check names bad.ini:%d (%s)" % (line, frag or "syntax"))
    good = write(d, "good.ini", "[vigil]\ninterval = 1s\n[plugin sys]\n")
    r = subprocess.run([VIGIL, "check", "-c", good, "--plugin-dir", PLUGINS],
                       capture_output=True, text=True)
    check(r.returncode == 0 and "OK" in r.stdout, "check of a good config")
    r = subprocess.run([VIGIL, "check", "-c", os.path.join(d, "none.ini")],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "none.ini" in r.stderr,
          "check of a missing file names it")


def test_run_signals(d):
    conf = write(d, "run.ini", "[vigil]\ninterval = 200ms\n[plugin sys]\n")
    v = Daemon(["-c", conf, "--plugin-dir", PLUGINS, "--print", "vigil.*",
                "--print", "sys.up"])
    lag = v.wait_for("out", lambda l: " vigil.loop.lag_ms " in l, 10)
    check(lag is not None, "vigil.loop.lag_ms is published")
    up = v.wait_for("out", lambda l: " sys.up " in l, 10)
    check(up is not None and up.endswith(" 1"), "sys.up is 1")
    check(all(LINE.match(l) for l in v.lines["out"]),
          "every --print line is <ms> <series> <value>")
    v.p.send_signal(signal.SIGHUP)
    check(v.wait_for("err", lambda l: "SIGHUP" in l, 10) is not None,
          "SIGHUP is logged as a reload")
    n = len(v.lines["out"])
    check(v.wait_for("out", lambda l: " sys.up " in l and
                     v.lines["out"].index(l) >= n, 5) is not None and
          v.p.poll() is None, "still publishing after SIGHUP")
    rc = v.finish(signal.SIGTERM)
    check(rc == 0, "SIGTERM stops with exit 0 (got %r)" % rc)
    check(not any("still open" in l for l in v.lines["err"]),
          "no handle left open at exit")

    v = Daemon(["-c", conf, "--plugin-dir", PLUGINS, "--for", "700ms"])
    check(v.finish(timeout=10) == 0, "--for stops by itself with exit 0")


def test_broken_plugins(d):
    pdir = os.path.join(d, "plugins")
    os.mkdir(pdir)
    for name in ["init_fails", "wrong_abi", "slow"]:
        shutil.copy(os.path.join(TEST_PLUGINS, name + ".so"), pdir)
    shutil.copy(os.path.join(PLUGINS, "sys.so"), pdir)
    conf = write(d, "broken.ini", "\n".join([
        "[vigil]",
        "interval = 200ms",
        "[plugin init_fails]",  # 3
        "[plugin wrong_abi]",   # 4
        "[plugin slow]",        # 5
        "block = 150ms",
        "interval = 300ms",
        "[plugin sys]",
        "",
    ]))
    v = Daemon(["-c", conf, "--plugin-dir", pdir, "--print", "sys.up",
                "--print", "vigil.loop.lag_ms", "--print", "slow.up"])
    check(v.wait_for("out", lambda l: " sys.up " in l, 10) is not None,
          "sys runs beside broken plugins")
    check(v.wait_for("err", lambda l: "broken.ini:3:" in l and
                     "init failed" in l, 5) is not None,
          "failing init reported with file:line")
    check(v.wait_for("err", lambda l: "broken.ini:4:" in l and
                     "ABI" in l, 5) is not None,
          "wrong ABI reported with file:line")
    check(v.wait_for("err", lambda l: "collect took" in l and
                     "plugin=slow" in l, 10) is not None,
          "a blocking collect is called out")
    lag = v.wait_for("out", lambda l: " vigil.loop.lag_ms " in l and
                     float(l.split()[2]) >= 100, 10)
    check(lag is not None, "the blocked loop shows in vigil.loop.lag_ms")
    check(v.finish(signal.SIGINT) == 0, "SIGINT stops with exit 0")


def test_store_unwritable(d):
    conf = write(d, "nostore.ini", "\n".join([
        "[vigil]",
        "interval = 200ms",
        "[store]",
        "path = /nonexistent-vigil-dir/vigil.db",
        "[plugin sys]",
        "",
    ]))
    v = Daemon(["-c", conf, "--plugin-dir", PLUGINS, "--print", "sys.up"])
    err = v.wait_for("err", lambda l: "nonexistent-vigil-dir" in l, 10)
    check(err is not None and "level=error" in err,
          "an unwritable store is a clear error naming its path")
    check(v.wait_for("out", lambda l: " sys.up " in l, 10) is not None,
          "monitoring goes on without the store")
    check(v.finish(signal.SIGTERM) == 0, "and stops cleanly")


def test_probe(d):
    pdir = os.path.join(d, "probe-plugins")
    os.mkdir(pdir)
    shutil.copy(os.path.join(TEST_PLUGINS, "good.so"), pdir)
    conf = write(d, "probe.ini", "\n".join([
        "[vigil]",
        "plugin_dir = probe-plugins",
        "[plugin good a]",
        "target = t",
        "[store]",
        "path = probe.db",
        "",
    ]))
    r = subprocess.run([VIGIL, "probe", "good.echo", "n=3", "s=text",
                        "b=true", "-c", conf], capture_output=True, text=True)
    out = json.loads(r.stdout) if r.returncode == 0 else None
    check(out == {"n": 3, "s": "text", "b": True},
          "vigil probe runs a diagnostic with typed arguments: %r" % out)
    check(not os.path.exists(os.path.join(d, "probe.db")),
          "a probe writes no store")
    r = subprocess.run([VIGIL, "probe", "good.nothing", "-c", conf],
                       capture_output=True, text=True)
    check(r.returncode == 1 and "good.echo" in r.stderr,
          "an unknown diagnostic lists the ones available")


def main():
    with tempfile.TemporaryDirectory() as d:
        test_version_and_help()
        test_check(d)
        test_run_signals(d)
        test_broken_plugins(d)
        test_probe(d)
        test_store_unwritable(d)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
