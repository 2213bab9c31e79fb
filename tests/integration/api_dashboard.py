#!/usr/bin/python3
"""The dashboard in headless Chromium against a real daemon: it loads
(with uPlot served by vigil, no network), shows the rule as a tile with
its bands and a chart, shows an incident the test causes with its
evidence, actions and report, and follows a changed value through the
live feed. tests/web/dashboard.mjs drives Debian's chromium with
playwright-core (installed by the build: npm ci in tests/web)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import SOURCE, check, summary  # noqa: E402
from apitest import get_json, setup, start  # noqa: E402

WEB_TESTS = os.path.join(SOURCE, "tests", "web")
CHROMIUM = "/usr/bin/chromium"


def main():
    node = shutil.which("node")
    missing = [what for what, ok in [
        ("node (Node.js)", node is not None),
        ("chromium (Debian package chromium; make deps)",
         os.path.exists(CHROMIUM)),
        ("playwright-core (the build runs npm ci in tests/web)",
         os.path.isdir(os.path.join(WEB_TESTS, "node_modules",
                                    "playwright-core"))),
    ] if not ok]
    if missing:
        check(False, "missing: " + ", ".join(missing))
        return summary()
    with tempfile.TemporaryDirectory() as d:
        conf, watched = setup(d)
        v, base = start(conf)
        check(base is not None, "the daemon serves the dashboard")
        if base is None:
            v.finish(signal.SIGKILL)
            return summary()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st, doc = get_json(base, "/api/v1/rules")
            if st == 200 and doc["rules"] and \
                    doc["rules"][0]["instances"] and \
                    doc["rules"][0]["instances"][0]["evaluated"]:
                break
            v.pump(0.1)  # waits on the daemon's output, at most 0.1 s
        shot = os.environ.get("VIGIL_DASHBOARD_SHOT",
                              os.path.join(d, "dashboard.png"))
        r = subprocess.run([node, os.path.join(WEB_TESTS, "dashboard.mjs"),
                            base, watched, os.path.join(d, "profile"), shot],
                           capture_output=True, text=True, timeout=240,
                           cwd=WEB_TESTS)
        for line in r.stdout.splitlines():
            if line.startswith("ok: ") or line.startswith("FAIL: "):
                check(line.startswith("ok: "), line.split(": ", 1)[1])
        check(r.returncode == 0, "the browser run ends well (%d)%s" %
              (r.returncode, ("\n" + r.stderr[-2000:]) if r.returncode
               else ""))
        check(v.finish(signal.SIGTERM) == 0, "stops cleanly")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
