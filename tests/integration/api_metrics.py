#!/usr/bin/python3
"""GET /metrics of a real daemon passes `promtool check metrics` (Debian's
prometheus package; the test fails if promtool is missing): every bus
series, with awkward names and label values sent over StatsD (camelCase,
abbreviated units, reserved suffixes, quotes and backslashes), the rule
states and vigil's own metrics, before and during an incident."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import check, summary  # noqa: E402
from apitest import get_json, grow, request, setup, start  # noqa: E402

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

LINES = [
    "app.fooBar.latencyMs:5|g",
    "app.cache.size_kb:3|g",
    "app.req.count:4|g",
    "app.hist.sum:2|g",
    "app.x.bucket:1|g",
    "app.weird_ms:3|g",
    "app.rate_per_s:2|g",
    "app.gc.pause_ms_total:7|g",
    'app.tagged:1|g|#q:a"b\\c,path:/x/y',
]


def promtool(text):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                       capture_output=True)
    return r.returncode, (r.stdout + r.stderr).decode()


def wait_series(base, v, selector, n, resend=None):
    """Until n series match with a sample; resend() (the StatsD packet:
    the plugin may not listen yet when the HTTP server does) each turn."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if resend is not None:
            resend()
        status, doc = get_json(base, "/api/v1/series?match=" + selector)
        if status == 200 and sum(s["last"] is not None
                                 for s in doc["series"]) >= n:
            return True
        v.pump(0.1)  # waits on the daemon's output, at most 0.1 s
    return False


def main():
    if not os.path.exists(PROMTOOL):
        check(False, "promtool is not installed: it comes with Debian's "
                     "prometheus package (make deps)")
        return summary()
    with tempfile.TemporaryDirectory() as d:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        conf, watched = setup(d, plugins_extra=[
            "[plugin statsd]", "listen = 127.0.0.1:%d" % port, "tcp = no",
            "interval = 100ms", "[plugin sys]"])
        v, base = start(conf)
        check(base is not None, "the daemon serves")
        if base is None:
            v.finish(signal.SIGKILL)
            return summary()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        check(wait_series(base, v, "app.*", len(LINES), lambda: u.sendto(
            "\n".join(LINES).encode(), ("127.0.0.1", port))),
              "the StatsD series are on the bus")
        check(wait_series(base, v, "vigil.loop.*", 1), "vigil's own too")
        check(wait_series(base, v, "sys.mem.used_pct", 1), "and sys's")

        status, hdrs, body = request(base, "GET", "/metrics")
        text = body.decode()
        check(status == 200 and hdrs.get("content-type", "").startswith(
            "text/plain; version=0.0.4"), "/metrics is the text format")
        rc, out = promtool(body)
        check(rc == 0, "promtool check metrics passes (%d): %s" % (rc, out))
        families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        check(families.get("app_foo_bar_latency_seconds") == "gauge" and
              "app_foo_bar_latency_seconds 0.005\n" in text,
              "camelCase and _ms become snake_case seconds")
        check("app_cache_size_bytes 3000\n" in text, "kilobytes are bytes")
        check("app_req " in text and "app_hist_sum_value " in text and
              "app_x_bucket_value " in text,
              "reserved histogram suffixes are avoided on gauges")
        check("app_rate_per_second 2\n" in text, "_per_s is _per_second")
        check(families.get("app_gc_pause_seconds_total") == "counter",
              "a _total series is a counter")
        check('app_tagged{path="/x/y",q="a\\"b\\\\c"} 1\n' in text,
              "label values are escaped: %s" %
              [l for l in text.splitlines() if l.startswith("app_tagged")])
        check(families.get("vigil_loop_lag_seconds") == "gauge" and
              families.get("vigil_bus_samples_total") == "counter" and
              families.get("vigil_http_requests_total") == "counter",
              "vigil's own metrics are there")
        check(re.search(r'^vigil_rule_state\{rule="big_file",'
                        r'metric="hello.file.size_bytes",path="[^"]+"\} 0$',
                        text, re.M) is not None and
              'vigil_rule_threshold{rule="big_file",level="crit_above"} 100'
              in text, "rule states and levels are there")
        check(re.search(r"^sys_mem_used_pct ", text, re.M) is not None,
              "the sys plugin's series are there")
        check(all(l.startswith("# HELP ") for l in text.splitlines()
                  if l.startswith("# HELP")) and
              text.count("# HELP ") == text.count("# TYPE "),
              "every family has HELP and TYPE")

        grow(watched, 500)
        check(v.wait_for("err", lambda l: "opened" in l, 20) is not None,
              "an incident opens")
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            _, _, body = request(base, "GET", "/metrics")
            text = body.decode()
            if re.search(r"^vigil_incidents_open 1$", text, re.M) and \
                    re.search(r"^vigil_rule_state\{rule=\"big_file\".* 2$",
                              text, re.M):
                break
            v.pump(0.1)
        check(re.search(r"^vigil_incidents_open 1$", text, re.M) is not None
              and re.search(r"^vigil_rule_state\{rule=\"big_file\".* 2$",
                            text, re.M) is not None,
              "the incident count and the critical state show")
        rc, out = promtool(text.encode())
        check(rc == 0, "promtool still passes during the incident: %s" % out)
        check(v.finish(signal.SIGTERM) == 0, "stops cleanly")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
