#!/usr/bin/python3
"""The statsd plugin against real UDP and TCP traffic.

Runs `vigil run` with three statsd instances on free loopback ports:
  main   flush every 200 ms, TCP with max_line = 1KiB and
         max_connections = 2
  slow   flush every hour: a gauge must still show at once
  small  max_series = 3: the drop path
and sends real packets covering every type and edge case: counters with
sample rates, packed values, gauges with deltas, timers (ms, h, d) with
exact count/sum/min/max/mean/percentiles, sets, DogStatsD tags (sorted,
unsorted, valueless, `instance`), multi-line datagrams with empty and CRLF
lines, a datagram of almost 64 KB, garbage lines mixed with good ones, a
type mismatch, TCP lines split across writes, a last line without newline,
an over-long TCP line, a connection beyond the limit, and new keys beyond
max_series.

Each group of values goes out in one datagram, so it lands in one flush
interval: its aggregates are checked exactly against the same arithmetic
done here in Python (IEEE doubles, same order). Samples are awaited on
vigil's --print output with deadlines, never with sleeps. At the end the
plugin's own counters (lines, bad lines, packets, dropped, series) must
equal what was sent, the bad lines must be in the log with the sender's
address, and the daemon must still be running and exit 0 on SIGTERM.

Environment (set by ctest): VIGIL_BIN, VIGIL_PLUGIN_DIR.
"""

import os
import random
import re
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import LINE, PLUGINS, Daemon, check, summary, write  # noqa

DEADLINE_S = 20.0


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        return port
    raise RuntimeError("no free port")


class Samples:
    """The daemon's --print lines, parsed: (ms, key, value)."""

    def __init__(self, daemon):
        self.d = daemon

    def all(self):
        out = []
        for line in self.d.lines["out"]:
            m = LINE.match(line)
            if m:
                key = m.group(2) + (m.group(3) or "")
                out.append((int(m.group(1)), key, float(m.group(4))))
        return out

    def values(self, key):
        return [v for _, k, v in self.all() if k == key]

    def wait(self, pred, what, deadline=DEADLINE_S):
        """The first sample satisfying pred(ms, key, value), or None."""
        found = []

        def line_pred(line):
            m = LINE.match(line)
            if not m:
                return False
            s = (int(m.group(1)), m.group(2) + (m.group(3) or ""),
                 float(m.group(4)))
            if pred(*s):
                found.append(s)
                return True
            return False

        self.d.wait_for("out", line_pred, deadline)
        if not found:
            print("  (waited in vain for %s)" % what)
            return None
        return found[0]

    def first_nonzero(self, key):
        """The first flush in which key is not 0: (ms, value)."""
        s = self.wait(lambda ms, k, v: k == key and v != 0, key)
        return (s[0], s[2]) if s else (None, None)

    def flush(self, key, ms, stats):
        """The values of key.<stat> published at time ms (one flush)."""
        out = {}
        for stat in stats:
            name, _, labels = key.partition("{")
            k = name + "." + stat + ("{" + labels if labels else "")
            s = self.wait(lambda t, kk, v, k=k: kk == k and t == ms, k, 5)
            out[stat] = s[2] if s else None
        return out

    def last(self, key, deadline=DEADLINE_S, want=None):
        """Wait until key's latest value equals want (or exists)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            vals = self.values(key)
            if vals and (want is None or vals[-1] == want):
                return vals[-1]
            self.d.pump(0.2)
        vals = self.values(key)
        return vals[-1] if vals else None


class Sender:
    """A UDP client on a known port, counting what it sends."""

    def __init__(self, port):
        self.port = port
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.s.getsockname()[1]
        self.packets = 0
        self.lines = 0

    def send(self, text):
        data = text.encode() if isinstance(text, str) else text
        self.s.sendto(data, ("127.0.0.1", self.port))
        self.packets += 1
        # Non-empty lines, as the plugin counts them ("\r" alone is empty).
        self.lines += sum(1 for l in data.split(b"\n")
                          if l not in (b"", b"\r"))


def test_counters(snd, smp):
    snd.send("it.c1:1|c\nit.c1:2|c\nit.c1:3|c|@0.1\nit.c1:0.5|c|@0.25\n"
             "it.c1:1:1|c|@0.5")
    want = 0.0
    for v, r in [(1, 1), (2, 1), (3, 0.1), (0.5, 0.25), (1, 0.5), (1, 0.5)]:
        want += v / r
    ms, got = smp.first_nonzero("it.c1.count")
    check(got == want, "counter with rates and packed values: count %r == %r"
          % (got, want))
    if ms is not None:
        rate = smp.flush("it.c1", ms, ["rate_per_s"])["rate_per_s"]
        prev = [t for t, k, _ in smp.all()
                if k == "statsd.lines_total" and t < ms]
        dt = (ms - prev[-1]) / 1000.0 if prev else 0.2
        check(rate is not None and abs(rate - want / dt) <= 0.1 * want / dt,
              "counter rate_per_s %r is count / interval (%.3f s)"
              % (rate, dt))
    # A quiet interval publishes 0.
    s = smp.wait(lambda t, k, v: k == "it.c1.count" and t > (ms or 0)
                 and v == 0, "it.c1.count back to 0")
    check(s is not None, "a quiet counter publishes count 0")


def test_gauges(snd, smp):
    snd.send("it.g1:10|g\nit.g1:+5|g\nit.g1:-3|g")
    smp.wait(lambda t, k, v: k == "it.g1" and v == 12, "it.g1 = 12")
    vals = smp.values("it.g1")
    check(vals[:3] == [10, 15, 12],
          "gauge set, +delta, -delta published as they arrive: %r" % vals[:3])
    # The next flush publishes the last value again.
    smp.wait(lambda t, k, v: len(smp.values("it.g1")) >= 4,
             "it.g1 at the flush")
    vals = smp.values("it.g1")
    check(len(vals) >= 4 and vals[3] == 12,
          "the flush publishes the gauge's last value: %r" % vals[3:4])
    # Setting a negative value takes 0 first (a leading '-' is a delta).
    snd.send("it.g2:0|g\nit.g2:-7.5|g")
    check(smp.wait(lambda t, k, v: k == "it.g2" and v == -7.5, "it.g2")
          is not None, "a negative gauge: 0 then -7.5")


def test_gauge_immediate(slow_port, smp):
    """On an instance that flushes hourly, a gauge must appear at once."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    s.sendto(b"it.queue.depth:1234|g", ("127.0.0.1", slow_port))
    got = smp.wait(lambda t, k, v: k == 'it.queue.depth{instance="slow"}',
                   "the slow instance's gauge", 5)
    dt = time.monotonic() - t0
    check(got is not None and got[2] == 1234,
          "a gauge is published on receipt, not at the flush (%.1f ms)"
          % (dt * 1000))
    s.close()


def test_timers(snd, smp):
    vals = list(range(1, 101))
    random.Random(7).shuffle(vals)
    snd.send("\n".join("it.t1:%d|ms" % v for v in vals))
    ms, cnt = smp.first_nonzero("it.t1.count")
    got = smp.flush("it.t1", ms, ["sum", "min", "max", "mean", "p50", "p90",
                                  "p95", "p99"]) if ms else {}
    check(cnt == 100 and got == {"sum": 5050, "min": 1, "max": 100,
                                 "mean": 50.5, "p50": 50, "p90": 90,
                                 "p95": 95, "p99": 99},
          "timer 1..100: count %r, %r" % (cnt, got))
    # h and d are timers too; a sample rate scales the count only.
    snd.send("it.t2:4|h|@0.5\nit.t2:6.25|d\nit.t2:-1|ms")
    ms, cnt = smp.first_nonzero("it.t2.count")
    got = smp.flush("it.t2", ms, ["sum", "min", "max", "mean", "p50",
                                  "p99"]) if ms else {}
    want_mean = (4 + 6.25 - 1) / 3
    check(cnt == 1 / 0.5 + 1 + 1 and got == {
        "sum": 9.25, "min": -1, "max": 6.25, "mean": want_mean, "p50": 4,
        "p99": 6.25}, "timer h/d/ms with a rate: count %r, %r" % (cnt, got))


def test_sets(snd, smp):
    snd.send("it.s1:alice|s\nit.s1:bob|s\nit.s1:alice|s\nit.s1:carol:dave|s\n"
             "it.s1:42|s")
    ms, got = smp.first_nonzero("it.s1.unique")
    check(got == 5, "set unique count %r == 5" % got)
    s = smp.wait(lambda t, k, v: k == "it.s1.unique" and t > (ms or 0),
                 "the next flush of it.s1")
    check(s is not None and s[2] == 0, "a set starts afresh each interval")


def test_tags(snd, smp):
    snd.send("it.tag:1|c|#env:prod,host:a\nit.tag:2|c|#host:a,env:prod\n"
             "it.tag:4|c|#env:dev\nit.flag:1|c|#canary\n"
             "it.tag:8|c|#instance:web-1,env:dev\n"
             "it.stage_ms:3|ms|#stage:risk\nit.stage_ms:5|ms|#stage:risk\n"
             "it.stage_ms:1|ms|#stage:validate\n")
    _, v = smp.first_nonzero('it.tag.count{env="prod",host="a"}')
    check(v == 3, "tags in any order make one series: %r" % v)
    _, v = smp.first_nonzero('it.tag.count{env="dev"}')
    check(v == 4, "another tag value is another series: %r" % v)
    _, v = smp.first_nonzero('it.flag.count{canary="true"}')
    check(v == 1, "a tag without a value is \"true\"")
    _, v = smp.first_nonzero(
        'it.tag.count{env="dev",exported_instance="web-1"}')
    check(v == 8, "the tag instance becomes exported_instance")
    ms, _ = smp.first_nonzero('it.stage_ms.count{stage="risk"}')
    got = smp.flush('it.stage_ms{stage="risk"}', ms, ["max", "mean"])
    check(got == {"max": 5, "mean": 4}, "a timer per stage tag: %r" % got)


def test_multiline(snd, smp):
    snd.send(b"\n\nit.e:1|c\r\n\n\r\nit.e:2|c\n\n")
    _, v = smp.first_nonzero("it.e.count")
    check(v == 3, "empty lines and CRLF: count %r == 3" % v)


def test_huge(snd, smp):
    line = b"it.big:1|c\n"
    n = 65000 // len(line)
    data = line * n
    check(len(data) > 64000, "a datagram of %d bytes" % len(data))
    snd.send(data)
    _, v = smp.first_nonzero("it.big.count")
    check(v == n, "every line of a huge datagram: %r == %d" % (v, n))


def test_garbage(snd, smp, d):
    bad = ["garbage", "it.m:x|c", ":1|c", "it.m:1|q", "it.m:1|c|@2",
           "it.m:1|c|#:v", "_e{5,4}:title|text", "it.m", "it.c1:1|ms",
           "it.m:1|c|zz"]
    good = ["it.m:1|c", "it.m:2|c", "it.m:4|c"]
    mixed = [good[0]] + bad[:5] + [good[1]] + bad[5:] + [good[2]]
    snd.send("\n".join(mixed))
    _, v = smp.first_nonzero("it.m.count")
    check(v == 7, "good lines around garbage are kept: %r == 7" % v)
    log = d.wait_for("err", lambda l: "bad line from " + snd.addr in l, 10)
    check(log is not None, "a bad line is logged with the peer address %s"
          % snd.addr)
    return len(bad)


def test_burst(snd, smp, d):
    """Many datagrams at once: the plugin reads them in batches (and, under
    such load, pauses between reads so that they stay batches)."""
    n = 3000
    before = sum(smp.values("it.burst.count"))
    for i in range(n):
        snd.send("it.burst:1|c\nit.burstt:%d|ms" % (i % 100))
    small = any("receive buffer is" in l for l in d.lines["err"])
    total = 0
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end and total - before != n:
        total = sum(smp.values("it.burst.count"))
        d.pump(0.2)
    if small:
        # Without CAP_NET_ADMIN the socket buffer may be too small to hold
        # a burst from a sender this fast.
        check(total - before >= 0.9 * n, "a burst of %d datagrams: %d "
              "counted (small receive buffer)" % (n, total - before))
        # A datagram is read whole or lost whole: take the lost ones out
        # of what the plugin's counters must show.
        lost = n - (total - before)
        snd.lines -= 2 * lost
        snd.packets -= lost
    else:
        check(total - before == n, "a burst of %d datagrams, every one "
              "counted: %r" % (n, total - before))


def test_tcp(port, smp, d):
    bad = 0
    lines = 0
    a = socket.create_connection(("127.0.0.1", port))
    b = socket.create_connection(("127.0.0.1", port))
    # A line split across writes, several lines per write.
    a.sendall(b"it.tcp:1|c\nit.tc")
    time.sleep(0)  # two writes; the plugin reassembles the line
    a.sendall(b"p:2|c\nit.tcpg:5|g\n")
    lines += 3
    # An over-long line (max_line = 1KiB) is skipped, the next one kept.
    b.sendall(b"it.tcp:" + b"9" * 3000 + b"|c\nit.tcp:4|c\n")
    bad += 1
    lines += 2
    # A third connection is over the limit: closed at once.
    c = socket.create_connection(("127.0.0.1", port))
    c.settimeout(10)
    try:
        closed = c.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        closed = True
    check(closed, "a connection beyond max_connections is closed")
    c.close()
    log = d.wait_for("err", lambda l: "max_connections" in l, 10)
    check(log is not None, "the refused connection is logged")
    # A last line without '\n' still counts when the client closes.
    a.sendall(b"it.tcp:8|c")
    lines += 1
    a.close()
    b.close()
    total = 0
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end and total != 15:
        total = sum(smp.values("it.tcp.count"))
        d.pump(0.2)
    check(total == 15, "TCP counter over every flush: %r == 15" % total)
    check(smp.wait(lambda t, k, v: k == "it.tcpg" and v == 5, "it.tcpg")
          is not None, "a TCP gauge")
    return lines, bad


def test_max_series(port, smp, d):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"it.k1:1|c\nit.k2:1|c\nit.k3:1|c\nit.k4:1|c\nit.k5:1|c\n"
             b"it.k1:1|c", ("127.0.0.1", port))
    s.close()
    got = smp.last('statsd.dropped_total{instance="small"}', want=2)
    check(got == 2, "2 lines for keys beyond max_series = 3 dropped: %r"
          % got)
    check(smp.last('statsd.series{instance="small"}', want=3) == 3,
          "statsd.series stops at max_series")
    _, v = smp.first_nonzero('it.k1.count{instance="small"}')
    check(v == 2, "existing keys go on")
    check(not any(k.startswith("it.k4") or k.startswith("it.k5")
                  for _, k, _ in smp.all()), "dropped keys are not published")
    log = d.wait_for("err", lambda l: "max_series (3) reached" in l, 10)
    check(log is not None, "one clear log line when max_series is reached")


def main():
    tmp = tempfile.mkdtemp(prefix="vigil-statsd-")
    p_main, p_slow, p_small = free_port(), free_port(), free_port()
    while len({p_main, p_slow, p_small}) < 3:
        p_slow, p_small = free_port(), free_port()
    os.mkdir(os.path.join(tmp, "rules"))
    conf = write(tmp, "vigil.ini", "\n".join([
        "[vigil]",
        "interval = 1s",
        "log_level = info",
        "[rules]",
        "dir = %s" % os.path.join(tmp, "rules"),
        "[store]",
        "keep = statsd.*",
        "[plugin statsd]",
        "listen = 127.0.0.1:%d" % p_main,
        "interval = 200ms",
        "max_line = 1KiB",
        "max_connections = 2",
        "[plugin statsd slow]",
        "listen = 127.0.0.1:%d" % p_slow,
        "interval = 1h",
        "tcp = no",
        "[plugin statsd small]",
        "listen = 127.0.0.1:%d" % p_small,
        "interval = 200ms",
        "max_series = 3",
        "tcp = no",
        "",
    ]))
    d = Daemon(["-c", conf, "--plugin-dir", PLUGINS, "--print", "it.*",
                "--print", "statsd.*"])
    smp = Samples(d)
    for port in (p_main, p_slow, p_small):
        up = d.wait_for("err", lambda l, p=port: "listening on udp "
                        "127.0.0.1:%d" % p in l, DEADLINE_S)
        check(up is not None, "statsd listens on 127.0.0.1:%d" % port)
    if d.p.poll() is not None:
        print("\n".join(d.lines["err"]))
        return summary()

    # The first interval runs from the start to the first aligned tick:
    # begin after it, so that every interval checked is a whole one.
    check(smp.wait(lambda t, k, v: k == "statsd.lines_total", "a flush")
          is not None, "the main instance flushes")
    snd = Sender(p_main)
    test_counters(snd, smp)
    test_gauges(snd, smp)
    test_gauge_immediate(p_slow, smp)
    test_timers(snd, smp)
    test_sets(snd, smp)
    test_tags(snd, smp)
    test_multiline(snd, smp)
    test_huge(snd, smp)
    nbad = test_garbage(snd, smp, d)
    test_burst(snd, smp, d)
    tcp_lines, tcp_bad = test_tcp(p_main, smp, d)
    test_max_series(p_small, smp, d)

    # The plugin's own counters, exactly.
    lines = snd.lines + tcp_lines
    check(smp.last("statsd.lines_total", want=lines) == lines,
          "statsd.lines_total == %d lines sent" % lines)
    check(smp.last("statsd.bad_lines_total", want=nbad + tcp_bad)
          == nbad + tcp_bad, "statsd.bad_lines_total == %d" % (nbad + tcp_bad))
    check(smp.last("statsd.packets_total", want=snd.packets) == snd.packets,
          "statsd.packets_total == %d datagrams" % snd.packets)
    check(smp.last("statsd.dropped_total", want=0) == 0,
          "nothing dropped on the main instance")
    check(smp.last("statsd.connections", want=0) == 0,
          "TCP connections closed")
    check(all(LINE.match(l) for l in d.lines["out"]),
          "every --print line is <ms> <series> <value>")

    check(d.p.poll() is None, "the daemon survived everything")
    code = d.finish(signal.SIGTERM)
    check(code == 0, "vigil exits 0 on SIGTERM (got %r)" % code)
    errors = [l for l in d.lines["err"] if "level=error" in l]
    check(not errors, "no error logged: %r" % errors[:3])
    if summary_failures():
        print("--- stderr ---\n" + "\n".join(d.lines["err"][-40:]))
    return summary()


def summary_failures():
    import vigiltest
    return vigiltest.failures


if __name__ == "__main__":
    sys.exit(main())
