-- tests/drills/scripts/genesis/levels.lua: the genesis levels for the
-- drills (tests/integration/drill_*.py), which name this directory first
-- on `[rules] scripts` (GENESIS_SCRIPTS), so that vigil finds it before
-- the shipped scripts/genesis/levels.lua.
--
-- It starts from the guide's values and changes only what a test cannot
-- wait for, or what the simulator cannot reach: times (an incident the
-- guide opens after a minute of symptoms opens here after seconds) and
-- the memory sizes (the simulator is a 40 MB process, not a 2-4 GB one).
-- The guide's levels stay wherever the simulator's faults reach them:
-- latencies, database query times, CPU %, loop lag, cache hit rate.
local L = require "genesis.defaults"
local T, I, R, C = L.thresholds, L.issues, L.remediation, L.checklists
local MiB = 1024 * 1024

-- Windows, holds and clear holds. The defaults' minute-long windows and
-- holds would make each drill last several minutes (five drills must
-- fit in ten). 10 s still holds two samples of the 5 s series (StatsD
-- flushes, pg, tcp, the exchange's REST) and ten of the 1 s ones (proc,
-- http, ws), so a statistic is never computed from a single outlier.
for _, row in pairs(T) do
  if row.window ~= nil then row.window = "10s" end
  if row.hold ~= nil then row.hold = "5s" end
  if row.clear_hold ~= nil then row.clear_hold = "5s" end
end
-- The common issues (conditions): looked at every second instead of
-- every 10 s, so that opening and resolving are not quantised by 10 s;
-- a symptom must last 5 s (defaults: 1 min) to open an incident and be
-- gone for 5 s to resolve it.
I.every, I.hold, I.clear_hold = "1s", "5s", "5s"
-- The event-loop detector's and the lock waits' look-back (defaults:
-- 1 min): a drill cannot wait a minute for the lag of a blocked loop to
-- leave the window once the fault is off.
I.loop_window = "10s"
I.lock_window = "10s"
-- A slow statement's mean counts for 10 s after it was published
-- (defaults: 1 min), so that the incident resolves within seconds of
-- the slow statements stopping.
I.db_window = "10s"

-- Memory, scaled to the simulator: it runs at about 40 MB RSS (the
-- guide's baseline is 2-4 GB) and its leak adds 30 MB/s up to
-- --leak-cap-mb (the drill gives 512).
-- A leak: RSS above 64 MiB (above the simulator's resting RSS, as 2 GiB
-- is the bottom of the guide's baseline) and growing faster than
-- 5 MiB/s (the defaults' 1 MiB/s is 3.5 GiB an hour; 5 MiB/s is a sixth
-- of the simulator's leak and far above its resting noise) over 10 s
-- (defaults: 10 min), i.e. ten proc samples.
I.leak_min_rss = 64 * MiB
I.leak_slope_bytes_per_s = 5 * MiB
I.leak_window = "10s"
-- The memory row: warning at 256 MiB (the leak is past it within 8 s);
-- critical at 768 MiB, above the drill's 512 MB leak cap, so that the
-- memory drill stays at warning, where clear_cache applies, and the
-- restart (critical) stays out of it.
T.memory.warn = 256 * MiB
T.memory.crit = 768 * MiB
T.memory.clear = 240 * MiB

-- Slow database queries: the simulator's runaway is the transaction
-- that holds the BTCUSDT position row in pg_sleep(1.0); 60 s would
-- never be reached. A query running over 0.5 s counts as one here.
I.runaway_query_s = 0.5

-- The CPU profile an incident takes: 3 s (the guide's is minutes), so
-- that the evidence is in a few seconds after the incident opens. The
-- checklist's own profile (vigil investigate short_term) gets 5 s.
I.profile_seconds = 3
C.profile_seconds = 5
-- The process to profile: the same regular expression the proc plugin
-- selects the simulator with (GENESIS_CMDLINE, conf/genesis.ini), not
-- "genesis", which vigil's own command line (conf/genesis.ini) and
-- PostgreSQL's backends (a database named genesis) match too.
C.process_pattern = os.getenv("GENESIS_CMDLINE") or "genesis_sim[.]py"

-- Remediation: the simulator's cache-clearing endpoint (its address
-- comes from the environment, GENESIS_API, as conf/genesis.ini's
-- does). The memory drill runs vigil with GENESIS_ACTIONS=on and
-- GENESIS_CLEAR_CACHE_MODE=on to clear the cache for real; the
-- event-loop drill with GENESIS_ACTIONS=on, so that its restart (mode
-- approve in issues.lua) really waits for a person; every other action
-- keeps its dry-run mode.
R.cache_clear_url = (os.getenv("GENESIS_API") or "http://127.0.0.1:8080")
  .. "/admin/cache/clear"
R.cache_clear_mode = os.getenv("GENESIS_CLEAR_CACHE_MODE") or "dry-run"

return L
