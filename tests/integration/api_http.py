#!/usr/bin/python3
"""The HTTP API of a real daemon, over real sockets: every read endpoint,
an incident opened by the test with its evidence and actions, approval,
diagnostics and reload behind the token (missing and wrong tokens), bad
requests (unknown paths, methods, selectors, arguments, malformed request
lines, oversized headers and bodies) answered with 4xx and a JSON error,
clients that disconnect in the middle of a large response, many clients
at once, more connections than clients_max, `vigil status`, `vigil check`
on a bad [http] section, a port already in use, and a clean stop with
connections still open. The daemon must serve on after each of them."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import VIGIL, check, summary, write  # noqa: E402
from apitest import (TOKEN, get_json, grow, post_json, raw,  # noqa: E402
                     request, setup, start, status_of, hostport)

STATSD_SERIES = 3000


def alive(base):
    status, doc = get_json(base, "/api/v1/status")
    return status == 200 and doc is not None and "series" in doc


def statsd_port(d):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def flood_statsd(port, n):
    """n gauges, so that /metrics and /api/v1/series are large."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lines = ["api.test.gauge_%d:%d|g|#shard:%d" % (i, i, i % 7)
             for i in range(n)]
    for i in range(0, n, 40):
        s.sendto("\n".join(lines[i:i + 40]).encode(), ("127.0.0.1", port))
    s.close()


def wait_collected(base, v):
    """Until the hello plugin has published (bounded by a deadline)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, doc = get_json(base, "/api/v1/series?match=hello.file.*")
        if status == 200 and doc["series"] and \
                doc["series"][0]["last"] is not None:
            return True
        v.pump(0.1)  # waits on the daemon's output, at most 0.1 s
    return False


def test_reads(base, v, watched):
    check(wait_collected(base, v), "the plugin publishes")
    status, doc = get_json(base, "/api/v1/")
    check(status == 200 and any("/metrics" in e for e in doc["endpoints"]),
          "GET /api/v1/ lists the endpoints")
    status, st = get_json(base, "/api/v1/status")
    check(status == 200 and st["rules"]["rules"] == 1 and st["store"],
          "status counts the rule and the store: %s" % st)
    status, doc = get_json(base, "/api/v1/series?match=hello.file.*")
    check(status == 200 and doc["count"] == 1 and
          doc["series"][0]["name"] == "hello.file.size_bytes" and
          doc["series"][0]["labels"]["path"] == watched,
          "series selects by pattern, with labels")
    status, doc = get_json(base, "/api/v1/series?match=hello.file.*{path=/nope*}")
    check(status == 200 and doc["count"] == 0, "a label matcher narrows it")
    status, doc = get_json(base, "/api/v1/query?match=hello.file.*&stat=max"
                                 "&window=1m")
    check(status == 200 and doc["series"][0]["value"] == 10 and
          doc["stat"] == "max", "query computes a window statistic")
    # The points come from the store, which commits once a flush: wait
    # (bounded) for the first one.
    deadline = time.monotonic() + 10
    while True:
        status, doc = get_json(base,
                               "/api/v1/samples?series=hello.file.*&window=1m")
        if (status == 200 and doc["series"] and doc["series"][0]["points"]) \
                or time.monotonic() > deadline:
            break
        v.pump(0.1)
    check(status == 200 and len(doc["series"]) == 1 and
          doc["series"][0]["points"] and
          doc["series"][0]["points"][-1][1] == 10,
          "samples gives the points of a window")
    status, doc = get_json(base, "/api/v1/rules")
    rule = doc["rules"][0] if status == 200 and doc["rules"] else {}
    check(rule.get("name") == "big_file" and
          rule.get("levels") == {"warn_above": 50, "crit_above": 100} and
          rule.get("instances", [{}])[0].get("state") == "ok",
          "rules carry their levels and instances' states: %s" % rule)
    status, doc = get_json(base, "/api/v1/plugins")
    names = {p["plugin"]: p for p in doc["plugins"]} if doc else {}
    check(status == 200 and names.get("hello", {}).get("health") == "up",
          "plugins show their health: %s" % list(names))
    status, doc = get_json(base, "/api/v1/diagnostics")
    check(status == 200 and any(x["name"] == "good.echo"
                                for x in doc["diagnostics"]),
          "diagnostics lists what plugins registered")
    status, doc = get_json(base, "/api/v1/incidents")
    check(status == 200 and doc["incidents"] == [], "no incidents yet")
    status, hdrs, body = request(base, "GET", "/")
    check(status == 200 and b"vigil" in body and
          hdrs.get("content-type", "").startswith("text/html"),
          "the dashboard page is served")
    status, _, body = request(base, "GET", "/vendor/uPlot.iife.min.js")
    check(status == 200 and b"uPlot" in body, "uPlot is served, no network")
    status, _, _ = request(base, "HEAD", "/api/v1/status")
    check(status == 200, "HEAD works")


def test_bad_requests(base):
    cases = [
        ("GET", "/api/v1/nope", 404),
        ("GET", "/nope.html", 404),
        ("GET", "/../../etc/passwd", 404),
        ("GET", "/.hidden.js", 404),
        ("GET", "/api/v1/series?match=a{b", 400),
        ("GET", "/api/v1/series?limit=0", 400),
        ("GET", "/api/v1/series?limit=x", 400),
        ("GET", "/api/v1/query?match=*", 400),
        ("GET", "/api/v1/query?match=*&stat=p200", 400),
        ("GET", "/api/v1/samples", 400),
        ("GET", "/api/v1/samples?series=*&window=forever", 400),
        ("GET", "/api/v1/incidents/abc", 404),
        ("GET", "/api/v1/incidents/999999", 404),
        ("GET", "/api/v1/incidents/1?format=pdf", 400),
        ("GET", "/api/v1/feed", 426),
        ("PUT", "/api/v1/status", 405),
        ("DELETE", "/api/v1/rules", 405),
    ]
    for method, path, want in cases:
        status, hdrs, body = request(base, method, path)
        try:
            err = json.loads(body).get("error")
        except ValueError:
            err = None
        check(status == want and err,
              "%s %s -> %d with a JSON error (%s %s)" %
              (method, path, want, status, err))
    # Malformed requests on raw sockets: refused, never a crash.
    for data, what in [
            (b"GARBAGE\r\n\r\n", "a request line that is no request"),
            (b"GET /metrics HTTP/9.9\r\n\r\n", "an unknown HTTP version"),
            (b"GET /x\x00y HTTP/1.1\r\nHost: a\r\n\r\n", "a NUL in the path"),
            (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 +
             b"\r\n\r\n", "a header larger than the limit"),
            (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", "a huge path"),
            (b"\xff\xfe\x00\x01" * 64, "binary noise"),
    ]:
        reply = raw(base, data)
        code = status_of(reply)
        check((code is None or 400 <= code < 500) and alive(base),
              "%s: %s, and vigil serves on" % (what, code or "closed"))
    # A Host that is not this machine: DNS rebinding is refused.
    status, _, _ = request(base, "GET", "/api/v1/status",
                           headers={"Host": "evil.example:80"})
    check(status == 403, "a foreign Host header is refused without the "
                         "token (%s)" % status)
    status, _, _ = request(base, "GET", "/api/v1/status",
                           headers={"Host": "evil.example:80",
                                    "Authorization": "Bearer " + TOKEN})
    check(status == 200, "with the token it is served")


def test_tokens(base, v):
    status, doc = post_json(base, "/api/v1/reload", token=None)
    check(status == 401 and "Bearer" in doc["error"],
          "no token: 401 (%s)" % status)
    status, doc = post_json(base, "/api/v1/reload", token="wrong-token")
    check(status == 403 and doc["error"] == "wrong token",
          "a wrong token: 403 (%s)" % status)
    status, doc = post_json(base, "/api/v1/reload",
                            token=TOKEN[:-1] + "X")
    check(status == 403, "a token off by one character: 403")
    status, _, _ = request(base, "POST", "/api/v1/reload?token=" + TOKEN)
    check(status == 401, "the token is not taken from the URL for HTTP")
    status, doc = post_json(base, "/api/v1/reload")
    check(status == 200 and doc["reloaded"] and doc["rules"] == 1,
          "reload with the token: %s" % doc)
    check(v.wait_for("err", lambda l: "reloaded:" in l, 10) is not None,
          "the runbooks were reloaded")
    status, doc = post_json(base, "/api/v1/diagnostics/good.echo",
                            body=json.dumps({"asked": "nicely"}))
    check(status == 200 and doc["result"] == {"asked": "nicely"},
          "a diagnostic runs with its arguments: %s" % doc)
    status, doc = post_json(base, "/api/v1/diagnostics/good.echo",
                            body="{not json")
    check(status == 400, "a diagnostic's body must be a JSON object")
    status, doc = post_json(base, "/api/v1/diagnostics/no.such")
    check(status == 404, "an unknown diagnostic: 404")
    status, doc = post_json(base, "/api/v1/nope")
    check(status == 404, "an unknown POST: 404")
    status, _, _ = request(base, "POST", "/metrics")
    check(status in (401, 405), "POST /metrics is refused (%s)" % status)
    # Bodies: declared too large, sent too large, chunked.
    reply = raw(base, b"POST /api/v1/reload HTTP/1.1\r\nHost: localhost\r\n"
                b"Authorization: Bearer " + TOKEN.encode() +
                b"\r\nContent-Length: 100000000\r\n\r\n")
    check(status_of(reply) == 413, "a declared 100 MB body: 413")
    big = b"{" + b" " * 200000 + b"}"
    reply = raw(base, b"POST /api/v1/diagnostics/good.echo HTTP/1.1\r\n"
                b"Host: localhost\r\nAuthorization: Bearer " +
                TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n" + big)
    code = status_of(reply)
    check(code is None or 400 <= code < 500,
          "more body than declared is not taken as a request (%s)" % code)
    reply = raw(base, b"POST /api/v1/reload HTTP/1.1\r\nHost: localhost\r\n"
                b"Authorization: Bearer " + TOKEN.encode() +
                b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                b"0\r\n\r\n")
    check(status_of(reply) == 411, "a chunked body: 411 (%s)" %
          status_of(reply))
    check(alive(base), "vigil serves on after the bad bodies")


def test_incident(base, v, watched):
    grow(watched, 500)
    line = v.wait_for("err", lambda l: "ask awaiting approval" in l, 20)
    check(line is not None, "an incident opens and an action awaits approval")
    status, doc = get_json(base, "/api/v1/incidents?open=1")
    incs = doc["incidents"] if status == 200 else []
    check(len(incs) == 1 and incs[0]["rule"] == "big_file" and
          incs[0]["state"] == "critical",
          "the open incident is listed: %s" % incs)
    iid = incs[0]["id"] if incs else 0
    status, doc = get_json(base, "/api/v1/incidents/%d" % iid)
    ev = {e["name"]: e for e in doc.get("evidence", [])} if doc else {}
    acts = {a["name"]: a for a in doc.get("actions", [])} if doc else {}
    check(status == 200 and doc["incident"]["id"] == iid and
          ev.get("good.echo", {}).get("output") == {"asked": "politely"} and
          "snapshot" in ev, "the incident holds its evidence: %s" % list(ev))
    check(acts.get("ask", {}).get("result") == "awaiting approval",
          "and its actions: %s" % acts)
    status, hdrs, body = request(base, "GET", "/api/v1/incidents/%d"
                                 "?format=md" % iid)
    check(status == 200 and body.startswith(b"# Incident") and
          hdrs.get("content-type", "").startswith("text/markdown"),
          "the report as Markdown")
    status, doc = get_json(base, "/api/v1/actions")
    audit = doc["actions"] if status == 200 else []
    check(any(a["name"] == "ask" and a["incident"] == iid for a in audit),
          "the action audit lists it")
    aid = acts.get("ask", {}).get("id", 0)
    status, doc = post_json(base, "/api/v1/actions/%d/approve" % aid,
                            token=None)
    check(status == 401, "approving without the token: 401")
    status, doc = post_json(base, "/api/v1/actions/%d/approve" % aid)
    check(status == 200 and doc["approved"] == aid,
          "approving with the token: %s" % doc)
    check(v.wait_for("err", lambda l: "action: ask ok" in l, 20) is not None,
          "the daemon runs the approved action")
    status, doc = post_json(base, "/api/v1/actions/%d/approve" % aid)
    check(status == 404, "an action is approved once (%s)" % status)
    status, doc = post_json(base, "/api/v1/actions/abc/approve")
    check(status == 404, "a bad action id: 404")
    status, doc = post_json(base, "/api/v1/incidents/%d/acknowledge" % iid,
                            token=None)
    check(status == 401, "acknowledging without the token: 401")
    status, doc = post_json(base, "/api/v1/incidents/%d/acknowledge" % iid)
    check(status == 200 and doc.get("acknowledged") is True,
          "acknowledging with the token: %s" % doc)
    check(v.wait_for("err", lambda l: "acknowledged" in l, 20) is not None,
          "the acknowledgement is logged")
    status, doc = post_json(base, "/api/v1/incidents/999999/acknowledge")
    check(status == 404, "acknowledging no such incident: 404")
    return iid


def test_status_cli(base, conf):
    r = subprocess.run([VIGIL, "status", "-c", conf], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 2 and "give --url" in r.stderr,
          "with port = 0 in the config, vigil status asks for --url")
    r = subprocess.run([VIGIL, "status", "--url", base], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and "big_file" in r.stdout and
          "critical" in r.stdout and "INCIDENTS: 1 open" in r.stdout,
          "vigil status shows the rule and the incident:\n" + r.stdout +
          r.stderr)
    r = subprocess.run([VIGIL, "status", "--url", base, "--json"],
                       capture_output=True, text=True, timeout=30)
    doc = json.loads(r.stdout) if r.returncode == 0 else {}
    check(doc.get("status", {}).get("rules", {}).get("critical") == 1,
          "vigil status --json gives the API's documents")
    r = subprocess.run([VIGIL, "status", "--url", "http://127.0.0.1:1/"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "cannot connect" in r.stderr,
          "vigil status says when vigil cannot be reached")


def test_big_and_rude(base):
    status, _, body = request(base, "GET", "/metrics")
    check(status == 200 and body.count(b"api_test_gauge_") >= STATSD_SERIES,
          "/metrics holds every series (%d bytes)" % len(body))
    status, _, body = request(base, "GET", "/api/v1/series?limit=100000")
    doc = json.loads(body) if status == 200 else {}
    check(doc.get("count", 0) >= STATSD_SERIES and not doc["truncated"],
          "a large series list arrives whole (%d bytes)" % len(body))
    status, doc = get_json(base, "/api/v1/series?limit=10")
    check(status == 200 and doc["count"] == 10 and doc["truncated"],
          "limit truncates and says so")
    # Clients that go away in the middle of a large response.
    for path in (b"/metrics", b"/api/v1/series?limit=100000"):
        for _ in range(10):
            s = socket.create_connection(hostport(base), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            s.recv(1000)
            # RST instead of FIN: the server's next write fails.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    check(alive(base), "clients that leave mid-response do no harm")
    # Many clients at once, several requests each on keep-alive.
    errors = []

    def client(i):
        import http.client
        host, port = hostport(base)
        c = http.client.HTTPConnection(host, port, timeout=30)
        try:
            for path in ("/api/v1/status", "/metrics", "/api/v1/rules",
                         "/api/v1/series?match=hello.*", "/"):
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append((path, r.status))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not errors, "40 clients x 5 keep-alive requests: all 200 (%s)" %
          errors[:3])


def test_clients_max(d):
    conf, _ = setup(d, http_extra=["clients_max = 8"])
    v, base = start(conf)
    check(base is not None, "a second daemon starts")
    socks = [socket.create_connection(hostport(base), timeout=5)
             for _ in range(12)]
    closed = 0
    for s in socks:
        s.settimeout(0.5)
        try:
            if s.recv(10) == b"":
                closed += 1
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed += 1
    check(closed >= 4, "connections beyond clients_max are closed (%d)" %
          closed)
    for s in socks:
        s.close()
    ok = False
    for _ in range(50):  # the server notices the closes on its next turn
        try:
            ok = alive(base)
        except OSError:
            ok = False
        if ok:
            break
    check(ok, "once they are gone, a client is served again")
    check(v.finish(signal.SIGTERM) == 0, "it stops cleanly")


def test_config_errors(d):
    conf = write(d, "bad.ini", "\n".join([
        "[http]", "port = 70000", "listen = 0.0.0.0", "token = short",
        "tokne = x", ""]))
    r = subprocess.run([VIGIL, "check", "-c", conf], capture_output=True,
                       text=True)
    err = r.stderr
    check(r.returncode == 2 and "bad.ini:2:" in err and "bad.ini:4:" in err
          and "bad.ini:5:" in err and "did you mean 'token'" in err,
          "vigil check names each bad [http] line:\n" + err)
    conf = write(d, "open.ini", "[http]\nlisten = 0.0.0.0\n")
    r = subprocess.run([VIGIL, "check", "-c", conf], capture_output=True,
                       text=True)
    check(r.returncode == 2 and "not a loopback address" in r.stderr,
          "listening beyond loopback needs a token")


def test_port_in_use(d, base):
    host, port = hostport(base)
    conf, _ = setup(d)
    with open(conf) as f:
        text = f.read().replace("port = 0", "port = %d" % port)
    with open(conf, "w") as f:
        f.write(text)
    v, url = start(conf, ["--for", "3s"])
    line = v.wait_for("err", lambda l: "cannot listen" in l, 1)
    check(url is None and line is not None,
          "a port in use is reported: %s" % line)
    check(v.finish(None, 20) == 0, "and vigil runs on without HTTP, then "
                                   "stops cleanly")


def main():
    with tempfile.TemporaryDirectory() as d:
        sport = statsd_port(d)
        conf, watched = setup(d, plugins_extra=[
            "[plugin statsd]", "listen = 127.0.0.1:%d" % sport, "tcp = no",
            "interval = 100ms"])
        v, base = start(conf)
        check(base is not None, "the daemon prints the dashboard's address")
        if base is None:
            print("\n".join(v.lines["err"]))
            v.finish(signal.SIGKILL)
            return summary()
        test_reads(base, v, watched)
        test_bad_requests(base)
        test_tokens(base, v)
        test_incident(base, v, watched)
        test_status_cli(base, conf)
        flood_statsd(sport, STATSD_SERIES)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st, doc = get_json(base, "/api/v1/series?match=api.test.*"
                                     "&limit=100000")
            if st == 200 and doc["count"] >= STATSD_SERIES:
                break
            v.pump(0.2)  # wait on the daemon's output, not a sleep
        test_big_and_rude(base)
        with tempfile.TemporaryDirectory() as d2:
            test_port_in_use(d2, base)
        # A clean stop with a client in the middle of a request.
        s = socket.create_connection(hostport(base), timeout=5)
        s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n")
        rc = v.finish(signal.SIGTERM, 20)
        s.close()
        check(rc == 0, "stops cleanly with a half-sent request open (%s)" %
              rc)
        errs = [l for l in v.lines["err"] if "handle still open" in l or
                "ERROR" in l]
        check(not errs, "no handle left open: %s" % errs)
    with tempfile.TemporaryDirectory() as d:
        test_clients_max(d)
    with tempfile.TemporaryDirectory() as d:
        test_config_errors(d)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
