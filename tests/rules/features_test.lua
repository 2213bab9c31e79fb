-- `vigil test` over every threshold feature (run by make test).
local test = require "vigil.test"

test.runbooks { "features.lua" }

test.case "above: strict levels" {
  input = { ["t.above"] = "50 51 200 201 10" },
  transitions = {
    { at = "10s", rule = "above", from = "ok", to = "warning" },
    { at = "30s", rule = "above", from = "warning", to = "critical" },
    { at = "40s", rule = "above", from = "critical", to = "ok" },
  },
}

test.case "below: lower is worse" {
  input = { ["t.hit_pct"] = "95 85 60 95" },
  transitions = {
    { at = "10s", rule = "below", to = "warning" },
    { at = "20s", rule = "below", to = "critical" },
    { at = "30s", rule = "below", to = "ok" },
  },
}

test.case "band: both sides" {
  input = { ["t.orders_per_s"] = "150 220 150 80 40 450 150" },
  transitions = {
    { at = "10s", rule = "band", to = "warning" },
    { at = "20s", rule = "band", to = "ok" },
    { at = "30s", rule = "band", to = "warning" },
    { at = "40s", rule = "band", to = "critical" },
    { at = "60s", rule = "band", to = "ok" },
  },
}

test.case "hold: entered only after 30s, reset by a dip" {
  input = { ["t.held"] = "20 20 20 5 20 20 20 20 20" },
  transitions = {
    { at = "1m10s", rule = "held", from = "ok", to = "critical" },
  },
}

test.case "hysteresis: stays until under clear for clear_hold" {
  input = { ["t.hyst"] = "60 45 45 45 35 35 35 35" },
  transitions = {
    { at = "0s", rule = "hysteresis", to = "warning" },
    { at = "1m0s", rule = "hysteresis", to = "ok" },
  },
}

test.case "nodata: a silent series, then back" {
  input = { ["t.silent"] = "0 0 _x8 0" },
  expect = {
    { at = "20s", rule = "silent", state = "ok" },
    { at = "1m20s", rule = "silent", state = "nodata" },
    { at = "1m50s", rule = "silent", state = "ok" },
  },
}

test.case "flapping: held after 3 changes in 2m" {
  input = { ["t.flap"] = "0 9 0 9 0 9 0 9 0" },
  expect = { { at = "1m20s", rule = "flappy", state = "warning" } },
  transitions = {
    { at = "10s", rule = "flappy", to = "warning" },
    { at = "20s", rule = "flappy", to = "ok" },
    { at = "30s", rule = "flappy", to = "warning" },
  },
}

test.case "per-series instances keep their own state" {
  input = {
    ["t.proc_cpu{name=api}"] = "10 95 95",
    ["t.proc_cpu{name=db}"] = "10 10 10",
  },
  expect = {
    { at = "20s", rule = "per_process", state = "critical",
      labels = { name = "api" } },
    { at = "20s", rule = "per_process", state = "ok",
      labels = { name = "db" } },
  },
}

test.case "p95 over a window" {
  interval = "5s",
  input = { ["t.latency"] = "100x10 500x2" },
  expect = {
    { at = "50s", rule = "p95", state = "ok" },
    { at = "60s", rule = "p95", state = "critical" },
  },
}

test.case "rate of a counter, across a reset" {
  input = { ["t.requests_total"] = "0+30x6 0+60x6" },
  expect = {
    { at = "50s", rule = "rate", state = "ok" },
    { at = "2m10s", rule = "rate", state = "warning" },
  },
}

test.case "condition over two metrics, with its hold" {
  input = {
    ["t.cpu"] = "80x12",
    ["t.latency"] = "100x5 300x6",
  },
  expect = {
    { at = "40s", rule = "cpu_and_latency", state = "ok" },
    { at = "1m50s", rule = "cpu_and_latency", state = "critical" },
  },
}

test.case "a schedule runs every minute on the virtual clock" {
  expect = {
    { at = "1m50s", rule = "minutes", state = "ok" },
    { at = "2m10s", rule = "minutes", state = "warning" },
  },
}
