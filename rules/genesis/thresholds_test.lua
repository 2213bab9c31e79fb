-- Tests for thresholds.lua: every row of the guide's table and every KPI
-- at the guide's levels, with the hold times, hysteresis and no-data
-- cases. `vigil test rules/genesis` runs them.
local test = require "vigil.test"

test.runbooks { "thresholds.lua", "checklists.lua" }

local GiB = 1024 * 1024 * 1024

-- One case per "above" row: baseline, then warning, then critical, each
-- entered once its hold has passed; the incident opens with the warning.
local rows = {
  { rule = "order_latency", series = "genesis.order.latency_ms.p95",
    values = "30x12 120x12 400x12", warn_at = "4m", crit_at = "6m" },
  { rule = "api_response",
    series = "http.request.total_ms{instance=genesis_api}",
    values = "60x12 300x12 800x12", warn_at = "4m", crit_at = "6m" },
  { rule = "event_processing", series = "genesis.event.processing_ms.p95",
    values = "2x12 10x12 30x12", warn_at = "4m", crit_at = "6m" },
  { rule = "websocket_latency", series = "ws.ping.rtt_ms{instance=exchange_ws}",
    values = "5x12 50x12 150x12", warn_at = "4m", crit_at = "6m" },
  { rule = "exchange_rtt", series = "tcp.connect.time_ms{instance=exchange}",
    values = "10x12 60x12 150x12", warn_at = "4m", crit_at = "6m" },
  { rule = "db_query", series = "pg.statement.mean_ms{instance=genesis_db}",
    values = "3x12 20x12 80x12", warn_at = "4m", crit_at = "6m" },
  { rule = "queue_depth", series = "genesis.queue.depth",
    values = "20x12 500x12 5000x12", warn_at = "4m", crit_at = "6m" },
  { rule = "disk_iowait", series = "sys.cpu.iowait_pct{cpu=total}",
    values = "1x12 10x12 40x12", warn_at = "4m", crit_at = "6m" },
  { rule = "cpu", series = "proc.cpu.total_pct{instance=genesis,pid=}",
    values = "30x12 55x12 95x12", warn_at = "4m", crit_at = "6m" },
  { rule = "memory", series = "proc.mem.rss_bytes{instance=genesis,pid=}",
    values = (3 * GiB) .. "x12 " .. (5 * GiB) .. "x12 " .. (7 * GiB) .. "x12",
    warn_at = "4m", crit_at = "6m" },
}

for _, r in ipairs(rows) do
  test.case(r.rule .. ": baseline, warning, critical at the guide's levels") {
    interval = "10s",
    input = { [r.series] = r.values },
    expect = {
      { at = "1m50s", rule = "genesis_" .. r.rule, state = "ok" },
      { at = r.warn_at, rule = "genesis_" .. r.rule, state = "warning" },
      { at = r.crit_at, rule = "genesis_" .. r.rule, state = "critical" },
    },
    incidents = {
      { rule = "genesis_" .. r.rule, event = "opened" },
      { rule = "genesis_" .. r.rule, event = "escalated" },
    },
  }
end

test.case "order latency: exactly at a level is not beyond it" {
  interval = "10s",
  input = { ["genesis.order.latency_ms.p95"] = "50x30 200x30" },
  expect = {
    { at = "4m", rule = "genesis_order_latency", state = "ok" },
    { at = "9m", rule = "genesis_order_latency", state = "warning" },
  },
  transitions = {
    { rule = "genesis_order_latency", from = "ok", to = "warning" },
  },
}

test.case "order latency: hysteresis holds warning until under 45 ms" {
  interval = "10s",
  input = { ["genesis.order.latency_ms.p95"] = "100x12 48x24 30x18" },
  expect = {
    { at = "2m", rule = "genesis_order_latency", state = "warning" },
    { at = "5m", rule = "genesis_order_latency", state = "warning" },
    { at = "8m", rule = "genesis_order_latency", state = "ok" },
  },
  incidents = {
    { rule = "genesis_order_latency", event = "opened" },
    { rule = "genesis_order_latency", event = "resolved" },
  },
}

test.case "order latency: one slow interval does not lift the minute" {
  interval = "10s",
  input = { ["genesis.order.latency_ms.p95"] = "30x12 90 30x12" },
  expect = { { at = "4m", rule = "genesis_order_latency", state = "ok" } },
  incidents = {},
}

test.case "order latency: a silent application becomes nodata" {
  interval = "10s",
  input = { ["genesis.order.latency_ms.p95"] = "30x6" },
  expect = {
    { at = "1m", rule = "genesis_order_latency", state = "ok" },
    { at = "7m", rule = "genesis_order_latency", state = "nodata" },
  },
}

test.case "cache hit rate: lower is worse" {
  interval = "10s",
  input = { ["genesis.cache.hit_pct"] = "97x12 80x18 50x18" },
  expect = {
    { at = "1m50s", rule = "genesis_cache_hit_rate", state = "ok" },
    { at = "4m50s", rule = "genesis_cache_hit_rate", state = "warning" },
    { at = "8m", rule = "genesis_cache_hit_rate", state = "critical" },
  },
}

test.case "cache hit rate: leaves warning only above 92 %" {
  interval = "10s",
  input = { ["genesis.cache.hit_pct"] = "80x12 91x18 95x18" },
  expect = {
    { at = "4m50s", rule = "genesis_cache_hit_rate", state = "warning" },
    { at = "8m", rule = "genesis_cache_hit_rate", state = "ok" },
  },
}

test.case "throughput: 100-200 orders/s is normal, outside is not" {
  interval = "10s",
  input = { ["genesis.orders_total.rate_per_s"] = "150x12 60x12 150x12 5x18" },
  expect = {
    { at = "1m50s", rule = "genesis_throughput", state = "ok" },
    { at = "3m50s", rule = "genesis_throughput", state = "warning" },
    { at = "6m50s", rule = "genesis_throughput", state = "ok" },
    { at = "9m30s", rule = "genesis_throughput", state = "critical" },
  },
}

test.case "throughput: too many orders is outside the band too" {
  interval = "10s",
  input = { ["genesis.orders_total.rate_per_s"] = "150x12 300x12 900x12" },
  expect = {
    { at = "4m", rule = "genesis_throughput", state = "warning" },
    { at = "6m", rule = "genesis_throughput", state = "critical" },
  },
}

test.case "WebSocket connections: 10-50 is normal" {
  interval = "10s",
  input = { ["genesis.ws.connections"] = "25x12 4x12 25x12 80x12" },
  expect = {
    { at = "1m50s", rule = "genesis_ws_connections", state = "ok" },
    { at = "3m50s", rule = "genesis_ws_connections", state = "warning" },
    { at = "6m", rule = "genesis_ws_connections", state = "ok" },
    { at = "8m", rule = "genesis_ws_connections", state = "warning" },
  },
}

test.case "GC pause: one 60 ms pause is problematic at once" {
  interval = "10s",
  input = { ["genesis.gc.pause_ms.max"] = "3x12 15 3x6 60 3x30" },
  expect = {
    { at = "1m50s", rule = "genesis_gc_pause", state = "ok" },
    { at = "2m20s", rule = "genesis_gc_pause", state = "warning" },
    { at = "3m30s", rule = "genesis_gc_pause", state = "critical" },
    { at = "8m", rule = "genesis_gc_pause", state = "ok" },
  },
}
