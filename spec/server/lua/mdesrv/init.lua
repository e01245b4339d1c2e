--- init_by_lua (master process): read the launch settings, seed the shared dicts, load every
-- module so workers (running as nobody) never read sources lazily.
local M = {}


--- conf_path: the Lua file written by spec/helpers/server.lua (returns a table).
function M.init(conf_path)
  local conf = assert(dofile(conf_path))
  local cjson = require "cjson.safe"
  local data = require "mdesrv.data"
  local state = require "mdesrv.state"
  local api = require "mdesrv.api"
  require "mdesrv.router"
  require "mdesrv.control"
  require "mdesrv.stats"
  require "mdesrv.faults"
  require "mdesrv.token"
  require "mdesrv.crypto"

  api.init(conf.data)

  local f = assert(io.open(conf.app_cert, "rb"))
  local app_pem = f:read("*a")
  f:close()

  local cfg = {}
  for k, v in pairs(state.DEFAULTS) do cfg[k] = v end
  cfg.clients = { c = { secrets = data.array({ "s" }), certs = data.array({ app_pem }) } }
  state.store_config(cfg)
  -- the launch-time control table (server.start{ control = {...} }) is part of the initial state
  if conf.control then
    local ok, err = state.apply_control(conf.control)
    if not ok then error("invalid start control: " .. tostring(err)) end
  end
  local dict = state.dict
  dict:set("cfg_initial", dict:get("cfg"))
  local defs = data.encode(data.array(api.initial_definitions()))
  dict:set("defs_initial", defs)
  dict:set("defs", defs)
  dict:set("defs_ver", 1)
  dict:set("faults_ver", 1)
  dict:set("rl_ver", 1)
  M.conf = conf
  return cjson
end


function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end


return M
