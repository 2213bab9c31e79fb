-- checklists.lua: the genesis guide's "Performance Optimization
-- Checklist" as runbooks that run. Each checklist item is a step whose
-- result is kept as evidence; `vigil investigate immediate` (short_term,
-- deep) runs a checklist now and prints the report, and every genesis
-- threshold (thresholds.lua) opens an incident that runs the immediate
-- one (runbook "genesis_triage"). Items a program cannot do (run a load
-- test, fix a query) are in rules/genesis/README.md, with where their
-- evidence comes from.
local vigil = require "vigil"
local L = require "genesis.levels"
local C = L.checklists

-- Immediate actions (< 5 minutes).
local function immediate()
  return {
    -- Check current resource usage (CPU, memory, disk)
    vigil.step "snapshot" {
      series = { "sys.cpu.*{cpu=total}", "sys.mem.*", "sys.disk.*",
                 "proc.*{instance=genesis,pid=}" },
      window = "15m",
    },
    vigil.step "proc.top" { by = "cpu", limit = 10 },
    -- Review recent error logs for exceptions
    vigil.step "log.recent" { instance = C.log_instance, limit = 20 },
    -- Check database connection pool status
    vigil.step "snapshot" {
      series = { "genesis.db.pool.*", "pg.connections*" }, window = "15m",
    },
    -- Verify network connectivity to exchange
    vigil.step "tcp.measure" { instance = C.exchange_tcp_instance,
                               count = 5, interval_ms = 100 },
    -- Check for blocking queries
    vigil.step "pg.blocking" { instance = C.db_instance },
    -- Review WebSocket connection status
    vigil.step "snapshot" {
      series = { "ws.*", "genesis.ws.connections" }, window = "15m",
    },
    -- Clear application caches if needed: an action, in memory_leak
    -- (issues.lua), taken when the evidence says the cache is the cause.
  }
end

-- Short-term analysis (< 30 minutes).
local function short_term()
  return {
    -- Analyze slow query log
    vigil.step "pg.slow_queries" { instance = C.db_instance,
                                   min_mean_ms = C.slow_query_ms, limit = 20 },
    -- Check for memory leaks (tracemalloc): growth and where it lives
    vigil.step "snapshot" {
      series = { "proc.mem.*{instance=genesis,pid=}" }, window = "30m",
    },
    vigil.step "proc.snapshot" { instance = "genesis" },
    -- Review event loop blocking detection
    vigil.step "snapshot" {
      series = { "genesis.loop.lag_ms.*", "genesis.event.processing_ms.*" },
      window = "30m",
    },
    -- Analyze network latency patterns
    vigil.step "snapshot" {
      series = { "tcp.connect.time_ms", "http.request.*_ms", "ws.*_ms" },
      window = "30m",
    },
    vigil.step "http.measure" { instance = C.api_instance, count = 20,
                                interval_ms = 100 },
    vigil.step "ws.measure" { instance = C.exchange_ws_instance, count = 10,
                              interval_ms = 200 },
    -- Check GC frequency and pause times
    vigil.step "snapshot" { series = { "genesis.gc.*" }, window = "30m" },
    -- Review cache hit rates
    vigil.step "snapshot" { series = { "genesis.cache.*" }, window = "30m" },
    -- Run CPU profiler (last: it takes profile_seconds, the guide's
    -- five minutes by default)
    vigil.step "exec" {
      argv = { vigil.script "investigate/cpu_profile.sh", C.process_pattern,
               tostring(C.profile_seconds) },
      timeout = (C.profile_seconds + 30) .. "s",
    },
  }
end

-- Deep investigation (< 2 hours).
local function deep()
  return {
    -- Analyze database query plans
    vigil.step "pg.index_hints" { instance = C.db_instance },
    vigil.step "sqlite.plan" { instance = C.sqlite_instance,
                               query = C.sqlite_query },
    -- Review asyncio task performance: the stages of an order
    vigil.step "snapshot" {
      series = { "genesis.order.stage_ms.*", "genesis.order.latency_ms.*" },
      window = "1h",
    },
    -- Check for resource contention: locks, threads, context switches
    vigil.step "pg.running_queries" { instance = C.db_instance },
    vigil.step "snapshot" {
      series = { "proc.ctxsw.*{instance=genesis,pid=}",
                 "proc.threads.count{instance=genesis,pid=}",
                 "sys.pressure.*" },
      window = "1h",
    },
    -- Analyze historical metrics trends (the in-memory window; the store
    -- keeps the history: `vigil history SERIES --since 2h`)
    vigil.step "snapshot" { series = { "genesis.*" }, window = "2h" },
  }
end

vigil.runbook "immediate" {
  title = "Immediate actions (< 5 minutes)", immediate = immediate(),
}
vigil.runbook "short_term" {
  title = "Short-term analysis (< 30 minutes)", short_term = short_term(),
}
vigil.runbook "deep" {
  title = "Deep investigation (< 2 hours)", deep = deep(),
}

vigil.runbook "genesis_triage" {
  title = "genesis: a baseline level was crossed",
  immediate = immediate(),
}
