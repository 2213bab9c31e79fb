#!/usr/bin/python3
"""The tcp plugin on 127.0.0.1: a listener (connect time published,
tcp.up 1), a closed port (class refused), an unresolvable name (class
dns); the loop lag stays small; `vigil probe tcp.measure` prints the
statistics."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
SKIP = 77
try:
    import vigiltest as vt
except KeyError as e:
    print(f"skip: {e} not set (run through ctest)")
    sys.exit(SKIP)

DEADLINE_S = 30.0


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


def main():
    check = vt.check
    if not os.path.exists(os.path.join(vt.PLUGINS, "tcp.so")):
        print("skip: tcp.so not built")
        return SKIP
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(1024)  # the kernel completes the handshakes
    port = lsn.getsockname()[1]
    s2 = socket.socket()
    s2.bind(("127.0.0.1", 0))
    down = s2.getsockname()[1]
    s2.close()
    with tempfile.TemporaryDirectory(prefix="vigil-tcp-") as tmp:
        conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 250ms

[plugin tcp up]
host = 127.0.0.1
port = {port}
interval = 300ms

[plugin tcp down]
host = 127.0.0.1
port = {down}
interval = 300ms

[plugin tcp nodns]
host = no-such-host.invalid
port = 80
interval = 300ms
""")
        d = vt.Daemon(["-c", conf, "--print", "*"])

        def ready():
            s = parse(d.lines["out"])
            return all(len(of(s, "tcp.up", i)) >= 3
                       for i in ("up", "down", "nodns"))

        end = time.monotonic() + DEADLINE_S
        while not ready() and time.monotonic() < end and d.sel.get_map():
            d.pump(0.2)
        check(d.p.poll() is None, "the daemon is still running")
        rc = d.finish(signal.SIGTERM, timeout=20)
        check(rc == 0, f"vigil stops cleanly on SIGTERM (rc {rc})")
        s = parse(d.lines["out"])
        t = of(s, "tcp.connect.time_ms", "up")
        check(len(t) >= 3 and all(0 < v < 20 for v in t),
              f"tcp.connect.time_ms published, small: {t[:5]}")
        ups = of(s, "tcp.up", "up")
        check(ups and all(v == 1 for v in ups), "tcp.up{up} all 1")
        for inst, cls in (("down", "refused"), ("nodns", "dns")):
            ups = of(s, "tcp.up", inst)
            check(ups and all(v == 0 for v in ups), f"tcp.up{{{inst}}} all 0")
            errs = of(s, "tcp.connect.errors_total", inst, **{"class": cls})
            check(errs and errs[-1] >= 3 and errs == sorted(errs),
                  f"errors_total{{{inst},class={cls}}} counts: {errs}")
            check(not of(s, "tcp.connect.time_ms", inst),
                  f"no connect time for {inst}")
        lags = [v for n, _, v in s if n == "vigil.loop.lag_ms"]
        check(lags and max(lags) <= 100,
              f"vigil.loop.lag_ms small (max {max(lags) if lags else None})")

        r = subprocess.run([vt.VIGIL, "probe", "tcp.measure", "host=127.0.0.1",
                            f"port={port}", "count=5", "interval_ms=10",
                            "-c", conf], capture_output=True, text=True,
                           timeout=60)
        out = json.loads(r.stdout) if r.returncode == 0 else None
        check(out is not None and out["ok"] == 5 and out["errors"] == 0 and
              out["port"] == port and
              out["min_ms"] <= out["p50_ms"] <= out["p95_ms"] <=
              out["p99_ms"] <= out["max_ms"] and out["mean_ms"] > 0,
              f"vigil probe tcp.measure: {r.stdout!r} {r.stderr[-300:]!r}")
        r = subprocess.run([vt.VIGIL, "probe", "tcp.measure",
                            f"port={down}", "count=3", "interval_ms=0",
                            "-c", conf], capture_output=True, text=True,
                           timeout=60)
        out = json.loads(r.stdout) if r.stdout.strip() else None
        check(r.returncode == 1 and out is not None and out["errors"] == 3
              and out["error_classes"] == {"refused": 3} and
              out["mean_ms"] is None,
              f"tcp.measure on a closed port: exit 1, {out}")
    lsn.close()
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
