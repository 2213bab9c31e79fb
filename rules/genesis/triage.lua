-- triage.lua: the guide's "Immediate actions (< 5 minutes)" checklist as
-- the runbook every genesis threshold opens (thresholds.lua). Each item
-- is a step whose result is kept as the incident's evidence:
--
--   Check current resource usage (CPU, memory, disk)  snapshot, proc.top
--   Review recent error logs for exceptions            log.recent
--   Check database connection pool status              snapshot of the pool
--                                                       and pg connections
--   Verify network connectivity to exchange            tcp.measure
--   Check for blocking queries                         pg.blocking
--   Review WebSocket connection status                 snapshot of ws.*
--   Clear application caches if needed                 memory.lua's action
--
-- The same steps run on demand with `vigil investigate immediate`.
local vigil = require "vigil"

vigil.runbook "genesis_triage" {
  title = "genesis: a baseline level was crossed",
  immediate = {
    vigil.step "snapshot" {
      series = { "sys.cpu.*{cpu=total}", "sys.mem.*", "sys.disk.*",
                 "proc.*{instance=genesis,pid=}", "genesis.*" },
      window = "15m",
    },
    vigil.step "proc.top" { by = "cpu", limit = 10 },
    vigil.step "log.recent" { instance = "genesis_log", limit = 20 },
    vigil.step "snapshot" {
      series = { "genesis.db.pool.*", "pg.connections.*" },
      window = "15m",
    },
    vigil.step "tcp.measure" { instance = "exchange", count = 5,
                               interval_ms = 100 },
    vigil.step "pg.blocking" { instance = "genesis_db" },
    vigil.step "snapshot" {
      series = { "ws.*", "genesis.ws.connections" }, window = "15m",
    },
  },
}
