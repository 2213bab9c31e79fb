-- issues.lua: the genesis guide's five "Common Performance Issues", each
-- recognised by its symptoms over several metrics (a condition), then
-- investigated with the guide's steps and remediated with its
-- solutions. Levels come from genesis/levels.lua; every remediation is a
-- dry-run until its mode there says otherwise (and [actions] mode allows
-- it). The guide's solutions that are code changes appear in the
-- incident as recommendations where the evidence supports them
-- (rules/genesis/README.md maps each one).
local vigil = require "vigil"
local L = require "genesis.levels"
local advice = require "genesis.advice"
local T, I, R, C = L.thresholds, L.issues, L.remediation, L.checklists

-- The value of one series, or nil when it has no data.
local function v(row, stat, window)
  return vigil.value(T[row].metric, stat or T[row].stat or "last",
                     window or T[row].window)
end

-- The highest value among the series a selector matches. A NaN (a
-- series fed NaN makes its window's statistics NaN) is skipped: kept as
-- the first value, it would compare false with every other one and hide
-- them all.
local function worst(selector, stat, window)
  local w
  for _, s in ipairs(vigil.values(selector, stat, window)) do
    if s.value == s.value and (w == nil or s.value > w) then w = s.value end
  end
  return w
end

local function above(x, level) return x ~= nil and x > level end

local function restart_argv()
  local argv = { vigil.script "remediate/restart_service.sh" }
  for _, a in ipairs(R.restart) do argv[#argv + 1] = a end
  return argv
end

local function restart(on)
  return vigil.action "restart" {
    exec = restart_argv(), mode = R.restart_mode, on = on,
    cooldown = "1h", max_per_hour = 1, timeout = "2m",
  }
end

local function profile()
  return vigil.step "exec" {
    argv = { vigil.script "investigate/cpu_profile.sh", C.process_pattern,
             tostring(I.profile_seconds) },
    timeout = (I.profile_seconds + 30) .. "s",
  }
end

local function recent_errors()
  return vigil.step "log.recent" { instance = C.log_instance, limit = 20 }
end

-- High CPU usage. Symptoms: CPU > 70 %, slow response times.
vigil.condition "high_cpu" {
  title = "High CPU usage", runbook = "high_cpu",
  every = I.every, hold = I.hold, clear_hold = I.clear_hold,
  labels = { pack = "genesis" },
  when = function()
    local cpu = v("cpu")
    if not above(cpu, T.cpu.crit) then return "ok", cpu end
    if above(v("api_response"), T.api_response.warn) or
       above(v("order_latency"), T.order_latency.warn) then
      return "critical", cpu                 -- hot and slow: the issue
    end
    return "warning", cpu                    -- hot, still fast
  end,
}

vigil.runbook "high_cpu" {
  title = "High CPU usage",
  recommend = advice.cpu,
  immediate = {
    vigil.step "proc.top" { by = "cpu", limit = 10 },
    vigil.step "snapshot" {
      series = { T.cpu.metric, "proc.cpu.*{instance=genesis,pid=}",
                 T.api_response.metric, T.order_latency.metric,
                 "sys.cpu.busy_pct{cpu=total}" },
      window = "15m",
    },
    recent_errors(),
  },
  short_term = {
    -- 1. Profile with cProfile: a profile of the running process, now.
    profile(),
    -- 2. Check for infinite loops: threads and where they run.
    vigil.step "proc.snapshot" { instance = "genesis" },
  },
  remediate = { restart("critical") },
}

-- Memory leak. Symptoms: gradually increasing memory, eventual OOM: RSS
-- growing steadily over the window (a least-squares slope), not just high.
vigil.condition "memory_leak" {
  title = "Memory leak", runbook = "memory_leak",
  every = I.every, hold = I.hold, clear_hold = I.clear_hold,
  labels = { pack = "genesis" },
  when = function()
    local slope = v("memory", "slope", I.leak_window)
    local rss = v("memory", "last")
    if not above(slope, I.leak_slope_bytes_per_s) or
       not above(rss, I.leak_min_rss) then
      return "ok", slope
    end
    return above(rss, T.memory.crit) and "critical" or "warning", slope
  end,
}

vigil.runbook "memory_leak" {
  title = "Memory leak",
  recommend = advice.memory,
  immediate = {
    vigil.step "snapshot" {
      series = { "proc.mem.*{instance=genesis,pid=}", "genesis.cache.*",
                 "genesis.gc.*" },
      window = "30m",
    },
    recent_errors(),
  },
  short_term = {
    -- 1. Track allocations (tracemalloc): where the memory lives.
    vigil.step "proc.snapshot" { instance = "genesis" },
  },
  remediate = {
    -- Implement cache eviction: clear the application's cache now.
    vigil.action "clear_cache" {
      webhook = R.cache_clear_url, mode = R.cache_clear_mode, on = "warning",
      cooldown = R.cooldown, max_per_hour = 2,
    },
    restart("critical"),
  },
}

-- Slow database queries. Symptoms: high query times, database CPU spike.
vigil.condition "slow_db_queries" {
  title = "Slow database queries", runbook = "slow_db_queries",
  every = I.every, hold = I.hold, clear_hold = I.clear_hold,
  labels = { pack = "genesis" },
  when = function()
    -- The latest mean of each statement called within db_window: the pg
    -- plugin publishes no mean for an interval without calls, so a slow
    -- statement that stopped (the report was fixed, the job ended) would
    -- otherwise keep its last mean, and the incident open, forever.
    local mean = worst(T.db_query.metric, "last", I.db_window)
    local longest = worst("pg.query.longest_s{instance=" .. C.db_instance ..
                          "}", "last")
    if above(mean, T.db_query.crit) or
       above(longest, I.runaway_query_s) then
      return "critical", mean
    end
    if above(mean, T.db_query.warn) and
       above(worst("pg.locks.waiting{instance=" .. C.db_instance .. "}",
                   "max", I.lock_window), 0) then
      return "warning", mean                 -- slow and waiting on locks
    end
    return "ok", mean
  end,
}

vigil.runbook "slow_db_queries" {
  title = "Slow database queries",
  recommend = advice.database,
  immediate = {
    vigil.step "pg.running_queries" { instance = C.db_instance },
    -- 3. Check for lock contention.
    vigil.step "pg.blocking" { instance = C.db_instance },
    -- What the slowness does to the service (timeouts, lock waits given
    -- up): the immediate checklist's "review recent error logs".
    recent_errors(),
  },
  short_term = {
    -- 1. The slow query log, from pg_stat_statements.
    vigil.step "pg.slow_queries" { instance = C.db_instance,
                                   min_mean_ms = T.db_query.warn, limit = 20 },
  },
  deep = {
    -- 2. Analyze query plans: missing indexes.
    vigil.step "pg.index_hints" { instance = C.db_instance },
    vigil.step "sqlite.plan" { instance = C.sqlite_instance,
                               query = C.sqlite_query },
  },
  remediate = {
    -- Cancel the runaway: the oldest query running longer than
    -- runaway_query_s, as the evidence found it.
    vigil.action "cancel_runaway" {
      run = "pg.cancel", mode = R.cancel_mode, on = "critical",
      cooldown = "1m", max_per_hour = 10,
      when = function(incident)
        local rq = incident.evidence["pg.running_queries"]
        for _, q in ipairs(rq and rq.queries or {}) do
          if q.duration_s ~= nil and q.duration_s > I.runaway_query_s then
            return { instance = C.db_instance, pid = q.pid }
          end
        end
        return false
      end,
    },
  },
}

-- Event-loop blocking. Symptoms: delayed async operations, WebSocket
-- timeouts. The application's own detector (the guide's, publishing
-- genesis.loop.lag_ms, a timer) says the loop was blocked; events or the feed
-- suffering make it critical. The feed is the service's own WebSocket
-- (its pongs come from the blocked loop), not the exchange's, whose
-- latency a blocked genesis loop does not change.
local function feed_ws()
  return "ws.ping.rtt_ms{instance=" .. C.feed_ws_instance .. "}"
end

vigil.condition "event_loop_blocking" {
  title = "Event loop blocking", runbook = "event_loop_blocking",
  every = I.every, hold = I.hold, clear_hold = I.clear_hold,
  labels = { pack = "genesis" },
  when = function()
    local lag = vigil.value("genesis.loop.lag_ms.max", "max", I.loop_window)
    if not above(lag, I.loop_blocked_ms) then return "ok", lag end
    if above(v("event_processing"), T.event_processing.crit) or
       above(vigil.value(feed_ws(), T.websocket_latency.stat,
                         T.websocket_latency.window),
             T.websocket_latency.crit) then
      return "critical", lag
    end
    return "warning", lag
  end,
}

vigil.runbook "event_loop_blocking" {
  title = "Event loop blocking",
  recommend = advice.event_loop,
  immediate = {
    -- 2. The blocking detector's figures, and which stage is slow.
    vigil.step "snapshot" {
      series = { "genesis.loop.lag_ms.*", "genesis.event.processing_ms.*",
                 "genesis.order.stage_ms.*", feed_ws() },
      window = "15m",
    },
    -- The service's pongs, now: a ping every 100 ms for 2 s, which a
    -- loop blocked for a few hundred ms at a time cannot miss.
    vigil.step "ws.measure" { instance = C.feed_ws_instance, count = 20,
                              interval_ms = 100 },
    recent_errors(),
  },
  short_term = {
    -- 3. Profile async functions: where the loop spends its time.
    profile(),
    vigil.step "proc.snapshot" { instance = "genesis" },
  },
  remediate = {
    -- A blocked loop rarely unblocks itself; a person decides.
    vigil.action "restart" {
      exec = restart_argv(), mode = "approve", on = "critical",
      cooldown = "1h", max_per_hour = 1, timeout = "2m",
    },
  },
}

-- Network latency. Symptoms: slow API responses, order delays: the path
-- to the exchange is slow (TCP RTT, WebSocket ping, REST answers). The
-- exchange's REST ping is what the guide's measure_latency.py times
-- (api/v3/ping, an answer with nothing to compute): a round trip over a
-- kept-alive connection, judged at the "Network RTT" row's levels. The
-- value shown is the slowest of the three, in ms.
vigil.condition "network_latency" {
  title = "Network latency to the exchange", runbook = "network_latency",
  every = I.every, hold = I.hold, clear_hold = I.clear_hold,
  labels = { pack = "genesis" },
  when = function()
    local rtt = v("exchange_rtt")
    local ws = v("websocket_latency")
    local rest = vigil.value("http.request.total_ms{instance=" ..
                             C.exchange_rest_instance .. "}",
                             T.exchange_rtt.stat, T.exchange_rtt.window)
    local slowest
    for _, x in ipairs({ rtt or -1, ws or -1, rest or -1 }) do
      if x >= 0 and (slowest == nil or x > slowest) then slowest = x end
    end
    if above(rtt, T.exchange_rtt.crit) or
       above(ws, T.websocket_latency.crit) or
       above(rest, T.exchange_rtt.crit) then
      return "critical", slowest
    end
    if above(rtt, T.exchange_rtt.warn) or
       above(ws, T.websocket_latency.warn) or
       above(rest, T.exchange_rtt.warn) then
      return "warning", slowest
    end
    return "ok", slowest
  end,
}

vigil.runbook "network_latency" {
  title = "Network latency to the exchange",
  recommend = advice.network,
  immediate = {
    -- 1. Measure round-trip times, now.
    vigil.step "tcp.measure" { instance = C.exchange_tcp_instance,
                               count = 20, interval_ms = 100 },
    vigil.step "http.measure" { instance = C.exchange_rest_instance,
                                count = 20, interval_ms = 100 },
    vigil.step "ws.measure" { instance = C.exchange_ws_instance, count = 10,
                              interval_ms = 200 },
    -- What the delay does to orders (calls to the exchange timing out):
    -- the immediate checklist's "review recent error logs".
    recent_errors(),
  },
  short_term = {
    -- 2. Packet loss shows as errors and reconnects; 3. connection
    -- pooling as the process's connections by state.
    vigil.step "snapshot" {
      series = { "tcp.*", "ws.connection.*", "http.request.errors_total",
                 "sys.net.*" },
      window = "30m",
    },
    vigil.step "proc.snapshot" { instance = "genesis" },
  },
}
