#!/usr/bin/python3
"""The http plugin and TLS, against a real HTTPS server on 127.0.0.1.

The test makes its own CA and a server certificate signed by it (openssl),
and serves HTTPS with Python's ssl module. Three instances probe it:
  strict   default verification: the self-signed chain is refused,
           class tls, http.up 0.
  trusted  ca_file = the test's CA: accepted, http.up 1, tls_ms > 0.
  noverify tls_verify = no: accepted without a CA.
`vigil probe http.measure` against the same URL reports the tls phase.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import json  # noqa: E402
import signal  # noqa: E402
import ssl  # noqa: E402
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

DEADLINE_S = 30.0
BODY = b"tls ok\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As real servers do: headers and body leave at once, not 40 ms apart
    # (Nagle against the client's delayed ACK on a kept-alive connection).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(tmp):
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca = os.path.join(tmp, "ca.key"), os.path.join(tmp, "ca.pem")
    key, csr = os.path.join(tmp, "srv.key"), os.path.join(tmp, "srv.csr")
    crt, ext = os.path.join(tmp, "srv.pem"), os.path.join(tmp, "srv.ext")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=vigil test CA", "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", key, "-out", csr)
    with open(ext, "w") as f:
        f.write("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt)
    return ca, crt, key


def serve(crt, key):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def samples(lines, name, inst, **want):
    out = []
    for line in lines:
        m = vt.LINE.match(line)
        if not m or m.group(2) != name:
            continue
        labels = dict(kv.split("=", 1) for kv in
                      (m.group(3) or "{}")[1:-1].split(",") if kv)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("instance") == inst and \
                all(labels.get(k) == w for k, w in want.items()):
            out.append(float(m.group(4)))
    return out


def main():
    check = vt.check
    if not os.path.exists(os.path.join(vt.PLUGINS, "http.so")):
        print("skip: http.so not built")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="vigil-tls-") as tmp:
        ca, crt, key = make_certs(tmp)
        srv = serve(crt, key)
        url = f"https://127.0.0.1:{srv.server_address[1]}/"
        conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 250ms

[plugin http strict]
url = {url}
interval = 300ms

[plugin http trusted]
url = {url}
ca_file = {ca}
interval = 300ms
; every request does its handshake: tls_ms is measured each time
keep_alive = no

[plugin http noverify]
url = {url}
tls_verify = no
interval = 300ms
""")
        d = vt.Daemon(["-c", conf, "--print", "http.*"])

        def ready():
            out = d.lines["out"]
            return all(len(samples(out, "http.up", i)) >= 3
                       for i in ("strict", "trusted", "noverify"))

        end = time.monotonic() + DEADLINE_S
        while not ready() and time.monotonic() < end and d.sel.get_map():
            d.pump(0.2)
        rc = d.finish(signal.SIGTERM, timeout=20)
        check(rc == 0, f"vigil stops cleanly on SIGTERM (rc {rc})")
        out = d.lines["out"]

        up = samples(out, "http.up", "strict")
        check(up and set(up) == {0}, f"strict: the self-signed chain is "
              f"refused, http.up 0: {up[:5]}")
        errs = samples(out, "http.request.errors_total", "strict",
                       **{"class": "tls"})
        check(errs and errs[-1] >= 3, f"strict: counted as class tls: {errs}")
        check("certificate" in "\n".join(d.lines["err"]).lower(),
              "strict: the log says the certificate was refused")
        for inst in ("trusted", "noverify"):
            up = samples(out, "http.up", inst)
            check(up and set(up) == {1}, f"{inst}: accepted, http.up 1: "
                  f"{up[:5]}")
            st = samples(out, "http.response.status", inst)
            check(st and set(st) == {200}, f"{inst}: status 200")
        tls = samples(out, "http.request.tls_ms", "trusted")
        check(tls and all(v > 0 for v in tls),
              f"trusted: the handshake is timed, tls_ms > 0: {tls[:3]}")

        # The diagnostic through `vigil probe`, with the CA of the config.
        r = subprocess.run([vt.VIGIL, "probe", "http.measure", "instance="
                            "trusted", "count=3", "interval_ms=10", "-c",
                            conf], capture_output=True, text=True,
                           timeout=60)
        res = json.loads(r.stdout) if r.returncode == 0 else None
        check(res is not None and res["ok"] == 3 and
              res["phases"]["tls"] > 0,
              f"http.measure over TLS: {r.stdout[-400:]!r} "
              f"{r.stderr[-300:]!r}")
        srv.shutdown()
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
