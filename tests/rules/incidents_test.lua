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

test.case "a when that returns a table gives the action its arguments" {
  interval = "1m",
  input = { ["t.query_age_s"] = "10 90 10 200 10 400" },
  actions = {
    { at = "1m", action = "cancel", result = "skipped",
      detail = "its when predicate said no" },
    { at = "3m", action = "cancel", result = "dry-run",
      detail = 'pg.cancel {"reason":"stuck"}' },
    { at = "5m", action = "cancel", result = "dry-run",
      detail = '{"reason":"stuck","pid":4242}' },
  },
}
