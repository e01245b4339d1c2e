--- What the server saw, kept in the mde_stats shared dict (consistent across workers).
--
-- Counters:  route:<name>, status:<route>:<code>, host:<hostname>:total|auth, api:total,
--            api:client:<tenant/client>, token:requests, token:issued, token:failed,
--            token:client:<id>, token:cred:<secret|assertion|both|none>, token:jti_reused,
--            throttled, early_retries, faults_fired, fault_route:<route>
-- Lists:     requests (last REQUESTS_MAX entries, JSON), api_times (last TIMES_MAX epoch secs)
-- Values:    token:last (JSON of the last token request, credentials replaced by "<present>")
local cjson = require "cjson.safe"

local M = {}

local dict = ngx.shared.mde_stats
M.dict = dict

M.REQUESTS_MAX = 200
M.TIMES_MAX = 20000
M.BODY_MAX = 4096


function M.incr(key, n)
  dict:incr(key, n or 1, 0)
end


function M.set_token_last(t)
  dict:set("token:last", cjson.encode(t))
end


--- log_by_lua: record the request.
function M.log()
  local ctx = ngx.ctx
  local route = ctx.route or "unknown"
  if route == "control" then return end
  if ctx.generation and ctx.generation ~= M.generation() then return end
  local status = ngx.status
  dict:incr("route:" .. route, 1, 0)
  dict:incr("status:" .. route .. ":" .. status, 1, 0)
  local host = ngx.var.http_host or ""
  local hostname = host:match("^(%[[^%]]*%])") or host:match("^([^:]*)") or host
  hostname = hostname:lower()
  local auth = ngx.var.http_authorization ~= nil
  dict:incr("host:" .. hostname .. ":total", 1, 0)
  if auth then dict:incr("host:" .. hostname .. ":auth", 1, 0) end
  local now = ngx.now()
  local body = ctx.log_body
  if body == nil then body = ctx.body end
  local blen = body and #body or 0
  if body and #body > M.BODY_MAX then body = body:sub(1, M.BODY_MAX) end
  local entry = {
    method = ngx.req.get_method(), uri = ngx.var.request_uri, host = host, hostname = hostname,
    auth = auth, route = route, status = status, time = now, body = body, body_length = blen,
    client = ctx.client, request_id = ctx.req_id, fault = ctx.fault, worker = ngx.worker.pid(),
    port = tonumber(ngx.var.server_port), content_type = ngx.var.content_type,
    user_agent = ngx.var.http_user_agent, error_code = ctx.error_code,
    connection = tonumber(ngx.var.connection), tls_resumed = ngx.var.ssl_session_reused == "r",
  }
  local len = dict:rpush("requests", cjson.encode(entry))
  if len and len > M.REQUESTS_MAX then
    for _ = 1, len - M.REQUESTS_MAX do dict:lpop("requests") end
  end
  if ctx.api then
    dict:incr("api:total", 1, 0)
    if ctx.client then dict:incr("api:client:" .. ctx.client, 1, 0) end
    local n = dict:rpush("api_times", now)
    if n and n > M.TIMES_MAX then dict:lpop("api_times") end
  end
end


local function put(t, path, value)
  for i = 1, #path - 1 do
    local k = path[i]
    t[k] = t[k] or {}
    t = t[k]
  end
  t[path[#path]] = value
end


--- The whole picture, as a table (served by GET /_test/stats).
function M.snapshot()
  local out = {
    routes = {}, statuses = {}, hosts = {}, api = { total = 0, by_client = {} },
    token = { requests = 0, issued = 0, failed = 0, by_client = {}, credentials = {},
              jti_reused = 0 },
    throttled = 0, early_retries = 0, faults_fired = 0, faults_by_route = {},
    requests = {}, api_times = {},
  }
  for _, key in ipairs(dict:get_keys(0)) do
    local v = dict:get(key)
    if type(v) == "number" then
      local a, b = key:match("^([^:]+):(.*)$")
      local c
      if a == "route" then out.routes[b] = v
      elseif a == "status" then
        local r, code = b:match("^(.*):(%d+)$")
        if r then put(out.statuses, { r, code }, v) end
      elseif a == "host" then
        local h, kind = b:match("^(.*):(%a+)$")
        if h then put(out.hosts, { h, kind }, v) end
      elseif a == "api" then
        c = b:match("^client:(.*)$")
        if c then out.api.by_client[c] = v elseif b == "total" then out.api.total = v end
      elseif a == "token" then
        c = b:match("^client:(.*)$")
        local cred = b:match("^cred:(.*)$")
        if c then out.token.by_client[c] = v
        elseif cred then out.token.credentials[cred] = v
        else out.token[b] = v end
      elseif a == "fault_route" then out.faults_by_route[b] = v
      elseif a == nil then
        out[key] = v
      end
    end
  end
  for h, t in pairs(out.hosts) do
    t.total = t.total or 0
    t.auth = t.auth or 0
    out.hosts[h] = t
  end
  local last = dict:get("token:last")
  if last then out.token.last = cjson.decode(last) end
  -- lists: pop everything and push it back (there is no range read on a shared dict list)
  local function read_list(name, max)
    local items = {}
    for _ = 1, max + 10 do
      local v = dict:lpop(name)
      if not v then break end
      items[#items + 1] = v
    end
    for _, v in ipairs(items) do dict:rpush(name, v) end
    return items
  end
  for i, v in ipairs(read_list("requests", M.REQUESTS_MAX)) do out.requests[i] = cjson.decode(v) end
  out.api_times = read_list("api_times", M.TIMES_MAX)
  return out
end


function M.reset()
  local gen = M.generation() + 1
  dict:flush_all()
  dict:flush_expired()
  dict:set("generation", gen)
end


--- Which reset we are in. A request that started before a reset is logged (in the
-- log phase, after the client already has its answer) into the old generation: dropped.
function M.generation()
  return dict:get("generation") or 0
end


return M
