#!/usr/bin/python3
"""The ws plugin against a WebSocket server we did not write (Debian's
python3-websockets, driven by tests/lib/ws_server.py) on 127.0.0.1.

One daemon watches, collecting every 250 ms:
  feed     a server sending a message every 50 ms, with a subscription:
           RTT, connect time, messages per second, message age; the
           feed goes silent (age grows, the connection stays up), talks
           again; then stops answering pings while still sending (the
           connection is closed as pong_timeout, and once pongs come
           back it reconnects and subscribes again).
  flaky    a second server, frozen with SIGSTOP: detected within
           ping_interval + pong_timeout; SIGCONT: back. Killed: state 0,
           reconnects counted against a refused port; restarted on the
           same port: reconnected.
  refused  a closed port: class refused, backoff retries.
  tls      wss:// with a self-signed certificate: refused (class tls).
  tlsca    the same with ca_file = that certificate: connected.
  tlsname  that certificate (for localhost) at 127.0.0.1: refused.
           And with that certificate in SSL_CERT_DIR (the system's store,
           read lazily), plain wss:// connects.
  bad_*    a bad URL, a bad option, a missing or non-PEM ca_file: init
           fails with the config file:line and the reason; the rest runs.
Throughout, vigil.loop.lag_ms stays small and the daemon lives; SIGTERM
stops it with exit 0 (which includes uv_loop_close() == 0). Then
`vigil probe ws.measure` and `vigil probe ws URL --count 20` print the
RTT statistics. No sleeps: every wait is for a condition, with a deadline.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import json  # noqa: E402
import selectors  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

SKIP = 77
try:
    import vigiltest as vt
except KeyError as e:
    print(f"skip: {e} not set (run through ctest)")
    sys.exit(SKIP)

# python3-websockets is a Debian package: the system's Python has it, a
# pyenv or venv python3 first on PATH may not.
PY = "/usr/bin/python3"
SERVER = os.path.join(HERE, "..", "lib", "ws_server.py")
DEADLINE_S = 20.0
PING_MS, PONG_MS = 200, 400
LAG_MAX_MS = 100
SUB = '{"op": "subscribe", "args": ["trades"]}'


class Server:
    """ws_server.py in a child process; its stdout read with deadlines."""

    def __init__(self, port=0, every=50, tls=None):
        args = [PY, SERVER, "--port", str(port), "--every", str(every)]
        if tls:
            args += ["--cert", tls[0], "--key", tls[1]]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True,
                                  bufsize=1)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)
        self.buf, self.lines = "", []
        line = self.wait(lambda l: l.startswith("ready "), 10)
        if line is None:
            self.p.kill()
            raise RuntimeError("ws_server.py did not start")
        self.port = int(line.split()[1])

    def pump(self, timeout):
        for key, _ in self.sel.select(timeout):
            data = os.read(key.fileobj.fileno(), 65536).decode()
            if not data:
                self.sel.unregister(key.fileobj)
                return
            self.buf += data
            *done, self.buf = self.buf.split("\n")
            self.lines += done

    def wait(self, pred, deadline_s, since=0):
        end = time.monotonic() + deadline_s
        while True:
            for line in self.lines[since:]:
                if pred(line):
                    return line
            since = len(self.lines)
            if time.monotonic() >= end or not self.sel.get_map():
                return None
            self.pump(0.1)

    def cmd(self, c):
        mark = len(self.lines)
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        return self.wait(lambda l: l == "ok " + c, 5, mark) is not None

    def close(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
            self.p.kill()
        self.p.wait()
        self.p.stdin.close()
        self.p.stdout.close()


class Watch:
    """The daemon's samples, parsed as they arrive."""

    def __init__(self, d):
        self.d, self.seen, self.s = d, 0, []

    def update(self):
        for line in self.d.lines["out"][self.seen:]:
            m = vt.LINE.match(line)
            if m:
                lab = dict(kv.split("=", 1) for kv in
                           (m.group(3) or "{}")[1:-1].split(",") if kv)
                lab = {k: v.strip('"') for k, v in lab.items()}
                self.s.append((int(m.group(1)), m.group(2), lab,
                               float(m.group(4))))
        self.seen = len(self.d.lines["out"])

    def of(self, name, inst, since_ms=0, **want):
        """(ts, value) of a series of an instance, from since_ms on."""
        return [(ts, v) for ts, n, lab, v in self.s
                if n == name and lab.get("instance") == inst and
                ts >= since_ms and
                all(lab.get(k) == w for k, w in want.items())]

    def vals(self, name, inst, since_ms=0, **want):
        return [v for _, v in self.of(name, inst, since_ms, **want)]

    def until(self, cond, deadline_s=DEADLINE_S, *servers):
        """Pump the daemon (and keep the servers' pipes drained) until
        cond() holds; return whether it did."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            self.update()
            if cond():
                return True
            if not self.d.sel.get_map():
                return False
            self.d.pump(0.1)
            for srv in servers:
                srv.pump(0)
        self.update()
        return cond()


def now_ms():
    return int(time.time() * 1000)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def config(tmp, a, b, t, down, cert):
    return vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 250ms

[plugin ws feed]
url = ws://127.0.0.1:{a}/feed?stream=trades
subscribe = {SUB}
ping_interval = {PING_MS}ms
pong_timeout = {PONG_MS}ms
reconnect_min = 100ms
reconnect_max = 500ms
interval = 250ms

[plugin ws flaky]
url = ws://127.0.0.1:{b}/
ping_interval = {PING_MS}ms
pong_timeout = {PONG_MS}ms
connect_timeout = 400ms
reconnect_min = 100ms
reconnect_max = 300ms
interval = 250ms

[plugin ws refused]
url = ws://127.0.0.1:{down}/
reconnect_min = 100ms
reconnect_max = 300ms
interval = 250ms

[plugin ws tls]
url = wss://localhost:{t}/
reconnect_max = 1s
interval = 250ms

[plugin ws tlsca]
url = wss://localhost:{t}/
ca_file = {cert}
interval = 250ms

[plugin ws tlsname]
url = wss://127.0.0.1:{t}/
ca_file = {cert}
reconnect_max = 1s
interval = 250ms

[plugin ws bad_url]
url = http://127.0.0.1:{a}/

[plugin ws bad_opt]
url = ws://127.0.0.1:{a}/
reconnect_min = 2s
reconnect_max = 1s

[plugin ws bad_ca]
url = wss://127.0.0.1:{t}/
ca_file = {tmp}/no-such-ca.pem

[plugin ws bad_pem]
url = wss://127.0.0.1:{t}/
ca_file = {vt.write(tmp, "garbage.pem", "not a certificate")}
""")


def line_of(path, text):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip() == text:
                return i
    return 0


def check_steady(w, A):
    check = vt.check
    ok = w.until(lambda: len(w.vals("ws.ping.rtt_ms", "feed")) >= 5 and
                 max(w.vals("ws.messages.received_total", "feed") or [0]) >= 20
                 and w.vals("ws.connection.state", "tlsca")[-1:] == [1.0] and
                 max(w.vals("ws.connection.errors_total", "refused",
                            **{"class": "refused"}) or [0]) >= 3 and
                 max(w.vals("ws.connection.errors_total", "tls",
                            **{"class": "tls"}) or [0]) >= 1 and
                 max(w.vals("ws.connection.errors_total", "tlsname",
                            **{"class": "tls"}) or [0]) >= 1 and
                 w.vals("ws.connection.state", "flaky")[-1:] == [1.0], 20, A)
    check(ok, "feed, flaky and tlsca connect; refused, tls and tlsname fail")
    rtt = w.vals("ws.ping.rtt_ms", "feed")
    check(rtt and all(0 < v < 50 for v in rtt), f"RTT measured: {rtt[:5]}")
    con = w.vals("ws.connect.time_ms", "feed")
    check(len(con) == 1 and 0 < con[0] < 500, f"one connect time: {con}")
    check(A.wait(lambda l: l == "sub " + SUB, 5) is not None,
          "the server got the subscription")
    rate = w.vals("ws.messages.received_per_s", "feed")[2:]
    check(rate and 10 <= sum(rate) / len(rate) <= 30,
          f"about 20 messages/s: {rate}")
    age = w.vals("ws.messages.last_age_ms", "feed")[2:]
    check(age and max(age) < 250, f"last message age small: {age}")
    # From its first connection on (a tick may come before it).
    first = (w.of("ws.connect.time_ms", "feed") or [(0, 0)])[0][0]
    ups = w.vals("ws.up", "feed", first)
    check(ups and all(v == 1 for v in ups), f"ws.up{{feed}} all 1: {ups}")
    for inst in ("refused", "tls", "tlsname"):
        ups = w.vals("ws.up", inst)
        check(ups and all(v == 0 for v in ups), f"ws.up{{{inst}}} all 0")
        check(not w.vals("ws.connect.time_ms", inst),
              f"no connect time for {inst}")
    rec = w.vals("ws.connection.reconnects_total", "refused")
    check(rec and rec[-1] >= 2 and rec == sorted(rec),
          f"refused: reconnects counted {rec[-5:]}")


def check_silence(w, A):
    check = vt.check
    check(A.cmd("silent"), "feed server goes silent")
    t0 = now_ms()
    ok = w.until(lambda: max(w.vals("ws.messages.last_age_ms", "feed", t0)
                             or [0]) > 1000, 10, A)
    check(ok, "silence: last_age_ms grows past 1 s")
    age = w.vals("ws.messages.last_age_ms", "feed", t0 + 300)
    check(age == sorted(age) and len(age) >= 2,
          f"age grows at every tick: {age}")
    check(all(v == 1 for v in w.vals("ws.connection.state", "feed", t0)),
          "the connection stays up while silent")
    check(len(w.vals("ws.ping.rtt_ms", "feed", t0)) >= 3,
          "pongs still measured while silent")
    rate = w.vals("ws.messages.received_per_s", "feed", t0 + 300)
    check(rate and rate[-1] == 0, f"0 messages/s while silent: {rate}")
    check(A.cmd("talk"), "feed server talks again")
    t1 = now_ms()
    ok = w.until(lambda: (w.vals("ws.messages.last_age_ms", "feed", t1 + 300)
                          or [1e9])[-1] < 250, 10, A)
    check(ok, "talking again: last_age_ms small again")


def check_frozen(w, B):
    check = vt.check
    t0 = now_ms()
    B.p.send_signal(signal.SIGSTOP)
    ok = w.until(lambda: 0.0 in w.vals("ws.connection.state", "flaky", t0),
                 10)
    down = [ts for ts, v in w.of("ws.connection.state", "flaky", t0)
            if v == 0]
    took = down[0] - t0 if down else None
    check(ok and took <= PING_MS + PONG_MS + 200,
          f"frozen server detected in {took} ms "
          f"(<= ping_interval + pong_timeout + 200)")
    pt = w.vals("ws.connection.errors_total", "flaky", t0,
                **{"class": "pong_timeout"})
    check(pt and pt[-1] == 1, f"counted as pong_timeout: {pt}")
    # The kernel still accepts for it: the next attempts time out.
    ok = w.until(lambda: max(w.vals("ws.connection.errors_total", "flaky",
                                    **{"class": "timeout"}) or [0]) >= 1, 10)
    check(ok, "reconnecting to a frozen server times out")
    t1 = now_ms()
    B.p.send_signal(signal.SIGCONT)
    ok = w.until(lambda: 1.0 in w.vals("ws.connection.state", "flaky", t1),
                 10, B)
    check(ok, "thawed server: connected again")


def check_restart(w, B, port):
    check = vt.check
    rec0 = w.vals("ws.connection.reconnects_total", "flaky")[-1]
    t0 = now_ms()
    B.close()  # SIGKILL
    ok = w.until(lambda: 0.0 in w.vals("ws.connection.state", "flaky", t0) and
                 max(w.vals("ws.connection.errors_total", "flaky", t0,
                            **{"class": "refused"}) or [0]) >= 2 and
                 max(w.vals("ws.connection.reconnects_total", "flaky", t0)
                     or [0]) >= rec0 + 2, 10)
    check(ok, "killed server: state 0, then refused")
    cl = w.vals("ws.connection.errors_total", "flaky", t0,
                **{"class": "closed"})
    check(cl and cl[-1] >= 1, f"the lost connection counted as closed: {cl}")
    rec = w.vals("ws.connection.reconnects_total", "flaky", t0)
    check(rec and rec[-1] >= rec0 + 2, f"reconnects counted: {rec0} -> "
          f"{rec[-1] if rec else None}")
    B2 = Server(port=port, every=0)
    t1 = now_ms()
    ok = w.until(lambda: 1.0 in w.vals("ws.connection.state", "flaky", t1),
                 10, B2)
    check(ok, "restarted on the same port: reconnected")
    check(B2.wait(lambda l: l.startswith("open"), 5) is not None,
          "the new server saw the connection")
    return B2


def check_nopong(w, A):
    check = vt.check
    mark = len(A.lines)
    t0 = now_ms()
    check(A.cmd("nopong"), "feed server stops answering pings")
    ok = w.until(lambda: 0.0 in w.vals("ws.connection.state", "feed", t0),
                 10, A)
    pt = w.vals("ws.connection.errors_total", "feed", t0,
                **{"class": "pong_timeout"})
    check(ok and pt and pt[-1] >= 1,
          f"pings unanswered while messages flow: pong_timeout {pt}")
    check(A.cmd("pong"), "feed server answers pings again")
    t1 = now_ms()
    ok = w.until(lambda: 1.0 in w.vals("ws.connection.state", "feed", t1),
                 10, A)
    check(ok, "feed reconnected")
    check(A.wait(lambda l: l == "sub " + SUB, 5, mark) is not None,
          "subscribed again after reconnecting")


def check_bad(d, conf):
    check = vt.check
    err = "\n".join(d.lines["err"])
    for inst, why in (("bad_url", "only ws:// and wss://"),
                      ("bad_opt", "reconnect_max must not be below"),
                      ("bad_ca", "no-such-ca.pem': No such file"),
                      ("bad_pem", "garbage.pem': no PEM certificate")):
        n = line_of(conf, f"[plugin ws {inst}]")
        check(f"{conf}:{n}: [plugin ws {inst}]: init failed" in err and
              why in err, f"{inst}: init refused at {conf}:{n}: {why}")


def check_system_store(tmp, t, cert):
    """Without ca_file the system's CA directory is trusted (read lazily,
    SSL_CERT_DIR first, as OpenSSL does): with our certificate hashed
    into such a directory, the plain wss:// instance connects."""
    cadir = os.path.join(tmp, "cadir")
    os.mkdir(cadir)
    subprocess.run(["cp", cert, cadir], check=True)
    subprocess.run(["openssl", "rehash", cadir], check=True,
                   capture_output=True)
    conf = vt.write(tmp, "store.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}

[plugin ws sys]
url = wss://localhost:{t}/
""")
    d = vt.Daemon(["-c", conf, "--print", "ws.connection.state"],
                  env=dict(os.environ, SSL_CERT_DIR=cadir))
    up = d.wait_for("out", lambda l: l.endswith(" 1"), DEADLINE_S)
    rc = d.finish(signal.SIGTERM)
    vt.check(up is not None and rc == 0,
             "a CA in the system's directory is trusted without ca_file")


def check_probes(conf_dir, a, down):
    check = vt.check
    conf = vt.write(conf_dir, "probe.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}

[plugin ws m]
url = ws://127.0.0.1:{a}/
""")
    r = subprocess.run([vt.VIGIL, "probe", "ws.measure", "count=20",
                        "interval_ms=10", "-c", conf],
                       capture_output=True, text=True, timeout=60)
    out = json.loads(r.stdout) if r.returncode == 0 else None
    check(out is not None, f"vigil probe ws.measure: {r.stdout!r} "
          f"{r.stderr[-300:]!r}")
    if out:
        check(out["url"] == f"ws://127.0.0.1:{a}/" and out["count"] == 20 and
              out["ok"] == 20 and out["errors"] == 0 and
              out["error_classes"] == {}, f"20 pings, all answered: {out}")
        check(0 < out["min_ms"] <= out["p50_ms"] <= out["p95_ms"] <=
              out["p99_ms"] <= out["max_ms"] < 50 and out["stdev_ms"] >= 0
              and 0 < out["mean_ms"] < 50, "the statistics are ordered")
        check(0 < out["connect_ms"] < 500 and
              out["phases"] == {"connect": out["connect_ms"]},
              f"a fresh connection's connect time: {out['connect_ms']}")
    r = subprocess.run([vt.VIGIL, "probe", "ws.measure",
                        f"url=ws://127.0.0.1:{down}/", "count=3", "-c", conf],
                       capture_output=True, text=True, timeout=60)
    out = json.loads(r.stdout) if r.stdout.strip() else None
    check(r.returncode == 1 and out is not None and out["ok"] == 0 and
          out["errors"] == 3 and out["error_classes"] == {"refused": 1} and
          out["mean_ms"] is None and "refused" in out["error"],
          f"another URL, refused: exit 1, no statistics: {out}")
    r = subprocess.run([vt.VIGIL, "probe", "ws.measure", "url=http://x/",
                        "-c", conf], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode != 0 and "only ws:// and wss://" in r.stdout,
          f"a bad URL argument is refused: {r.stdout!r}")
    r = subprocess.run([vt.VIGIL, "probe", "ws", f"ws://127.0.0.1:{a}/",
                        "--count", "20", "--interval", "10ms"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, VIGIL_PLUGIN_DIR=vt.PLUGINS))
    check(r.returncode == 0 and "requests: 20 ok, 0 errors" in r.stdout and
          all(k in r.stdout for k in ("Mean", "StdDev", "Min", "Max", "P50",
                                      "P95", "P99", "connect")),
          f"vigil probe ws URL --count 20: {r.stdout!r} {r.stderr[-300:]!r}")


def main():
    check = vt.check
    if not os.path.exists(os.path.join(vt.PLUGINS, "ws.so")):
        print("skip: ws.so not built")
        return SKIP
    if subprocess.run([PY, "-c", "import websockets"],
                      capture_output=True).returncode != 0:
        print("skip: python3-websockets is not installed (make deps)")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="vigil-ws-") as tmp:
        cert, key = make_cert(tmp)
        A = Server(every=50)
        B = Server(every=0)
        T = Server(every=0, tls=(cert, key))
        down = free_port()
        servers = [A, B, T]
        try:
            conf = config(tmp, A.port, B.port, T.port, down, cert)
            d = vt.Daemon(["-c", conf, "--print", "ws.*",
                           "--print", "vigil.loop.lag_ms"])
            w = Watch(d)
            check_steady(w, A)
            check_silence(w, A)
            check_frozen(w, B)
            servers[1] = B = check_restart(w, B, B.port)
            check_nopong(w, A)
            check(d.p.poll() is None, "the daemon is still running")
            rc = d.finish(signal.SIGTERM, timeout=20)
            check(rc == 0, f"vigil stops cleanly on SIGTERM, its loop "
                  f"closed (rc {rc})")
            w.update()
            lags = [v for _, n, _, v in w.s if n == "vigil.loop.lag_ms"]
            check(len(lags) >= 10 and max(lags) <= LAG_MAX_MS,
                  f"vigil.loop.lag_ms under {LAG_MAX_MS} ms throughout "
                  f"({len(lags)} samples, max {max(lags) if lags else None})")
            check_bad(d, conf)
            err = "\n".join(d.lines["err"])
            check("TLS certificate: self-signed certificate" in err,
                  "an unknown certificate is refused, saying why")
            check("TLS certificate: IP address mismatch" in err,
                  "a certificate for another name is refused, saying why")
            check_system_store(tmp, T.port, cert)
            check_probes(tmp, A.port, down)
        finally:
            for s in servers:
                s.close()
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
