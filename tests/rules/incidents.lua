-- A runbook with guarded actions, for incidents_test.lua.
local vigil = require "vigil"

vigil.threshold "disk_full" {
  metric = "t.disk_pct", warn = 80, crit = 95, nodata = false,
  runbook = "free_disk",
}

vigil.runbook "free_disk" {
  immediate = { vigil.step "snapshot" { series = "t.disk_pct" } },
  remediate = {
    vigil.action "rotate_logs" {
      exec = { "/usr/sbin/logrotate", "-f", "/etc/logrotate.conf" },
      mode = "on", on = "warning", cooldown = "10m",
    },
    vigil.action "page" {
      webhook = "https://pager.example/hook", mode = "on", max_per_hour = 1,
    },
    vigil.action "only_if_huge" {
      exec = { "/bin/true" }, mode = "on",
      when = function(incident) return incident.value > 99 end,
    },
  },
}
