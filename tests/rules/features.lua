-- Every threshold feature in one runbook, for features_test.lua.
local vigil = require "vigil"

vigil.threshold "above" { metric = "t.above", warn = 50, crit = 200 }

vigil.threshold "below" {
  metric = "t.hit_pct", direction = "below", warn = 90, crit = 70,
}

vigil.threshold "band" {
  metric = "t.orders_per_s", warn = {100, 200}, crit = {50, 400},
}

vigil.threshold "held" { metric = "t.held", crit = 10, hold = "30s" }

vigil.threshold "hysteresis" {
  metric = "t.hyst", warn = 50, clear = 40, clear_hold = "20s",
}

vigil.threshold "silent" { metric = "t.silent", warn = 1, nodata = "1m" }

vigil.threshold "flappy" {
  metric = "t.flap", warn = 5, flap = { count = 3, window = "2m" },
}

vigil.threshold "per_process" { metric = "t.proc_cpu{name=*}", crit = 90 }

vigil.threshold "p95" {
  metric = "t.latency", stat = "p95", window = "1m", crit = 200,
}

vigil.threshold "rate" {
  metric = "t.requests_total", stat = "rate", window = "1m", warn = 5,
}

-- A condition over two metrics, as the guide's "CPU > 70 % and order
-- latency p95 > 200 ms".
vigil.condition "cpu_and_latency" {
  every = "10s", hold = "20s",
  when = function()
    local cpu = vigil.value("t.cpu", "avg", "30s")
    local lat = vigil.value("t.latency", "p95", "1m")
    return cpu ~= nil and lat ~= nil and cpu > 70 and lat > 200
  end,
}

-- A schedule that counts, and a condition that reads the count: both run
-- on the engine's clock.
local ticks = 0
vigil.every("1m", function() ticks = ticks + 1 end)
vigil.condition "minutes" {
  every = "10s",
  when = function()
    if ticks >= 3 then return "warning", ticks end
    return "ok", ticks
  end,
}
