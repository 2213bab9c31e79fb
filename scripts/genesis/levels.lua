-- genesis/levels.lua: the one place to change the genesis runbooks'
-- levels. It starts from the guide's table (genesis/defaults.lua); change
-- a row here, for example
--
--   L.thresholds.order_latency.warn = 40
--   L.thresholds.memory.crit = 8 * 1024 * 1024 * 1024
--   L.thresholds.api_response.metric =
--     "http.request.total_ms{instance=my_api}"
--
-- or keep this file as it is and put your own genesis/levels.lua in a
-- directory named first on `[rules] scripts`: vigil finds yours before
-- this one. `vigil check` validates the result; `vigil test rules/genesis`
-- shows what the rules then do.
local L = require "genesis.defaults"

return L
