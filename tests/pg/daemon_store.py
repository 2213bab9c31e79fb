#!/usr/bin/python3
"""The daemon on a PostgreSQL store (run by tests/pg/run.sh with the "pg"
fixture's server in VIGIL_TEST_PG).

vigil does not link libpq: it loads it when a store is PostgreSQL. A
`vigil run` on a fresh database writes its samples there, `vigil history`
reads them back from another process, and the binary's own dependencies
do not name libpq (an agent on SQLite never maps it).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import vigiltest as vt  # noqa: E402


def psql(uri, sql):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "-d", uri, "-c", sql], capture_output=True,
                          text=True, timeout=60)


def main():
    check = vt.check
    admin = os.environ["VIGIL_TEST_PG"]
    db = "vigil_daemon_%d" % os.getpid()
    uri = admin.rsplit("/", 1)[0] + "/" + db
    r = psql(admin, "CREATE DATABASE %s" % db)
    check(r.returncode == 0, "a fresh database %s (%s)" % (db, r.stderr))
    try:
        deps = subprocess.run(["ldd", vt.VIGIL], capture_output=True,
                              text=True).stdout
        check("libpq" not in deps, "the vigil binary does not link libpq")
        with tempfile.TemporaryDirectory(prefix="vigil-pgd-") as tmp:
            conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 200ms
[store]
path = {uri}
flush = 200ms
""")
            r = subprocess.run([vt.VIGIL, "run", "-c", conf, "--for", "2s"],
                               capture_output=True, text=True, timeout=60)
            check(r.returncode == 0 and "postgresql://" in r.stderr and
                  "level=error" not in r.stderr,
                  "vigil run on the PostgreSQL store: exit 0, no error "
                  "(%d, %s)" % (r.returncode, r.stderr[-400:]))
            r = subprocess.run([vt.VIGIL, "history", "vigil.loop.lag_ms",
                                "--json", "-c", conf], capture_output=True,
                               text=True, timeout=60)
            doc = json.loads(r.stdout) if r.returncode == 0 else {}
            pts = doc if isinstance(doc, list) else doc.get("samples", [])
            check(r.returncode == 0 and len(pts) >= 5,
                  "vigil history reads the samples back from PostgreSQL "
                  "(%d samples; %s)" % (len(pts), r.stderr[-300:]))
    finally:
        psql(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
