#!/usr/bin/python3
"""The prom plugin against real HTTP servers on 127.0.0.1.

One daemon scrapes several endpoints at once, each a `[plugin prom NAME]`
instance, every 300 ms:

  client    the real output of Debian's python3-prometheus-client (the
            official Python client library) for a registry this test
            drives: counters, gauges (NaN, +Inf, label values with `"`,
            `\\`, a newline and UTF-8, an `instance` label, a name with
            ':'), a histogram and a summary. The server changes the
            histogram only right after serving a scrape, so each scrape's
            content is known exactly. Every sample of every scrape must be
            published with the exact value, at one timestamp per scrape;
            the estimated quantiles (.p50 .p90 .p95 .p99) must equal
            PromQL's histogram_quantile over the bucket increase since the
            previous scrape (worked by hand for one scrape, and computed
            here for all); none when nothing was observed. The request
            carries the bearer token and the configured header, and the
            token never shows in vigil's output.
  bad       the client library's output with CRLF line ends and two
            malformed lines in the middle: both are reported with their
            line numbers, prom.bad_lines_total counts them, and every good
            line, before and after, is published (with prefix "app").
  down      a port nothing listens on: prom.up 0, scrape after scrape.
  hang      a server that accepts and never answers: timeout = 500ms,
            prom.up 0 with "timed out", prom.scrape_ms about 500.
  big       a 200 KB body with Content-Length and max_bytes = 64KiB:
  bigstream the same without a length (read until close): both refused,
            prom.up 0, and none of their series published.
  status    HTTP 500: prom.up 0, "HTTP status 500".
  small     30 series with max_series = 5: 25 dropped, a clear log line.
  redir     a 302 to the small endpoint: followed.
  gzip      the bad endpoint's good lines, gzip-compressed: decoded.

Meanwhile vigil.loop.lag_ms must stay well under the hang endpoint's
timeout: no scrape blocks the loop.
The daemon stops on SIGTERM with a hanging scrape in flight and exits 0.

Needs /usr/bin/python3 with python3-prometheus-client (`make deps`);
exits 77 (skip) without it or without the built plugin.
"""

import gzip
import math
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

SKIP = 77
DEADLINE_S = 60.0
TIMEOUT_MS = 500
# A scrape that blocked the loop would stall it for the hang endpoint's
# whole timeout (500 ms); half of it leaves room for a busy test machine
# (2 cores, parallel tests, sanitizers: 110 ms of lag was seen with two
# CPU hogs running and nothing blocking).
LAG_MAX_MS = TIMEOUT_MS / 2
TOKEN = "s3cret-T0ken-xyz"

try:
    import vigiltest as vt
except KeyError as e:  # VIGIL_BIN and friends unset
    print(f"skip: {e} not set (run through ctest)")
    sys.exit(SKIP)
try:
    from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry,
                                   Counter, Gauge, Histogram, Summary,
                                   generate_latest)
except ImportError:
    print("skip: prometheus_client not importable by /usr/bin/python3; "
          "install python3-prometheus-client (make deps)")
    sys.exit(SKIP)

# ------------------------------------------------------------ the client


BUCKETS = [0.1, 0.5, 1.0]
# Observations made right after scrape k (k = 1, 2, ...) is served; the
# first scrape sees INITIAL only.
INITIAL = [0.05, 0.3, 2.0]
AFTER = {
    1: [0.05] * 10 + [0.3] * 20 + [0.7] * 10,
    2: [],
    3: [2.0] * 4 + [0.05],
    4: [0.3, 0.7, 0.7],
}
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
ESCAPED = 'a"b\\c\nd'


class Client:
    """A real prometheus_client registry; bodies served are recorded."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        orders = Counter("orders", "Orders placed.", ["side"], registry=r)
        orders.labels("buy").inc(3)
        orders.labels("sell").inc(1.5)
        Counter("ns:requests", "A name with colons.", registry=r).inc(7)
        q = Gauge("queue_depth", "Queue depth.", ["q"], registry=r)
        q.labels(ESCAPED).set(-2.5)
        q.labels("café ☕").set(12)
        Gauge("jobs", "Has an instance label.", ["instance"],
              registry=r).labels("worker-1").set(4)
        Gauge("not_a_number", "NaN.", registry=r).set(float("nan"))
        Gauge("infinite", "+Inf.", registry=r).set(float("inf"))
        self.hist = Histogram("lat_seconds", "Latency.", ["stage"],
                              buckets=BUCKETS, registry=r)
        for v in INITIAL:
            self.hist.labels("risk").observe(v)
        gc = Summary("gc_seconds", "GC pauses.", registry=r)
        gc.observe(0.2)
        gc.observe(0.4)
        self.lock = threading.Lock()
        self.bodies = []
        self.headers = []

    def serve(self, handler):
        with self.lock:
            body = generate_latest(self.registry)
            handler.send_response(200)
            handler.send_header("Content-Type", CONTENT_TYPE_LATEST)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
            self.bodies.append(body.decode())
            self.headers.append(dict(handler.headers))
            for v in AFTER.get(len(self.bodies), []):
                self.hist.labels("risk").observe(v)


def bad_body():
    """Real client output, CRLF, with malformed lines in the middle.
    Returns (body, numbers of the bad lines, good samples)."""
    r = CollectorRegistry()
    Counter("before", "Before the bad lines.", registry=r).inc(11)
    Gauge("level", "Around them.", ["k"], registry=r).labels("x").set(0.25)
    text = generate_latest(r).decode()
    r2 = CollectorRegistry()
    Gauge("after", "After the bad lines.", ["k"],
          registry=r2).labels("y").set(-1e-3)
    text2 = generate_latest(r2).decode()
    lines = text.splitlines() + ["this is not a metric",
                                 'broken{k="v" 5'] + text2.splitlines()
    bad = [lines.index("this is not a metric") + 1,
           lines.index('broken{k="v" 5') + 1]
    body = "\r\n".join(lines) + "\r\n"
    good = {}
    for line in lines:
        s = parse_sample(line)
        if s is not None:
            good[s[0]] = s[1]
    return body, bad, good


# ------------------------------------------------------------ parsing

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def unescape(v):
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            i += 1
            c = {"n": "\n"}.get(v[i], v[i])
        out.append(c)
        i += 1
    return "".join(out)


def parse_labels(text):
    return {m.group(1): unescape(m.group(2))
            for m in LABEL_RE.finditer(text or "")}


def parse_sample(line):
    """(name, labels as a sorted tuple, value) of one exposition line of
    the client library's own output, or None for comments."""
    m = SAMPLE_RE.match(line)
    if m is None:
        return None
    labels = parse_labels(m.group(3))
    return (m.group(1), tuple(sorted(labels.items())), float(m.group(4)))


def vigil_key(name, labels, instance, prefix=""):
    """What vigil makes of an exposition series."""
    out = {"instance": instance}
    for k, v in labels:
        if k == "instance":
            k = "exported_instance"
        if v != "":
            out[k] = v.replace("\n", "\\n")
    return (prefix + name.replace(":", "_"), tuple(sorted(out.items())))


def histogram_quantile(q, buckets):
    """PromQL's bucketQuantile over [(le, cumulative count)]."""
    b = sorted(buckets)
    if not b or not math.isinf(b[-1][0]):
        return math.nan
    merged = []
    for le, c in b:
        if merged and merged[-1][0] == le:
            merged[-1][1] += c
        else:
            merged.append([le, c])
    top = -math.inf
    for x in merged:
        if x[1] > top:
            top = x[1]
        elif x[1] < top:
            x[1] = top
    if len(merged) < 2 or merged[-1][1] == 0:
        return math.nan
    rank = q * merged[-1][1]
    i = 0
    while i < len(merged) - 1 and merged[i][1] < rank:
        i += 1
    if i == len(merged) - 1:
        return merged[-2][0]
    if i == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[i][0], merged[i][1]
    if i > 0:
        start = merged[i - 1][0]
        count -= merged[i - 1][1]
        rank -= merged[i - 1][1]
    return start + (end - start) * (rank / count)


class Out:
    """vigil's --print lines: (ms, name, labels dict, value)."""

    def __init__(self):
        self.samples = []
        self.seen = 0

    def update(self, lines):
        for line in lines[self.seen:]:
            m = vt.LINE.match(line)
            if m:
                self.samples.append((int(m.group(1)), m.group(2),
                                     parse_labels(m.group(3)),
                                     float(m.group(4))))
        self.seen = len(lines)

    def of(self, name, instance):
        return [(t, v) for t, n, lab, v in self.samples
                if n == name and lab.get("instance") == instance]


# ------------------------------------------------------------ servers


def make_handler(client, bad, small_body):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send_body(self, body, length=True, status=200, gz=False):
            data = body.encode()
            if gz:
                data = gzip.compress(data)
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            if gz:
                self.send_header("Content-Encoding", "gzip")
            if length:
                self.send_header("Content-Length", str(len(data)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass  # vigil hung up on an oversize body, as it should

        def do_GET(self):
            big = "".join(f"big_metric_{i} {i}\n" for i in range(12000))
            if self.path == "/metrics":
                client.serve(self)
            elif self.path == "/bad":
                self.send_body(bad)
            elif self.path == "/big":
                self.send_body(big)
            elif self.path == "/bigstream":
                self.protocol_version = "HTTP/1.0"
                self.send_body(big, length=False)
            elif self.path == "/status":
                self.send_body("oops\n", status=500)
            elif self.path == "/gzip":
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    self.send_body(small_body, gz=True)
                else:
                    self.send_body("gzip only\n", status=406)
            elif self.path == "/small":
                self.send_body(small_body)
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/small")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_body("not found\n", status=404)

    return Handler


class Hang(threading.Thread):
    """Accepts connections and never answers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except (socket.timeout, OSError):
                pass

    def close(self):
        self.stop = True
        self.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def free_port():
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------ checks


def check_client(out, client):
    check = vt.check
    inst = "client"
    ups = out.of("prom.up", inst)
    check(ups and all(v == 1 for _, v in ups), f"prom.up{{client}} all 1: {ups}")
    # The client's samples, one group per scrape (they share its time).
    groups = {}
    for t, n, lab, v in out.samples:
        if lab.get("instance") == inst and not n.startswith("prom."):
            groups.setdefault(t, {})[(n, tuple(sorted(lab.items())))] = v
    order = sorted(groups)
    check(len(order) >= 5, f"5 client scrapes published ({len(order)})")
    check(len(client.bodies) >= len(order),
          f"no more scrapes published ({len(order)}) than served "
          f"({len(client.bodies)})")
    samples_lines = [v for _, v in out.of("prom.samples", inst)]

    # Every sample of every scrape, exactly; and nothing else but
    # quantiles.
    for k, t in enumerate(order[:len(client.bodies)]):
        want = {}
        hist = {}
        for line in client.bodies[k].splitlines():
            s = parse_sample(line)
            if s is None:
                continue
            name, labels, value = s
            want[vigil_key(name, labels, inst)] = value
            if name == "lat_seconds_bucket":
                d = dict(labels)
                le = float(d.pop("le"))
                hist.setdefault(tuple(sorted(d.items())), {})[le] = value
        got = groups[t]
        missing = [key for key in want if key not in got]
        check(not missing, f"scrape {k + 1}: all {len(want)} samples "
              f"published (missing {missing[:3]})")
        wrong = [(key, want[key], got[key]) for key in want
                 if key in got and not (got[key] == want[key] or
                                        (math.isnan(got[key]) and
                                         math.isnan(want[key])))]
        check(not wrong, f"scrape {k + 1}: exact values ({wrong[:3]})")
        if k < len(samples_lines):
            check(samples_lines[k] == len(want),
                  f"scrape {k + 1}: prom.samples {samples_lines[k]} == "
                  f"{len(want)}")
        # Quantiles from the increase since the previous scrape.
        quant = {key: v for key, v in got.items() if key not in want}
        expect = {}
        if k > 0:
            prev = {}
            for line in client.bodies[k - 1].splitlines():
                s = parse_sample(line)
                if s and s[0] == "lat_seconds_bucket":
                    d = dict(s[1])
                    le = float(d.pop("le"))
                    prev.setdefault(tuple(sorted(d.items())), {})[le] = s[2]
            for lab, cur in hist.items():
                inc = [(le, c - prev[lab][le]) for le, c in cur.items()]
                for suffix, q in QUANTILES.items():
                    v = histogram_quantile(q, inc)
                    if not math.isnan(v):
                        key = vigil_key("lat_seconds." + suffix, lab, inst)
                        expect[key] = v
        check(quant == expect,
              f"scrape {k + 1}: quantiles {sorted(quant.items())} == "
              f"{sorted(expect.items())}")

    # Worked by hand: scrape 2 saw 10 observations <= 0.1, 20 in
    # (0.1, 0.5] and 10 in (0.5, 1].
    if len(order) >= 2:
        got = groups[order[1]]

        def p(s):
            return got.get((f"lat_seconds.{s}",
                            (("instance", inst), ("stage", "risk"))))
        check(p("p50") == 0.1 + (0.5 - 0.1) * (10 / 20),
              f"p50 {p('p50')} = 0.1 + 0.4 * 10/20")
        check(p("p90") == 0.8 and p("p95") == 0.9,
              f"p90 {p('p90')} = 0.8, p95 {p('p95')} = 0.9")
        check(p("p99") == 0.5 + 0.5 * ((0.99 * 40 - 30) / 10),
              f"p99 {p('p99')} = 0.98")
    if len(order) >= 3:
        check(not any(n.startswith("lat_seconds.p") for n, _ in groups[order[2]]),
              "scrape 3 (nothing observed since scrape 2): no quantiles")
    if len(order) >= 4:
        got = groups[order[3]]
        key = ("lat_seconds.p50", (("instance", inst), ("stage", "risk")))
        # 1 at <= 0.1 and 4 in +Inf: rank 2.5 is in +Inf -> 1.0
        check(got.get(key) == 1.0, f"scrape 4: p50 {got.get(key)} == 1.0")

    # Labels as named: escapes, UTF-8, instance -> exported_instance.
    first = groups[order[0]] if order else {}
    esc = ("queue_depth", (("instance", inst), ("q", 'a"b\\c\\nd')))
    check(first.get(esc) == -2.5, f"escaped label value: {esc} = -2.5")
    utf = ("queue_depth", (("instance", inst), ("q", "café ☕")))
    check(first.get(utf) == 12, "UTF-8 label value kept")
    job = ("jobs", (("exported_instance", "worker-1"), ("instance", inst)))
    check(first.get(job) == 4, "instance label becomes exported_instance")
    check(first.get(("ns_requests_total", (("instance", inst),))) == 7,
          "ns:requests_total becomes ns_requests_total")
    nan = first.get(("not_a_number", (("instance", inst),)))
    check(nan is not None and math.isnan(nan), "NaN published")
    check(first.get(("infinite", (("instance", inst),))) == math.inf,
          "+Inf published")

    # The request.
    h = client.headers[0] if client.headers else {}
    check(h.get("Authorization") == f"Bearer {TOKEN}",
          f"bearer token sent ({h.get('Authorization')!r})")
    check(h.get("X-Test") == "yes", "configured header sent")
    check("text/plain;version=0.0.4" in h.get("Accept", ""),
          f"asks for the text format ({h.get('Accept')!r})")


def main():
    if not os.path.exists(os.path.join(vt.PLUGINS, "prom.so")):
        print(f"skip: no prom.so in {vt.PLUGINS}")
        return SKIP
    check = vt.check
    client = Client()
    bad, bad_lines, bad_good = bad_body()
    small = "".join(f"small_{i} {i}\n" for i in range(30))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                make_handler(client, bad, small))
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hang = Hang()
    hang.start()
    down = free_port()
    base = f"http://127.0.0.1:{port}"

    with tempfile.TemporaryDirectory(prefix="vigil-prom-") as tmp:
        conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 250ms

[plugin prom client]
url = {base}/metrics
interval = 300ms
bearer_token = {TOKEN}
headers = X-Test: yes

[plugin prom bad]
url = {base}/bad
interval = 300ms
prefix = app

[plugin prom down]
url = http://127.0.0.1:{down}/metrics
interval = 300ms

[plugin prom hang]
url = http://127.0.0.1:{hang.port}/metrics
interval = 300ms
timeout = {TIMEOUT_MS}ms

[plugin prom big]
url = {base}/big
interval = 300ms
max_bytes = 64KiB

[plugin prom bigstream]
url = {base}/bigstream
interval = 300ms
max_bytes = 64KiB

[plugin prom status]
url = {base}/status
interval = 300ms

[plugin prom small]
url = {base}/small
interval = 300ms
max_series = 5

[plugin prom redir]
url = {base}/redirect
interval = 300ms

[plugin prom gzip]
url = {base}/gzip
interval = 300ms
""")
        d = vt.Daemon(["-c", conf, "--print", "*"])
        out = Out()

        def ready():
            out.update(d.lines["out"])
            client_groups = {t for t, n, lab, _ in out.samples
                             if lab.get("instance") == "client" and
                             n == "orders_total"}

            def n(name, inst):
                return len(out.of(name, inst))
            return (len(client_groups) >= 5 and
                    n("prom.up", "down") >= 3 and
                    n("prom.up", "hang") >= 3 and
                    all(n("prom.up", i) >= 2 for i in
                        ("bad", "big", "bigstream", "status", "small",
                         "redir", "gzip")))

        end = time.monotonic() + DEADLINE_S
        while not ready() and time.monotonic() < end and d.sel.get_map():
            d.pump(0.2)
        alive = d.p.poll() is None
        check(alive, "the daemon is still running")
        rc = d.finish(signal.SIGTERM, timeout=20)
        out.update(d.lines["out"])
        err = "\n".join(d.lines["err"])
    httpd.shutdown()
    httpd.server_close()
    hang.close()

    check(ready(), "every scenario reached within the deadline")
    check(rc == 0, f"vigil exited {rc} after SIGTERM")
    check_client(out, client)

    def up(inst):
        return [v for _, v in out.of("prom.up", inst)]

    def errors(inst):
        return [l for l in err.splitlines()
                if f"instance={inst} " in l and "level=error" in l]

    # Malformed lines.
    for n in bad_lines:
        check(any(f"/bad: line {n}: " in l for l in errors("bad")),
              f"bad line {n} reported with its number")
    check(up("bad") and all(v == 1 for v in up("bad")),
          "a scrape with bad lines is still up")
    totals = [v for _, v in out.of("prom.bad_lines_total", "bad")]
    check(totals and totals[0] == 2 and totals == sorted(totals) and
          all(v % 2 == 0 for v in totals),
          f"prom.bad_lines_total counts 2 per scrape: {totals}")
    samples_bad = [v for _, v in out.of("prom.samples", "bad")]
    check(samples_bad and all(v == len(bad_good) for v in samples_bad),
          f"prom.samples{{bad}} {samples_bad} == {len(bad_good)}")
    for name, v in ((("app.before_total", ()), 11),
                    (("app.level", (("k", "x"),)), 0.25),
                    (("app.after", (("k", "y"),)), -1e-3)):
        vals = [s[3] for s in out.samples if s[1] == name[0] and
                s[2] == dict(name[1] + (("instance", "bad"),))]
        check(vals and all(x == v for x in vals),
              f"good line {name[0]} published around the bad ones ({vals})")

    # Failures: up 0, the reason logged, nothing from the body published.
    check(up("down") and all(v == 0 for v in up("down")),
          f"down: prom.up 0 every time ({up('down')})")
    check(any("Couldn't connect" in l or "refused" in l.lower()
              for l in errors("down")), "down: connection refused logged")
    check(up("hang") and all(v == 0 for v in up("hang")),
          f"hang: prom.up 0 ({up('hang')})")
    check(any(f"timed out after {TIMEOUT_MS} ms" in l for l in errors("hang")),
          "hang: timeout logged")
    took = [v for _, v in out.of("prom.scrape_ms", "hang")]
    check(took and all(TIMEOUT_MS * 0.9 <= v <= TIMEOUT_MS * 3 for v in took),
          f"hang: prom.scrape_ms about {TIMEOUT_MS} ({took})")
    for inst in ("big", "bigstream"):
        check(up(inst) and all(v == 0 for v in up(inst)),
              f"{inst}: prom.up 0 ({up(inst)})")
        check(any("larger than max_bytes (65536 bytes)" in l
                  for l in errors(inst)), f"{inst}: oversize refused")
    check(not any(n.startswith("big_metric") for _, n, _, _ in out.samples),
          "nothing from an oversize body is published")
    check(up("status") and all(v == 0 for v in up("status")),
          "status 500: prom.up 0")
    check(any("HTTP status 500" in l for l in errors("status")),
          "status 500 logged")

    # The series limit, and a redirect.
    dropped = [v for _, v in out.of("prom.series_dropped", "small")]
    check(dropped and all(v == 25 for v in dropped),
          f"small: 25 series dropped per scrape ({dropped})")
    check(any("max_series (5) reached: 25 new series dropped" in l
              for l in err.splitlines() if "instance=small" in l),
          "small: the limit is logged")
    published_small = {n for _, n, lab, _ in out.samples
                       if lab.get("instance") == "small" and
                       n.startswith("small_")}
    check(len(published_small) == 5, f"small: 5 series ({published_small})")
    check(up("redir") and all(v == 1 for v in up("redir")),
          "redirect followed")
    gz = {n: v for _, n, lab, v in out.samples
          if lab.get("instance") == "gzip" and n.startswith("small_")}
    check(up("gzip") and all(v == 1 for v in up("gzip")) and len(gz) == 30
          and all(gz[f"small_{i}"] == i for i in range(30)),
          f"gzip body decoded: {len(gz)} series")

    # The loop never blocked, and the secret never showed.
    lags = [v for _, n, _, v in out.samples if n == "vigil.loop.lag_ms"]
    check(lags and max(lags) <= LAG_MAX_MS,
          f"vigil.loop.lag_ms stays under {LAG_MAX_MS} ms (max "
          f"{max(lags) if lags else None} over {len(lags)} samples)")
    check(TOKEN not in err and all(TOKEN not in l for l in d.lines["out"]),
          "the bearer token never appears in vigil's output")

    if vt.failures:
        print("--- vigil stderr (last 60 lines):")
        print("\n".join(err.splitlines()[-60:]))
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
