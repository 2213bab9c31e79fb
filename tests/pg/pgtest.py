"""Helpers for the pg plugin's integration tests (tests/integration/pg*.py):
a throwaway PostgreSQL server of their own (tests/pg/start.sh, ctl.sh,
stop.sh), psql sessions driven line by line, and the samples of a
`vigil run --print` parsed as they arrive. Nothing here sleeps to
synchronise: every wait is for a condition, with a deadline."""

import json
import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PSQL = "psql"


class Server:
    """A server of the test's own: the tests stop and restart it, which
    the shared "pg" fixture's server must not suffer (other tests use it
    at the same time)."""

    def __init__(self, opts="-c fsync=off"):
        self.state = "/tmp/vigil-pgtest-%d" % os.getpid()
        env = dict(os.environ, VIGIL_PG_OPTS=opts)
        r = subprocess.run([os.path.join(HERE, "start.sh"), self.state],
                           env=env, capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError("tests/pg/start.sh failed: " + r.stderr)
        with open(os.path.join(self.state, "uri")) as f:
            self.uri = f.read().strip()
        self.port = int(self.uri.rsplit(":", 1)[1].split("/")[0])

    def ctl(self, what):
        subprocess.run([os.path.join(HERE, "ctl.sh"), self.state, what],
                       check=True, timeout=120)

    def close(self):
        subprocess.run([os.path.join(HERE, "stop.sh"), self.state],
                       timeout=120)


def psql(uri, sql, app="vt-psql", check=True):
    """Run sql (statements separated by ';') in one session; the rows,
    unaligned, one per line."""
    r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v",
                        "ON_ERROR_STOP=1", "-d", uri, "-c", sql],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PGAPPNAME=app))
    if check and r.returncode != 0:
        raise RuntimeError("psql %r: %s" % (sql, r.stderr))
    return r.stdout.strip()


class Session:
    """A psql reading statements from a pipe: each line sent runs at once,
    and the session stays open (a transaction left idle, a lock held)."""

    def __init__(self, uri, app):
        self.app = app
        self.p = subprocess.Popen([PSQL, "-X", "-q", "-A", "-t", "-d", uri],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, PGAPPNAME=app))

    def send(self, sql):
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()

    def close(self, timeout=30):
        """End the session; its (stdout, stderr)."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        return out, err


def backend(uri, app, where="true"):
    """The pid of the session named app (matching where), or None."""
    out = psql(uri, "SELECT pid FROM pg_stat_activity WHERE "
               "application_name = '%s' AND %s ORDER BY pid LIMIT 1"
               % (app, where))
    return int(out) if out else None


def parse_line(vt, line):
    """(name, labels, value, ts_ms) of one --print line, or None."""
    m = vt.LINE.match(line)
    if not m:
        return None
    labels = {}
    for kv in (m.group(3) or "{}")[1:-1].split(","):
        if kv:
            k, v = kv.split("=", 1)
            labels[k] = v.strip('"')
    return m.group(2), labels, float(m.group(4)), int(m.group(1))


class Samples:
    """The samples of a vigiltest.Daemon, parsed as they come."""

    def __init__(self, vt, daemon):
        self.vt = vt
        self.d = daemon
        self.all = []
        self.seen = 0

    def update(self):
        lines = self.d.lines["out"]
        for line in lines[self.seen:]:
            s = parse_line(self.vt, line)
            if s:
                self.all.append(s)
        self.seen = len(lines)

    def of(self, name, since=0, **labels):
        """Values of the series name with these labels, from index since."""
        self.update()
        return [v for n, lab, v, _ in self.all[since:]
                if n == name and all(lab.get(k) == w
                                     for k, w in labels.items())]

    def mark(self):
        """An index: samples after now."""
        self.update()
        return len(self.all)

    def wait(self, pred, deadline_s):
        """Pump the daemon's output until pred() holds; its value, or
        None at the deadline."""
        end = time.monotonic() + deadline_s
        while True:
            self.update()
            v = pred()
            if v:
                return v
            if time.monotonic() >= end or not self.d.sel.get_map():
                return None
            self.d.pump(0.1)


def probe(vt, conf, name, timeout=60, **args):
    """vigil probe NAME with JSON arguments: (exit code, reply or None,
    stderr)."""
    r = subprocess.run([vt.VIGIL, "probe", name, "--args", json.dumps(args),
                        "-c", conf], capture_output=True, text=True,
                       timeout=timeout)
    try:
        out = json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        out = None
    return r.returncode, out, r.stderr
