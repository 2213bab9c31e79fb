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

-- A `when` that returns a table chooses the action's arguments from the
-- incident: here, which backend to cancel.
vigil.threshold "query_stuck" {
  metric = "t.query_age_s", crit = 60, nodata = false,
  runbook = "unstick",
}

vigil.runbook "unstick" {
  remediate = {
    vigil.action "cancel" {
      run = "pg.cancel", args = { reason = "stuck" }, mode = "on",
      when = function(incident)
        if incident.value > 300 then return { pid = 4242 } end
        return incident.value > 120
      end,
    },
  },
}
