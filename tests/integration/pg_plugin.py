#!/usr/bin/python3
"""The pg plugin against a real PostgreSQL 15 server (pg_stat_statements
preloaded), started for this test alone by tests/pg/start.sh: the test
stops and restarts it, which the shared "pg" fixture's server must not
suffer while other tests use it.

One daemon collects every 500 ms from these instances:
  main    the server, by a key/value DSN holding a password (trust
          authentication ignores it; the log must never show it)
  byname  the same server by host name (localhost: resolved on the thread
          pool, every address tried)
  down    a closed port: pg.up 0, one warning, main unaffected
  hang    a port that accepts and never answers: the connect deadline
  broken  a DSN libpq cannot parse: init fails, named with file:line
Against it, from psql sessions: pg_stat_statements installed late, slow
statements (pg_sleep), a long query, an idle transaction, a lock wait, a
deadlock, temporary files, commits and rollbacks, an unindexed table read
by sequential scans. Every metric is checked against them, every
diagnostic and both actions run through `vigil probe`, and the short form
`vigil probe pg DSN VERB`. Then the daemon's own backend is frozen
(SIGSTOP): no statement_timeout can fire, the client's deadline drops the
connection and a new one is made. Then the server stops: pg.up drops to
0; it starts again: pg.up is 1 again and the reconnect is counted. And
vigil.loop.lag_ms stays low throughout.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

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
from pgtest import Session, backend, probe, psql  # noqa: E402

DEADLINE_S = 30.0
SECRET = "s3cret-pw"
SLEEP_S = 0.3
# The loop must never wait on the server; this allows for a loaded
# two-core machine running the server, psql and a sanitizer build.
LAG_MAX_MS = float(os.environ.get("VIGIL_TEST_LAG_MAX_MS", "100"))
check = vt.check


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Hang(threading.Thread):
    """Accepts connections and never answers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except (socket.timeout, OSError):
                pass

    def close(self):
        self.stop.set()
        self.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def config(tmp, srv, hang):
    main = (f"host=127.0.0.1 port={srv.port} user=postgres dbname=postgres "
            f"password={SECRET} application_name=vigil-test")
    conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 500ms

[plugin pg main]
dsn = {main}
interval = 500ms
reconnect_max = 500ms
statement_timeout = 1s
top = 20

[plugin pg byname]
dsn = postgresql://postgres@localhost:{srv.port}/postgres?application_name=vigil-byname
interval = 500ms

[plugin pg down]
dsn = host=127.0.0.1 port={free_port()} user=postgres
interval = 500ms

[plugin pg hang]
dsn = host=127.0.0.1 port={hang.port} user=postgres
connect_timeout = 300ms
interval = 500ms

[plugin pg broken]
dsn = host=127.0.0.1 password={SECRET} nonsense
""")
    return conf, main


def setup_schema(uri):
    psql(uri, """
CREATE TABLE big(id int, k int, v text);
INSERT INTO big SELECT g, (g * 7919) % 5000, md5(g::text)
  FROM generate_series(1, 20000) g;
ANALYZE big;
CREATE TABLE locked(id int PRIMARY KEY, v int);
INSERT INTO locked VALUES (1, 0), (2, 0);
""")
    # Sequential scans of an unindexed column.
    psql(uri, " ".join("SELECT count(*) FROM big WHERE k = %d;" % i
                       for i in range(12)))


def phase_start(s, d, lines_err):
    """Startup: connected at once, pg_stat_statements missing (said once),
    the dead and the broken instances."""
    up = s.wait(lambda: len(s.of("pg.up", instance="main")) >= 4 and
                len(s.of("pg.up", instance="byname")) >= 2 and
                len(s.of("pg.up", instance="down")) >= 3, DEADLINE_S)
    check(up, "main, byname and down collected a few times")
    ups = s.of("pg.up", instance="main")
    check(ups and all(v == 1 for v in ups),
          f"pg.up{{main}} 1 from the first collection on: {ups}")
    check(s.of("pg.up", instance="byname")[-1:] == [1],
          "byname (host name, resolved off the loop) is up")
    downs = s.of("pg.up", instance="down")
    check(downs and all(v == 0 for v in downs), f"pg.up{{down}} 0: {downs}")
    check(s.of("pg.statements.available", instance="main")[-1:] == [0],
          "pg.statements.available 0 before CREATE EXTENSION")
    err = lines_err()
    n = err.count("pg_stat_statements is not installed in database "
                  "'postgres'")
    check(n == 2, f"'not installed' said once per instance (main, byname): "
          f"{n}")
    down_warn = [line for line in err.splitlines()
                 if "instance=down" in line and "retrying" in line]
    check(len(down_warn) == 1,
          f"the dead server is logged once as a warning: {down_warn}")
    check("vigil.ini:" in err and "[plugin pg broken]: init failed" in err
          and "not a PostgreSQL connection string" in err,
          "a DSN libpq cannot parse fails init, named with file:line")
    check("connected to postgresql://postgres@127.0.0.1:" in err,
          "the connection is logged by a name without secrets")
    s.wait(lambda: len(s.of("pg.collect_ms", instance="hang")) >= 2,
           DEADLINE_S)
    hung = s.of("pg.collect_ms", instance="hang")
    check(hung and max(hung) <= 600 and
          all(v == 0 for v in s.of("pg.up", instance="hang")),
          f"a server that never answers: pg.up 0, no collection waits "
          f"past the 300 ms connect deadline ({hung} ms)")
    check("no connection within 300 ms" in lines_err(),
          "the connect deadline is logged")


def phase_statements(s, uri, conf):
    """pg_stat_statements installed while running; a slow statement."""
    mark = s.mark()
    psql(uri, "CREATE EXTENSION pg_stat_statements")
    ok = s.wait(lambda: 1 in s.of("pg.statements.available", mark,
                                  instance="main"), DEADLINE_S)
    check(ok, "pg.statements.available becomes 1 once it is installed")
    psql(uri, f"SELECT pg_sleep({SLEEP_S}); SELECT pg_sleep({SLEEP_S})")
    qid = psql(uri, "SELECT queryid FROM pg_stat_statements "
               "WHERE query = 'SELECT pg_sleep($1)'")
    check(qid != "", f"pg_sleep's queryid: {qid}")
    tracked = s.wait(lambda: s.of("pg.statement.max_ms", queryid=qid,
                                  instance="main"), DEADLINE_S)
    check(tracked and tracked[-1] >= SLEEP_S * 1000,
          f"pg.statement.max_ms{{queryid}} about {SLEEP_S * 1000}: "
          f"{tracked}")
    mark = s.mark()
    psql(uri, f"SELECT pg_sleep({SLEEP_S}); SELECT pg_sleep({SLEEP_S})")
    means = s.wait(lambda: [m for m in s.of("pg.statement.mean_ms", mark,
                                            queryid=qid, instance="main")
                            if m > 0], DEADLINE_S)
    check(means and all(SLEEP_S * 1000 <= m <= SLEEP_S * 1000 + 60
                        for m in means),
          f"pg.statement.mean_ms{{queryid}} of the new calls: {means}")
    # Once the calls stop, an interval without calls says 0.
    idle = s.wait(lambda: s.of("pg.statement.mean_ms", mark, queryid=qid,
                               instance="main")[-1:] == [0.0], DEADLINE_S)
    check(idle, "pg.statement.mean_ms{queryid} is 0 for an interval without "
          "calls")
    rates = s.of("pg.statement.calls_per_s", mark, queryid=qid,
                 instance="main")
    check(rates and max(rates) > 0 and sum(r * 0.5 for r in rates) <= 4.5,
          f"pg.statement.calls_per_s{{queryid}} counts 2 calls: {rates}")
    per_ts = {}
    for n, lab, _, ts in s.all:
        if n == "pg.statement.max_ms" and lab.get("instance") == "main":
            per_ts[ts] = per_ts.get(ts, 0) + 1
    check(per_ts and max(per_ts.values()) <= 20,
          f"at most top = 20 statements per collection: "
          f"{max(per_ts.values()) if per_ts else None}")

    rc, out, err = probe(vt, conf, "pg.slow_queries", min_mean_ms=250)
    rows = [q for q in (out or {}).get("queries", []) if q["queryid"] == qid]
    check(rc == 0 and len(rows) == 1 and rows[0]["calls"] == 4 and
          SLEEP_S * 1000 <= rows[0]["mean_ms"] <= SLEEP_S * 1000 + 60 and
          rows[0]["query"] == "SELECT pg_sleep($1)" and
          rows[0]["db"] == "postgres",
          f"pg.slow_queries finds pg_sleep, 4 calls: {rows} {err[-200:]}")
    rc, out, _ = probe(vt, conf, "pg.slow_queries", min_mean_ms=1e9)
    check(rc == 0 and out["count"] == 0 and out["queries"] == [],
          f"pg.slow_queries with a high threshold finds none: {out}")
    rc, out, err = probe(vt, conf, "pg.slow_queries", bogus=1)
    check(rc != 0 and "unknown argument \"bogus\"" in (out or {}).get(
        "error", ""), f"an unknown argument is refused: {out}")
    return qid


def phase_databases(s, uri):
    """Commits, rollbacks, temporary files, a deadlock, the cache."""
    mark = s.mark()
    psql(uri, " ".join(["SELECT 1;"] * 50 + ["BEGIN; ROLLBACK;"] * 20))
    # A sort that spills: a temporary file.
    psql(uri, "SET work_mem = '64kB'; SELECT * FROM big ORDER BY v "
         "OFFSET 20000")
    # A deadlock: a and b each hold one row and want the other's.
    psql(uri, "CREATE TABLE dl(id int PRIMARY KEY, v int); "
         "INSERT INTO dl VALUES (1, 0), (2, 0)")
    a, b = Session(uri, "vt-a"), Session(uri, "vt-b")
    a.send("SET deadlock_timeout = '100ms';")
    b.send("SET deadlock_timeout = '100ms';")
    a.send("BEGIN; UPDATE dl SET v = 1 WHERE id = 1;")
    b.send("BEGIN; UPDATE dl SET v = 1 WHERE id = 2;")
    s.wait(lambda: backend(uri, "vt-a", "state = 'idle in transaction'")
           and backend(uri, "vt-b", "state = 'idle in transaction'"),
           DEADLINE_S)
    a.send("UPDATE dl SET v = 2 WHERE id = 2;")
    s.wait(lambda: backend(uri, "vt-a", "wait_event_type = 'Lock'"),
           DEADLINE_S)
    b.send("UPDATE dl SET v = 2 WHERE id = 1;")
    a.send("ROLLBACK;")
    b.send("ROLLBACK;")
    (_, ea), (_, eb) = a.close(), b.close()
    check("deadlock detected" in ea + eb, f"a deadlock happened: {ea}{eb}")

    def seen(name, pred=lambda v: v > 0):
        return any(pred(v) for v in s.of(name, mark, db="postgres",
                                         instance="main"))
    ok = s.wait(lambda: all(seen(n) for n in (
        "pg.db.commits_per_s", "pg.db.rollbacks_per_s",
        "pg.db.temp_bytes_per_s", "pg.db.deadlocks_per_s")), DEADLINE_S)
    check(ok, "commits, rollbacks, temp bytes and the deadlock per second")
    dl = [v for v in s.of("pg.db.deadlocks_per_s", mark, db="postgres",
                          instance="main") if v > 0]
    check(dl and abs(sum(dl) * 0.5 - 1) < 0.5,
          f"one deadlock over the intervals: {dl}")
    hits = s.of("pg.db.cache_hit_pct", mark, db="postgres", instance="main")
    check(hits and all(0 <= v <= 100 for v in hits) and max(hits) > 50,
          f"pg.db.cache_hit_pct in 0..100: {hits[:8]}")
    conns = s.of("pg.db.connections", mark, db="postgres", instance="main")
    check(conns and min(conns) >= 1, f"pg.db.connections: {conns[:5]}")
    check(not s.of("pg.db.connections", db="template1"),
          "template databases are left out by default")


def phase_activity(s, uri, conf):
    """A long query, an idle transaction, a lock wait: metrics, then the
    diagnostics and actions on them."""
    long_q = Session(uri, "vt-long")
    long_q.send("SELECT pg_sleep(120);")
    idle = Session(uri, "vt-idle")
    idle.send("BEGIN; SELECT 1;")
    holder = Session(uri, "vt-holder")
    holder.send("BEGIN; UPDATE locked SET v = 1 WHERE id = 1;")
    s.wait(lambda: backend(uri, "vt-holder", "state = 'idle in transaction'"),
           DEADLINE_S)
    waiter = Session(uri, "vt-waiter")
    waiter.send("UPDATE locked SET v = 2 WHERE id = 1;")
    pids = {app: s.wait(lambda: backend(uri, app), DEADLINE_S)
            for app in ("vt-long", "vt-idle", "vt-holder", "vt-waiter")}
    check(all(pids.values()), f"the sessions' pids: {pids}")

    def last(name, **lab):
        v = s.of(name, instance="main", **lab)
        return v[-1] if v else None
    ok = s.wait(lambda: (last("pg.query.longest_s") or 0) >= 2 and
                (last("pg.transaction.longest_idle_s") or 0) >= 2 and
                (last("pg.locks.waiting") or 0) >= 1, DEADLINE_S)
    check(ok, "pg.query.longest_s and pg.transaction.longest_idle_s grow "
          "past 2 s, pg.locks.waiting counts the waiter")
    check((last("pg.connections.count", state="idle_in_transaction") or 0)
          >= 2, "idle_in_transaction counts the idle session and the holder")
    check((last("pg.connections.count", state="active") or 0) >= 2,
          "active counts the long query and the waiter")
    total, mx = last("pg.connections.total"), last("pg.connections.max")
    check(total is not None and total >= 6 and
          mx == int(psql(uri, "SHOW max_connections")),
          f"pg.connections.total {total} of max {mx}")
    by_ts = {}
    for n, lab, v, ts in s.all:
        if lab.get("instance") == "main" and n in (
                "pg.connections.total", "pg.connections.max",
                "pg.connections.used_pct"):
            by_ts.setdefault(ts, {})[n] = v
    pct = [abs(x["pg.connections.used_pct"] - 100 * x["pg.connections.total"]
               / x["pg.connections.max"]) < 1e-9
           for x in by_ts.values() if len(x) == 3]
    check(pct and all(pct), "pg.connections.used_pct is total / max")

    rc, out, err = probe(vt, conf, "pg.running_queries", min_age="1s")
    by_pid = {q["pid"]: q for q in (out or {}).get("queries", [])}
    check(rc == 0 and pids["vt-long"] in by_pid and
          by_pid[pids["vt-long"]]["duration_s"] >= 1 and
          by_pid[pids["vt-long"]]["query"] == "SELECT pg_sleep(120);" and
          pids["vt-waiter"] in by_pid and
          by_pid[pids["vt-waiter"]]["wait_event_type"] == "Lock",
          f"pg.running_queries lists the long query and the waiter: {out} "
          f"{err[-200:]}")
    order = [q["duration_s"] for q in out["queries"]] if out else []
    check(order == sorted(order, reverse=True), "longest-running first")
    rc, out, _ = probe(vt, conf, "pg.running_queries", min_age=3600)
    check(rc == 0 and out["count"] == 0, "min_age 3600 s lists nothing")

    rc, out, _ = probe(vt, conf, "pg.blocking")
    waits = {w["pid"]: w for w in (out or {}).get("waits", [])}
    w = waits.get(pids["vt-waiter"], {})
    check(rc == 0 and w.get("blocking_pids") == [pids["vt-holder"]] and
          [b["pid"] for b in w.get("blocked_by", [])] ==
          [pids["vt-holder"]] and
          w["blocked_by"][0]["state"] == "idle in transaction" and
          out["root_blockers"] == [pids["vt-holder"]],
          f"pg.blocking: the waiter, blocked by the holder, the root: {out}")

    rc, out, _ = probe(vt, conf, "pg.index_hints")
    cols = {(c["table"], c["column"]): c for c in (out or {}).get("columns",
                                                                  [])}
    tabs = {t["table"]: t for t in (out or {}).get("tables", [])}
    check(rc == 0 and ("big", "k") in cols and ("big", "v") in cols and
          ("big", "id") not in cols and
          cols[("big", "k")]["suggestion"] == "CREATE INDEX ON public.big (k)"
          and abs(cols[("big", "k")]["distinct_est"] - 5000) < 500,
          f"pg.index_hints: big.k and big.v (unindexed, scattered), not "
          f"big.id (in order): {list(cols)}")
    check("big" in tabs and tabs["big"]["seq_scan"] >= 12 and
          tabs["big"]["idx_scan"] == 0 and "locked" not in tabs,
          f"pg.index_hints: big is read by sequential scans: {tabs}")
    return pids, (long_q, idle, holder, waiter)


def phase_actions(s, uri, conf, pids, sessions):
    long_q, idle, holder, waiter = sessions
    ckpt = int(psql(uri, "SELECT pid FROM pg_stat_activity "
                    "WHERE backend_type = 'checkpointer'"))
    rc, out, _ = probe(vt, conf, "pg.cancel", pid=ckpt)
    check(rc != 0 and out and out["done"] is False and
          "not a client backend" in out["error"],
          f"pg.cancel refuses the checkpointer: {out}")
    rc, out, _ = probe(vt, conf, "pg.cancel", pid=2 ** 31 - 1)
    check(rc != 0 and out and "no server process" in out["error"],
          f"pg.cancel of a pid that does not exist: {out}")
    rc, out, _ = probe(vt, conf, "pg.cancel")
    check(rc != 0 and out and "give \"pid\"" in out["error"],
          f"pg.cancel without a pid: {out}")

    rc, out, _ = probe(vt, conf, "pg.cancel", pid=pids["vt-long"])
    check(rc == 0 and out["done"] is True and
          out["backend"]["application"] == "vt-long" and
          "cancel request sent to pid" in out["message"],
          f"pg.cancel of the long query: {out}")
    idle_again = s.wait(lambda: backend(uri, "vt-long", "state = 'idle'"),
                        DEADLINE_S)
    check(idle_again, "the long query's session is idle after the cancel")

    # By age, as a runbook's fixed arguments can say: the queries running
    # for a second or more (the long one again, and the waiter).
    long_q.send("SELECT pg_sleep(120);")
    s.wait(lambda: backend(uri, "vt-long", "state = 'active' AND "
                           "now() - query_start > interval '1.2 s'"),
           DEADLINE_S)
    mark = s.mark()
    rc, out, _ = probe(vt, conf, "pg.cancel", min_age="1s", limit=5)
    got = sorted(b["pid"] for b in (out or {}).get("backends", []))
    check(rc == 0 and got == sorted([pids["vt-long"], pids["vt-waiter"]])
          and out["count"] == 2 and all(b["signalled"]
                                        for b in out["backends"]),
          f"pg.cancel min_age=1s cancels the long query and the waiter: "
          f"{out}")
    rc, out, _ = probe(vt, conf, "pg.cancel", min_age="1h")
    check(rc == 0 and out["done"] is False and out["count"] == 0 and
          "nothing to cancel" in out["message"],
          f"pg.cancel min_age=1h finds nothing to do: {out}")

    rc, out, _ = probe(vt, conf, "pg.terminate", pid=pids["vt-holder"])
    check(rc == 0 and out["done"] is True and out["action"] == "terminate",
          f"pg.terminate of the lock holder: {out}")
    calm = s.wait(lambda: [v for v in s.of("pg.query.longest_s", mark,
                                           instance="main") if v < 1] and
                  0 in s.of("pg.locks.waiting", mark, instance="main"),
                  DEADLINE_S)
    check(calm, "pg.query.longest_s and pg.locks.waiting drop after that")
    holder.send("SELECT 1;")  # psql learns of it when it next asks
    _, err = holder.close()
    check("terminating connection" in err or "server closed" in err,
          f"the holder's session was ended: {err[-200:]}")
    for sess in (long_q, idle, waiter):
        sess.send("\\q")
    out_l, err_l = long_q.close()
    out_w, err_w = waiter.close()
    idle.close()
    check(err_l.count("canceling statement due to user request") == 2,
          f"the long query was canceled twice: {err_l}")
    check("canceling statement due to user request" in err_w,
          f"the waiter was canceled: {err_w}")


def phase_short_form(srv):
    env = dict(os.environ, VIGIL_PLUGIN_DIR=vt.PLUGINS)
    kv = f"host=127.0.0.1 port={srv.port} user=postgres"
    for verb, key, dsn in (("slow-queries", "queries", srv.uri),
                           ("running", "queries", kv),
                           ("blocking", "waits", srv.uri),
                           ("index-hints", "columns", srv.uri)):
        r = subprocess.run([vt.VIGIL, "probe", "pg", dsn, verb, "--json"],
                           capture_output=True, text=True, timeout=60,
                           env=env)
        check(r.returncode == 0 and f'"{key}"' in r.stdout,
              f"vigil probe pg URI {verb}: {r.stdout[:120]!r} "
              f"{r.stderr[-200:]!r}")
    r = subprocess.run([vt.VIGIL, "probe", "pg", srv.uri, "nonsense"],
                       capture_output=True, text=True, timeout=60, env=env)
    check(r.returncode == 2 and "slow-queries|running" in r.stderr,
          f"an unknown verb is a usage error: {r.stderr!r}")


def phase_frozen(s, uri, lines_err):
    """The daemon's backend stops answering (SIGSTOP): statement_timeout
    cannot fire in a stopped process, so the client's deadline
    (statement_timeout 1 s + 2 s) drops the connection; a new one is
    made, and the loop never waits."""
    pid = backend(uri, "vigil-test")
    check(pid is not None, f"the daemon's backend: {pid}")
    mark = s.mark()
    os.kill(pid, signal.SIGSTOP)
    try:
        down = s.wait(lambda: 0 in s.of("pg.up", mark, instance="main"),
                      DEADLINE_S)
        check(down, "pg.up{main} 0 once the frozen backend's deadline "
              "passes")
        ms = [v for v in s.of("pg.collect_ms", mark, instance="main")
              if v > 2500]
        check(ms and all(v < 4500 for v in ms),
              f"the collection gave up after about 3 s: {ms}")
        check("no answer from the server within 3000 ms" in lines_err(),
              "the deadline is logged")
        back = s.wait(lambda: 1 in s.of("pg.up", mark + 1, instance="main")
                      and s.of("pg.up", mark, instance="main")[-1] == 1,
                      DEADLINE_S)
        check(back, "pg.up{main} 1 again on a new connection")
    finally:
        os.kill(pid, signal.SIGCONT)


def phase_restart(s, d, srv, lines_err):
    """The server goes away and comes back; the daemon carries on."""
    before = s.of("pg.connection.reconnects_total", instance="main")[-1]
    mark = s.mark()
    srv.ctl("stop")
    down = s.wait(lambda: 0 in s.of("pg.up", mark, instance="main"),
                  DEADLINE_S)
    check(down, "pg.up{main} drops to 0 when the server stops")
    check(d.p.poll() is None, "the daemon keeps running")
    mark = s.mark()
    srv.ctl("start")
    back = s.wait(lambda: 1 in s.of("pg.up", mark, instance="main") and
                  1 in s.of("pg.up", mark, instance="byname"), DEADLINE_S)
    check(back, "pg.up is 1 again for main and byname after the restart")
    after = s.wait(lambda: [v for v in s.of(
        "pg.connection.reconnects_total", mark, instance="main")
        if v > before], DEADLINE_S)
    check(after, f"pg.connection.reconnects_total counts it: {before} -> "
          f"{after[-1] if after else None}")
    err = lines_err()
    lost = [line for line in err.splitlines()
            if "instance=main" in line and "retrying" in line and
            "level=warn" in line]
    check(len(lost) == 2, f"each loss (frozen, restart) is one warning: "
          f"{lost}")
    check("reconnected to postgresql://postgres@127.0.0.1" in err,
          "the reconnection is logged")


def main():
    if not os.path.exists(os.path.join(vt.PLUGINS, "pg.so")):
        print("skip: pg.so not built")
        return SKIP
    srv = pgtest.Server()
    hang = Hang()
    hang.start()
    d = None
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-pg-") as tmp:
            conf, _ = config(tmp, srv, hang)
            setup_schema(srv.uri)
            d = vt.Daemon(["-c", conf, "--print", "pg.*",
                           "--print", "vigil.loop.lag_ms"])
            s = pgtest.Samples(vt, d)

            def lines_err():
                d.pump(0)
                return "\n".join(d.lines["err"])
            phase_start(s, d, lines_err)
            phase_statements(s, srv.uri, conf)
            phase_databases(s, srv.uri)
            pids, sessions = phase_activity(s, srv.uri, conf)
            phase_actions(s, srv.uri, conf, pids, sessions)
            phase_short_form(srv)
            phase_frozen(s, srv.uri, lines_err)
            phase_restart(s, d, srv, lines_err)

            lags = s.of("vigil.loop.lag_ms")
            check(lags and max(lags) <= LAG_MAX_MS,
                  f"vigil.loop.lag_ms stays under {LAG_MAX_MS} ms (max "
                  f"{max(lags) if lags else None} over {len(lags)})")
            cms = s.of("pg.collect_ms", instance="main")
            check(cms and sorted(cms)[len(cms) // 2] < 50,
                  f"pg.collect_ms median {sorted(cms)[len(cms) // 2]} ms")
            rc = d.finish(signal.SIGTERM, timeout=20)
            check(rc == 0, f"vigil stops cleanly on SIGTERM (rc {rc})")
            err = "\n".join(d.lines["err"])
            check(SECRET not in err, "the password never reaches the log")
            check("AddressSanitizer" not in err and "runtime error" not in err,
                  "no sanitizer report")
    finally:
        if d is not None and d.p.poll() is None:
            d.p.kill()
        srv.close()
        hang.close()
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
