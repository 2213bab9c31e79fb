#!/usr/bin/python3
"""The log plugin against real files, as logrotate and applications treat
them, in the running daemon.

Three instances: `app` (a log that exists when vigil starts, with four
patterns: a literal, a Python traceback's first line, a regex, FATAL),
`later` (a file that does not exist yet) and `nodir` (whose directory does
not exist yet). The test plays the application and logrotate:

- lines written before vigil started are not counted (it starts at the
  end); a partial line waits for its newline; CRLF ends a line too;
- rotation: the log is renamed, the application writes to the renamed
  file (its open fd), a new file takes the name, the application writes
  to the old file again: every line is counted once;
- copytruncate: the file is copied and truncated to 0, then written: the
  truncation is seen and the new lines counted; truncated and written
  past the old size before vigil looks: seen as well;
- the missing file and the missing directory appear later: read from
  their beginning, then followed;
- a 5000-byte line is counted as cut; 200000 lines written at once are
  all counted, read in budgeted works while the loop stays free
  (vigil.loop.lag_ms under 50 ms: an 8 MiB read matched on the loop
  would take longer);
- every count checked exactly, from `--print` (no sleeps: waits for
  values, with deadlines), rates published;
- a FATAL line opens an incident whose runbook steps run log.recent in
  the daemon: the traceback with its context, the newest errors of one
  instance (the cut line, the context after it still pending), and all
  matches of all instances; checked exactly in the stored evidence;
- `vigil probe log.recent` on a config that reads from the beginning, and
  its argument errors; the loop is never blocked; SIGTERM exits 0.

Exits 77 (skip) without the binary or the plugin.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
try:
    from vigiltest import PLUGINS, VIGIL, Daemon, check, summary, write  # noqa
except KeyError:
    print("skip: VIGIL_BIN / VIGIL_PLUGIN_DIR not set")
    sys.exit(77)

DEADLINE = 20.0
MAX_LAG_MS = 50.0
BULK = 200000

RUNBOOK = r"""
local vigil = require "vigil"

vigil.threshold "fatal_in_log" {
  title = "A FATAL line in the application's log",
  metric = "log.lines.matched_total{instance=app,pattern=fatal}",
  warn = 0, crit = 0.5, nodata = false, runbook = "read_the_log",
}

vigil.runbook "read_the_log" {
  title = "Review recent error logs for exceptions",
  immediate = { vigil.step "log.recent" { pattern = "traceback", limit = 5 } },
  short_term = { vigil.step "log.recent" { pattern = "error",
                                           instance = "app", limit = 3 } },
  deep = { vigil.step "log.recent" { since = "1h", limit = 100 } },
}
"""

TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "app.py", line 10, in handle',
    '    raise ValueError("bad price")',
    "ValueError: bad price",
]

LINE = re.compile(r"^(\d{13}) ([A-Za-z_][A-Za-z0-9_.]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(line):
    m = LINE.match(line)
    if not m:
        return None
    labels = dict(LABEL.findall(m.group(3))) if m.group(3) else {}
    return m.group(2), labels, float(m.group(4))


class Watch:
    """The latest value of each series from a Daemon's --print output."""

    def __init__(self, daemon):
        self.d = daemon
        self.seen = 0
        self.last = {}

    def _read(self):
        lines = self.d.lines["out"]
        while self.seen < len(lines):
            s = parse(lines[self.seen])
            self.seen += 1
            if s:
                key = (s[0], tuple(sorted(s[1].items())))
                self.last[key] = s[2]
                self.last.setdefault(("#all",) + key, []).append(s[2])

    def get(self, name, **labels):
        self._read()
        return self.last.get((name, tuple(sorted(labels.items()))))

    def all(self, name, **labels):
        self._read()
        return self.last.get(("#all", name, tuple(sorted(labels.items()))),
                             [])

    def until(self, want, deadline=DEADLINE):
        """Wait until every (name, labels, value) in want is the latest
        value of its series; returns the mismatches left (empty: ok)."""
        end = time.monotonic() + deadline
        while True:
            bad = [(n, lab, v, self.get(n, **lab)) for n, lab, v in want
                   if self.get(n, **lab) != v]
            if not bad or time.monotonic() >= end or \
                    not self.d.sel.get_map():
                return bad
            self.d.pump(0.2)


def counts(inst, lines, **matched):
    """The expected counters of one instance."""
    want = [("log.lines_total", {"instance": inst}, lines)]
    for pat, n in matched.items():
        want.append(("log.lines.matched_total",
                     {"instance": inst, "pattern": pat}, n))
    return want


def expect(w, want, what):
    bad = w.until(want)
    check(not bad, "%s%s" % (what, ": mismatches (series, labels, want, got) "
                             "%s" % bad if bad else ""))


def append(path, text, mode="a"):
    with open(path, mode) as f:
        f.write(text)


def app_counts(lines, error, traceback=1, slow=1, fatal=0):
    return counts("app", lines, error=error, traceback=traceback, slow=slow,
                  fatal=fatal)


def phase_lines(w, app):
    """Start at the end, partial lines, CRLF, the three kinds."""
    expect(w, [("log.file.present", {"instance": "app"}, 1),
               ("log.file.present", {"instance": "later"}, 0),
               ("log.file.present", {"instance": "nodir"}, 0)] +
           app_counts(0, 0, 0, 0), "at start: the old lines are skipped, "
           "the missing files are waited for")
    # " ends here" ends the line vigil started in the middle of.
    append(app, " ends here\nINFO a1\nERROR e1\r\nINFO a2\n" +
           "\n".join(TRACEBACK) +
           "\nINFO took 12 ms\nINFO took 1234 ms\nERROR par")
    expect(w, app_counts(9, 1), "9 lines, the partial one not yet")
    append(app, "tial\n")
    expect(w, app_counts(10, 2), "the partial line counts once ended")
    rate = [v for v in w.all("log.lines_per_s", instance="app") if v > 0]
    check(rate, "log.lines_per_s is published (%s)" % rate[:3])


def phase_rotation(w, app):
    """rename + create, with the application still on the old file."""
    with open(app, "a") as old:
        os.rename(app, app + ".1")
        old.write("ERROR late1\n")
        old.flush()
        append(app, "ERROR new1\nINFO n2\n", "w")
        expect(w, app_counts(13, 4) +
               [("log.file.rotations_total", {"instance": "app"}, 1)],
               "rotation: the old file read to its end, the new one from "
               "its beginning")
        old.write("ERROR late2\n")
        old.flush()
        expect(w, app_counts(14, 5), "a line written to the rotated file "
               "after the switch is read (rotate_wait)")


def phase_truncation(w, app):
    """copytruncate twice: seen at once, and seen only afterwards."""
    shutil.copy(app, app + ".2")
    os.truncate(app, 0)
    expect(w, [("log.file.truncations_total", {"instance": "app"}, 1)],
           "copytruncate: the truncation is seen")
    append(app, "INFO t1\nERROR t2\n")
    expect(w, app_counts(16, 6), "the lines after it are counted")
    longer = "".join("ERROR after truncate %d %s\n" % (i, "-" * 40)
                     for i in (1, 2, 3))
    with open(app, "r+") as f:  # truncate and write in one go
        f.truncate(0)
        f.write(longer)
    expect(w, app_counts(19, 9) +
           [("log.file.truncations_total", {"instance": "app"}, 2)],
           "truncated and written past the old size: seen too")


def phase_appear(w, tmp):
    later = os.path.join(tmp, "logs", "later.log")
    append(later, "ERROR l1\nINFO l2\n")
    expect(w, counts("later", 2, error=1) +
           [("log.file.present", {"instance": "later"}, 1)],
           "a file created after start is read from its beginning")
    newdir = os.path.join(tmp, "newdir")
    os.mkdir(newdir)
    append(os.path.join(newdir, "x.log"), "ERROR d1\n")
    expect(w, counts("nodir", 1, error=1) +
           [("log.file.present", {"instance": "nodir"}, 1)],
           "a directory created after start is found")
    append(os.path.join(newdir, "x.log"), "ERROR d2\n")
    expect(w, counts("nodir", 2, error=2), "and then followed")


def phase_bulk(w, tmp):
    """200000 lines in one write: read in budgeted works on the pool, all
    counted; the loop's lag is checked over the whole run."""
    later = os.path.join(tmp, "logs", "later.log")
    append(later, "".join("%s bulk line %d of the test's big write\n"
                          % ("ERROR" if i % 100 == 0 else "INFO", i)
                          for i in range(BULK)))
    expect(w, counts("later", 2 + BULK, error=1 + BULK // 100),
           "%d lines written at once are all counted" % BULK)


def evidence(conf):
    r = subprocess.run([VIGIL, "incidents", "list", "--json", "-c", conf],
                       capture_output=True, text=True)
    rows = json.loads(r.stdout) if r.returncode == 0 else []
    check(len(rows) == 1, "one incident (%s)" % r.stderr[-300:])
    if not rows:
        return {}
    r = subprocess.run([VIGIL, "incidents", "show", str(rows[0]["id"]),
                        "--json", "-c", conf], capture_output=True, text=True)
    inc = json.loads(r.stdout) if r.returncode == 0 else {}
    return {e["phase"]: e for e in inc.get("evidence", [])}


def check_recent(ev, longline):
    tb = ev.get("immediate", {}).get("output", {})
    m = tb.get("matches", [])
    check(ev.get("immediate", {}).get("status") == "ok" and len(m) == 1 and
          m[0]["line"] == TRACEBACK[0] and m[0]["before"] == ["INFO a2"] and
          m[0]["after"] == TRACEBACK[1:] and not m[0]["after_pending"] and
          m[0]["instance"] == "app" and m[0]["seq"] == 4,
          "log.recent traceback: the line, one before, three after: %s" % m)
    err = ev.get("short_term", {}).get("output", {}).get("matches", [])
    lines = [e["line"] for e in err]
    want = [longline[:2048], "ERROR after truncate 3 " + "-" * 40,
            "ERROR after truncate 2 " + "-" * 40]
    check(lines == want, "log.recent error: the newest three, newest "
          "first: %s" % [x[:30] for x in lines])
    if len(err) == 3:
        check(err[0]["truncated"] and err[0]["after"] == ["FATAL stop"] and
              err[0]["after_pending"] and
              err[0]["before"] == [want[1]] and
              err[1]["after"] == [longline[:2048]] and
              err[1]["context_truncated"],
              "its context: the cut line's after-lines still coming")
    everything = ev.get("deep", {}).get("output", {})
    files = {f["instance"]: f for f in everything.get("files", [])}
    # app: 5 errors (keep), a traceback, a slow line, FATAL; later: its
    # 10 newest errors (keep's default); nodir: 2.
    check(everything.get("kept") == 20 and
          len(everything.get("matches", [])) == 20 and
          files.get("app", {}).get("lines_total") == 21 and
          files.get("app", {}).get("matched_total") ==
          {"error": 10, "traceback": 1, "slow": 1, "fatal": 1} and
          files.get("later", {}).get("lines_total") == 2 + BULK and
          files.get("nodir", {}).get("lines_total") == 2,
          "log.recent over every instance: 20 kept matches, the files' "
          "counts (%s)" % {k: everything.get(k) for k in ("kept", "files")})


def check_probe(tmp, app):
    conf = write(tmp, "probe.ini", "\n".join([
        "[vigil]", "plugin_dir = %s" % PLUGINS,
        "[plugin log app]", "file = %s" % app + ".1", "start_at = beginning",
        "pattern = traceback: ^Traceback", "context_after = 1",
        "context_before = 0", ""]))

    def probe(*args):
        r = subprocess.run([VIGIL, "probe", "log.recent", "-c", conf] +
                           list(args), capture_output=True, text=True,
                           timeout=60)
        try:
            return r.returncode, json.loads(r.stdout)
        except ValueError:
            return r.returncode, {"raw": r.stdout + r.stderr}

    # The rotated file: the traceback written before vigil started, and
    # the one written while it ran; newest first.
    rc, v = probe("pattern=traceback")
    m = v.get("matches", [])
    check(rc == 0 and len(m) == 2 and
          [x["line"] for x in m] == [TRACEBACK[0]] * 2 and
          m[0]["after"] == TRACEBACK[1:2] and
          m[1]["after"] == ["half a line ends here"] and
          m[0]["before"] == [] and m[0]["seq"] > m[1]["seq"],
          "vigil probe log.recent reads the file from its beginning: %s" % v)
    rc, v = probe("pattern=nope")
    check(rc == 1 and "no pattern nope" in v.get("error", ""),
          "an unknown pattern is refused: %s" % v)
    rc, v = probe("since=yesterday")
    check(rc == 1 and "\"since\"" in v.get("error", ""),
          "a bad since is refused: %s" % v)
    rc, v = probe("since=1h", "limit=0")
    check(rc == 1 and "\"limit\"" in v.get("error", ""),
          "a bad limit is refused: %s" % v)


def main():
    if not os.path.exists(os.path.join(PLUGINS, "log.so")):
        print("skip: no log.so in %s" % PLUGINS)
        return 77
    tmp = tempfile.mkdtemp(prefix="vigil-log-")
    d = None
    try:
        logs = os.path.join(tmp, "logs")
        os.mkdir(logs)
        os.mkdir(os.path.join(tmp, "rules"))
        write(os.path.join(tmp, "rules"), "log.lua", RUNBOOK)
        app = os.path.join(logs, "app.log")
        append(app, "ERROR before vigil started\nTraceback (most recent "
               "call last):\nhalf a line")
        conf = write(tmp, "vigil.ini", "\n".join([
            "[vigil]", "plugin_dir = %s" % PLUGINS, "interval = 1s",
            "[rules]", "dir = rules",
            "[store]", "path = vigil.db", "flush = 100ms",
            "[plugin log app]", "file = %s" % app, "interval = 200ms",
            "pattern = error: ERROR",
            "pattern = traceback: ^Traceback \\(most recent call last\\):",
            "pattern = slow: took [0-9]{4,} ms",
            "pattern = fatal: FATAL",
            "context_before = 1", "context_after = 3", "keep = 5",
            "rotate_wait = 60s",
            "[plugin log later]",
            "file = %s" % os.path.join(logs, "later.log"),
            "interval = 200ms", "pattern = error: ERROR",
            "[plugin log nodir]",
            "file = %s" % os.path.join(tmp, "newdir", "x.log"),
            "interval = 200ms", "pattern = error: ERROR", ""]))

        d = Daemon(["-c", conf, "--print", "log.*", "--print",
                    "vigil.loop.lag_ms"])
        w = Watch(d)
        phase_lines(w, app)
        phase_rotation(w, app)
        phase_truncation(w, app)
        phase_appear(w, tmp)
        phase_bulk(w, tmp)
        longline = "ERROR " + "x" * 5000
        append(app, longline + "\n")
        expect(w, app_counts(20, 10) +
               [("log.lines.truncated_total", {"instance": "app"}, 1)],
               "a 5000-byte line is counted, cut")
        append(app, "FATAL stop\n")
        expect(w, app_counts(21, 10, fatal=1), "the FATAL line")
        end = time.monotonic() + DEADLINE
        steps = []
        while len(steps) < 3 and time.monotonic() < end:
            d.pump(0.2)
            steps = [x for x in d.lines["err"] if "step: log.recent" in x]
        check(len(steps) == 3 and all(x.endswith('ok"') or " ok" in x
                                      for x in steps),
              "the incident's three log.recent steps ran: %s" % steps)
        lags = [s[2] for s in map(parse, d.lines["out"])
                if s and s[0] == "vigil.loop.lag_ms"]
        check(lags and max(lags) < MAX_LAG_MS,
              "the loop is never blocked: vigil.loop.lag_ms max %s"
              % (max(lags) if lags else None))
        code = d.finish(signal.SIGTERM)
        check(code == 0, "vigil exits 0 on SIGTERM (%s)" % code)
        d = None
        check_recent(evidence(conf), longline)
        check_probe(tmp, app)
    finally:
        if d is not None:
            d.finish(signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
