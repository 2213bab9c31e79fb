#!/usr/bin/env python3
"""simctl: drive a running genesis simulator through its control API.

    simctl.py TARGET faults                 the faults and whether each is on
    simctl.py TARGET fault NAME on|off      switch one
    simctl.py TARGET clear-cache            POST /admin/cache/clear
    simctl.py TARGET status                 GET /api/v1/status
    simctl.py TARGET health                 GET /health
    simctl.py TARGET order SYMBOL SIDE QTY  POST /api/v1/orders

TARGET is the simulator's base URL (http://127.0.0.1:PORT) or its --state
file. Prints the JSON answer; exits 1 when the answer is an HTTP error.
Standard library only: any python3 runs it.
"""

import json
import sys
import urllib.error
import urllib.request


def base_url(target):
    if target.startswith(("http://", "https://")):
        return target.rstrip("/")
    with open(target) as f:
        return json.load(f)["http"]


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=(
        "GET" if body is None else "POST"),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return 0, r.read().decode()
    except urllib.error.HTTPError as e:
        return 1, e.read().decode()


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    url, cmd, rest = base_url(argv[1]), argv[2], argv[3:]
    if cmd == "faults" and not rest:
        rc, out = call(url + "/admin/faults")
    elif cmd == "fault" and len(rest) == 2 and rest[1] in ("on", "off"):
        rc, out = call(url + "/admin/fault",
                       {"fault": rest[0], "on": rest[1] == "on"})
    elif cmd == "clear-cache" and not rest:
        rc, out = call(url + "/admin/cache/clear", {})
    elif cmd == "status" and not rest:
        rc, out = call(url + "/api/v1/status")
    elif cmd == "health" and not rest:
        rc, out = call(url + "/health")
    elif cmd == "order" and len(rest) == 3:
        rc, out = call(url + "/api/v1/orders", {
            "symbol": rest[0], "side": rest[1], "qty": float(rest[2])})
    else:
        sys.exit(__doc__)
    print(out.strip())
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
