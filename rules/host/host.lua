-- host.lua: this machine against the guide's baseline table (CPU usage,
-- disk I/O wait) and vigil's own health. The levels are the guide's:
-- CPU 20-40 % baseline, 40-70 % warning, above 70 % critical; disk I/O
-- wait under 5 % baseline, 5-15 % warning, above 15 % critical.
local vigil = require "vigil"

vigil.threshold "host_cpu" {
  title = "CPU usage of this host",
  metric = "sys.cpu.busy_pct{cpu=total}",
  stat = "avg", window = "1m",
  warn = 40, crit = 70,
  hold = "1m", clear = 35, clear_hold = "1m",
}

vigil.threshold "host_iowait" {
  title = "Disk I/O wait of this host",
  metric = "sys.cpu.iowait_pct{cpu=total}",
  stat = "avg", window = "1m",
  warn = 5, crit = 15,
  hold = "1m", clear_hold = "1m",
}

-- vigil measures its own loop as the guide's event-loop blocking detector
-- does; the guide's event-processing levels apply (5 / 20 ms).
vigil.threshold "vigil_loop_lag" {
  title = "vigil's event loop is blocked",
  metric = "vigil.loop.lag_ms",
  warn = 5, crit = 20,
  hold = "30s", clear_hold = "30s",
}
