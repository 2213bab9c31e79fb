"""Helpers for vigil's integration tests: run the real binary, read its
output line by line with deadlines (never sleeps), and count checks."""

import os
import re
import selectors
import subprocess
import time

VIGIL = os.environ["VIGIL_BIN"]
PLUGINS = os.environ["VIGIL_PLUGIN_DIR"]
TEST_PLUGINS = os.environ["VIGIL_TEST_PLUGINS"]
SOURCE = os.environ["VIGIL_SOURCE_DIR"]
# One --print line: <unix_ms> <series> <value>
LINE = re.compile(r"^(\d{13}) ([A-Za-z_][A-Za-z0-9_.]*)(\{.*\})? (\S+)$")

failures = 0
passed = 0


def check(cond, what):
    """Count and print one assertion."""
    global failures, passed
    if not cond:
        failures += 1
        print("FAIL:", what)
    else:
        passed += 1
        print("ok:", what)


def poll(pred, deadline_s, pace=lambda: time.sleep(0.2)):
    """pred() until it returns a true value (returned) or deadline_s
    passes (None); pace() between tries sets the pace of the poll (it is
    not a synchronisation: the deadline is the functional bound)."""
    end = time.monotonic() + deadline_s
    while True:
        r = pred()
        if r or time.monotonic() > end:
            return r or None
        pace()


def write(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Daemon:
    """vigil run with --print, read line by line with a deadline."""

    def __init__(self, args, env=None):
        self.p = subprocess.Popen([VIGIL, "run"] + args, env=env,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ, "out")
        self.sel.register(self.p.stderr, selectors.EVENT_READ, "err")
        self.buf = {"out": b"", "err": b""}
        self.lines = {"out": [], "err": []}

    def pump(self, timeout):
        for key, _ in self.sel.select(timeout):
            data = os.read(key.fileobj.fileno(), 65536)
            if not data:
                self.sel.unregister(key.fileobj)
                continue
            self.buf[key.data] += data
            *done, self.buf[key.data] = self.buf[key.data].split(b"\n")
            self.lines[key.data] += [l.decode() for l in done]

    def wait_for(self, stream, pred, deadline_s):
        """Read until a line of stream satisfies pred; return it or None."""
        end = time.monotonic() + deadline_s
        seen = 0
        while time.monotonic() < end:
            for line in self.lines[stream][seen:]:
                if pred(line):
                    return line
            seen = len(self.lines[stream])
            if not self.sel.get_map():
                break
            self.pump(0.2)
        return None

    def finish(self, sig=None, timeout=10):
        if sig is not None:
            self.p.send_signal(sig)
        end = time.monotonic() + timeout
        while self.sel.get_map() and time.monotonic() < end:
            self.pump(0.2)
        try:
            return self.p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None




def summary():
    """Print the closing line and return the exit code."""
    print("%d passed, %d failed" % (passed, failures))
    return 1 if failures else 0
