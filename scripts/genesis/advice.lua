-- genesis/advice.lua: the guide's "Optimization Actions" and each issue's
-- "Solutions", turned into recommendations where an incident's evidence
-- supports them (the runbooks' `recommend`, issues.lua). Each function
-- takes the incident (its evidence by step name) and returns a list of
-- texts; evidence that is missing (a probe not configured, a step that
-- failed) simply gives no recommendation.
local L = require "genesis.levels"

local M = {}

local function fmt(n) return string.format("%.1f", n) end

-- The series of a snapshot whose key starts with prefix, by descending
-- stat (avg by default).
local function ranked(snapshot, prefix, stat)
  local out = {}
  for key, s in pairs(snapshot or {}) do
    if key:sub(1, #prefix) == prefix and type(s) == "table" and
       s[stat or "avg"] ~= nil then
      out[#out + 1] = { key = key, value = s[stat or "avg"] }
    end
  end
  table.sort(out, function(a, b) return a.value > b.value end)
  return out
end

-- Slow database queries: indexes, query structure, lock contention.
function M.database(incident)
  local ev, out = incident.evidence, {}
  local hints = ev["pg.index_hints"]
  for _, c in ipairs(hints and hints.columns or {}) do
    out[#out + 1] = "Add missing database indexes: " .. tostring(c.suggestion)
      .. " (about " .. fmt(c.distinct_est or 0) .. " distinct values, "
      .. "correlation " .. fmt(c.correlation or 0) .. ")"
  end
  for _, t in ipairs(hints and hints.tables or {}) do
    out[#out + 1] = "Add missing database indexes: table " .. tostring(t.table)
      .. " was scanned sequentially " .. tostring(t.seq_scan)
      .. " times against " .. tostring(t.idx_scan) .. " index scans"
  end
  -- The three slow statements that cost the database the most time in
  -- all (pg.slow_queries lists them by mean, as the guide's query does,
  -- where a one-off such as a bulk load or a CREATE DATABASE can come
  -- before the statement run a hundred times a minute).
  local slow = {}
  for _, q in ipairs(ev["pg.slow_queries"] and
                     ev["pg.slow_queries"].queries or {}) do
    slow[#slow + 1] = q
  end
  table.sort(slow, function(a, b)
    return (a.total_ms or 0) > (b.total_ms or 0)
  end)
  for i, q in ipairs(slow) do
    if i > 3 then break end
    out[#out + 1] = "Optimize slow queries: mean " .. fmt(q.mean_ms or 0)
      .. " ms over " .. tostring(q.calls) .. " calls: "
      .. tostring(q.query):sub(1, 200)
  end
  local blocking = ev["pg.blocking"]
  if blocking and (blocking.count or 0) > 0 then
    out[#out + 1] = "Reduce lock contention: " .. tostring(blocking.count)
      .. " sessions wait on locks (see pg.blocking for who blocks whom)"
  end
  -- sqlite.plan: its hints (checked against the schema, each naming the
  -- scan and the CREATE INDEX that avoids it); a full scan without one.
  local plan = ev["sqlite.plan"]
  local hints = plan and plan.hints or {}
  for _, h in ipairs(hints) do
    out[#out + 1] = "Add missing database indexes (SQLite): " .. tostring(h)
  end
  for _, row in ipairs(#hints == 0 and plan and plan.plan or {}) do
    if row.full_scan then
      out[#out + 1] = "Add missing database indexes (SQLite): "
        .. tostring(row.detail) .. " reads every row of "
        .. tostring(row.table)
    end
  end
  return out
end

-- Event-loop blocking: which stage of an order is slow.
function M.event_loop(incident)
  local out = {}
  local stages = ranked(incident.evidence["snapshot"],
                        "genesis.order.stage_ms.p95")
  if stages[1] ~= nil then
    local stage = stages[1].key:match('stage="([^"]*)"') or stages[1].key
    out[#out + 1] = "Move blocking operations to a thread pool or an async "
      .. "library: the slowest stage is " .. stage .. " (p95 "
      .. fmt(stages[1].value) .. " ms on average)"
  end
  local lag = (incident.evidence["snapshot"] or {})["genesis.loop.lag_ms.max"]
  if lag and lag.max then
    out[#out + 1] = "Break up long computations: the loop was blocked for up "
      .. "to " .. fmt(lag.max) .. " ms"
  end
  return out
end

-- High CPU: what the profile and the cache say.
function M.cpu(incident)
  local out = {}
  local prof = incident.evidence["exec"]
  local text = type(prof) == "table" and prof.output or nil
  if type(text) == "string" then
    local top = text:match("\n%s*([%d.]+%%[^\n]*)")
    if top then
      out[#out + 1] = "Optimize hot code paths: the profile's top entry is "
        .. top:gsub("%s+", " "):sub(1, 160)
    elseif text:find("no profiler") then
      out[#out + 1] = "Install a profiler (py-spy or perf) so that the next "
        .. "incident carries a CPU profile"
    end
  end
  local hit = (incident.evidence["snapshot"] or {})["genesis.cache.hit_pct"]
  if hit and hit.avg and hit.avg < 90 then
    out[#out + 1] = "Implement caching for hot paths: the cache hit rate is "
      .. fmt(hit.avg) .. " %"
  end
  return out
end

-- Memory leak: a cache that grows without eviction.
function M.memory(incident)
  local out = {}
  local snap = incident.evidence["snapshot"] or {}
  for _, s in ipairs(ranked(snap, "genesis.cache.")) do
    if s.key:find("size") or s.key:find("entries") or s.key:find("bytes") then
      out[#out + 1] = "Implement cache eviction: " .. s.key .. " reached "
        .. fmt(s.value) .. " on average"
      break
    end
  end
  local rss = snap['proc.mem.rss_bytes{instance="genesis"}']
  if rss and rss.max and rss.min then
    out[#out + 1] = "Find what keeps memory alive (tracemalloc, weak "
      .. "references, cleanup): RSS went from " .. fmt(rss.min / 1048576)
      .. " MiB to " .. fmt(rss.max / 1048576) .. " MiB in the window"
  end
  return out
end

-- Network latency: what a fresh connection and a request cost, measured
-- now (the runbook's tcp/http .measure steps), against the guide's
-- "Network RTT" levels.
function M.network(incident)
  local out, rtt = {}, L.thresholds.exchange_rtt
  local tcp = incident.evidence["tcp.measure"]
  local http = incident.evidence["http.measure"]
  if tcp and tcp.mean_ms and tcp.mean_ms > rtt.warn then
    out[#out + 1] = "Use connection pooling: each new connection to the "
      .. "exchange costs " .. fmt(tcp.mean_ms) .. " ms (p95 "
      .. fmt(tcp.p95_ms or tcp.mean_ms) .. " ms) before any request"
  end
  if http and http.mean_ms and http.mean_ms > rtt.warn then
    out[#out + 1] = "Implement request batching: each request to the "
      .. "exchange takes " .. fmt(http.mean_ms) .. " ms (p95 "
      .. fmt(http.p95_ms or http.mean_ms) .. " ms)"
      .. ((tcp and tcp.mean_ms and tcp.mean_ms <= rtt.warn)
          and (", while a TCP connect takes " .. fmt(tcp.mean_ms)
               .. " ms: the time is spent at the exchange, not on the way")
          or "")
  end
  if http and (http.errors or 0) > 0 then
    out[#out + 1] = "Implement circuit breakers for external calls: "
      .. tostring(http.errors) .. " of " .. tostring(http.count)
      .. " requests to the exchange failed"
  end
  if tcp and tcp.mean_ms and tcp.mean_ms > rtt.crit then
    out[#out + 1] = "Add regional redundancy: the exchange is "
      .. fmt(tcp.mean_ms) .. " ms away from this host"
  end
  return out
end

return M
