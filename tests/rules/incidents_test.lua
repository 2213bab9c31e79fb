-- `vigil test` over incidents and the action guardrails. Under vigil test
-- every action is a dry-run and no command runs.
local test = require "vigil.test"

test.runbooks { "incidents.lua" }

test.case "incidents open, escalate and resolve; guardrails hold back" {
  interval = "1m",
  input = { ["t.disk_pct"] = "50 85 85 97 97 50 85 97" },
  incidents = {
    { at = "1m", rule = "disk_full", event = "opened" },
    { at = "3m", rule = "disk_full", event = "escalated" },
    { at = "5m", rule = "disk_full", event = "resolved" },
    { at = "6m", rule = "disk_full", event = "opened" },
    { at = "7m", rule = "disk_full", event = "escalated" },
  },
  actions = {
    { at = "1m", action = "rotate_logs", result = "dry-run" },
    { at = "3m", action = "rotate_logs", result = "skipped" }, -- cooldown
    { at = "3m", action = "page", result = "dry-run" },
    { at = "3m", action = "only_if_huge", result = "skipped" }, -- when
    { at = "6m", action = "rotate_logs", result = "skipped" }, -- cooldown
    { at = "7m", action = "rotate_logs", result = "skipped" },
    { at = "7m", action = "page", result = "skipped" }, -- max_per_hour
    { at = "7m", action = "only_if_huge", result = "skipped" },
  },
}
