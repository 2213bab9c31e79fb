-- Tests for host.lua: `vigil test rules` runs them.
local test = require "vigil.test"

test.runbooks { "host.lua" }

test.case "CPU: warning, then critical, each after its hold" {
  interval = "10s",
  input = { ["sys.cpu.busy_pct{cpu=total}"] = "30x11 55x11 90x17" },
  expect = {
    { at = "1m50s", rule = "host_cpu", state = "ok" },
    { at = "4m", rule = "host_cpu", state = "warning" },
    { at = "6m", rule = "host_cpu", state = "critical" },
  },
}

test.case "CPU: hysteresis keeps warning until under 35 for a minute" {
  interval = "10s",
  input = { ["sys.cpu.busy_pct{cpu=total}"] = "50x17 38x17 20x17" },
  expect = {
    { at = "2m40s", rule = "host_cpu", state = "warning" },
    { at = "5m30s", rule = "host_cpu", state = "warning" },
    { at = "8m30s", rule = "host_cpu", state = "ok" },
  },
}

test.case "CPU: a short spike does not outlast the hold" {
  interval = "10s",
  input = { ["sys.cpu.busy_pct{cpu=total}"] = "30x11 55x3 30x20" },
  transitions = {},
}

test.case "I/O wait goes critical" {
  interval = "10s",
  input = { ["sys.cpu.iowait_pct{cpu=total}"] = "1x11 40x20" },
  expect = { { at = "5m", rule = "host_iowait", state = "critical" } },
}

test.case "loop lag: silence becomes nodata" {
  interval = "10s",
  input = { ["vigil.loop.lag_ms"] = "1x5" },
  expect = {
    { at = "40s", rule = "vigil_loop_lag", state = "ok" },
    { at = "6m", rule = "vigil_loop_lag", state = "nodata" },
  },
}
