#!/usr/bin/python3
"""vigil investigate: a runbook's steps run now, stored and reported.

A config with the sys and proc plugins and a rules directory holding one
runbook whose steps are a snapshot, an exec of a script found with
vigil.script (an operator's copy, first on [rules] scripts, shadows the
shipped one) and proc.top. `vigil investigate look` prints the report with
every step's evidence, stores it as an incident of the rule `investigate`
that `vigil incidents show` reads back, and runs no action. An unknown
runbook exits 1 and lists the loaded ones. The shipped genesis checklists
load (`vigil check`) against the genesis levels.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
SKIP = 77
try:
    import vigiltest as vt
except KeyError as e:
    print(f"skip: {e} not set (run through ctest)")
    sys.exit(SKIP)

RUNBOOK = """
local vigil = require "vigil"

vigil.runbook "look" {
  title = "Look around",
  immediate = {
    vigil.step "snapshot" { series = { "sys.load.*" }, window = "1m" },
    vigil.step "exec" { argv = { vigil.script "investigate/hello.sh" } },
  },
  deep = { vigil.step "proc.top" { by = "cpu", limit = 3 } },
  recommend = function(incident)
    local load = incident.evidence.snapshot["sys.load.avg1"]
    return { "Look at the load: " .. string.format("%.2f", load.last),
             "The script exited with " .. incident.evidence.exec.exit_code }
  end,
  remediate = {
    vigil.action "never" { exec = { "/bin/false" }, mode = "on",
                           on = "warning" },
  },
}
"""


def run(*args):
    return subprocess.run([vt.VIGIL, *args], capture_output=True, text=True,
                          timeout=120)


def main():
    check = vt.check
    with tempfile.TemporaryDirectory(prefix="vigil-inv-") as tmp:
        rules = os.path.join(tmp, "rules")
        mine = os.path.join(tmp, "scripts", "investigate")
        os.makedirs(rules)
        os.makedirs(mine)
        vt.write(rules, "look.lua", RUNBOOK)
        script = vt.write(mine, "hello.sh",
                          "#!/bin/sh\necho \"hello from $VIGIL_RULE\"\n")
        os.chmod(script, 0o755)
        conf = vt.write(tmp, "vigil.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
interval = 250ms

[plugin sys]
[plugin proc]
pidfile = {vt.write(tmp, "me.pid", str(os.getpid()))}

[rules]
dir = rules
scripts = scripts

[store]
path = vigil.db

[actions]
mode = on
""")
        r = run("investigate", "look", "-c", conf, "--after", "700ms")
        out = r.stdout
        check(r.returncode == 0 and "level=error" not in r.stderr,
              f"exit 0, no error (rc {r.returncode}, "
              f"stderr {r.stderr[-300:]!r})")
        check(out.startswith("# Incident ") and "Look around" in out,
              f"a Markdown report titled with the runbook: {out[:80]!r}")
        check("- **Rule**: investigate\n" in out, "rule: investigate")
        for i, step in enumerate(("snapshot (immediate): ok",
                                  "exec (immediate): ok",
                                  "proc.top (deep): ok"), 1):
            check(f"### {i}. {step}" in out, f"step {i}: {step}")
        check("sys.load.avg1" in out, "the snapshot has data: the plugins "
              "collected before the steps ran")
        check("hello from investigate" in out,
              "the operator's script ran (found on [rules] scripts)")
        check("never" not in out.split("## Actions")[-1],
              "no action was considered")
        rec = out.split("## Recommendations")[-1].split("## Evidence")[0]
        check("## Recommendations" in out and
              "- Look at the load: " in rec and
              "- The script exited with 0" in rec,
              f"the runbook's recommendations, from the evidence: {rec!r}")

        r = run("incidents", "list", "--json", "-c", conf)
        rows = json.loads(r.stdout) if r.returncode == 0 else []
        rows = rows.get("incidents", rows) if isinstance(rows, dict) else rows
        check(len(rows) == 1 and rows[0]["rule"] == "investigate" and
              not rows[0]["open"], f"stored, resolved: {r.stdout[:300]!r}")
        if rows:
            r = run("incidents", "show", str(rows[0]["id"]), "--json", "-c",
                    conf)
            inc = json.loads(r.stdout) if r.returncode == 0 else {}
            ev = inc.get("evidence", [])
            check([e["name"] for e in ev] ==
                  ["snapshot", "exec", "proc.top", "recommendations"],
                  f"the evidence, read back: {[e.get('name') for e in ev]}")

        r = run("investigate", "nope", "-c", conf, "--after", "100ms")
        check(r.returncode == 1 and "no runbook 'nope'" in r.stderr and
              "look" in r.stderr and "Look around" in r.stderr,
              f"an unknown runbook: rc 1, the loaded ones listed: "
              f"{r.stderr[-300:]!r}")
        r = run("investigate", "-c", conf)
        check(r.returncode == 2 and "usage" in r.stderr,
              f"no runbook named: usage, rc 2 ({r.returncode})")

        # The shipped genesis pack loads: its levels, its checklists and
        # the scripts they name.
        gconf = vt.write(tmp, "genesis-rules.ini", f"""
[vigil]
plugin_dir = {vt.PLUGINS}
[plugin webhook]
[rules]
dir = {os.path.join(vt.SOURCE, "rules", "genesis")}
[store]
path = g.db
""")
        r = run("check", "-c", gconf)
        check(r.returncode == 0, f"vigil check: the genesis runbooks load: "
              f"{r.stdout[-200:]!r} {r.stderr[-400:]!r}")
    return vt.summary()


if __name__ == "__main__":
    sys.exit(main())
