"""Helpers for the HTTP API tests (tests/integration/api*.py): a daemon
with [http] on a free port, a runbook over the `hello` test plugin (whose
value is the size of a file the test writes), and small HTTP clients that
need nothing outside the standard library."""

import http.client
import json
import os
import re
import shutil
import socket

from vigiltest import PLUGINS, TEST_PLUGINS, Daemon, write

TOKEN = "t0ken-for-the-api-tests-0123456789"

RUNBOOK = r"""
local vigil = require "vigil"

vigil.threshold "big_file" {
  title = "The watched file is big",
  metric = "hello.file.size_bytes", warn = 50, crit = 100,
  nodata = false, runbook = "shrink",
}

vigil.runbook "shrink" {
  title = "Shrink the file",
  immediate = {
    vigil.step "snapshot" { series = "hello.*", window = "1m" },
    vigil.step "good.echo" { asked = "politely" },
  },
  remediate = {
    vigil.action "ask" { exec = { "/bin/true" }, mode = "approve" },
  },
}
"""

URL = re.compile(r"dashboard at (http://[^ ]+/)")


def setup(d, http_extra=(), plugins_extra=(), runbook=RUNBOOK):
    """Write a config, plugins and runbook into d; return (conf, watched)."""
    pdir = os.path.join(d, "plugins")
    rules = os.path.join(d, "rules")
    os.makedirs(pdir, exist_ok=True)
    os.makedirs(rules, exist_ok=True)
    for name in ("hello", "good"):
        shutil.copy(os.path.join(TEST_PLUGINS, name + ".so"), pdir)
    for name in ("statsd", "sys"):
        shutil.copy(os.path.join(PLUGINS, name + ".so"), pdir)
    write(rules, "file.lua", runbook)
    watched = write(d, "watched", "x" * 10)
    conf = write(d, "vigil.ini", "\n".join([
        "[vigil]",
        "interval = 100ms",
        "plugin_dir = plugins",
        "[rules]",
        "dir = rules",
        "[store]",
        "path = vigil.db",
        "flush = 100ms",
        "[actions]",
        "mode = on",
        "[plugin hello]",
        "path = " + watched,
        "[plugin good a]",
        "target = t",
        "interval = 1h",
    ] + list(plugins_extra) + [
        "[http]",
        "listen = 127.0.0.1",
        "port = 0",
        "token = " + TOKEN,
    ] + list(http_extra) + [""]))
    return conf, watched


def start(conf, args=()):
    """Start vigil run -c conf; return (daemon, base URL) once it serves."""
    v = Daemon(["-c", conf] + list(args))
    line = v.wait_for("err", lambda l: "dashboard at" in l
                      or "no dashboard" in l, 20)
    m = URL.search(line or "")
    return v, (m.group(1) if m else None)


def hostport(base):
    m = re.match(r"http://([^/:]+):(\d+)/", base)
    return m.group(1), int(m.group(2))


def request(base, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection: (status, headers, body bytes)."""
    host, port = hostport(base)
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def get_json(base, path, headers=None):
    status, _, body = request(base, "GET", path, headers=headers)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def post_json(base, path, body=None, token=TOKEN):
    headers = {"Authorization": "Bearer " + token} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    status, _, data = request(base, "POST", path, body=body, headers=headers)
    try:
        return status, json.loads(data)
    except ValueError:
        return status, None


def raw(base, data, read=True, timeout=10):
    """Send bytes on a raw socket; return what comes back until close."""
    s = socket.create_connection(hostport(base), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while read:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_of(reply):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return int(m.group(1)) if m else None


def grow(path, size):
    with open(path, "w") as f:
        f.write("x" * size)
