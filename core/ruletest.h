/*
 * ruletest - `vigil test`: runbook unit tests on a virtual clock, as
 * `promtool test rules` does for Prometheus rules.
 *
 * A test file is Lua (`*_test.lua`) using `require "vigil.test"`:
 *
 *   local test = require "vigil.test"
 *   test.runbooks { "host.lua" }          -- relative to the test file
 *   test.case "cpu goes critical" {
 *     interval = "10s",                   -- time between input samples
 *     input = { ["sys.cpu.busy_pct{cpu=total}"] = "30x5 80x12 30x10" },
 *     expect = { { at = "3m", rule = "host_cpu", state = "critical" } },
 *     transitions = { { at = "1m", rule = "host_cpu", to = "critical" } },
 *   }
 *
 * Each case runs the runbooks on a fresh bus and engine. Input values use
 * promtool's notation: `a` one sample, `axn` n+1 samples of a, `a+bxn` and
 * `a-bxn` n+1 samples stepping by b, `_` one gap, `_xn` n gaps. Sample i is
 * at i * interval from time 0; the engine ticks every second of virtual
 * time (or every interval if shorter).
 *
 * Every failed assertion prints one line, `file:line: case 'name': ...`
 * (the line of the case), and the run ends with `N passed, N failed`.
 */
#ifndef VIGIL_RULETEST_H
#define VIGIL_RULETEST_H

#include <stdio.h>

/* Run the test files (or every *_test.lua below the directories) in
 * paths. script_path is used for `require` in runbooks. Reports to out.
 * Returns the process exit code: 0 all passed, 1 failures, 2 when a test
 * file could not be run at all. */
int rtest_run(const char *const *paths, size_t n, const char *script_path,
              FILE *out);

/* Parse promtool series notation. On success fills up to max values
 * (NaN for a gap) and returns their number; -1 with a message in err on
 * a syntax error. Exposed for unit tests. */
int rtest_parse_series(const char *text, double *values, int max, char *err,
                       size_t errsize);

#endif
