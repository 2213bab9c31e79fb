#!/usr/bin/python3
"""The proc plugin against real processes.

A test child (Python) renames itself (comm), starts 5 extra threads, opens
7 files, listens on 127.0.0.1 and holds TCP connections in known states,
allocates and touches 64 MiB, writes a pidfile and then burns CPU. Its
TCP states, all in the child: the listener (LISTEN), one connection both
ends of which it holds (2 ESTABLISHED), one the server side closed first
while the client end stays open (CLOSE_WAIT; the orphaned server side,
FIN_WAIT2, is attributed to the listener), and one closed by both, the
server first (TIME_WAIT on the listening port, attributed to the
listener).

`vigil run --print 'proc.*'` watches it through five instances: pidfile,
cmdline regex, name, cgroup (when this test may create a cgroup v2), and
one whose selector matches nothing. Checked:
- exactly: threads (6), open fds (as /proc/PID/fd lists them), the fd
  limit, TCP connections by state, process count, for the group and the
  per-process series (labelled with the child's pid and name);
- within tolerance: RSS against VmRSS read by this test (and >= 64 MiB),
  CPU against the child's ticks over the same seconds;
- the instance that matches nothing: proc.up 0 and an error naming its
  selector, while the others keep proc.up 1;
- the child killed and started again: proc.group.restarts_total 1, the
  group back to 1 process, the daemon still running;
- run as nobody (when this test runs as root): another user's process
  gives one warning each for io and fd, and its other figures still come;
- SIGTERM: the daemon exits 0.

Never sleeps to synchronise: every wait is for a line, with a deadline.
Exits 77 (skip) without the binary or the plugin.
"""

import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
try:
    from vigiltest import PLUGINS, VIGIL, Daemon, check, summary, write  # noqa
except KeyError:
    print("skip: VIGIL_BIN / VIGIL_PLUGIN_DIR not set")
    sys.exit(77)

THREADS = 5
FILES = 7
MEM = 64 << 20
DEADLINE = 20.0
RSS_TOLERANCE = 4 << 20
CPU_TOLERANCE = 20.0  # points of % of one core

CHILD = r'''
import os, socket, sys, threading
token, comm, pidfile = sys.argv[1], sys.argv[2], sys.argv[3]
nthreads, nfiles, mem = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
with open("/proc/self/comm", "w") as f:
    f.write(comm)
stop = threading.Event()
for _ in range(nthreads):
    threading.Thread(target=stop.wait, daemon=True).start()
held = [open(os.devnull, "rb") for _ in range(nfiles)]
lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lst.bind(("127.0.0.1", 0))
lst.listen(8)
port = lst.getsockname()[1]
def pair():
    c = socket.create_connection(("127.0.0.1", port))
    s, _ = lst.accept()
    return c, s
c1, s1 = pair()
c2, s2 = pair()
s2.close()
assert c2.recv(1) == b""
c3, s3 = pair()
s3.close()
assert c3.recv(1) == b""
c3.close()
buf = bytearray(mem)
for i in range(0, mem, 4096):
    buf[i] = 1
tmp = pidfile + ".tmp"
with open(tmp, "w") as f:
    f.write("%d\n" % os.getpid())
os.rename(tmp, pidfile)
print("ready", port, flush=True)
x = 0
while True:
    x += 1
'''

LINE = re.compile(r"^(\d{13}) ([A-Za-z_][A-Za-z0-9_.]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(line):
    m = LINE.match(line)
    if not m:
        return None
    labels = dict(LABEL.findall(m.group(3))) if m.group(3) else {}
    return int(m.group(1)) / 1000.0, m.group(2), labels, float(m.group(4))


class Watch:
    """Samples from a Daemon, with waits that start at a given line."""

    def __init__(self, daemon):
        self.d = daemon
        self.mark = 0

    def here(self):
        return len(self.d.lines["out"])

    def wait(self, name, labels, pred=lambda v: True, since=None,
             deadline=DEADLINE):
        """The first sample at or after line `since` of series name with
        exactly these labels whose value satisfies pred, or None."""
        start = self.mark if since is None else since
        end = time.monotonic() + deadline
        i = start
        while True:
            lines = self.d.lines["out"]
            while i < len(lines):
                s = parse(lines[i])
                i += 1
                if s and s[1] == name and s[2] == labels and pred(s[3]):
                    return s
            if time.monotonic() >= end or not self.d.sel.get_map():
                return None
            self.d.pump(0.2)

    def values(self, name, labels, since=0):
        return [s for s in map(parse, self.d.lines["out"][since:])
                if s and s[1] == name and s[2] == labels]


def read_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] == "cgroup2":
                return pre.split()[4]
    return None


class Child:
    def __init__(self, tmp, token, comm, pidfile):
        script = os.path.join(tmp, "child.py")
        if not os.path.exists(script):
            write(tmp, "child.py", CHILD)
        self.p = subprocess.Popen(
            [sys.executable, script, token, comm, pidfile, str(THREADS),
             str(FILES), str(MEM)], stdout=subprocess.PIPE)
        self.pid = self.p.pid
        r, _, _ = select.select([self.p.stdout], [], [], 30)
        line = self.p.stdout.readline().decode() if r else ""
        self.ready = line.startswith("ready")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.p.stdout.close()


def check_child(w, inst, child, comm, since):
    """The exact figures of the child, in the group and per process."""
    g = {"instance": inst}
    p = {"instance": inst, "pid": str(child.pid), "name": comm}
    s = w.wait("proc.group.processes", g, lambda v: v == 1, since)
    check(s is not None, "%s: proc.group.processes 1" % inst)
    st = read_status(child.pid)
    check(int(st["Threads"]) == THREADS + 1,
          "the child runs %d threads (status says %s)" % (THREADS + 1,
                                                          st["Threads"]))
    fds = len(os.listdir("/proc/%d/fd" % child.pid))
    # stdio, the files, the listener, both ends of the established
    # connection and the client end in CLOSE_WAIT.
    check(fds >= 3 + FILES + 4, "the child holds at least %d fds (%d)"
          % (3 + FILES + 4, fds))
    want = {
        "proc.threads.count": THREADS + 1,
        "proc.fd.open": fds,
        "proc.fd.limit": nofile(child.pid),
    }
    for labels in (g, p):
        for name, v in want.items():
            s = w.wait(name, labels, since=since)
            check(s is not None and s[3] == v,
                  "%s%s = %s, expected %s" % (name, labels,
                                              s and s[3], v))
        for state, v in (("listen", 1), ("established", 2),
                         ("close_wait", 1), ("fin_wait2", 1),
                         ("time_wait", 1)):
            lab = dict(labels, state=state)
            s = w.wait("proc.tcp.connections", lab, since=since)
            check(s is not None and s[3] == v,
                  "proc.tcp.connections%s = %s, expected %d"
                  % (lab, s and s[3], v))
    s = w.wait("proc.mem.rss_bytes", p, since=since)
    rss = int(read_status(child.pid)["VmRSS"].split()[0]) * 1024
    check(s is not None and abs(s[3] - rss) <= RSS_TOLERANCE and
          s[3] >= MEM,
          "proc.mem.rss_bytes %s vs VmRSS %d (>= %d)" % (s and s[3], rss,
                                                        MEM))


def check_cpu(w, inst, child, comm):
    """CPU %, per process, against the child's ticks over the same
    seconds: three consecutive samples after a mark."""
    p = {"instance": inst, "pid": str(child.pid), "name": comm}
    first = w.wait("proc.cpu.total_pct", p, since=w.here())
    t0, c0 = time.time(), ticks(child.pid)
    got = []
    since = w.here()
    for _ in range(3):
        s = w.wait("proc.cpu.total_pct", p, since=since)
        if s is None:
            break
        got.append(s[3])
        since = w.here()
    t1, c1 = time.time(), ticks(child.pid)
    own = 100.0 * (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
    check(first is not None and len(got) == 3, "%s: proc.cpu.total_pct "
          "samples (%s)" % (inst, got))
    if got:
        mean = sum(got) / len(got)
        check(abs(mean - own) <= CPU_TOLERANCE and mean > 5.0,
              "%s: proc.cpu.total_pct mean %.1f vs %.1f from the child's "
              "ticks" % (inst, mean, own))
        for name in ("proc.cpu.user_pct", "proc.cpu.system_pct",
                     "proc.ctxsw.voluntary_per_s",
                     "proc.ctxsw.involuntary_per_s",
                     "proc.io.read_bytes_per_s",
                     "proc.io.logical_read_bytes_per_s"):
            s = w.wait(name, p, since=0, deadline=5)
            check(s is not None and s[3] >= 0, "%s%s present" % (name, p))


def as_nobody(tmp, pidfile, child, comm):
    """Another user's process: io and fd are EACCES, said once each."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        print("skip: not root or no setpriv: the EACCES case is not run")
        return
    os.chmod(tmp, 0o755)
    os.chmod(pidfile, 0o644)
    conf = write(tmp, "nobody.ini", "\n".join([
        "[vigil]", "plugin_dir = %s" % PLUGINS, "interval = 1s",
        "[plugin proc other]", "pidfile = %s" % pidfile, ""]))
    os.chmod(conf, 0o644)
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            VIGIL, "run", "-c", conf, "--print", "proc.*", "--for", "3500ms"]
    r = subprocess.run(argv, capture_output=True, timeout=60,
                       cwd="/")
    out, err = r.stdout.decode(), r.stderr.decode()
    check(r.returncode == 0, "as nobody: vigil exits 0 (%d): %s"
          % (r.returncode, err[-500:]))
    check(err.count("/io: permission denied") == 1,
          "as nobody: one warning for io: %r" % err[-1000:])
    check(err.count("/fd: permission denied") == 1,
          "as nobody: one warning for fd")
    p = '{instance="other",name="%s",pid="%d"}' % (comm, child.pid)
    check(("proc.threads.count%s %d" % (p, THREADS + 1)) in out,
          "as nobody: threads still published")
    check("proc.mem.rss_bytes%s" % p in out, "as nobody: RSS still published")
    check("proc.io." not in out and "proc.fd.open" not in out and
          "proc.tcp." not in out,
          "as nobody: no io, open-fd or tcp series")


def main():
    if not os.path.exists(os.path.join(PLUGINS, "proc.so")):
        print("skip: no proc.so in %s" % PLUGINS)
        return 77
    tmp = tempfile.mkdtemp(prefix="vigil-proc-")
    token = "t%08x" % random.getrandbits(32)
    comm = "vt%08x" % random.getrandbits(32)
    pidfile = os.path.join(tmp, "child.pid")
    cg = None
    cg2 = cgroup2_mount()
    children = []
    d = None
    try:
        if cg2 is not None and os.geteuid() == 0:
            try:
                cg = "/vigil-proc-%s" % token
                os.mkdir(cg2 + cg)
            except OSError as e:
                print("skip: cannot create a cgroup (%s): no cgroup check"
                      % e)
                cg = None
        conf = ["[vigil]", "plugin_dir = %s" % PLUGINS, "interval = 1s",
                "[plugin proc bypid]", "pidfile = %s" % pidfile,
                "[plugin proc byre]", "cmdline = child\\.py %s " % token,
                "[plugin proc byname]", "name = %s" % comm,
                "[plugin proc none]", "name = vigil-no-such-proc"]
        if cg is not None:
            conf += ["[plugin proc bycg]", "cgroup = %s" % cg]
        cfg = write(tmp, "vigil.ini", "\n".join(conf) + "\n")

        child = Child(tmp, token, comm, pidfile)
        children.append(child)
        check(child.ready, "the child is ready")
        if not child.ready:
            return summary()
        if cg is not None:
            with open(cg2 + cg + "/cgroup.procs", "w") as f:
                f.write(str(child.pid))

        d = Daemon(["-c", cfg, "--print", "proc.*"])
        w = Watch(d)
        insts = ["bypid", "byre", "byname"] + (["bycg"] if cg else [])
        # Two collections: rates exist from the second.
        s = w.wait("proc.cpu.total_pct", {"instance": "bypid"})
        check(s is not None, "a second collection within %.0f s" % DEADLINE)
        since = w.here()
        for inst in insts:
            check_child(w, inst, child, comm, since)
            s = w.wait("proc.up", {"instance": inst}, since=since)
            check(s is not None and s[3] == 1, "proc.up{instance=%s} 1"
                  % inst)
        check_cpu(w, "bypid", child, comm)

        # The selector that matches nothing.
        s = w.wait("proc.up", {"instance": "none"}, since=0)
        check(s is not None and s[3] == 0, "proc.up{instance=none} 0")
        s = w.wait("proc.group.processes", {"instance": "none"}, since=0)
        check(s is not None and s[3] == 0,
              "proc.group.processes{instance=none} 0")
        e = d.wait_for("err", lambda l: "instance=none" in l and
                       "name 'vigil-no-such-proc' matched nothing" in l, 10)
        check(e is not None, "an error names the selector that matched "
              "nothing: %s" % e)

        as_nobody(tmp, pidfile, child, comm)

        # Kill and start again: one restart, and the group comes back.
        child.kill()
        mark = w.here()
        child = Child(tmp, token, comm, pidfile)
        children.append(child)
        check(child.ready, "the second child is ready")
        if cg is not None:
            with open(cg2 + cg + "/cgroup.procs", "w") as f:
                f.write(str(child.pid))
        for inst in insts:
            s = w.wait("proc.group.restarts_total", {"instance": inst},
                       lambda v: v >= 1, since=mark)
            check(s is not None and s[3] == 1,
                  "%s: proc.group.restarts_total 1 after a restart (%s)"
                  % (inst, s and s[3]))
        since = w.here()
        s = w.wait("proc.threads.count", {"instance": "bypid",
                                          "pid": str(child.pid),
                                          "name": comm}, since=mark)
        check(s is not None and s[3] == THREADS + 1,
              "the new pid has its own series")
        s = w.wait("proc.up", {"instance": "bypid"}, lambda v: v == 1,
                   since=since)
        check(s is not None, "proc.up{instance=bypid} 1 after the restart")
        check(d.p.poll() is None, "the daemon keeps running")
        code = d.finish(signal.SIGTERM)
        check(code == 0, "vigil exits 0 on SIGTERM (%s)" % code)
        d = None
    finally:
        if d is not None:
            d.finish(signal.SIGKILL)
        for c in children:
            c.kill()
        if cg is not None:
            try:
                os.rmdir(cg2 + cg)
            except OSError as e:
                print("note: cannot remove %s: %s" % (cg2 + cg, e))
        shutil.rmtree(tmp, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
