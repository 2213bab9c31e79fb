#!/usr/bin/python3
"""The sqlite plugin against real databases and a real writer.

Two databases of 100000 orders (indexed by symbol, not by status), one in
rollback-journal mode and one in WAL mode, watched by `vigil run --print`
with the same four queries: a full scan (status), an indexed search
(symbol), a query written over continuation lines, and a write disguised
as a read (WITH ... DELETE). An application process (Python's sqlite3
module, a separate process with its own connection) writes to them.

Checked:
- rows exactly (10000 open orders, 1000 for one symbol), full-scan steps
  only for the unindexed query, a time for each;
- the disguised write is refused once, named in the log, never run: the
  application's row count is unchanged;
- the application holding a write transaction (RESERVED) in rollback
  mode, and any lock in WAL mode: vigil keeps measuring, sees only
  committed rows, counts nothing busy;
- the application holding an EXCLUSIVE lock in rollback mode: vigil
  counts busy runs in sqlite.query.busy_total, says so once (not once a
  tick), sqlite.up stays 1, and measures again after the commit;
- read-only: the database file is byte-identical after vigil read it for
  several intervals and no journal was made; the application commits
  writes while vigil runs;
- a database file that does not exist yet: sqlite.up 0 with an error
  naming it, then measured once it is created, the daemon running on;
- sqlite.plan flags the full scan with a checked CREATE INDEX hint and not
  the indexed query; `vigil probe sqlite FILE QUERY` times a query and
  shows its plan; a write given to it is refused (exit 1);
- the loop is never blocked by the queries (vigil.loop.lag_ms stays far
  below the time of a query that spins for over 100 ms every interval);
- SIGTERM: exit 0.

Never sleeps to synchronise: every wait is for a line, with a deadline.
Exits 77 (skip) without the binary or the plugin.
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import sqlite3
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
ROWS = 100000
OPEN = ROWS // 10
PER_SYMBOL = ROWS // 100
FILLS = 100
# The spinning query must be long enough that running it on the loop
# would show in the loop lag: about 200 ms on this kind of machine when it
# is quiet, more under load; 50 ms is the floor the check needs.
HEAVY_MS = 50.0
SPIN = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < 900000) SELECT count(*) FROM n")

QUERIES = [
    "query = open_orders: SELECT id FROM orders WHERE status = 'open'",
    "query = by_symbol: SELECT id FROM orders WHERE symbol = 'S7'",
    "query = fills:",
    "    SELECT id FROM fills",
    "    WHERE px > 0",
    "query = sneaky: WITH x AS (SELECT 1) DELETE FROM fills WHERE id IN x",
]

LINE = re.compile(r"^(\d{13}) ([A-Za-z_][A-Za-z0-9_.]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

# The application: one connection, SQL lines on stdin, one reply line
# each ("ok [rows]" or "err message").
APP = r'''
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None,
                     timeout=float(sys.argv[2]))
for line in sys.stdin:
    try:
        print("ok", db.execute(line).fetchall(), flush=True)
    except Exception as e:
        print("err", e, flush=True)
'''


def parse(line):
    m = LINE.match(line)
    if not m:
        return None
    labels = dict(LABEL.findall(m.group(3))) if m.group(3) else {}
    return int(m.group(1)) / 1000.0, m.group(2), labels, float(m.group(4))


class Watch:
    """Samples from a Daemon, with waits that start at a given line."""

    def __init__(self, daemon):
        self.d = daemon

    def here(self):
        return len(self.d.lines["out"])

    def wait(self, name, labels, pred=lambda v: True, since=0,
             deadline=DEADLINE):
        """The first sample at or after line `since` of series name with
        exactly these labels whose value satisfies pred, or None."""
        end = time.monotonic() + deadline
        i = since
        while True:
            lines = self.d.lines["out"]
            while i < len(lines):
                s = parse(lines[i])
                i += 1
                if s and s[1] == name and s[2] == labels and pred(s[3]):
                    return s
            if time.monotonic() >= end or not self.d.sel.get_map():
                return None
            self.d.pump(0.2)

    def values(self, name, labels, since=0):
        return [s[3] for s in map(parse, self.d.lines["out"][since:])
                if s and s[1] == name and s[2] == labels]

    def count(self, name, labels, n, since, deadline=DEADLINE):
        """Wait until n samples of the series came after `since`."""
        end = time.monotonic() + deadline
        while len(self.values(name, labels, since)) < n:
            if time.monotonic() >= end or not self.d.sel.get_map():
                return False
            self.d.pump(0.2)
        return True


class App:
    """The application's writer, driven one statement at a time."""

    def __init__(self, tmp, path, timeout_s):
        script = os.path.join(tmp, "app.py")
        if not os.path.exists(script):
            write(tmp, "app.py", APP)
        self.p = subprocess.Popen(["/usr/bin/python3", script, path,
                                   str(timeout_s)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def do(self, sql):
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], DEADLINE)
        return self.p.stdout.readline().strip() if r else "err no reply"

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def make_db(path, mode):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=%s" % mode)
    db.executescript("""
        CREATE TABLE orders(id INTEGER PRIMARY KEY, symbol TEXT,
                            status TEXT, qty INT);
        CREATE INDEX orders_symbol ON orders(symbol);
        CREATE TABLE fills(id INTEGER PRIMARY KEY, order_id INT, px REAL);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
                                WHERE i < %d)
        INSERT INTO orders(symbol, status, qty)
            SELECT 'S' || (i %% 100),
                   CASE WHEN i %% 10 = 0 THEN 'open' ELSE 'done' END, i %% 7
            FROM n;
        INSERT INTO fills(order_id, px) SELECT id, 1.5 FROM orders
            WHERE id <= %d;
    """ % (ROWS, FILLS))
    db.commit()
    db.close()


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def lab(inst, query=None):
    d = {"instance": inst}
    if query is not None:
        d["query"] = query
    return d


def check_figures(w, inst):
    """Rows, full-scan steps and times of the three reads."""
    for q, rows in (("open_orders", OPEN), ("by_symbol", PER_SYMBOL),
                    ("fills", FILLS)):
        s = w.wait("sqlite.query.rows", lab(inst, q))
        check(s is not None and s[3] == rows, "%s: %s returns %d rows (%s)"
              % (inst, q, rows, s and s[3]))
        s = w.wait("sqlite.query.time_ms", lab(inst, q))
        check(s is not None and s[3] > 0, "%s: %s has a time (%s ms)"
              % (inst, q, s and s[3]))
    s = w.wait("sqlite.query.fullscan_steps", lab(inst, "open_orders"))
    check(s is not None and s[3] >= ROWS - 1,
          "%s: the unindexed query steps through the whole table (%s)"
          % (inst, s and s[3]))
    s = w.wait("sqlite.query.fullscan_steps", lab(inst, "by_symbol"))
    check(s is not None and s[3] == 0,
          "%s: the indexed query makes no full-scan step (%s)"
          % (inst, s and s[3]))
    s = w.wait("sqlite.db.size_bytes", lab(inst))
    check(s is not None and s[3] > 1 << 20, "%s: sqlite.db.size_bytes %s"
          % (inst, s and s[3]))


def check_refused(d, w, inst, app):
    """The disguised write: refused once, never run."""
    e = d.wait_for("err", lambda l: "instance=%s" % inst in l and
                   "query sneaky: refused: DELETE on fills is not a read"
                   in l, DEADLINE)
    check(e is not None, "%s: the disguised write is refused in the log"
          % inst)
    mark = w.here()
    check(w.count("sqlite.query.errors_total", lab(inst, "sneaky"), 3, mark),
          "%s: three more collections" % inst)
    vals = w.values("sqlite.query.errors_total", lab(inst, "sneaky"), mark)
    check(vals and set(vals) == {1.0},
          "%s: counted once, not every interval (%s)" % (inst, vals))
    refusals = [l for l in d.lines["err"] if "instance=%s" % inst in l and
                "query sneaky" in l]
    check(len(refusals) == 1, "%s: said once (%d)" % (inst, len(refusals)))
    check(app.do("SELECT count(*) FROM fills") == "ok [(%d,)]" % FILLS,
          "%s: the fills are all there" % inst)


def check_rollback_locks(d, w, app):
    """RESERVED: measured on; EXCLUSIVE: busy, counted, said once."""
    inst = "roll"
    r = app.do("BEGIN IMMEDIATE")
    r2 = app.do("INSERT INTO fills(order_id, px) VALUES (1, 2.0)")
    check(r.startswith("ok") and r2.startswith("ok"),
          "the application holds a write transaction (%s, %s)" % (r, r2))
    mark = w.here()
    check(w.count("sqlite.query.rows", lab(inst, "fills"), 3, mark),
          "roll: measured three times while the application writes")
    vals = w.values("sqlite.query.rows", lab(inst, "fills"), mark)
    check(set(vals) == {FILLS}, "roll: only committed rows are seen (%s)"
          % vals)
    busy = w.values("sqlite.query.busy_total", lab(inst, "open_orders"),
                    mark)
    check(busy and max(busy) == 0, "roll: nothing busy meanwhile (%s)" % busy)
    check(app.do("COMMIT").startswith("ok"), "the application commits")
    s = w.wait("sqlite.query.rows", lab(inst, "fills"),
               lambda v: v == FILLS + 1, since=mark)
    check(s is not None, "roll: the committed row is seen")

    r = app.do("BEGIN EXCLUSIVE")
    r2 = app.do("INSERT INTO fills(order_id, px) VALUES (2, 2.0)")
    check(r.startswith("ok") and r2.startswith("ok"),
          "the application holds an EXCLUSIVE lock (%s, %s)" % (r, r2))
    mark = w.here()
    s = w.wait("sqlite.query.busy_total", lab(inst, "open_orders"),
               lambda v: v >= 3, since=mark)
    check(s is not None, "roll: three busy runs counted")
    up = w.values("sqlite.up", lab(inst), mark)
    check(up and set(up) == {1.0}, "roll: sqlite.up stays 1 (%s)" % up)
    warned = [l for l in d.lines["err"] if "instance=roll" in l and
              "query open_orders: the database stayed locked" in l]
    check(len(warned) == 1, "roll: the lock is said once (%d)" % len(warned))
    errs = w.values("sqlite.errors_total", lab(inst), mark)
    check(errs and set(errs) == {1.0},
          "roll: no error counted for busy runs (%s)" % errs)
    check(app.do("COMMIT").startswith("ok"), "the application commits")
    s = w.wait("sqlite.query.rows", lab(inst, "fills"),
               lambda v: v == FILLS + 2, since=mark)
    check(s is not None, "roll: measured again after the commit")


def check_wal_locks(w, app):
    """WAL: an application writing never stops a reader."""
    inst = "wal"
    r = app.do("BEGIN EXCLUSIVE")
    r2 = app.do("INSERT INTO fills(order_id, px) VALUES (1, 2.0)")
    check(r.startswith("ok") and r2.startswith("ok"),
          "wal: the application holds a write lock (%s, %s)" % (r, r2))
    mark = w.here()
    check(w.count("sqlite.query.rows", lab(inst, "fills"), 3, mark),
          "wal: measured three times meanwhile")
    vals = w.values("sqlite.query.rows", lab(inst, "fills"), mark)
    check(set(vals) == {FILLS}, "wal: only committed rows are seen (%s)"
          % vals)
    busy = w.values("sqlite.query.busy_total", lab(inst, "open_orders"),
                    mark)
    check(busy and max(busy) == 0, "wal: nothing busy (%s)" % busy)
    check(app.do("COMMIT").startswith("ok"), "wal: the application commits")


def check_app_writes(w, app, inst):
    """The application commits while vigil reads."""
    mark = w.here()
    bad = []
    n = 0
    while len(w.values("sqlite.query.rows", lab(inst, "fills"), mark)) < 4:
        for sql in ("BEGIN IMMEDIATE",
                    "INSERT INTO fills(order_id, px) VALUES (3, 1.0)",
                    "COMMIT"):
            r = app.do(sql)
            if not r.startswith("ok"):
                bad.append(r)
        n += 1
        if n > 5000 or not w.d.sel.get_map():
            break
        w.d.pump(0)
    check(not bad and n > 0, "%s: the application committed %d writes "
          "during four collections (%s)" % (inst, n, bad[:3]))


def check_missing(d, w, tmp):
    path = os.path.join(tmp, "later.db")
    s = w.wait("sqlite.up", lab("missing"), lambda v: v == 0)
    check(s is not None, "missing: sqlite.up 0")
    e = d.wait_for("err", lambda l: "instance=missing" in l and
                   "later.db: No such file or directory" in l, DEADLINE)
    check(e is not None, "missing: the error names the file")
    mark = w.here()
    make_db(path, "wal")
    s = w.wait("sqlite.query.rows", lab("missing", "one"), lambda v: v == 1,
               since=mark)
    check(s is not None, "missing: measured once the file exists")
    s = w.wait("sqlite.up", lab("missing"), lambda v: v == 1, since=mark)
    check(s is not None, "missing: sqlite.up 1")


def probe(args):
    r = subprocess.run([VIGIL, "probe"] + args, capture_output=True,
                       text=True, timeout=120)
    try:
        return r.returncode, json.loads(r.stdout), r.stderr
    except ValueError:
        return r.returncode, None, r.stdout + r.stderr


def check_plans(conf, roll):
    for inst in ("roll", "wal"):
        rc, v, err = probe(["sqlite.plan", "-c", conf, "query=open_orders",
                            "instance=%s" % inst])
        check(rc == 0 and v and v["full_scans"] == ["orders"],
              "%s: sqlite.plan flags the full scan of orders (%s %s)"
              % (inst, v, err[-300:]))
        hint = " ".join(v["hints"]) if v else ""
        check("CREATE INDEX orders_status ON orders(status)" in hint,
              "%s: with a checked index hint: %s" % (inst, hint))
        rc, v, err = probe(["sqlite.plan", "-c", conf, "query=by_symbol",
                            "instance=%s" % inst])
        check(rc == 0 and v and v["full_scans"] == [] and
              v["plan"][0]["detail"].startswith("SEARCH orders USING "
                                                "COVERING INDEX "
                                                "orders_symbol"),
              "%s: and not the indexed query (%s)" % (inst, v))
    rc, v, err = probe(["sqlite", roll, "SELECT id FROM orders o WHERE "
                        "o.qty = 3", "--count", "3", "--json"])
    check(rc == 0 and v and v["ok"] == 3 and v["rows"] == 14286 and
          v["full_scans"] == ["orders"] and
          v["timing"]["mean_ms"] > 0 and
          "CREATE INDEX orders_qty ON orders(qty)" in " ".join(v["hints"]),
          "vigil probe sqlite FILE QUERY: timed three times, with the plan "
          "(%s %s)" % (v and {k: v[k] for k in ("ok", "rows", "full_scans")},
                       err[-300:]))
    rc, v, text = probe(["sqlite", roll, "SELECT id FROM orders o WHERE "
                         "o.qty = 3", "--count", "2"])
    check(rc == 0 and v is None and "runs: 2 ok" in text and
          "SCAN o  <- full scan" in text and
          "hint: " in text and "CREATE INDEX orders_qty" in text,
          "without --json, the same for people: runs, time, plan, hint "
          "(%r)" % text[-400:])
    rc, v, err = probe(["sqlite", roll, "DELETE FROM orders"])
    check(rc == 1 and v and "refused" in v.get("error", ""),
          "vigil probe sqlite refuses a write (%d, %s)" % (rc, v))


def main():
    if not os.path.exists(os.path.join(PLUGINS, "sqlite.so")):
        print("skip: no sqlite.so in %s" % PLUGINS)
        return 77
    tmp = tempfile.mkdtemp(prefix="vigil-sqlite-")
    roll = os.path.join(tmp, "roll.db")
    wal = os.path.join(tmp, "wal.db")
    apps = []
    d = None
    try:
        make_db(roll, "delete")
        make_db(wal, "wal")
        conf = ["[vigil]", "plugin_dir = %s" % PLUGINS, "interval = 1s"]
        for inst, path in (("roll", roll), ("wal", wal)):
            conf += ["[plugin sqlite %s]" % inst, "file = %s" % path,
                     "interval = 200ms", "busy_timeout = 20ms"] + QUERIES
        # A query that keeps a pool thread busy for a good part of every
        # interval: were it run on the loop, vigil.loop.lag_ms would show
        # it.
        conf += ["[plugin sqlite heavy]", "file = %s" % wal,
                 "interval = 500ms", "query = spin: %s" % SPIN]
        conf += ["[plugin sqlite missing]",
                 "file = %s" % os.path.join(tmp, "later.db"),
                 "interval = 200ms", "query = one: SELECT 1"]
        cfg = write(tmp, "vigil.ini", "\n".join(conf) + "\n")
        before = digest(roll)

        d = Daemon(["-c", cfg, "--print", "sqlite.*", "--print",
                    "vigil.loop.lag_ms"])
        w = Watch(d)
        for inst in ("roll", "wal"):
            check_figures(w, inst)
        # Several collections of the rollback database with nobody else:
        # not one byte of it changed, and no journal was made.
        mark = w.here()
        check(w.count("sqlite.query.rows", lab("roll", "open_orders"), 3,
                      mark), "roll: three more collections")
        check(digest(roll) == before, "roll: the file is byte-identical")
        check(not os.path.exists(roll + "-journal"), "roll: no journal")

        app_roll = App(tmp, roll, 5.0)
        app_wal = App(tmp, wal, 5.0)
        apps += [app_roll, app_wal]
        for inst, app in (("roll", app_roll), ("wal", app_wal)):
            check_refused(d, w, inst, app)
        check_rollback_locks(d, w, app_roll)
        check_wal_locks(w, app_wal)
        for inst, app in (("roll", app_roll), ("wal", app_wal)):
            check_app_writes(w, app, inst)
        check_missing(d, w, tmp)
        # Read before the probes: while they run this test does not drain
        # the daemon's --print pipe, and a full pipe blocks its stdout.
        spins = w.values("sqlite.query.time_ms", lab("heavy", "spin"))
        check(spins and min(spins) > HEAVY_MS,
              "heavy: the spinning query takes over %.0f ms (%s)"
              % (HEAVY_MS, spins[:5]))
        lags = [s[3] for s in map(parse, d.lines["out"])
                if s and s[1] == "vigil.loop.lag_ms"]
        # Had the query run on the loop, the lag would be at least its
        # time; what stays is scheduling on two busy cores.
        bound = min(spins) / 2 if spins else 0
        check(lags and max(lags) < bound,
              "the loop is never blocked: vigil.loop.lag_ms max %s, under "
              "half the spinning query's time (%.0f ms)"
              % (max(lags) if lags else None, bound))
        check_plans(cfg, roll)
        check(d.p.poll() is None, "the daemon keeps running")
        code = d.finish(signal.SIGTERM)
        check(code == 0, "vigil exits 0 on SIGTERM (%s)" % code)
        d = None
    finally:
        if d is not None:
            d.finish(signal.SIGKILL)
        for a in apps:
            a.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
