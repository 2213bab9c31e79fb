"""The drills' harness (tests/integration/drill_*.py): the genesis
simulator with its PostgreSQL, and `vigil run -c conf/genesis.ini`
pointed at it, then one fault switched on and off while the incident it
should cause is watched through vigil's HTTP API.

A drill gives its issue (the condition rule of rules/genesis/issues.lua),
the simulator's fault, the bounds it states for opening and resolving,
and a function that checks the open incident's evidence; Drill.run does
the rest, in stages:

  start     PostgreSQL (tests/pg/start.sh, pg_stat_statements loaded), a
            database "genesis", the simulator (Debian's /usr/bin/python3
            tests/sim/genesis_sim.py: --dsn, --sqlite, --log, --state,
            --statsd on a free port) until its ready JSON, then vigil with
            the shipped config and the drill levels
            (tests/drills/scripts/genesis/levels.lua) until every plugin
            is up
  baseline  the simulator healthy, the issue's rule evaluated with data,
            ok, and no incident of it open, for a whole hold
  fault on  tests/sim/simctl.py STATE fault NAME on; the incident opens
            within the drill's bound; its steps and recommendations are
            in; the drill checks them
  fault off the incident resolves within the drill's bound
  stop      vigil (SIGTERM: exit 0), the simulator (SIGTERM: exit 0),
            PostgreSQL: always, in a finally, whatever failed before

Nothing sleeps to synchronise: every wait is a poll of a condition with
a deadline (the poll's pace is the only pause). With --demo, each stage
is announced with the dashboard's address and, when stdin is a terminal,
waits for Enter before it starts.

Environment: VIGIL_BIN (ctest sets it; default build/vigil in the source
tree), PG_BIN (tests/pg/start.sh's), VIGIL_DRILL_KEEP=1 keeps the
temporary directory (logs, vigil's store) for a post-mortem.
"""

import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
# vigiltest reads these at import; a drill needs only the binary, which
# `make demo` and a person at a shell may not have exported.
os.environ.setdefault("VIGIL_BIN", os.path.join(SOURCE, "build", "vigil"))
for _var in ("VIGIL_PLUGIN_DIR", "VIGIL_TEST_PLUGINS", "VIGIL_SOURCE_DIR"):
    os.environ.setdefault(_var, "")
from vigiltest import check, summary  # noqa: E402,F401  (drills use check)
from vigiltest import poll as vt_poll  # noqa: E402

VIGIL = os.path.abspath(os.environ["VIGIL_BIN"])
CONF = os.path.join(SOURCE, "conf", "genesis.ini")
SIM = os.path.join(SOURCE, "tests", "sim")
PGDIR = os.path.join(SOURCE, "tests", "pg")
DRILL_SCRIPTS = os.path.join(SOURCE, "tests", "drills", "scripts")
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
# The simulator needs Debian's python3-aiohttp, -asyncpg, -websockets:
# Debian's interpreter, whatever python runs the drill.
SIM_PYTHON = "/usr/bin/python3"

# The drill levels' hold and clear hold (levels.lua: I.hold, I.clear_hold),
# the span a baseline must stay quiet.
HOLD_S = 5.0
POLL_S = 0.25


def note(text):
    """A line for the person reading the log (not a check)."""
    print("  " + text, flush=True)


def ere_escape(text):
    """text as a POSIX extended regular expression matching itself (for
    the proc plugin's cmdline and pgrep -f)."""
    return re.sub(r"([.\[\]()*+?{}|^$\\])",
                  lambda m: "[.]" if m[1] == "." else "\\" + m[1], text)


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (the statsd plugin
    listens on both). Another process may take it before vigil binds it;
    vigil then fails to start, which the drill reports."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port for StatsD")


def http(url, body=None, token=None, timeout=10):
    """(status, JSON or text) of a GET, or of a POST when body is given."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def poll(pred, deadline_s):
    """pred() until it returns a true value or deadline_s passes."""
    return vt_poll(pred, deadline_s, lambda: time.sleep(POLL_S))


def terminate(proc):
    """SIGTERM, then SIGKILL after 20 s; the exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def set_pdeathsig():
    """In a child before exec: SIGTERM it when the drill dies (ctest's
    timeout kills the drill, not what it started)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Drill:
    """One drill: see the module's comment. rule: the issue's condition
    (rules/genesis/issues.lua); fault: the simulator's; open_bound_s and
    resolve_bound_s: the bounds the drill states (from the fault's switch
    to the incident's open and resolved times); sim_args: more flags for
    the simulator; env: more environment for vigil."""

    def __init__(self, title, rule, fault, open_bound_s, resolve_bound_s,
                 sim_args=(), env=None):
        self.title, self.rule, self.fault = title, rule, fault
        self.open_bound_s, self.resolve_bound_s = open_bound_s, \
            resolve_bound_s
        self.sim_args = list(sim_args)
        self.extra_env = dict(env or {})
        self.demo = "--demo" in sys.argv[1:]
        self.interactive = self.demo and sys.stdin.isatty()
        self.tmp = tempfile.mkdtemp(prefix="vigil-drill-")
        self.pgstate = None
        self.sim = self.vigil = None
        self.ready = None
        self.api = None
        self.token = secrets.token_hex(16)
        self.times = {}
        self.t_start = time.monotonic()

    # ------------------------------------------------------------ stages

    def stage(self, text):
        print("== %s (%.0f s)" % (text, time.monotonic() - self.t_start),
              flush=True)
        if self.demo and self.api:
            print("   dashboard: %s/" % self.api, flush=True)
        if self.interactive:
            try:
                input("   press Enter to go on ")
            except EOFError:
                self.interactive = False

    def run(self, check_open, check_resolved=None, during=None):
        """The whole drill; returns the exit code. check_open(drill,
        incident) checks the open incident (its evidence in); during
        (drill, incident), when given, runs after it with the fault still
        on (a real remediation's effect); check_resolved(drill, incident)
        checks the incident once resolved."""
        print("drill: %s (%s, fault %s)" % (self.title, self.rule,
                                            self.fault), flush=True)
        try:
            self.stages(check_open, check_resolved, during)
        except KeyboardInterrupt:
            check(False, "the drill ran to its end (interrupted)")
        except Exception as e:  # a harness error is a failed check, then stop
            check(False, "the drill ran to its end (%r)" % e)
            raise
        finally:
            if self.api:
                self.leftovers()
                self.stage("stop")
            self.stop()
            self.report()
        return summary()

    def stages(self, check_open, check_resolved, during):
        self.start()
        if not self.api:
            return
        self.stage("baseline: the simulator healthy, no %s incident"
                   % self.rule)
        if not self.baseline():
            return
        self.stage("fault on: %s" % self.fault)
        inc = self.fault_on()
        if inc is None:
            return
        self.show(inc)
        check_open(self, inc)
        if during:
            during(self, inc)
        self.stage("fault off: %s" % self.fault)
        inc = self.fault_off(inc["incident"]["id"])
        if inc is not None and check_resolved:
            check_resolved(self, inc)

    # ------------------------------------------------------------- start

    def start(self):
        t0 = time.monotonic()
        # Its own directory under /tmp: the postgres user must reach it
        # (start.sh), and self.tmp is private to root.
        self.pgstate = tempfile.mkdtemp(prefix="vigil-drill-pg-")
        env = dict(os.environ, VIGIL_PG_OPTS="-c fsync=off")
        out = subprocess.run([os.path.join(PGDIR, "start.sh"), self.pgstate],
                             env=env, capture_output=True, text=True)
        check(out.returncode == 0, "PostgreSQL started (%s)"
              % (out.stdout.strip() or out.stderr.strip()))
        if out.returncode != 0:
            return
        with open(os.path.join(self.pgstate, "uri")) as f:
            admin = f.read().strip()
        out = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q",
                              "-v", "ON_ERROR_STOP=1", admin, "-c",
                              "CREATE DATABASE genesis"],
                             capture_output=True, text=True)
        check(out.returncode == 0,
              "database genesis created %s" % out.stderr.strip())
        dsn = admin.rsplit("/", 1)[0] + "/genesis"

        self.paths = {k: os.path.join(self.tmp, v) for k, v in (
            ("sqlite", "genesis.db"), ("log", "genesis.log"),
            ("state", "genesis.json"), ("vigil_db", "vigil.db"),
            ("vigil_log", "vigil.log"), ("sim_err", "sim.err"))}
        statsd = "127.0.0.1:%d" % free_port()
        argv = [SIM_PYTHON, os.path.join(SIM, "genesis_sim.py"),
                "--dsn", dsn, "--sqlite", self.paths["sqlite"],
                "--log", self.paths["log"], "--state", self.paths["state"],
                "--statsd", statsd] + self.sim_args
        with open(self.paths["sim_err"], "w") as err:
            self.sim = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                        stderr=err, text=True,
                                        preexec_fn=set_pdeathsig)
        sel = selectors.DefaultSelector()
        sel.register(self.sim.stdout, selectors.EVENT_READ)
        line = sel.select(30) and self.sim.stdout.readline()
        sel.close()
        try:
            self.ready = json.loads(line) if line else None
        except ValueError:
            self.ready = None
        check(self.ready is not None and self.ready["pid"] == self.sim.pid,
              "simulator ready: %s" % (line.strip() if line else
                                       self.tail(self.paths["sim_err"])))
        if not self.ready:
            return
        r = self.ready
        self.env = dict(
            os.environ,
            GENESIS_API=r["http"], GENESIS_FEED=r["feed"],
            EXCHANGE_REST=r["exchange"]["rest"],
            EXCHANGE_HOST=r["exchange"]["host"],
            EXCHANGE_PORT=str(r["exchange"]["port"]),
            EXCHANGE_WS=r["exchange"]["ws"], GENESIS_DSN=dsn,
            GENESIS_SQLITE=self.paths["sqlite"],
            GENESIS_LOG=self.paths["log"], GENESIS_STATSD=statsd,
            # This simulator and nothing else (not vigil, whose command
            # line names conf/genesis.ini; not another drill's simulator).
            GENESIS_CMDLINE="genesis_sim[.]py .*--state " +
            ere_escape(self.paths["state"]),
            GENESIS_VIGIL_DB=self.paths["vigil_db"],
            GENESIS_VIGIL_PORT="0",  # any free port: read from the log
            GENESIS_ACTIONS="dry-run", GENESIS_SCRIPTS=DRILL_SCRIPTS,
            VIGIL_HTTP_TOKEN=self.token)
        self.env.update(self.extra_env)
        self.vigil_log = open(self.paths["vigil_log"], "w+")
        self.vigil = subprocess.Popen([VIGIL, "run", "-c", CONF],
                                      env=self.env, cwd=self.tmp,
                                      stdout=self.vigil_log,
                                      stderr=subprocess.STDOUT,
                                      preexec_fn=set_pdeathsig)
        m = poll(lambda: self.vigil.poll() is None and re.search(
            r"dashboard at (http://[0-9.]+:[0-9]+)/",
            self.read(self.paths["vigil_log"])), 20)
        check(m is not None, "vigil run -c conf/genesis.ini: %s" % (
            m and m[0] or self.tail(self.paths["vigil_log"])))
        if not m:
            return
        self.api = m[1]
        print("   dashboard: %s/   (actions %s; token for POSTs: %s)"
              % (self.api, self.env["GENESIS_ACTIONS"], self.token),
              flush=True)

        def plugins_up():
            status, body = http(self.api + "/api/v1/plugins")
            if status != 200:
                return None
            # The webhook plugin collects nothing: its health stays
            # "unknown"; it is there when its actions are registered.
            plugins = body.get("plugins", [])
            down = [p.get("instance") or p.get("plugin") for p in plugins
                    if p.get("health") != "up" and p["plugin"] != "webhook"]
            return len(plugins) == 13 and not down and plugins
        up = poll(plugins_up, 30)
        if not up:
            status, body = http(self.api + "/api/v1/plugins")
            note("plugins: %s" % json.dumps(body)[:2000])
        check(up, "the 13 plugin instances of conf/genesis.ini up (sys, "
              "proc, statsd, 3 http, tcp, 2 ws, pg, sqlite, log; webhook "
              "loaded), %.1f s after the start" % (time.monotonic() - t0))

    # ---------------------------------------------------------- baseline

    def baseline(self):
        healthy = poll(lambda: http(self.ready["http"] + "/health")[0] == 200,
                       20)
        check(healthy, "simulator healthy (GET /health: 200)")
        quiet_since = [None]

        def quiet():
            inst = self.rule_instance()
            ok = (inst is not None and inst.get("state") == "ok" and
                  inst.get("value") is not None and
                  self.open_incident() is None)
            now = time.monotonic()
            if not ok:
                quiet_since[0] = None
                return None
            quiet_since[0] = quiet_since[0] or now
            return now - quiet_since[0] >= HOLD_S and inst
        inst = poll(quiet, 60)
        check(inst, "baseline: %s evaluated (value %s), ok and no incident "
              "of it open for %.0f s" % (self.rule, inst and
                                         round(inst["value"], 3), HOLD_S))
        return bool(inst)

    # --------------------------------------------------------- the fault

    def simctl(self, *args):
        out = subprocess.run([SIM_PYTHON, os.path.join(SIM, "simctl.py"),
                              self.paths["state"]] + list(args),
                             capture_output=True, text=True, timeout=30)
        return out.returncode, out.stdout.strip()

    def switch(self, on):
        word = "on" if on else "off"
        note("tests/sim/simctl.py %s fault %s %s" % (self.paths["state"],
                                                    self.fault, word))
        t = time.time()
        rc, out = self.simctl("fault", self.fault, word)
        try:
            answer = json.loads(out)
        except ValueError:
            answer = {}
        check(rc == 0 and answer == {"fault": self.fault, "on": on},
              "fault %s switched %s (%s)" % (self.fault, word, out))
        return t

    def fault_on(self):
        self.t_on = self.switch(True)
        inc = poll(self.open_incident, self.open_bound_s + 5)
        opened = inc and inc["opened_ns"] / 1e9 - self.t_on
        self.times["open"] = opened
        check(inc is not None and opened <= self.open_bound_s,
              "incident %s opened %s s after the fault (bound %d s)"
              % (self.rule, opened and round(opened, 1), self.open_bound_s))
        if inc is None:
            return None
        note("incident %d: %s (%s)" % (inc["id"], inc["title"],
                                       inc["state"]))
        # The steps run one after the other, then the recommendations
        # (every genesis issue runbook has them), then the actions.
        full = poll(lambda: (lambda d: d and "recommendations" in
                             self.names(d) and d)(self.incident(inc["id"])),
                    60)
        check(full is not None, "incident %d: every step done, with its "
              "recommendations" % inc["id"])
        return full

    def fault_off(self, inc_id):
        self.t_off = self.switch(False)

        def resolved():
            d = self.incident(inc_id)
            return d and not d["incident"]["open"] and d
        d = poll(resolved, self.resolve_bound_s + 10)
        took = d and d["incident"]["resolved_ns"] / 1e9 - self.t_off
        self.times["resolve"] = took
        check(d is not None and took <= self.resolve_bound_s,
              "incident %d resolved %s s after the fault went off (bound "
              "%d s)" % (inc_id, took and round(took, 1),
                         self.resolve_bound_s))
        return d

    # -------------------------------------------------------------- read

    def get(self, path):
        status, body = http(self.api + path)
        return body if status == 200 else None

    def rule_instance(self):
        rules = self.get("/api/v1/rules")
        for r in (rules or {}).get("rules", []):
            if r["name"] == self.rule and r.get("instances"):
                return r["instances"][0]
        return None

    def open_incident(self):
        body = self.get("/api/v1/incidents?open=1")
        for inc in (body or {}).get("incidents", []):
            if inc["rule"] == self.rule:
                return inc
        return None

    def incident(self, inc_id):
        return self.get("/api/v1/incidents/%d" % inc_id)

    @staticmethod
    def names(inc):
        return [e["name"] for e in inc.get("evidence", [])]

    @staticmethod
    def evidence(inc, name, nth=0):
        """The output of the nth step called name, or None."""
        found = [e for e in inc.get("evidence", []) if e["name"] == name]
        return found[nth] if len(found) > nth else None

    def step_ok(self, inc, name, what, nth=0):
        """Check that step name ran with status ok; returns its output."""
        e = self.evidence(inc, name, nth)
        check(e is not None and e["status"] == "ok",
              "evidence %s: %s (%s)" % (name, what, e and e["status"]))
        return e["output"] if e and e["status"] == "ok" else None

    def recommendations(self, inc):
        e = self.evidence(inc, "recommendations")
        return e["output"] if e and isinstance(e["output"], list) else []

    def query(self, selector, stat="last", window="10s"):
        """The values of a statistic over the series a selector matches,
        from vigil's API: {series: value}."""
        q = urllib.request.quote
        body = self.get("/api/v1/query?match=%s&stat=%s&window=%s"
                        % (q(selector), stat, window))
        return {s["series"]: s["value"] for s in (body or {}).get(
            "series", [])}

    def actions(self, inc_id, name=None, deadline_s=10):
        """The incident's action records (of one action), once one is
        there and none is pending, or [] at the deadline."""
        def decided():
            d = self.incident(inc_id)
            acts = [a for a in (d or {}).get("actions", [])
                    if name is None or a["name"] == name]
            return acts and all(a["result"] != "pending" for a in acts) \
                and acts
        return poll(decided, deadline_s) or []

    def log_has(self, inc, pattern, what):
        """Check that log.recent's matches hold a traceback whose lines
        match pattern (a regex over the match and its context)."""
        out = self.step_ok(inc, "log.recent", "the service's recent errors")
        texts = []
        for m in (out or {}).get("matches", []):
            texts.append("\n".join(m.get("before", []) + [m["line"]] +
                                   m.get("after", [])))
        hit = [t for t in texts if re.search(pattern, t, re.M | re.S)]
        check(hit, "log.recent: %s" % what)
        return hit[0] if hit else None

    # -------------------------------------------------------------- show

    def show(self, inc):
        """The incident as a person would read it: steps, recommendations,
        actions."""
        i = inc["incident"]
        note("incident %d %s, %s, value %s" % (
            i["id"], i["rule"], i["state"],
            inc["transitions"][-1].get("value") if inc.get("transitions")
            else None))
        for e in inc.get("evidence", []):
            if e["name"] == "recommendations":
                continue
            note("  step %-20s %-10s %s" % (e["name"], e["status"],
                                            json.dumps(e["output"])[:100]))
        for r in self.recommendations(inc):
            note("  recommends: %s" % r.replace("\n", " ")[:160])
        if self.interactive or self.demo:
            note("report: %s/api/v1/incidents/%d?format=md"
                 % (self.api, i["id"]))

    def leftovers(self):
        """Say which incidents are still open (other rules' too): what a
        person would see on the dashboard before it stops."""
        body = self.get("/api/v1/incidents?open=1") or {}
        left = ["#%d %s %s" % (i["id"], i["rule"], i["state"])
                for i in body.get("incidents", [])]
        note("incidents still open: %s" % (", ".join(left) or "none"))

    def report(self):
        print("drill %s: opened %s s after the fault (bound %d s), "
              "resolved %s s after it went off (bound %d s); %.0f s in all"
              % (self.rule, self.fmt(self.times.get("open")),
                 self.open_bound_s, self.fmt(self.times.get("resolve")),
                 self.resolve_bound_s, time.monotonic() - self.t_start),
              flush=True)

    @staticmethod
    def fmt(x):
        return "%.1f" % x if isinstance(x, (int, float)) else "-"

    @staticmethod
    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, path, n=15):
        return "\n".join(self.read(path).rstrip().split("\n")[-n:])

    # -------------------------------------------------------------- stop

    def stop(self):
        if self.vigil is not None:
            code = terminate(self.vigil)
            check(code == 0, "vigil: SIGTERM, exit %s" % code)
            if code != 0:
                print(self.tail(self.paths["vigil_log"], 30))
            self.vigil_log.close()
        if self.sim is not None:
            code = terminate(self.sim)
            self.sim.stdout.close()
            check(code == 0, "simulator: SIGTERM, exit %s" % code)
            if code != 0:
                print(self.tail(self.paths["sim_err"]))
        if self.pgstate is not None:
            pid = self.read(os.path.join(self.pgstate, "pid")).strip()
            subprocess.run([os.path.join(PGDIR, "stop.sh"), self.pgstate])
            gone = not pid or not os.path.exists("/proc/" + pid)
            check(gone, "PostgreSQL stopped (pid %s)" % pid)
        if os.environ.get("VIGIL_DRILL_KEEP"):
            print("kept:", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
