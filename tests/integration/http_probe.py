#!/usr/bin/python3
"""The http plugin against real servers on 127.0.0.1.

One daemon probes, every 300 ms:
  slow     a server that answers after DELAY_MS: total_ms about DELAY_MS,
           http.up 1, status 200, body bytes exact, body match found.
  down     a closed port: errors_total{class=connect}, http.up 0.
  hang     accepts and never answers (timeout 400ms): class timeout.
  status   HTTP 500 with expect_status 200: class status.
  nomatch  200 without the match text: class match.
Meanwhile vigil.loop.lag_ms stays small. Then `vigil probe http.measure`
prints the statistics, with a mean within a few ms of DELAY_MS.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa
SKIP = 77
try:
    import vigiltest as vt
except KeyError as e:
    print(f"skip: {e} not set (run through ctest)")
    sys.exit(SKIP)

DELAY_MS = 50
TIMEOUT_MS = 400
LAG_MAX_MS = TIMEOUT_MS / 2
BODY = b"hello vigil, all is well\n"
DEADLINE_S = 30.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As real servers do: headers and body leave at once, not 40 ms apart
    # (Nagle against the client's delayed ACK on a kept-alive connection).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        status = 500 if self.path == "/status" else 200
        if self.path == "/slow":
            # A timed wait on an event nobody sets: the server's delay.
            threading.Event().wait(DELAY_MS / 1000.0)
        body = b"something else\n" if self.path == "/nomatch" else BODY
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse(lines):
    out = []
    for line in lines:
        m = vt.LINE.match(line)
        if m:
            labels = dict(kv.split("=", 1) for kv in
                          (m.group(3) or "{}")[1:-1].split(",") if kv)
            labels = {k: v.strip('"') for k, v in labels.items()}
            out.append((m.group(2), labels, float(m.group(4))))
    return out


def of(samples, name, inst, **want):
    return [v for n, lab, v in samples
            if n == name and lab.get("instance") == inst and
            all(lab.get(k) == w for k, w in want.items())]


def probe_on_tty(argv):
    """Run argv with stdout and stderr on a pseudo-terminal; its output."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["VIGIL_PLUGIN_DIR"] = vt.PLUGINS
        os.execv(argv[0], argv)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace")


def main():
    check = vt.check
    if not os.path.exists(os.path.join(vt.PLUGINS, "http.so")):
        print("skip: http.so not built")
        return SKIP
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    hang = Hang()
    hang.start()
    down = free_port()
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-http-") as tmp:
            conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 250ms

[plugin http slow]
url = {base}/slow
interval = 300ms
match = all is well
headers = X-Test: yes

[plugin http down]
url = http://127.0.0.1:{down}/
interval = 300ms

[plugin http hang]
url = http://127.0.0.1:{hang.port}/
timeout = {TIMEOUT_MS}ms
interval = 300ms

[plugin http status]
url = {base}/status
interval = 300ms

[plugin http nomatch]
url = {base}/nomatch
match = all is well
interval = 300ms
""")
            d = vt.Daemon(["-c", conf, "--print", "*"])

            def ready():
                s = parse(d.lines["out"])
                return (len(of(s, "http.request.total_ms", "slow")) >= 5 and
                        all(len(of(s, "http.up", i)) >= 3 for i in
                            ("down", "hang", "status", "nomatch")))

            end = time.monotonic() + DEADLINE_S
            while not ready() and time.monotonic() < end and d.sel.get_map():
                d.pump(0.2)
            check(d.p.poll() is None, "the daemon is still running")
            rc = d.finish(signal.SIGTERM, timeout=20)
            check(rc == 0, f"vigil stops cleanly on SIGTERM (rc {rc})")
            s = parse(d.lines["out"])

            tot = of(s, "http.request.total_ms", "slow")
            check(len(tot) >= 5, f"5 requests timed ({len(tot)})")
            mean = sum(tot) / len(tot) if tot else 0
            check(DELAY_MS <= mean <= DELAY_MS + 15,
                  f"total_ms mean {mean:.2f} within a few ms of {DELAY_MS}")
            ttfb = of(s, "http.request.ttfb_ms", "slow")
            # libcurl stamps the phases from a cached clock: each is good
            # to a few ms, their mean to one or two.
            tmean = sum(ttfb) / len(ttfb) if ttfb else 0
            check(ttfb and all(DELAY_MS - 5 <= v <= DELAY_MS + 15
                               for v in ttfb) and
                  DELAY_MS - 2 <= tmean <= DELAY_MS + 15,
                  f"ttfb_ms carries the server's delay: {ttfb[:5]}")
            for ph in ("dns_ms", "connect_ms", "tls_ms"):
                v = of(s, "http.request." + ph, "slow")
                check(v and all(0 <= x < 10 for x in v),
                      f"{ph} published and small: {v[:3]}")
            check(all(v == 1 for v in of(s, "http.up", "slow")) and
                  of(s, "http.up", "slow"), "http.up{slow} all 1")
            check(set(of(s, "http.response.status", "slow")) == {200},
                  "http.response.status{slow} 200")
            check(set(of(s, "http.response.body_bytes", "slow")) ==
                  {len(BODY)}, "http.response.body_bytes exact")
            check(max(of(s, "http.request.errors_total", "slow") or [1]) == 0,
                  "no errors for slow")

            for inst, cls in (("down", "connect"), ("hang", "timeout"),
                              ("status", "status"), ("nomatch", "match")):
                ups = of(s, "http.up", inst)
                check(ups and all(v == 0 for v in ups),
                      f"http.up{{{inst}}} all 0: {ups[:5]}")
                errs = of(s, "http.request.errors_total", inst, **{"class": cls})
                check(errs and errs[-1] >= 3 and errs == sorted(errs),
                      f"errors_total{{{inst},class={cls}}} counts: {errs}")
                others = [v for n, lab, v in s
                          if n == "http.request.errors_total" and
                          lab.get("instance") == inst and
                          lab.get("class") != cls]
                check(others and max(others) == 0,
                      f"{inst}: no other error class")
            hang_tot = of(s, "http.collect_ms", "hang")
            check(hang_tot and all(TIMEOUT_MS - 5 <= v <= TIMEOUT_MS + 100
                                   for v in hang_tot),
                  f"hang gives up after the timeout: {hang_tot[:3]}")
            check(set(of(s, "http.response.status", "status")) == {500},
                  "status 500 published")
            lags = [v for n, _, v in s if n == "vigil.loop.lag_ms"]
            check(lags and max(lags) <= LAG_MAX_MS,
                  f"vigil.loop.lag_ms stays under {LAG_MAX_MS} ms "
                  f"(max {max(lags) if lags else None})")
            check("timed out" in "\n".join(d.lines["err"]),
                  "the timeout is logged")

            # The diagnostic, through `vigil probe`.
            r = subprocess.run([vt.VIGIL, "probe", "http.measure",
                                f"url={base}/slow", "count=5",
                                "interval_ms=20", "-c", conf],
                               capture_output=True, text=True, timeout=60)
            out = json.loads(r.stdout) if r.returncode == 0 else None
            check(out is not None, f"vigil probe http.measure: {r.stdout!r} "
                  f"{r.stderr[-300:]!r}")
            if out:
                check(out["url"] == f"{base}/slow" and out["count"] == 5 and
                      out["ok"] == 5 and out["errors"] == 0,
                      f"5 requests, all good: {out}")
                check(DELAY_MS <= out["mean_ms"] <= DELAY_MS + 15,
                      f"mean_ms {out['mean_ms']} about {DELAY_MS}")
                check(out["min_ms"] <= out["p50_ms"] <= out["p95_ms"] <=
                      out["p99_ms"] <= out["max_ms"] and out["stdev_ms"] >= 0,
                      "the statistics are ordered")
                check(set(out["phases"]) == {"dns", "connect", "tls", "ttfb"},
                      f"phases: {out['phases']}")
            r = subprocess.run([vt.VIGIL, "probe", "http.measure",
                                f"url=http://127.0.0.1:{down}/", "count=3",
                                "interval_ms=0", "-c", conf],
                               capture_output=True, text=True, timeout=60)
            out = json.loads(r.stdout) if r.stdout.strip() else None
            check(r.returncode == 1 and out is not None and out["ok"] == 0
                  and out["errors"] == 3 and
                  out["error_classes"] == {"connect": 3} and
                  out["mean_ms"] is None,
                  f"a closed port: all errors, no statistics, exit 1: {out}")
            # The short form needs no config and prints the statistics
            # the guide's script prints.
            r = subprocess.run([vt.VIGIL, "probe", "http", base + "/",
                                "--count", "5", "--interval", "10ms"],
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ,
                                        VIGIL_PLUGIN_DIR=vt.PLUGINS))
            check(r.returncode == 0 and "requests: 5 ok, 0 errors" in r.stdout
                  and all(k in r.stdout for k in
                          ("Mean", "StdDev", "Min", "Max", "P95", "P99")),
                  f"vigil probe http URL --count 5: {r.stdout!r}")
            check("[" not in r.stderr, "no progress bar when stderr is a pipe")
            bar = probe_on_tty([vt.VIGIL, "probe", "http", base + "/",
                                "--count", "4", "--interval", "150ms"])
            check("] 4/4" in bar and "\r\x1b[K" in bar and
                  bar.index("] 4/4") < bar.index("Latency statistics"),
                  f"on a terminal a progress bar runs to 4/4 and is erased "
                  f"before the result: {bar[-300:]!r}")
    finally:
        hang.close()
        srv.shutdown()
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
