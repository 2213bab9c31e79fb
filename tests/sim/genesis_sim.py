#!/usr/bin/python3
"""genesis_sim: a small stand-in for the genesis trading service, for
vigil's end-to-end drills. One asyncio process, like the real one:

- an HTTP API (aiohttp): /health, /api/v1/status, POST /api/v1/orders, and
  the control API under /admin/ (faults, cache clear);
- a WebSocket market feed (websockets) that relays the exchange's trades
  to its subscribers, a few of them internal clients;
- an order generator (150 orders/s by default); each order goes through
  validate, risk, execute (the exchange's REST) and persist (PostgreSQL
  through an asyncpg pool, and SQLite);
- StatsD metrics, a log file, and six faults that can be switched on and
  off at run time: cpu, leak, slow_queries, block, latency, cache_cold.

It starts its own fake exchange (exchange_sim.py) unless given one, and
when ready prints one JSON line with its ports and pids (also written to
--state). tests/sim/README.md lists the flags, metrics and faults. Run it
with Debian's /usr/bin/python3 (python3-aiohttp, python3-asyncpg,
python3-websockets).
"""

import argparse
import asyncio
import ctypes
import dataclasses
import gc
import hashlib
import itertools
import json
import logging
import math
import os
import random
import signal
import socket
import sqlite3
import sys
import threading
import time

import aiohttp
import asyncpg
import websockets
from aiohttp import web

HERE = os.path.dirname(os.path.abspath(__file__))
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT",
           "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT")
FAULTS = ("cpu", "leak", "slow_queries", "block", "latency", "cache_cold")
CACHE_TTL_S = 5.0        # the risk stage's reference data: ~98 % hits
COLD_CACHE_TTL_S = 0.02  # cache_cold: a TTL so short that most lookups miss

log = logging.getLogger("genesis")
log_exec = logging.getLogger("genesis.engine.executor")
log_db = logging.getLogger("genesis.db")
log_feed = logging.getLogger("genesis.feed")
log_risk = logging.getLogger("genesis.engine.risk")
log_loop = logging.getLogger("genesis.loop")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY, client_id text NOT NULL, symbol text NOT NULL,
    side text NOT NULL, qty numeric NOT NULL, price numeric,
    status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS trades (
    id bigserial PRIMARY KEY, order_id bigint, symbol text NOT NULL,
    qty numeric NOT NULL, price numeric NOT NULL,
    timestamp timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS positions (
    symbol text PRIMARY KEY, qty numeric NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now());
"""
# trades has no index on (symbol, timestamp) on purpose: the slow_queries
# report below scans the whole table, the guide's "missing index".
SEED_TRADES = """
INSERT INTO trades (symbol, qty, price, timestamp)
SELECT ($1::text[])[1 + i % 10], random(), 100 * random(),
       now() - i * interval '10 ms'
FROM generate_series(1, $2) AS i"""
INSERT_ORDER = """
INSERT INTO orders (client_id, symbol, side, qty, price, status)
VALUES ($1, $2, $3, $4, $5, 'FILLED') RETURNING id"""
INSERT_TRADE = """
INSERT INTO trades (order_id, symbol, qty, price) VALUES ($1, $2, $3, $4)"""
UPSERT_POSITION = """
INSERT INTO positions (symbol, qty) VALUES ($1, $2)
ON CONFLICT (symbol) DO UPDATE
SET qty = positions.qty + EXCLUDED.qty, updated_at = now()"""
# The slow_queries fault: a report over the unindexed trades table, with
# pg_sleep so that its mean stays above the guide's 50 ms on a fast box.
# One order in 20 runs it: enough for the mean, little CPU for the box.
SLOW_REPORT = """
SELECT count(*), pg_sleep(0.06)::text FROM trades
WHERE symbol = $1 AND timestamp > now() - interval '1 hour'"""


def ms_since(t0):
    return (time.perf_counter() - t0) * 1000


_last_logged = {}


def log_exception(logger, kind, msg, *args):
    """logger.exception, at most once a second for each kind: a fault
    leaves real tracebacks in the log without flooding it."""
    now = time.monotonic()
    if now - _last_logged.get(kind, float("-inf")) >= 1.0:
        _last_logged[kind] = now
        logger.exception(msg, *args)


def release_memory():
    """Give freed memory back to the system now: glibc keeps freed heap
    pages until asked (malloc_trim), and RSS is what a monitor sees."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


class StatsD:
    """A DogStatsD client. Lines are batched into datagrams of at most
    1432 bytes, sent every 100 ms; counters are summed and sent once per
    batch. Timers also come from GC callbacks, in any thread and at any
    allocation, even one made while this thread holds the lock: hence an
    RLock."""

    MAX_DATAGRAM = 1432

    def __init__(self, addr):
        self.addr = None
        if addr:
            host, _, port = addr.rpartition(":")
            family, _, _, _, self.addr = socket.getaddrinfo(
                host.strip("[]"), int(port), type=socket.SOCK_DGRAM)[0]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        self.lock = threading.RLock()
        self.lines = []
        self.counters = {}

    @staticmethod
    def tags(tags):
        return "|#" + ",".join("%s:%s" % t for t in tags) if tags else ""

    def timer(self, name, ms, **tags):
        line = "%s:%.3f|ms%s" % (name, ms, self.tags(tags.items()))
        with self.lock:
            self.lines.append(line)

    def gauge(self, name, value, **tags):
        line = "%s:%g|g%s" % (name, value, self.tags(tags.items()))
        with self.lock:
            self.lines.append(line)

    def count(self, name, n=1, **tags):
        key = (name, tuple(tags.items()))
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def flush(self):
        with self.lock:
            lines, self.lines = self.lines, []
            counters, self.counters = self.counters, {}
        for (name, tags), n in counters.items():
            if n:
                lines.append("%s:%d|c%s" % (name, n, self.tags(tags)))
        if self.addr is None:
            return
        batch = ""
        for line in lines + [None]:
            if batch and (line is None or
                          len(batch) + 1 + len(line) > self.MAX_DATAGRAM):
                try:
                    self.sock.sendto(batch.encode(), self.addr)
                except OSError:
                    pass  # nobody listening, or a full buffer: lossy
                batch = ""
            if line is not None:
                batch = line if not batch else batch + "\n" + line


class CacheError(Exception):
    pass


class Cache:
    """The risk stage's reference data per symbol: entries expire after a
    TTL; a janitor evicts expired ones, and the cache never holds more
    than `capacity` entries. The `leak` fault forgets eviction."""

    def __init__(self, capacity=100, ttl=CACHE_TTL_S):
        self.capacity, self.ttl = capacity, ttl
        self.evict = True
        self.entries = {}  # key -> (stored at, value, payload)
        self.bytes = 0     # payload bytes held
        self.hits = self.misses = 0

    def get(self, key):
        e = self.entries.get(key)
        if e is not None and time.monotonic() - e[0] < self.ttl:
            self.hits += 1
            return e[1]
        self.misses += 1
        return None

    def put(self, key, value, payload=b""):
        old = self.entries.get(key)
        self.bytes += len(payload) - (len(old[2]) if old else 0)
        self.entries[key] = (time.monotonic(), value, payload)

    def expire(self):
        """Evict expired entries; raises CacheError when eviction is off
        and the cache is over capacity."""
        if not self.evict:
            if len(self.entries) > self.capacity:
                raise CacheError(
                    "cache holds %d entries (%d MB), capacity %d, and "
                    "eviction is disabled" % (len(self.entries),
                                              self.bytes >> 20, self.capacity))
            return
        now = time.monotonic()
        for key in [k for k, e in self.entries.items()
                    if now - e[0] >= self.ttl]:
            self.bytes -= len(self.entries.pop(key)[2])

    def clear(self):
        n, b = len(self.entries), self.bytes
        self.entries, self.bytes = {}, 0
        release_memory()
        return n, b


@dataclasses.dataclass
class Order:
    client_id: str
    symbol: str
    side: str
    qty: float
    created: float = dataclasses.field(default_factory=time.perf_counter)
    price: float = None


class OrderFailed(Exception):
    def __init__(self, stage, http_status, reason):
        super().__init__("%s: %s" % (stage, reason))
        self.stage, self.http_status = stage, http_status


def recompute_risk_digests(budget_s, keep_going):
    """The cpu fault's hot loop: the risk model's snapshot digests, over
    and over. hashlib lets go of the GIL on large buffers, so this burns a
    core without starving the event loop of the GIL (a pure-Python loop
    would, and the fault would look like `block`). Raises TimeoutError
    when it overruns its budget."""
    t0 = time.monotonic()
    snapshot = os.urandom(1 << 20)
    while keep_going():
        hashlib.sha256(snapshot).digest()
        if time.monotonic() - t0 > budget_s:
            raise TimeoutError("risk digest recompute ran %.1f s, over its "
                               "%.1f s budget" % (time.monotonic() - t0,
                                                  budget_s))


class StaleTick(Exception):
    pass


def check_fresh(tick, max_age_ms=250):
    """Raises StaleTick for a tick older than max_age_ms (by its exchange
    time): a blocked loop delivers ticks late."""
    age_ms = time.time() * 1000 - tick["ts"]
    if age_ms > max_age_ms:
        raise StaleTick("%s tick is %.0f ms old (limit %d ms)"
                        % (tick["symbol"], age_ms, max_age_ms))


class Genesis:
    def __init__(self, args):
        self.args = args
        self.stats = StatsD(args.statsd)
        self.cache = Cache()
        self.faults = dict.fromkeys(FAULTS, False)
        self.fault_workers = {}  # fault -> its running task or thread
        self.queue = asyncio.Queue(maxsize=10000)
        self.ids = itertools.count(1)
        self.orders_done = self.orders_failed = self.orders_per_s = 0
        self.hit_pct = None  # over the last second
        self.subscribers = set()  # the feed's WebSocket connections
        self.exchange_up = asyncio.Event()
        self.pool = self.sqlite = self.exchange_proc = self.netns = None
        # stop() may come after a start() that failed half way.
        self.http = self.feed = self.runner = None
        self.tasks = []
        self.started = time.monotonic()
        # Each leaked cache entry holds this much, so that the leak grows
        # at --leak-mb-per-s at the order rate.
        self.leak_bytes = int(args.leak_mb_per_s * 2**20 / max(args.rate, 1))
        self.gc_t0 = 0.0

    # --- start and stop -------------------------------------------------

    async def start(self):
        self.loop = asyncio.get_running_loop()
        if self.args.dsn:
            await self.open_postgres()
        if self.args.sqlite:
            self.sqlite = sqlite3.connect(self.args.sqlite,
                                          isolation_level=None)
            self.sqlite.execute("PRAGMA journal_mode=WAL")
            self.sqlite.execute("PRAGMA synchronous=NORMAL")
            self.sqlite.execute(
                "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, "
                "client_id TEXT, symbol TEXT, side TEXT, qty REAL, price REAL,"
                " status TEXT, created_at REAL)")
        await self.start_exchange()
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=0.5))
        self.feed = await websockets.serve(self.feed_handler, self.args.host,
                                           self.args.ws_port)
        self.ws_port = self.feed.sockets[0].getsockname()[1]
        self.spawn(self.market_stream(), self.order_generator(),
                   self.publish_gauges(), self.cache_janitor(),
                   self.flush_stats())
        self.spawn(*map(self.feed_client, range(self.args.ws_clients)))
        self.spawn(*(self.order_worker() for _ in range(self.args.workers)))
        self.loop.call_soon(self.check_loop_lag, self.loop.time())
        gc.callbacks.append(self.on_gc)

        app = web.Application()
        app.add_routes([
            web.get("/health", self.h_health),
            web.get("/api/v1/status", self.h_status),
            web.post("/api/v1/orders", self.h_order),
            web.post("/admin/cache/clear", self.h_cache_clear),
            web.post("/admin/fault", self.h_fault),
            web.get("/admin/faults", self.h_faults)])
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.args.host,
                          self.args.http_port).start()
        self.http_port = self.runner.addresses[0][1]
        await asyncio.wait_for(self.exchange_up.wait(), 10)
        for name in self.args.fault:
            await self.set_fault(name, True)
        log.info("genesis-sim ready: http %d, feed %d, exchange %s",
                 self.http_port, self.ws_port, self.exchange_rest)

    async def open_postgres(self):
        # lock_timeout: an order waiting on a locked position row gives up
        # (and logs it) rather than holding a pool connection for long.
        self.pool = await asyncpg.create_pool(
            self.args.dsn, min_size=self.args.pool_size,
            max_size=self.args.pool_size, timeout=10,
            server_settings={"application_name": "genesis-sim",
                             "lock_timeout": "200"})
        async with self.pool.acquire() as conn:
            await conn.execute(SCHEMA)
            have = await conn.fetchval("SELECT count(*) FROM trades")
            if have < self.args.seed_rows:
                await conn.execute(SEED_TRADES, list(SYMBOLS),
                                   self.args.seed_rows - have)
                await conn.execute("ANALYZE trades")
            try:
                await conn.execute(
                    "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                await conn.fetchval("SELECT count(*) FROM pg_stat_statements")
            except asyncpg.PostgresError as e:
                log_db.warning("pg_stat_statements is not available (%s): "
                               "slow queries will not show there", e)

    async def start_exchange(self):
        if self.args.exchange:
            self.exchange_rest = self.args.exchange.rstrip("/")
            self.exchange_info = {"rest": self.exchange_rest}
        else:
            host = "127.0.0.1"
            cmd = [sys.executable, os.path.join(HERE, "exchange_sim.py"),
                   "--trades-per-s", str(self.args.exchange_trades_per_s),
                   "--port", str(self.args.exchange_port)]
            if self.args.netns:
                self.netns = "genesis-sim-%d" % os.getpid()
                host = (await self.netns_sh("up", self.netns)).split()[1]
                cmd = ["ip", "netns", "exec", self.netns] + cmd
            self.exchange_proc = await asyncio.create_subprocess_exec(
                *cmd, "--host", host, stdout=asyncio.subprocess.PIPE)
            line = await asyncio.wait_for(
                self.exchange_proc.stdout.readline(), 10)
            self.exchange_info = json.loads(line)
            self.exchange_rest = "http://%s:%d" % (host,
                                                   self.exchange_info["port"])
            self.exchange_info.update(rest=self.exchange_rest,
                                      netns=self.netns)
        self.exchange_ws = (self.exchange_rest.replace("http", "ws", 1) +
                            "/ws/btcusdt@trade")
        self.exchange_info["ws"] = self.exchange_ws

    async def netns_sh(self, *args):
        """Run netns.sh; returns its output, raises RuntimeError with its
        message on failure (77: the host cannot)."""
        p = await asyncio.create_subprocess_exec(
            os.path.join(HERE, "netns.sh"), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err.decode().strip() or "netns.sh failed")
        return out.decode()

    def spawn(self, *coros):
        self.tasks += [asyncio.create_task(c) for c in coros]

    async def stop(self):
        """Undo start(), or as much of it as was done."""
        log.info("stopping")
        if self.faults["latency"] and self.args.exchange:
            try:  # an exchange we did not start stays up: undo the delay
                await self.exchange_latency(False)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
        for name in FAULTS:
            self.faults[name] = False  # the cpu thread ends on its own
        if self.on_gc in gc.callbacks:
            gc.callbacks.remove(self.on_gc)
        tasks = self.tasks + [t for t in self.fault_workers.values()
                              if isinstance(t, asyncio.Task)]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.runner:
            await self.runner.cleanup()
        if self.feed:
            self.feed.close()
            await self.feed.wait_closed()
        if self.http:
            await self.http.close()
        if self.exchange_proc:
            self.exchange_proc.terminate()
            try:
                await asyncio.wait_for(self.exchange_proc.wait(), 5)
            except asyncio.TimeoutError:
                self.exchange_proc.kill()
                await self.exchange_proc.wait()
        if self.netns:
            await self.netns_sh("down", self.netns)
        if self.pool:
            try:
                await asyncio.wait_for(self.pool.close(), 5)
            except asyncio.TimeoutError:
                self.pool.terminate()
        if self.sqlite:
            self.sqlite.close()
        self.stats.flush()
        log.info("stopped")

    # --- orders ---------------------------------------------------------

    async def process_order(self, order):
        """Take an order through its four stages, timing each (the "Request
        spans" convention of docs/statsd.md). Returns the stage times;
        raises OrderFailed naming the stage that failed."""
        stages = {}
        try:
            for stage, step in (("validate", self.validate),
                                ("risk", self.risk),
                                ("execute", self.execute),
                                ("persist", self.persist)):
                t0 = time.perf_counter()
                try:
                    await step(order)
                finally:
                    stages[stage] = ms_since(t0)
                    self.stats.timer("genesis.order.stage_ms", stages[stage],
                                     stage=stage)
        except OrderFailed as e:
            self.orders_failed += 1
            self.stats.count("genesis.orders_failed_total", stage=e.stage)
            raise
        finally:
            self.stats.timer("genesis.order.latency_ms",
                             ms_since(order.created))
        self.orders_done += 1
        self.stats.count("genesis.orders_total")
        return stages

    async def validate(self, order):
        if order.symbol not in SYMBOLS:
            raise OrderFailed("validate", 400,
                              "unknown symbol %r" % order.symbol)
        if order.side not in ("BUY", "SELL"):
            raise OrderFailed("validate", 400, "side must be BUY or SELL")
        if (not isinstance(order.qty, (int, float)) or
                not math.isfinite(order.qty) or order.qty <= 0):
            raise OrderFailed("validate", 400, "qty must be a positive number")

    async def risk(self, order):
        # The leak fault is a bug in this cache's use: keyed per order
        # instead of per symbol, each entry holding a snapshot, eviction
        # off. Every lookup misses and nothing is freed.
        leak = self.faults["leak"]
        key = (order.symbol, order.client_id) if leak else order.symbol
        limits = self.cache.get(key)
        if limits is None:
            await asyncio.sleep(0.002)  # fetch from the reference-data service
            limits = {"max_qty": 100.0}
            payload = b""
            if leak and self.cache.bytes < self.args.leak_cap_mb << 20:
                # Written to, so that it counts in RSS at once.
                payload = b"\x5a" * self.leak_bytes
            self.cache.put(key, limits, payload)
        if order.qty > limits["max_qty"]:
            raise OrderFailed("risk", 403, "over the symbol's quantity limit")

    async def execute(self, order):
        form = {"symbol": order.symbol, "side": order.side, "type": "MARKET",
                "quantity": "%.8f" % order.qty}
        try:
            async with self.http.post(self.exchange_rest + "/api/v3/order",
                                      data=form) as r:
                body = await r.json()
                if r.status != 200:
                    raise OrderFailed("execute", 502,
                                      body.get("msg", r.status))
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            log_exception(log_exec, "execute",
                          "execute failed for order %s", order.client_id)
            raise OrderFailed("execute", 502, "exchange: %r" % e)
        order.price = float(body["fills"][0]["price"])

    async def persist(self, order):
        signed = order.qty if order.side == "BUY" else -order.qty
        if self.pool:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    oid = await conn.fetchval(
                        INSERT_ORDER, order.client_id, order.symbol,
                        order.side, order.qty, order.price)
                    await conn.execute(INSERT_TRADE, oid, order.symbol,
                                       order.qty, order.price)
                    await conn.execute(UPSERT_POSITION, order.symbol, signed)
                    if self.faults["slow_queries"] and random.random() < 0.05:
                        await conn.fetch(SLOW_REPORT, order.symbol)
            except (asyncpg.PostgresError, asyncpg.InterfaceError,
                    OSError) as e:
                log_exception(log_db, "persist",
                              "persist failed for order %s", order.client_id)
                raise OrderFailed("persist", 503, "database: %s" % e)
        if self.sqlite:
            self.sqlite.execute(
                "INSERT INTO orders (client_id, symbol, side, qty, price, "
                "status, created_at) VALUES (?, ?, ?, ?, ?, 'FILLED', ?)",
                (order.client_id, order.symbol, order.side, order.qty,
                 order.price, time.time()))

    def new_order(self):
        return Order("sim-%d" % next(self.ids), random.choice(SYMBOLS),
                     random.choice(("BUY", "SELL")),
                     round(random.uniform(0.001, 1.0), 3))

    async def order_generator(self):
        """--rate orders a second, on average: after a stall (a blocked
        loop) the orders that were due come at once, as they would."""
        t0, sent = self.loop.time(), 0
        while True:
            await asyncio.sleep(0.01)
            due = int((self.loop.time() - t0) * self.args.rate) - sent
            for _ in range(due):
                try:
                    self.queue.put_nowait(self.new_order())
                except asyncio.QueueFull:
                    log_exception(log, "queue", "order queue full: dropped")
            sent += due

    async def order_worker(self):
        while True:
            order = await self.queue.get()
            try:
                await self.process_order(order)
            except OrderFailed:
                pass  # counted; the stage logged what went wrong
            except Exception:
                log_exception(log, "order", "order %s failed", order.client_id)

    # --- market data ----------------------------------------------------

    async def market_stream(self):
        """The exchange's trade stream; every trade is relayed to the
        feed's subscribers. Reconnects after a second on failure."""
        while True:
            try:
                async with aiohttp.ClientSession() as s, \
                        s.ws_connect(self.exchange_ws) as ws:
                    self.exchange_up.set()
                    log_feed.info("connected to %s", self.exchange_ws)
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self.on_trade(msg.data)
                    log_feed.warning("the exchange closed the stream")
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                log_exception(log_feed, "stream", "exchange stream failed")
            self.exchange_up.clear()
            await asyncio.sleep(1)

    def on_trade(self, text):
        t = json.loads(text)
        tick = json.dumps({"symbol": t["s"], "price": float(t["p"]),
                           "qty": float(t["q"]), "ts": t["T"]})
        websockets.broadcast(self.subscribers, tick)
        # From the exchange's event time: the time an event waited in the
        # socket while the loop was busy counts.
        self.stats.timer("genesis.event.processing_ms",
                         max(0.0, time.time() * 1000 - t["E"]))

    async def feed_handler(self, ws, path=None):
        self.subscribers.add(ws)
        try:
            async for _ in ws:
                pass  # subscriptions: everyone gets every tick
        except websockets.ConnectionClosed:
            pass
        finally:
            self.subscribers.discard(ws)

    async def feed_client(self, i):
        """An internal subscriber (a strategy): reads every tick and drops
        stale ones, as a strategy must."""
        url = "ws://%s:%d/" % (self.args.host, self.ws_port)
        while True:
            try:
                async with websockets.connect(url) as ws:
                    async for text in ws:
                        try:
                            check_fresh(json.loads(text))
                        except StaleTick:
                            log_exception(log_feed, "stale", "strategy %d "
                                          "dropped a stale tick", i)
            except (OSError, websockets.WebSocketException):
                log_exception(log_feed, "feed_client",
                              "strategy %d lost its feed connection", i)
                await asyncio.sleep(1)

    # --- what the service tells about itself ----------------------------

    def on_gc(self, phase, info):
        if phase == "start":
            self.gc_t0 = time.perf_counter()
        else:
            self.stats.timer("genesis.gc.pause_ms", ms_since(self.gc_t0))

    def check_loop_lag(self, last):
        """The guide's blocking detector: a check every 100 ms; how late it
        runs is how long the loop was blocked."""
        now = self.loop.time()
        lag_ms = max(0.0, (now - last - 0.1) * 1000)
        self.stats.timer("genesis.loop.lag_ms", lag_ms)
        if lag_ms > 50:
            log_loop.warning("Event loop blocked for %.0fms", lag_ms)
        self.loop.call_later(0.1, self.check_loop_lag, now)

    async def publish_gauges(self):
        hits = misses = done = 0
        for n in itertools.count(1):
            await asyncio.sleep(1)
            c, s = self.cache, self.stats
            dh, dm = c.hits - hits, c.misses - misses
            hits, misses = c.hits, c.misses
            s.count("genesis.cache.hits", dh)
            s.count("genesis.cache.misses", dm)
            if dh + dm:
                self.hit_pct = 100.0 * dh / (dh + dm)
                s.gauge("genesis.cache.hit_pct", round(self.hit_pct, 2))
            s.gauge("genesis.queue.depth", self.queue.qsize(), queue="orders")
            s.gauge("genesis.ws.connections", len(self.subscribers))
            if self.pool:
                size = self.pool.get_size()
                s.gauge("genesis.db.pool.size", size)
                s.gauge("genesis.db.pool.in_use",
                        size - self.pool.get_idle_size())
            self.orders_per_s, done = self.orders_done - done, self.orders_done
            if n % 10 == 0:
                log.info("orders %d/s (%d failed in all), queue %d, feed "
                         "clients %d, cache hits %s%%, rss %d MB",
                         self.orders_per_s, self.orders_failed,
                         self.queue.qsize(), len(self.subscribers),
                         "-" if self.hit_pct is None else
                         "%.0f" % self.hit_pct, rss_mb())

    async def cache_janitor(self):
        while True:
            await asyncio.sleep(1)
            try:
                self.cache.expire()
            except CacheError:
                log_exception(log_risk, "cache", "cache janitor failed")

    async def flush_stats(self):
        while True:
            await asyncio.sleep(0.1)
            self.stats.flush()

    # --- faults ---------------------------------------------------------

    async def set_fault(self, name, on):
        """Switch a fault; its effect starts or ends within a second."""
        if name == "slow_queries" and not self.pool:
            raise web.HTTPConflict(text="slow_queries needs --dsn\n")
        if name == "latency":
            await self.exchange_latency(on)
        self.faults[name] = on
        log.warning("fault %s switched %s", name, "on" if on else "off")
        if name == "leak":
            self.cache.evict = not on
            if not on:
                self.cache.clear()  # the fix: the leaked entries go
        elif name == "cache_cold":
            self.cache.ttl = COLD_CACHE_TTL_S if on else CACHE_TTL_S
        # A worker switched off ends at its next turn; switched on again
        # before that, it just goes on.
        w = self.fault_workers.get(name)
        running = w and (w.is_alive() if name == "cpu" else not w.done())
        if on and not running:
            if name == "cpu":
                w = threading.Thread(target=self.burn_cpu, name="risk-model",
                                     daemon=True)
                w.start()
            elif name == "block":
                w = asyncio.create_task(self.block_loop())
            elif name == "slow_queries":
                w = asyncio.create_task(self.hold_position_lock())
            self.fault_workers[name] = w

    def burn_cpu(self):
        """cpu: a thread recomputing the risk model in a hot loop."""
        while self.faults["cpu"]:
            try:
                recompute_risk_digests(2.0, lambda: self.faults["cpu"])
            except TimeoutError:
                log_risk.exception("risk model recompute overran")

    async def block_loop(self):
        """block: a synchronous call on the event loop, 200-500 ms at a
        time, again and again."""
        while self.faults["block"]:
            time.sleep(random.uniform(0.2, 0.5))  # the bug: blocks the loop
            await asyncio.sleep(random.uniform(0.2, 0.6))

    async def hold_position_lock(self):
        """slow_queries, the other half: every few seconds a long
        transaction holds the BTCUSDT position row, so orders on it wait
        for the lock (and give up after lock_timeout), and a long query
        shows in pg_stat_activity."""
        while self.faults["slow_queries"]:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT qty FROM positions WHERE "
                                       "symbol = 'BTCUSDT' FOR UPDATE")
                    await conn.execute("SELECT pg_sleep(1.0)")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                log_exception(log_db, "lock", "position report failed")
            await asyncio.sleep(2)

    async def exchange_latency(self, on):
        """latency: the exchange delays its answers and pongs; in a network
        namespace, netem delays every packet too (when the kernel has it)."""
        ms = self.args.latency_ms if on else 0
        async with self.http.post(self.exchange_rest + "/admin/latency",
                                  json={"delay_ms": ms}) as r:
            r.raise_for_status()
        if self.netns:
            try:
                await self.netns_sh("delay", self.netns, str(int(ms)))
            except RuntimeError as e:
                log.warning("no network delay, only the exchange's: %s", e)

    # --- HTTP API -------------------------------------------------------

    async def h_health(self, request):
        if not self.exchange_up.is_set():
            return web.json_response({"status": "degraded", "problems": [
                "exchange stream disconnected"]}, status=503)
        return web.json_response({"status": "ok"})

    async def h_status(self, request):
        db = None
        if self.pool:
            db = {"pool_size": self.pool.get_size(),
                  "pool_in_use": self.pool.get_size() -
                  self.pool.get_idle_size()}
        return web.json_response({
            "service": "genesis-sim", "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "orders_total": self.orders_done,
            "orders_failed": self.orders_failed,
            "orders_per_s": self.orders_per_s,
            "queue_depth": self.queue.qsize(),
            "ws_connections": len(self.subscribers),
            "exchange_connected": self.exchange_up.is_set(),
            "cache": {"entries": len(self.cache.entries),
                      "bytes": self.cache.bytes, "hit_pct": self.hit_pct},
            "db": db, "rss_mb": rss_mb(), "faults": self.faults})

    async def h_order(self, request):
        try:
            body = await request.json()
            order = Order(body.get("client_id") or "api-%d" % next(self.ids),
                          body.get("symbol"), body.get("side"),
                          body.get("qty"))
        except (ValueError, AttributeError):
            return web.json_response(
                {"error": 'expected {"symbol", "side", "qty"}'}, status=400)
        try:
            stages = await self.process_order(order)
        except OrderFailed as e:
            return web.json_response({"error": str(e), "stage": e.stage},
                                     status=e.http_status)
        return web.json_response({
            "id": order.client_id, "status": "FILLED", "price": order.price,
            "latency_ms": round(ms_since(order.created), 3),
            "stages_ms": {k: round(v, 3) for k, v in stages.items()}})

    async def h_cache_clear(self, request):
        n, b = self.cache.clear()
        log.warning("cache cleared: %d entries, %d bytes", n, b)
        return web.json_response({"cleared_entries": n, "cleared_bytes": b})

    async def h_fault(self, request):
        try:
            body = await request.json()
            name, on = body["fault"], body["on"]
            if name not in FAULTS or not isinstance(on, bool):
                raise ValueError(name)
        except (ValueError, KeyError, TypeError):
            return web.json_response({
                "error": 'expected {"fault": NAME, "on": true|false}',
                "faults": FAULTS}, status=400)
        try:
            await self.set_fault(name, on)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return web.json_response({"error": "the exchange: %r" % e},
                                     status=502)
        return web.json_response({"fault": name, "on": on})

    async def h_faults(self, request):
        return web.json_response(self.faults)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = ap.add_argument
    a("--host", default="127.0.0.1", help="address of the API and the feed")
    a("--http-port", type=int, default=0, help="0: any free port")
    a("--ws-port", type=int, default=0, help="the feed's; 0: any free port")
    a("--statsd", default="127.0.0.1:8125", help="HOST:PORT; '': none")
    a("--dsn", help="PostgreSQL URI (none: no PostgreSQL)")
    a("--sqlite", help="SQLite database file (none: no SQLite)")
    a("--log", help="log file (default: stderr)")
    a("--state", help="write the ready JSON here too")
    a("--pidfile", help="write the pid here once ready")
    a("--rate", type=float, default=150.0, help="orders a second")
    a("--workers", type=int, default=32, help="orders processed at once")
    a("--ws-clients", type=int, default=12, help="internal feed clients")
    a("--pool-size", type=int, default=10, help="PostgreSQL connections")
    a("--seed-rows", type=int, default=100000,
      help="rows the trades table gets at start when it has fewer")
    a("--exchange", help="URL of a running exchange_sim.py (default: "
      "start one)")
    a("--exchange-port", type=int, default=0,
      help="the started exchange's port; 0: any free port")
    a("--exchange-trades-per-s", type=float, default=50.0)
    a("--netns", action="store_true",
      help="start the exchange in a network namespace (root; netns.sh)")
    a("--latency-ms", type=float, default=120.0, help="the latency fault's")
    a("--leak-mb-per-s", type=float, default=30.0, help="the leak fault's")
    a("--leak-cap-mb", type=int, default=1024, help="the leak stops there")
    a("--fault", action="append", default=[], choices=FAULTS,
      help="switched on at start (repeatable)")
    args = ap.parse_args()
    if "slow_queries" in args.fault and not args.dsn:
        ap.error("--fault slow_queries needs --dsn")
    return args


async def main():
    args = parse_args()
    logging.basicConfig(
        filename=args.log, level=logging.INFO,
        format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    g = Genesis(args)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await g.start()
    except Exception as e:
        log.exception("start failed")
        await g.stop()
        print("genesis_sim: start failed: %r" % e, file=sys.stderr)
        return 1
    ready = {"pid": os.getpid(), "host": args.host,
             "http_port": g.http_port, "ws_port": g.ws_port,
             "http": "http://%s:%d" % (args.host, g.http_port),
             "feed": "ws://%s:%d/" % (args.host, g.ws_port),
             "exchange": g.exchange_info, "statsd": args.statsd,
             "dsn": args.dsn, "sqlite": args.sqlite, "log": args.log}
    if args.state:
        with open(args.state + ".tmp", "w") as f:
            json.dump(ready, f)
        os.replace(args.state + ".tmp", args.state)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    print(json.dumps(ready), flush=True)
    await stop.wait()
    await g.stop()
    for path in (args.state, args.pidfile):
        if path:
            os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
