-- thresholds.lua: every row of the genesis guide's "Normal Operating
-- Ranges" table and every KPI, as thresholds. The levels, series and hold
-- times come from genesis/levels.lua (scripts/genesis/): change them
-- there, not here. A row leaving ok opens an incident that runs the
-- guide's immediate checklist (runbook "genesis_triage", checklists.lua).
local vigil = require "vigil"
local L = require "genesis.levels"

-- The table's order, then the KPIs: rules are declared in a fixed order.
local ROWS = {
  "order_latency", "api_response", "cpu", "memory", "db_query",
  "websocket_latency", "event_processing", "disk_iowait", "exchange_rtt",
  "cache_hit_rate",
  "throughput", "ws_connections", "queue_depth", "gc_pause",
}

local KEYS = {
  "title", "metric", "stat", "window", "warn", "crit", "direction",
  "clear", "crit_clear", "hold", "clear_hold", "nodata", "flap",
}

for _, name in ipairs(ROWS) do
  local row = L.thresholds[name]
  if row == nil then
    error("genesis.levels: no row '" .. name .. "' in thresholds")
  end
  local t = { runbook = "genesis_triage", labels = { pack = "genesis" } }
  for _, k in ipairs(KEYS) do
    t[k] = row[k]
  end
  for k in pairs(row) do
    if t[k] == nil and k ~= "runbook" then
      error("genesis.levels: thresholds." .. name .. ": unknown key '" ..
            k .. "'")
    end
  end
  if row.runbook ~= nil then
    t.runbook = row.runbook
  end
  vigil.threshold("genesis_" .. name)(t)
end
