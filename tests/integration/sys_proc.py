#!/usr/bin/python3
"""The sys plugin against the real /proc.

Runs `vigil run -c CONFIG --print 'sys.*' --for 4s` with only the sys
plugin, every second, while a child process burns one CPU so that the
CPU figures are not trivially zero. Meanwhile a thread samples /proc every
50 ms. Each published sample carries the wall-clock time the core gave it,
so it is compared with what /proc said at that moment (the nearest
sample), whatever buffering sits between the daemon and this test.

Checks: sys.mem.total_bytes is MemTotal * 1024 exactly;
sys.mem.available_bytes is within 5 % or 64 MiB of MemAvailable;
sys.cpu.busy_pct{cpu="total"} is within 15 points of the busy share this
test computes from /proc/stat over the same interval; there is one set of
per-CPU series per online CPU; sys.load.avg1 is within 0.5 of
/proc/loadavg; every *_pct is within [0, 100] and every rate or byte count
finite and non-negative; sys.up is 1; the daemon exits 0.

Environment (set by ctest): VIGIL_BIN, VIGIL_PLUGIN_DIR. Exits 77 (skip)
when they are missing or this is not Linux.
"""

import math
import os
import re
import selectors
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
RUN_FOR = "4s"
DEADLINE_S = 60.0  # overall, for the daemon to finish and exit
SAMPLE_PERIOD_S = 0.05
NEAREST_MAX_S = 0.25  # a /proc sample this close counts as "same moment"

CPU_TOLERANCE = 15.0  # points of busy_pct
LOAD_TOLERANCE = 0.5
MEM_TOLERANCE_PCT = 5.0
MEM_TOLERANCE_BYTES = 64 << 20

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
KEY_RE = re.compile(r"^([^{}]+)(?:\{(.*)\})?$")
LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def read_proc():
    """One consistent-enough look at /proc: cpu ticks, memory, load."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    assert fields[0] == "cpu", fields
    ticks = [int(x) for x in fields[1:]]
    mem = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                mem[key] = int(rest.split()[0]) * 1024
    with open("/proc/loadavg") as f:
        load1 = float(f.read().split()[0])
    return {
        "t": time.time(),
        "ticks": ticks,
        "mem_total": mem["MemTotal"],
        "mem_available": mem["MemAvailable"],
        "load1": load1,
    }


class Sampler(threading.Thread):
    """Reads /proc every SAMPLE_PERIOD_S until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            while True:
                self.samples.append(read_proc())
                if self.stop.wait(SAMPLE_PERIOD_S):
                    break
            self.samples.append(read_proc())
        except Exception as e:  # reported by the main thread
            self.error = e

    def nearest(self, t):
        """The sample closest to wall-clock time t (s), or None."""
        best = min(self.samples, key=lambda s: abs(s["t"] - t), default=None)
        if best is None or abs(best["t"] - t) > NEAREST_MAX_S:
            return None
        return best


def busy_pct(a, b):
    """busy share between two /proc/stat cpu lines, as the plugin defines
    it: the first eight fields are the accounted time (guest is already in
    user), busy = total - idle - iowait."""
    d = [y - x for x, y in zip(a["ticks"][:8], b["ticks"][:8])]
    total = sum(d)
    if total <= 0:
        return None
    return 100.0 * (total - d[3] - d[4]) / total


def parse_key(key):
    m = KEY_RE.match(key)
    if not m:
        return None, None
    labels = {}
    text = m.group(2)
    if text is not None:
        pos = 0
        while pos < len(text):
            lm = LABEL_RE.match(text, pos)
            if not lm:
                return None, None
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
    return m.group(1), labels


def run_daemon(vigil, cfg, errpath):
    """Run the daemon; return (exit code or None on timeout, lines)."""
    argv = [vigil, "run", "-c", cfg, "--print", "sys.*", "--for", RUN_FOR]
    lines = []
    with open(errpath, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + DEADLINE_S
    pending = b""
    eof = False
    while not eof:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for _key, _ev in sel.select(timeout=left):
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                eof = True
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            lines.extend(x.decode("utf-8", "replace") for x in complete)
    sel.close()
    if not eof:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        return None, lines
    if pending:
        lines.append(pending.decode("utf-8", "replace"))
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    proc.stdout.close()
    return code, lines


def main():
    vigil = os.environ.get("VIGIL_BIN", "")
    plugin_dir = os.environ.get("VIGIL_PLUGIN_DIR", "")
    if not vigil or not os.access(vigil, os.X_OK):
        print(f"skip: VIGIL_BIN ({vigil!r}) is not an executable")
        return SKIP
    if not os.path.exists(os.path.join(plugin_dir, "sys.so")):
        print(f"skip: no sys.so in VIGIL_PLUGIN_DIR ({plugin_dir!r})")
        return SKIP
    if not os.path.exists("/proc/stat"):
        print("skip: no /proc/stat")
        return SKIP

    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
        return ok

    with tempfile.TemporaryDirectory(prefix="vigil-sys-") as tmp:
        cfg = os.path.join(tmp, "vigil.ini")
        with open(cfg, "w") as f:
            f.write(
                "[vigil]\n"
                f"plugin_dir = {plugin_dir}\n"
                "interval = 1s\n"
                "[plugin sys]\n"
            )
        errpath = os.path.join(tmp, "stderr")

        sampler = Sampler()
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            sampler.start()
            code, lines = run_daemon(vigil, cfg, errpath)
        finally:
            burner.kill()
            burner.wait()
            sampler.stop.set()
            sampler.join()
        with open(errpath, "rb") as f:
            stderr = f.read().decode("utf-8", "replace")

    if sampler.error is not None:
        print(f"FAIL: reading /proc: {sampler.error!r}")
        return 1
    check(code is not None, f"vigil did not finish within {DEADLINE_S} s")
    check(code in (None, 0), f"vigil exited with {code}")

    # name -> list of (unix s, labels, value)
    series = {}
    for line in lines:
        if not line.strip():
            continue
        ts, _, rest = line.partition(" ")
        key, _, val = rest.rpartition(" ")
        name, labels = parse_key(key)
        try:
            t = int(ts) / 1000.0
            v = float(val)
        except ValueError:
            t = None
        if not check(t is not None and name is not None,
                     f"unparsable line: {line!r}"):
            continue
        check(name.startswith("sys."), f"not selected by sys.*: {line!r}")
        check(NAME_RE.match(name) is not None, f"bad name: {line!r}")
        series.setdefault(name, []).append((t, labels, v))

    def values(name, **labels):
        return [(t, v) for t, lab, v in series.get(name, [])
                if all(lab.get(k) == x for k, x in labels.items())]

    # The core's own series for the plugin.
    up = values("sys.up")
    check(len(up) > 0, "no sys.up")
    check(all(v == 1 for _, v in up), f"sys.up not 1: {up}")
    check(len(values("sys.collect_ms")) > 0, "no sys.collect_ms")

    # Everything that must be there on any Linux machine.
    for name in ("sys.load.avg1", "sys.load.avg5", "sys.load.avg15",
                 "sys.procs.running", "sys.procs.count",
                 "sys.mem.total_bytes", "sys.mem.available_bytes",
                 "sys.mem.used_bytes", "sys.mem.used_pct",
                 "sys.mem.cached_bytes", "sys.swap.total_bytes",
                 "sys.swap.used_bytes", "sys.swap.used_pct"):
        check(name in series, f"no {name}")
    for m in ("user", "nice", "system", "iowait", "irq", "steal", "idle",
              "busy"):
        check(len(values(f"sys.cpu.{m}_pct", cpu="total")) > 0,
              f'no sys.cpu.{m}_pct{{cpu="total"}}')
    try:
        with open("/proc/pressure/cpu") as f:
            f.read()
        check("sys.pressure.cpu_some_pct" in series,
              "PSI is readable but sys.pressure.cpu_some_pct is missing")
    except OSError:
        check(not any(n.startswith("sys.pressure.") for n in series),
              "PSI is not readable but sys.pressure.* was published")

    # Ranges.
    for name, samples in series.items():
        for t, labels, v in samples:
            check(math.isfinite(v), f"{name}{labels} = {v}")
            if name.endswith("_pct"):
                check(0.0 <= v <= 100.0, f"{name}{labels} = {v}")
            if name.endswith(("_per_s", "_bytes", "_ms")):
                check(v >= 0.0, f"{name}{labels} = {v}")

    # Memory, against /proc at the same moment.
    for t, v in values("sys.mem.total_bytes"):
        s = sampler.nearest(t)
        if check(s is not None, f"no /proc sample near {t}"):
            check(v == s["mem_total"],
                  f"sys.mem.total_bytes {v} != MemTotal*1024 "
                  f"{s['mem_total']}")
    for t, v in values("sys.mem.available_bytes"):
        s = sampler.nearest(t)
        if s is None:
            continue
        tol = max(s["mem_available"] * MEM_TOLERANCE_PCT / 100,
                  MEM_TOLERANCE_BYTES)
        check(abs(v - s["mem_available"]) <= tol,
              f"sys.mem.available_bytes {v} vs MemAvailable "
              f"{s['mem_available']}")

    # Load.
    for t, v in values("sys.load.avg1"):
        s = sampler.nearest(t)
        if s is not None:
            check(abs(v - s["load1"]) <= LOAD_TOLERANCE,
                  f"sys.load.avg1 {v} vs /proc/loadavg {s['load1']}")

    # CPU: each busy sample covers the time since the previous
    # collection; every collection publishes sys.mem.total_bytes.
    marks = sorted(t for t, _ in values("sys.mem.total_bytes"))
    compared = 0
    worst = 0.0
    busy = values("sys.cpu.busy_pct", cpu="total")
    check(len(busy) >= 1, "no sys.cpu.busy_pct{cpu=\"total\"}: "
          "the run was too short for two collections?")
    for t, v in busy:
        before = [m for m in marks if m < t - 0.5]
        if not before:
            continue
        a, b = sampler.nearest(before[-1]), sampler.nearest(t)
        if a is None or b is None:
            continue
        want = busy_pct(a, b)
        if want is None:
            continue
        compared += 1
        worst = max(worst, abs(v - want))
        check(abs(v - want) <= CPU_TOLERANCE,
              f'sys.cpu.busy_pct{{cpu="total"}} {v:.1f} vs /proc/stat '
              f"{want:.1f} over the same second")
    check(compared >= 1, "no busy_pct sample could be compared with /proc")

    # One set of per-CPU series per online CPU.
    ncpu = os.cpu_count()
    for m in ("user", "nice", "system", "iowait", "irq", "steal", "idle",
              "busy"):
        cpus = {lab.get("cpu") for _, lab, _ in
                series.get(f"sys.cpu.{m}_pct", [])} - {"total", None}
        check(len(cpus) == ncpu,
              f"sys.cpu.{m}_pct: {len(cpus)} per-CPU series, "
              f"os.cpu_count() = {ncpu}")
        check(cpus <= {str(i) for i in range(4096)},
              f"sys.cpu.{m}_pct: odd cpu labels {sorted(cpus)}")

    if failures:
        for f in failures[:50]:
            print(f"FAIL: {f}")
        if len(failures) > 50:
            print(f"... and {len(failures) - 50} more")
        print(f"--- vigil exit {code}, {len(lines)} lines; stderr:")
        print(stderr[-4000:])
        return 1
    print(f"ok: {len(lines)} samples, {len(series)} metrics, {ncpu} CPUs, "
          f"{compared} busy_pct comparisons (worst {worst:.1f} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
