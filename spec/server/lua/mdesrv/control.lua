-- luacheck: globals ngx
--- The plain-HTTP control port (127.0.0.1 only): /_test/control, /_test/stats, /_test/reset, ...
local cjson = require "cjson.safe"
local data = require "mdesrv.data"
local state = require "mdesrv.state"
local stats = require "mdesrv.stats"
local token = require "mdesrv.token"
local api = require "mdesrv.api"

local M = {}


local function reply(status, value)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  local body = type(value) == "string" and value or data.encode(value)
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end


local function body_json()
  local body = require("mdesrv.router").read_body()
  if not body or body == "" then return {} end
  local v, err = cjson.decode(body)
  if type(v) ~= "table" then return nil, "body is not a JSON object: " .. tostring(err) end
  return v
end


--- Restore the initial configuration and data, forget tokens, counters and fault counters.
function M.reset()
  local dict = state.dict
  local initial = dict:get("cfg_initial")
  local defs = dict:get("defs_initial")
  local VERSIONS = { "cfg_ver", "defs_ver", "faults_ver", "rl_ver" }
  local old = {}
  for i, k in ipairs(VERSIONS) do old[i] = dict:get(k) or 0 end
  dict:flush_all()
  dict:flush_expired()
  dict:set("cfg_initial", initial)
  dict:set("defs_initial", defs)
  dict:set("cfg", initial)
  dict:set("defs", defs)
  -- versions only grow (never back to a value a worker has cached, whatever the clock
  -- says), so worker caches and per-version fault counters notice the change
  local t = math.floor(state.now() * 1000)
  for i, k in ipairs(VERSIONS) do dict:set(k, math.max(old[i] + 1, t)) end
  state.tokens:flush_all()
  state.tokens:flush_expired()
  stats.reset()
end


function M.handle()
  ngx.ctx.route = "control"
  local method, uri = ngx.req.get_method(), ngx.var.uri
  if uri == "/_test/health" then
    return reply(200, { ok = true, pid = ngx.worker.pid() })
  elseif uri == "/_test/stats" then
    return reply(200, cjson.encode(stats.snapshot()))
  elseif uri == "/_test/config" then
    return reply(200, (state.dict:get("cfg")))
  elseif uri == "/_test/reset" and method == "POST" then
    M.reset()
    return reply(200, { ok = true })
  elseif uri == "/_test/control" and method == "POST" then
    local changes, err = body_json()
    if not changes then return reply(400, { error = err }) end
    local cfg
    cfg, err = state.apply_control(changes)
    if not cfg then return reply(400, { error = err }) end
    return reply(200, state.dict:get("cfg"))
  elseif uri == "/_test/issue_token" and method == "POST" then
    local req, err = body_json()
    if not req then return reply(400, { error = err }) end
    local cfg = state.config()
    local tok, ttl, exp = token.issue(cfg, req.client or "c", req.tenant or "t",
      req.resource or cfg.api_resources[1], req.ttl)
    return reply(200, { access_token = tok, expires_in = ttl, exp = exp })
  elseif uri == "/_test/definitions" then
    return reply(200, state.dict:get("defs"))
  elseif uri == "/_test/data" then
    local s = api.static
    local ids = {}
    for def, list in pairs(s.ids_by_def) do ids[def] = data.array(list) end
    return reply(200, { opts = s.opts, session_ids_by_definition = ids })
  end
  return reply(404, { error = "unknown control endpoint " .. method .. " " .. uri })
end


return M
