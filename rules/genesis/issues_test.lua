-- Tests for issues.lua: each common issue opens on its symptoms (and
-- only on all of them), after the hold; resolves after the clear hold;
-- and its remediation is a dry-run. Inputs are 10 s apart.
local test = require "vigil.test"

test.runbooks { "issues.lua" }

local CPU = "proc.cpu.total_pct{instance=genesis,pid=}"
local API = "http.request.total_ms{instance=genesis_api}"
local RSS = "proc.mem.rss_bytes{instance=genesis,pid=}"
local DB = "pg.statement.mean_ms{instance=genesis_db,queryid=42}"
local LONG = "pg.query.longest_s{instance=genesis_db}"
local LOCKS = "pg.locks.waiting{instance=genesis_db}"
local DB2 = "pg.statement.mean_ms{instance=genesis_db,queryid=43}"
local FEED = "ws.ping.rtt_ms{instance=genesis_feed}"
local REST = "http.request.total_ms{instance=exchange_rest}"

test.case "high CPU and slow answers: critical, restart dry-run" {
  interval = "10s",
  input = { [CPU] = "30x12 95x30 30x30", [API] = "50x12 700x30 50x30" },
  expect = {
    { at = "2m", rule = "high_cpu", state = "ok" },
    { at = "4m", rule = "high_cpu", state = "critical" },
    { at = "9m", rule = "high_cpu", state = "ok" },
  },
  incidents = {
    { rule = "high_cpu", event = "opened" },
    { rule = "high_cpu", event = "resolved" },
  },
  actions = {
    { action = "restart", result = "dry-run",
      detail = "restart_service.sh" },
  },
}

test.case "high CPU while answers stay fast is a warning only" {
  interval = "10s",
  input = { [CPU] = "95x40", [API] = "50x40" },
  expect = { { at = "6m", rule = "high_cpu", state = "warning" } },
  actions = {},                            -- restart is for critical
}

test.case "slow answers without high CPU are not this issue" {
  interval = "10s",
  input = { [CPU] = "30x40", [API] = "900x40" },
  transitions = {},
}

test.case "memory growing steadily: a leak, then critical past 6 GiB" {
  interval = "10s",
  -- 2.5 GB, +50 MB every 10 s (5 MB/s).
  input = { [RSS] = "2500000000+50000000x100" },
  expect = {
    { at = "2m", rule = "memory_leak", state = "warning" },
    { at = "16m", rule = "memory_leak", state = "critical" },
  },
  actions = {
    { action = "clear_cache", result = "dry-run",
      detail = "webhook" },
    { action = "clear_cache", result = "skipped",
      detail = "cooldown" },
    { action = "restart", result = "dry-run" },
  },
}

test.case "memory high but flat is not a leak" {
  interval = "10s",
  input = { [RSS] = "5000000000x100" },
  incidents = {},
}

test.case "a GC sawtooth without a trend is not a leak" {
  interval = "10s",
  input = { [RSS] = "3000000000 3400000000 3000000000 3400000000 "
                 .. "3000000000 3400000000 3000000000 3400000000 "
                 .. "3000000000 3400000000 3000000000 3400000000 "
                 .. "3000000000 3400000000 3000000000 3400000000 "
                 .. "3000000000 3400000000 3000000000 3400000000 "
                 .. "3000000000 3400000000 3000000000 3400000000" },
  incidents = {},
}

test.case "slow statements: critical; cancel only with a runaway found" {
  interval = "10s",
  input = { [DB] = "3x12 80x30 3x30" },
  expect = {
    { at = "4m", rule = "slow_db_queries", state = "critical" },
    { at = "9m", rule = "slow_db_queries", state = "ok" },
  },
  actions = {
    -- No evidence of a runaway under vigil test (no plugin runs).
    { action = "cancel_runaway", result = "skipped",
      detail = "when predicate said no" },
  },
}

test.case "a slow statement that stops being called: resolved" {
  interval = "10s",
  -- The pg plugin publishes no mean for an interval without calls: the
  -- slow statement's series simply stops. Its last mean (80 ms) must
  -- leave the window (db_window), or the incident would never resolve.
  input = { [DB] = "3x12 80x30 _x30", [DB2] = "3x72" },
  expect = {
    { at = "4m", rule = "slow_db_queries", state = "critical" },
    -- last slow mean at 7m10s, out of the window at 8m10s, then the
    -- clear hold (1 min)
    { at = "9m", rule = "slow_db_queries", state = "critical" },
    { at = "9m40s", rule = "slow_db_queries", state = "ok" },
  },
  incidents = {
    { rule = "slow_db_queries", event = "opened" },
    { rule = "slow_db_queries", event = "resolved" },
  },
}

test.case "a query running for minutes is critical by itself" {
  interval = "10s",
  input = { [DB] = "3x40", [LONG] = "1x12 200x28" },
  expect = { { at = "5m", rule = "slow_db_queries", state = "critical" } },
}

test.case "queries somewhat slow and waiting on locks: warning" {
  interval = "10s",
  input = { [DB] = "20x40", [LOCKS] = "0x12 3x28" },
  expect = {
    { at = "1m50s", rule = "slow_db_queries", state = "ok" },
    { at = "5m", rule = "slow_db_queries", state = "warning" },
  },
}

test.case "the loop blocked and events slow: critical, restart asked" {
  interval = "10s",
  input = {
    ["genesis.loop.lag_ms.max"] = "5x12 400x30",
    ["genesis.event.processing_ms.p95"] = "2x12 60x30",
  },
  expect = {
    { at = "1m50s", rule = "event_loop_blocking", state = "ok" },
    { at = "4m", rule = "event_loop_blocking", state = "critical" },
  },
  actions = {
    -- approve mode; under vigil test every action is capped to dry-run
    { action = "restart", result = "dry-run" },
  },
}

test.case "the loop blocked and the service's feed slow: critical" {
  interval = "10s",
  input = {
    ["genesis.loop.lag_ms.max"] = "400x30",
    ["genesis.event.processing_ms.p95"] = "2x30",
    [FEED] = "250x30",
  },
  expect = { { at = "4m", rule = "event_loop_blocking", state = "critical" } },
}

test.case "the exchange's WebSocket slow is not the loop's doing" {
  interval = "10s",
  -- A blocked genesis loop delays its own pongs (genesis_feed), not the
  -- exchange's; a slow exchange feed is network latency.
  input = {
    ["genesis.loop.lag_ms.max"] = "400x30",
    ["genesis.event.processing_ms.p95"] = "2x30",
    ["ws.ping.rtt_ms{instance=exchange_ws}"] = "250x30",
  },
  expect = {
    { at = "4m", rule = "event_loop_blocking", state = "warning" },
    { at = "4m", rule = "network_latency", state = "critical" },
  },
}

test.case "the loop blocked, events still fast: warning" {
  interval = "10s",
  input = {
    ["genesis.loop.lag_ms.max"] = "400x30",
    ["genesis.event.processing_ms.p95"] = "2x30",
  },
  expect = { { at = "4m", rule = "event_loop_blocking", state = "warning" } },
}

test.case "the exchange far away: warning, then critical" {
  interval = "10s",
  input = { ["tcp.connect.time_ms{instance=exchange}"] = "10x12 60x24 150x24" },
  expect = {
    { at = "1m50s", rule = "network_latency", state = "ok" },
    { at = "4m30s", rule = "network_latency", state = "warning" },
    { at = "8m30s", rule = "network_latency", state = "critical" },
  },
}

test.case "a slow WebSocket feed alone is network latency too" {
  interval = "10s",
  input = { ["ws.ping.rtt_ms{instance=exchange_ws}"] = "150x30" },
  expect = { { at = "4m", rule = "network_latency", state = "critical" } },
}

test.case "the exchange's REST ping slow: network latency" {
  interval = "10s",
  -- api/v3/ping over a kept-alive connection is one round trip: judged
  -- at the Network RTT row's levels (30 / 100 ms), as measure_latency.py.
  input = { [REST] = "10x12 60x24 130x24" },
  expect = {
    { at = "1m50s", rule = "network_latency", state = "ok" },
    { at = "4m30s", rule = "network_latency", state = "warning" },
    { at = "8m30s", rule = "network_latency", state = "critical" },
  },
}

test.case "no data from anything: every issue stays ok" {
  interval = "10s",
  input = { ["unrelated.series"] = "1x60" },
  incidents = {},
}
