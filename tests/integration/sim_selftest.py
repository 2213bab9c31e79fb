#!/usr/bin/python3
"""The genesis simulator (tests/sim/) against itself, before any drill
trusts it.

Starts genesis_sim.py (which starts exchange_sim.py) on free loopback
ports, with PostgreSQL (a database of its own on $VIGIL_TEST_PG, or on a
server tests/pg/start.sh starts here with pg_stat_statements loaded),
SQLite, a log file and StatsD to a UDP socket this test reads. Checks:
- every endpoint: /health, /api/v1/status, POST /api/v1/orders (good and
  bad), /admin/faults, /admin/fault (good and bad), /admin/cache/clear,
  simctl.py, the feed's WebSocket (a tick, a pong), the exchange's REST
  and trade stream; the tables in PostgreSQL and SQLite filling up;
- every metric README.md lists arrives, with its type and tags, several
  lines to a datagram;
- each fault switched on shows its effect (CPU, RSS, pg_stat_statements
  and lock waits, loop lag and late pongs, exchange delay, cache hit
  rate) and its ERROR lines with tracebacks in the log; switched off,
  the effect goes;
- netns.sh up/delay/down (as root, with iproute2), and genesis_sim.py
  --netns removing its namespace on SIGTERM;
- SIGTERM: exit 0, no PostgreSQL session left, the exchange gone.

Every wait has a deadline; nothing sleeps to synchronise (the few
fixed pauses are the pace of a measurement, and say so).
Environment (ctest): none needed; VIGIL_TEST_PG optional.
"""

import asyncio
import importlib
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "..", "sim")
PGDIR = os.path.join(HERE, "..", "pg")
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
# vigiltest wants the vigil binary's environment; this test needs none.
for var in ("VIGIL_BIN", "VIGIL_PLUGIN_DIR", "VIGIL_TEST_PLUGINS",
            "VIGIL_SOURCE_DIR"):
    os.environ.setdefault(var, "")
from vigiltest import check, summary  # noqa: E402
from vigiltest import poll as vt_poll  # noqa: E402

try:
    import asyncpg
    import websockets
    importlib.import_module("aiohttp")  # the simulator's
except ImportError as e:
    print("FAIL: %s: the simulator needs Debian's python3-aiohttp, "
          "python3-asyncpg and python3-websockets (make deps), run by "
          "/usr/bin/python3" % e)
    print("0 passed, 1 failed")
    sys.exit(1)

PYTHON = "/usr/bin/python3"
DEADLINE_S = 8.0
METRICS = {  # name -> (type, tag keys) as README.md lists them
    "genesis.order.latency_ms": ("ms", ()),
    "genesis.order.stage_ms": ("ms", ("stage",)),
    "genesis.orders_total": ("c", ()),
    "genesis.event.processing_ms": ("ms", ()),
    "genesis.queue.depth": ("g", ("queue",)),
    "genesis.gc.pause_ms": ("ms", ()),
    "genesis.cache.hits": ("c", ()),
    "genesis.cache.misses": ("c", ()),
    "genesis.cache.hit_pct": ("g", ()),
    "genesis.ws.connections": ("g", ()),
    "genesis.loop.lag_ms": ("ms", ()),
    "genesis.db.pool.in_use": ("g", ()),
    "genesis.db.pool.size": ("g", ()),
}
STATSD_LINE = re.compile(r"^([a-z_.]+):(-?[0-9.e+-]+)\|(ms|c|g)(?:\|#(.*))?$")


class Sink:
    """A StatsD server: collects every line, wakes up waiters."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cond = threading.Condition()
        self.lines = []  # (name, value, type, {tags})
        self.bad = []
        self.datagrams = self.multi = self.biggest = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            data = self.sock.recv(65535)
            parsed = []
            for line in data.decode().split("\n"):
                m = STATSD_LINE.match(line)
                if not m:
                    self.bad.append(line)
                    continue
                tags = dict(t.split(":", 1) for t in m[4].split(",")) \
                    if m[4] else {}
                parsed.append((m[1], float(m[2]), m[3], tags))
            with self.cond:
                self.datagrams += 1
                self.multi += len(parsed) > 1
                self.biggest = max(self.biggest, len(data))
                self.lines += parsed
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def values(self, name, since=0, **tags):
        with self.cond:
            return [v for n, v, _, t in self.lines[since:]
                    if n == name and all(t.get(k) == w
                                         for k, w in tags.items())]

    def pace(self, s):
        """Wait up to s seconds or until a datagram comes: the pace of a
        poll, not a synchronisation."""
        with self.cond:
            self.cond.wait(s)


sink = Sink()


def poll(pred, deadline_s=DEADLINE_S, every_s=0.2):
    """pred() until it returns a true value or the deadline passes; paced
    by the datagrams that arrive."""
    return vt_poll(pred, deadline_s, lambda: sink.pace(every_s))


def seen(name, pred, deadline_s=DEADLINE_S, **tags):
    """A value of name (with tags) arriving from now on that satisfies
    pred; returns it or None."""
    since = sink.mark()
    vs = poll(lambda: [v for v in sink.values(name, since, **tags)
                       if pred(v)], deadline_s)
    return vs[0] if vs else None


def quiet(name, pred, n, max_bad=0, deadline_s=DEADLINE_S, **tags):
    """n values of name in a row, from now on, all but max_bad of them
    satisfying pred (a loaded box has its outliers too)."""
    since = sink.mark()

    def ok():
        bad = [not pred(v) for v in sink.values(name, since, **tags)]
        return any(sum(bad[i:i + n]) <= max_bad
                   for i in range(len(bad) - n + 1))
    return bool(poll(ok, deadline_s))


def http(url, body=None, timeout=5):
    """(status, JSON or text) of a GET, or of a POST when body is given."""
    data = None if body is None else (
        body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def timed_get(url):
    t0 = time.perf_counter()
    status, _ = http(url)
    return status, (time.perf_counter() - t0) * 1000


async def ws_rtts(url, pred, deadline_s, count=1):
    """Ping url every 100 ms (reading its messages meanwhile) until
    `count` pongs in a row have an RTT (ms) satisfying pred; returns the
    last such RTT, or None at the deadline. Also returns the first
    message received."""
    first = None
    async with websockets.connect(url, ping_interval=None,
                                  open_timeout=5) as ws:
        async def drain():
            nonlocal first
            async for m in ws:
                first = first or m
        reader = asyncio.create_task(drain())
        end = time.monotonic() + deadline_s
        run, rtt = 0, None
        try:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                pong = await ws.ping()
                try:
                    await asyncio.wait_for(pong, end - time.monotonic())
                except asyncio.TimeoutError:
                    break
                rtt = (time.perf_counter() - t0) * 1000
                run = run + 1 if pred(rtt) else 0
                if run >= count and first is not None:
                    return rtt, first
                await asyncio.sleep(0.1)  # the pace of the pings
        finally:
            reader.cancel()
    return None, first


def ws_rtt(url, pred, deadline_s=DEADLINE_S, count=1):
    return asyncio.run(ws_rtts(url, pred, deadline_s, count))


def pg(dsn, sql, *args):
    async def q():
        c = await asyncpg.connect(dsn)
        try:
            return await c.fetch(sql, *args)
        finally:
            await c.close()
    return asyncio.run(q())


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_pct(pid):
    """A function returning the CPU % of pid since its previous call."""
    last = [cpu_ticks(pid), time.monotonic()]

    def since():
        t, now = cpu_ticks(pid), time.monotonic()
        if now - last[1] < 1.0:
            return None
        pct = (100.0 * (t - last[0]) / os.sysconf("SC_CLK_TCK") /
               (now - last[1]))
        last[:] = [t, now]
        return pct
    return since


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


class Log:
    """The simulator's log, read as it grows."""

    def __init__(self, path):
        self.path, self.offset = path, 0

    def mark(self):
        self.offset = os.path.getsize(self.path)

    def wait(self, pattern, deadline_s=DEADLINE_S, traceback=True):
        """A line matching pattern written since mark(), followed by a
        traceback unless traceback=False; returns the match or None."""
        rx = re.compile(pattern)

        def find():
            with open(self.path) as f:
                f.seek(self.offset)
                text = f.read()
            m = rx.search(text)
            if m and (not traceback or "Traceback (most recent call last):"
                      in text[m.end():]):
                return m
            return None
        return poll(find, deadline_s)


def start_sim(args, tmp, name):
    """genesis_sim.py with args; returns (Popen, ready dict or None)."""
    err = open(os.path.join(tmp, name + ".stderr"), "w")
    p = subprocess.Popen([PYTHON, os.path.join(SIM, "genesis_sim.py")] + args,
                         stdout=subprocess.PIPE, stderr=err, text=True)
    ready = None
    r, _, _ = select.select([p.stdout], [], [], 60)
    if r:
        line = p.stdout.readline()
        ready = json.loads(line) if line else None
    if ready is None:
        with open(err.name) as f:
            print(f.read()[-3000:])
    return p, ready


def stop_sim(p, timeout=20):
    """SIGTERM; returns the exit code (None: it had to be killed)."""
    if p.poll() is not None:
        return p.returncode
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def check_endpoints(r, dsn, sqlite_path):
    base, ex = r["http"], r["exchange"]["rest"]
    status, body = http(base + "/health")
    check(status == 200 and body == {"status": "ok"}, "GET /health: 200 ok")
    status, body = http(base + "/api/v1/status")
    check(status == 200 and body.get("ws_connections", 0) >= 10 and
          body.get("exchange_connected") is True and
          body["db"]["pool_size"] == 10,
          "GET /api/v1/status: 10+ feed clients, exchange connected, "
          "pool of 10 (%s)" % str(body)[:200])
    status, body = http(base + "/api/v1/orders",
                        {"symbol": "ETHUSDT", "side": "SELL", "qty": 0.25})
    check(status == 200 and body.get("status") == "FILLED" and
          list(body.get("stages_ms", {})) ==
          ["validate", "risk", "execute", "persist"],
          "POST /api/v1/orders: FILLED through four stages (%s)" % body)
    status, body = http(base + "/api/v1/orders",
                        {"symbol": "NOPE", "side": "BUY", "qty": 1})
    check(status == 400 and body.get("stage") == "validate",
          "POST /api/v1/orders with a bad symbol: 400 from validate")
    status, body = http(base + "/api/v1/orders", b"not json")
    check(status == 400, "POST /api/v1/orders with no JSON: 400")
    status, body = http(base + "/admin/faults")
    check(status == 200 and body == {f: False for f in
                                     ("cpu", "leak", "slow_queries", "block",
                                      "latency", "cache_cold")},
          "GET /admin/faults: six faults, all off")
    status, body = http(base + "/admin/fault", {"fault": "nope", "on": True})
    check(status == 400, "POST /admin/fault with an unknown fault: 400")
    status, body = http(base + "/admin/fault", {"fault": "cpu", "on": "yes"})
    check(status == 400, "POST /admin/fault with a non-boolean: 400")
    status, body = http(base + "/admin/cache/clear", {})
    check(status == 200 and "cleared_entries" in body,
          "POST /admin/cache/clear: 200 (%s)" % body)
    out = subprocess.run([PYTHON, os.path.join(SIM, "simctl.py"), base,
                          "faults"], capture_output=True, text=True)
    check(out.returncode == 0 and json.loads(out.stdout)["leak"] is False,
          "simctl.py URL faults")
    status, body = http(ex + "/api/v3/ping")
    check(status == 200 and body == {}, "exchange GET /api/v3/ping: {}")

    rtt, first = ws_rtt(r["feed"], lambda ms: True)
    tick = json.loads(first) if first else {}
    check(rtt is not None and {"symbol", "price", "ts"} <= set(tick),
          "feed WebSocket: a tick (%s) and a pong" % first)
    rtt, first = ws_rtt(r["exchange"]["ws"], lambda ms: True)
    trade = json.loads(first) if first else {}
    check(rtt is not None and trade.get("e") == "trade",
          "exchange trade stream: a trade and a pong")

    def rows():
        n = pg(dsn, "SELECT (SELECT count(*) FROM orders) AS o, "
               "(SELECT count(*) FROM positions) AS p")[0]
        return n["o"] >= 100 and n["p"] >= 5 and n
    n = poll(rows)
    check(n, "PostgreSQL: orders and positions fill up (%s)" % (n and dict(n)))
    tables = {x["tablename"] for x in pg(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    check({"orders", "trades", "positions"} <= tables,
          "PostgreSQL: tables orders, trades, positions")

    def sqlite_rows():
        c = sqlite3.connect("file:%s?mode=ro" % sqlite_path, uri=True)
        try:
            return c.execute("SELECT count(*) FROM orders").fetchone()[0]
        finally:
            c.close()
    n = poll(lambda: sqlite_rows() >= 100)
    check(n, "SQLite: orders fill up")


def check_metrics(r):
    def all_seen():
        with sink.cond:
            got = {}
            for name, _, typ, tags in sink.lines:
                got.setdefault(name, set()).add((typ, tuple(sorted(tags))))
        return all(n in got for n in METRICS) and got
    got = poll(all_seen) or all_seen() or {}
    for name, (typ, keys) in METRICS.items():
        check(got.get(name) == {(typ, keys)},
              "statsd: %s as |%s%s" % (name, typ, "".join(
                  " #" + k for k in keys)))
    with sink.cond:
        stages = {t.get("stage") for n, _, _, t in sink.lines
                  if n == "genesis.order.stage_ms"}
    check(stages == {"validate", "risk", "execute", "persist"},
          "statsd: the four stages (%s)" % sorted(stages))
    check(not sink.bad, "statsd: every line parses (%s)" % sink.bad[:3])
    check(sink.multi > 0 and sink.biggest <= 1432,
          "statsd: %d of %d datagrams carry several lines, the biggest %d "
          "bytes" % (sink.multi, sink.datagrams, sink.biggest))
    hit = seen("genesis.cache.hit_pct", lambda v: v > 90)
    check(hit, "statsd: cache hit rate above 90 %% (%s)" % hit)
    rate = poll(lambda: (lambda n: 100 <= n <= 200 and n)(
        http(r["http"] + "/api/v1/status")[1]["orders_per_s"]))
    check(rate, "about 150 orders/s (%s)" % rate)
    conns = sink.values("genesis.ws.connections")
    check(conns and 10 <= conns[-1] <= 50,
          "statsd: 10-50 WebSocket connections (%s)" % conns[-1:])


def fault(r, name, on):
    status, body = http(r["http"] + "/admin/fault", {"fault": name, "on": on})
    check(status == 200 and body == {"fault": name, "on": on},
          "fault %s switched %s" % (name, "on" if on else "off"))


def check_cpu(r, log):
    pid = r["pid"]
    pct = cpu_pct(pid)
    log.mark()
    fault(r, "cpu", True)
    seen_pct = []

    def hot():
        v = pct()
        seen_pct.append(v)
        return v is not None and v > 70 and v
    got = poll(hot, 20)
    check(got, "cpu: the process above 70 %% of a core (%s %%; seen %s)"
          % (got and round(got), [round(v) for v in seen_pct if v]))
    check(log.wait(r"ERROR - risk model recompute overran"),
          "cpu: ERROR with a traceback in the log")
    fault(r, "cpu", False)
    pct()
    got = poll(lambda: (lambda v: v is not None and v < 60 and v)(pct()), 15)
    check(got, "cpu: off, back under 60 %% (%s %%)" % got)


def check_leak(r, log):
    pid = r["pid"]
    base = rss_mb(pid)
    log.mark()
    fault(r, "leak", True)
    got = poll(lambda: rss_mb(pid) > base + 100 and rss_mb(pid), 15)
    check(got, "leak: RSS %.0f MB -> %s MB" % (base, got and int(got)))
    check(seen("genesis.cache.hit_pct", lambda v: v < 70) is not None,
          "leak: cache hit rate under 70 %")
    check(log.wait(r"ERROR - cache janitor failed"),
          "leak: ERROR with a traceback in the log")
    status, body = http(r["http"] + "/admin/cache/clear", {})
    low = poll(lambda: rss_mb(pid) < base + 50 and rss_mb(pid), 5)
    check(status == 200 and body["cleared_bytes"] > 50 << 20 and low,
          "leak: /admin/cache/clear gives back %s MB (RSS %s MB)"
          % (body.get("cleared_bytes", 0) >> 20, low and int(low)))
    poll(lambda: rss_mb(pid) > base + 60, 10)  # growing again
    fault(r, "leak", False)
    got = poll(lambda: rss_mb(pid) < base + 50 and rss_mb(pid), 5)
    check(got, "leak: off, RSS back to %s MB" % (got and int(got)))
    check(seen("genesis.cache.hit_pct", lambda v: v > 90) is not None,
          "leak: off, cache hit rate above 90 % again")


def check_slow_queries(r, log, dsn, have_pss):
    db = pg(dsn, "SELECT oid FROM pg_database WHERE datname = "
            "current_database()")[0]["oid"]
    worst_sql = ("SELECT max(mean_exec_time) AS m, "
                 "max(calls) FILTER (WHERE query LIKE 'INSERT INTO orders%') "
                 "AS orders FROM pg_stat_statements WHERE dbid = $1")
    log.mark()
    if have_pss:
        pg(dsn, "SELECT pg_stat_statements_reset()")
    fault(r, "slow_queries", True)
    if have_pss:
        got = poll(lambda: (lambda m: m and m > 50 and m)(
            pg(dsn, worst_sql, db)[0]["m"]))
        check(got, "slow_queries: pg_stat_statements mean above 50 ms "
              "(%s ms)" % (got and round(got)))
    waits = poll(lambda: pg(
        dsn, "SELECT count(*) AS n FROM pg_stat_activity WHERE "
        "application_name = 'genesis-sim' AND wait_event_type = 'Lock'"
    )[0]["n"])
    check(waits, "slow_queries: sessions waiting on a lock (%s)" % waits)
    check(seen("genesis.order.stage_ms", lambda v: v > 50,
               stage="persist") is not None,
          "slow_queries: persist stage above 50 ms")
    check(log.wait(r"ERROR - persist failed"),
          "slow_queries: ERROR with a traceback in the log")
    fault(r, "slow_queries", False)
    check(quiet("genesis.order.stage_ms", lambda v: v < 50, 300, 3,
                stage="persist"),
          "slow_queries: off, 300 persist stages in a row, 99 % of them "
          "under 50 ms")
    if have_pss:
        pg(dsn, "SELECT pg_stat_statements_reset()")
        got = poll(lambda: (lambda x: (x["orders"] or 0) >= 150 and x)(
            pg(dsn, worst_sql, db)[0]))
        check(got and got["m"] < 50,
              "slow_queries: off, every mean under 50 ms over %s orders "
              "(worst %s ms)" % (got and got["orders"],
                                 got and round(got["m"], 1)))


def check_block(r, log):
    log.mark()
    fault(r, "block", True)
    lag = seen("genesis.loop.lag_ms", lambda v: v > 150)
    check(lag, "block: loop lag above 150 ms (%s)" % lag)
    ev = seen("genesis.event.processing_ms", lambda v: v > 100)
    check(ev, "block: event processing above 100 ms (%s)" % ev)
    rtt, _ = ws_rtt(r["feed"], lambda ms: ms > 100)
    check(rtt, "block: a feed pong later than 100 ms (%s)" % rtt)
    check(log.wait(r"WARNING - Event loop blocked for \d+ms",
                   traceback=False),
          "block: the blocking detector's WARNING in the log")
    check(log.wait(r"ERROR - strategy \d+ dropped a stale tick"),
          "block: ERROR with a traceback in the log")
    fault(r, "block", False)
    check(quiet("genesis.loop.lag_ms", lambda v: v < 50, 20, 1),
          "block: off, 20 lag checks in a row, all but one under 50 ms")
    rtt, _ = ws_rtt(r["feed"], lambda ms: ms < 50, count=3)
    check(rtt, "block: off, 3 feed pongs in a row within 50 ms")


def check_latency(r, log):
    ex = r["exchange"]["rest"]
    log.mark()
    fault(r, "latency", True)
    got = poll(lambda: (lambda s, ms: s == 200 and ms > 100 and ms)(
        *timed_get(ex + "/api/v3/ping")))
    check(got, "latency: exchange /api/v3/ping above 100 ms (%s)" % got)
    rtt, _ = ws_rtt(r["exchange"]["ws"], lambda ms: ms > 100)
    check(rtt, "latency: exchange WebSocket pong above 100 ms (%s)" % rtt)
    check(seen("genesis.order.stage_ms", lambda v: v > 100,
               stage="execute") is not None,
          "latency: execute stage above 100 ms")
    check(log.wait(r"ERROR - execute failed for order"),
          "latency: ERROR with a traceback in the log")
    fault(r, "latency", False)
    got = poll(lambda: (lambda s, ms: s == 200 and ms < 50 and ms)(
        *timed_get(ex + "/api/v3/ping")))
    check(got, "latency: off, exchange /api/v3/ping under 50 ms (%s)" % got)
    check(quiet("genesis.order.stage_ms", lambda v: v < 50, 150, 2,
                stage="execute"),
          "latency: off, 150 execute stages in a row, 99 % of them under "
          "50 ms")


def check_cache_cold(r):
    fault(r, "cache_cold", True)
    got = seen("genesis.cache.hit_pct", lambda v: v < 70)
    check(got is not None, "cache_cold: cache hit rate under 70 %% (%s)" % got)
    fault(r, "cache_cold", False)
    got = seen("genesis.cache.hit_pct", lambda v: v > 90)
    check(got is not None, "cache_cold: off, above 90 %% again (%s)" % got)


def check_netns(tmp):
    ns = os.path.join(SIM, "netns.sh")
    if os.geteuid() != 0 or not shutil.which("ip"):
        print("note: netns.sh not tried (needs root and iproute2)")
        return
    name = "sim-selftest-%d" % os.getpid()
    out = subprocess.run([ns, "up", name], capture_output=True, text=True)
    check(out.returncode == 0 and len(out.stdout.split()) == 2,
          "netns.sh up: %s" % (out.stdout.strip() or out.stderr.strip()))
    if out.returncode != 0:
        return
    host_ip, ns_ip = out.stdout.split()
    ex = subprocess.Popen(["ip", "netns", "exec", name, PYTHON,
                           os.path.join(SIM, "exchange_sim.py"), "--host",
                           ns_ip], stdout=subprocess.PIPE, text=True)
    try:
        ready = select.select([ex.stdout], [], [], 20)[0] and \
            json.loads(ex.stdout.readline())
        url = "http://%s:%d" % (ns_ip, ready["port"])
        status, body = http(url + "/api/v3/ping")
        check(status == 200, "netns.sh: the exchange in the namespace "
              "answers at %s" % url)

        def connect_ms():
            t0 = time.perf_counter()
            socket.create_connection((ns_ip, ready["port"]), 5).close()
            return (time.perf_counter() - t0) * 1000
        d = subprocess.run([ns, "delay", name, "120"], capture_output=True,
                           text=True)
        if d.returncode == 77:
            print("note: netem not tried: %s" % d.stderr.strip())
        else:
            check(d.returncode == 0 and connect_ms() > 100,
                  "netns.sh delay 120: TCP connect above 100 ms")
            d = subprocess.run([ns, "delay", name, "0"])
            check(d.returncode == 0 and connect_ms() < 50,
                  "netns.sh delay 0: TCP connect under 50 ms")
    finally:
        down = subprocess.run([ns, "down", name], capture_output=True)
        code = ex.wait(10)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True,
                            text=True).stdout
    links = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True,
                           text=True).stdout
    check(down.returncode == 0 and name not in listed and
          host_ip + "/" not in links and code is not None,
          "netns.sh down: namespace, veth and the exchange in it gone")

    # The simulator making its own namespace, and removing it on SIGTERM.
    p, r = start_sim(["--netns", "--rate", "20", "--ws-clients", "2",
                      "--statsd", "", "--log", os.path.join(tmp, "ns.log")],
                     tmp, "ns")
    check(r and r["exchange"].get("netns") and
          r["exchange"]["host"].startswith("10.213."),
          "--netns: the exchange runs in namespace %s at %s"
          % (r and r["exchange"].get("netns"), r and r["exchange"]["host"]))
    if r:
        status, body = http(r["http"] + "/api/v1/orders",
                            {"symbol": "BTCUSDT", "side": "BUY", "qty": 0.1})
        check(status == 200, "--netns: an order through the namespace")
        fault(r, "latency", True)
        fault(r, "latency", False)
    code = stop_sim(p)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True,
                            text=True).stdout
    check(code == 0 and r and r["exchange"]["netns"] not in listed and
          not alive(r["exchange"]["pid"]),
          "--netns: SIGTERM, exit 0, namespace and exchange gone")


def main():
    tmp = tempfile.mkdtemp(prefix="vigil-sim-")
    pgstate = None
    admin = os.environ.get("VIGIL_TEST_PG")
    if not admin:
        pgstate = tempfile.mkdtemp(prefix="vigil-sim-pg-")
        env = dict(os.environ, VIGIL_PG_OPTS="-c fsync=off -c "
                   "shared_preload_libraries=pg_stat_statements")
        out = subprocess.run([os.path.join(PGDIR, "start.sh"), pgstate],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print("FAIL: tests/pg/start.sh:", out.stderr.strip())
            print("0 passed, 1 failed")
            return 1
        with open(os.path.join(pgstate, "uri")) as f:
            admin = f.read().strip()
    dbname = "genesis_sim_%d" % os.getpid()
    pg(admin, "CREATE DATABASE %s" % dbname)
    dsn = admin.rsplit("/", 1)[0] + "/" + dbname
    p = None
    try:
        sqlite_path = os.path.join(tmp, "genesis.db")
        log_path = os.path.join(tmp, "genesis.log")
        state = os.path.join(tmp, "state.json")
        pidfile = os.path.join(tmp, "genesis.pid")
        t0 = time.monotonic()
        p, r = start_sim(["--statsd", "127.0.0.1:%d" % sink.port, "--dsn",
                          dsn, "--sqlite", sqlite_path, "--log", log_path,
                          "--state", state, "--pidfile", pidfile],
                         tmp, "genesis")
        check(r is not None, "ready in %.1f s" % (time.monotonic() - t0))
        if not r:
            return summary()
        with open(state) as f, open(pidfile) as g:
            check(json.load(f) == r and int(g.read()) == r["pid"] == p.pid,
                  "the same JSON on stdout and in --state, the pid in "
                  "--pidfile")
        have_pss = pg(dsn, "SELECT count(*) AS n FROM pg_extension WHERE "
                      "extname = 'pg_stat_statements'")[0]["n"] == 1
        if have_pss:
            try:
                pg(dsn, "SELECT 1 FROM pg_stat_statements LIMIT 1")
            except asyncpg.PostgresError:
                have_pss = False
        if not have_pss:
            print("note: pg_stat_statements is not loaded on %s: the "
                  "slow_queries checks use the persist stage only" % admin)
        log = Log(log_path)

        check_endpoints(r, dsn, sqlite_path)
        check_metrics(r)
        check_cpu(r, log)
        check_leak(r, log)
        check_slow_queries(r, log, dsn, have_pss)
        check_block(r, log)
        check_latency(r, log)
        check_cache_cold(r)

        with open(log_path) as f:
            text = f.read()
        errors = len(re.findall(r" - ERROR - ", text))
        elapsed = time.monotonic() - t0
        check(0 < errors <= 6 * elapsed,
              "log: %d ERROR lines in %.0f s, at most one a second per kind"
              % (errors, elapsed))

        code = stop_sim(p)
        sessions = pg(dsn, "SELECT count(*) AS n FROM pg_stat_activity "
                      "WHERE application_name = 'genesis-sim'")[0]["n"]
        with open(log_path) as f:
            last = f.read().rstrip().rsplit("\n", 1)[-1]
        check(code == 0 and sessions == 0 and
              not alive(r["exchange"]["pid"]) and last.endswith("stopped")
              and not os.path.exists(state) and not os.path.exists(pidfile),
              "SIGTERM: exit %s, %d PostgreSQL sessions left, exchange "
              "gone, log ends with 'stopped', state and pid files removed"
              % (code, sessions))
        check_netns(tmp)
    finally:
        if p is not None:
            stop_sim(p)
        try:
            pg(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % dbname)
        finally:
            if pgstate:
                subprocess.run([os.path.join(PGDIR, "stop.sh"), pgstate])
            shutil.rmtree(tmp, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
