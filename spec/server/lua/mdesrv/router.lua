-- luacheck: globals ngx
--- Entry point of the HTTPS servers: route, then delay -> auth -> throttling -> faults -> handler.
local state = require "mdesrv.state"
local http = require "mdesrv.http"
local faults = require "mdesrv.faults"
local token = require "mdesrv.token"
local api = require "mdesrv.api"
local stats = require "mdesrv.stats"

local M = {}

local PREFIX = "/api/deviceauthenticatedscandefinitions"
local AGENTS = "/api/deviceauthenticatedscanagents"

-- exact paths (lower-case, no trailing slash) -> { METHOD = route }
local EXACT = {
  [PREFIX .. "/getscanhistorybysessionid"] = { POST = "history_by_session" },
  [PREFIX .. "/scanhistorybysessionid"] = { GET = "history_by_session_get" },
  [PREFIX .. "/getscanhistorybyscandefinitionid"] = { POST = "history_by_definition" },
  [PREFIX .. "/batchdelete"] = { POST = "batch_delete" },
  [PREFIX] = { GET = "definitions", POST = "create_definition" },
  [AGENTS] = { GET = "agents" },
}


--- Returns route, argument (id or tenant), extra, or "not_found"/"method_not_allowed".
function M.match(method, uri)
  local path = uri:gsub("/+$", "")
  local lower = path:lower()
  local m = EXACT[lower]
  if m then
    if m[method] then return m[method] end
    return "method_not_allowed", nil, m
  end
  local id = lower:match("^" .. PREFIX:gsub("%-", "%%-") .. "/([^/]+)$")
  if id then
    id = path:sub(#PREFIX + 2)
    if method == "GET" then return "definition", id end
    if method == "PATCH" then return "update_definition", id end
    return "method_not_allowed", id, { GET = 1, PATCH = 1 }
  end
  id = lower:match("^" .. AGENTS .. "/([^/]+)$")
  if id then
    id = path:sub(#AGENTS + 2)
    if method == "GET" then return "agent", id end
    return "method_not_allowed", id, { GET = 1 }
  end
  local tenant = path:match("^/([^/]+)/oauth2/v2%.0/token$")
  if tenant then return "token", tenant, "v2" end
  tenant = path:match("^/([^/]+)/oauth2/token$")
  if tenant then return "token", tenant, "v1" end
  return "not_found"
end


------------------------------------------------------------------------------------------
-- auth and throttling

local function in_list(list, v)
  if type(list) ~= "table" then return false end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end


--- Check the bearer token. Returns the token record, or nil after a 401/403 was sent.
local function authenticate(cfg)
  local h = ngx.var.http_authorization
  local www = { ["WWW-Authenticate"] = 'Bearer error="invalid_token"' }
  if not h then
    http.error(401, "Unauthorized", "Authorization header is missing; send 'Authorization: Bearer <token>'.",
      { ["WWW-Authenticate"] = "Bearer" })
    return nil
  end
  local tok = h:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  if not tok then
    http.error(401, "Unauthorized", "The Authorization header is not a Bearer token.", www)
    return nil
  end
  local rec, why = token.lookup(tok)
  if not rec then
    http.error(401, "Unauthorized", why == "expired" and "The access token has expired."
      or "The access token is not valid (unknown or revoked).", www)
    return nil
  end
  ngx.ctx.client = rec.tenant .. "/" .. rec.client
  if not in_list(cfg.api_resources, rec.aud) then
    http.error(403, "Forbidden", "The access token audience '" .. rec.aud .. "' is not valid for "
      .. "this API; expected a token for " .. tostring(cfg.api_resources and cfg.api_resources[1]) .. ".")
    return nil
  end
  return rec
end


--- Sliding-window rate limit per client. Returns nil (allowed) or seconds to wait.
local function throttle(cfg, client)
  local limits = cfg.rate_limit
  if type(limits) ~= "table" or limits[1] == nil then return nil end
  local dict = state.dict
  local ver = dict:get("rl_ver") or 0
  return state.with_lock("rl:" .. client, function()
    local now = state.now()
    local early = dict:get("rl_next:" .. ver .. ":" .. client)
    if early and now < early - 0.05 then stats.incr("early_retries") end
    local wait
    for i, lim in ipairs(limits) do
      local key = "rl:" .. ver .. ":" .. i .. ":" .. client
      local window, limit = tonumber(lim.window) or 60, tonumber(lim.limit) or 100
      for _ = 1, limit + 1 do
        local v = dict:lpop(key)
        if not v then break end
        if v > now - window then dict:lpush(key, v) break end
      end
      if (dict:llen(key) or 0) >= limit then
        local oldest = dict:lpop(key)
        dict:lpush(key, oldest)
        local w = math.max(1, math.ceil(oldest + window - now))
        if not wait or w > wait then wait = w end
      end
    end
    if wait then
      dict:set("rl_next:" .. ver .. ":" .. client, now + wait, wait + 60)
      return wait
    end
    for i = 1, #limits do
      dict:rpush("rl:" .. ver .. ":" .. i .. ":" .. client, now)
    end
    return nil
  end)
end


------------------------------------------------------------------------------------------

--- The request body (also when nginx spooled it to a file); nil for GET and HEAD.
local function read_body()
  local method = ngx.req.get_method()
  if method == "GET" or method == "HEAD" then return nil end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then body = f:read("*a") f:close() end
    end
  end
  return body
end
M.read_body = read_body


function M.handle()
  local ctx = ngx.ctx
  ctx.req_id = state.guid()
  ctx.generation = require("mdesrv.stats").generation()
  local method = ngx.req.get_method()
  local route, arg, extra = M.match(method, ngx.var.uri)
  ctx.route = route
  ctx.body = read_body()
  local cfg, ver = state.config()

  if route == "token" then
    ctx.tenant, ctx.token_version = arg, extra
    local d = tonumber(cfg.token_delay) or 0
    if d > 0 then ngx.sleep(d) end
    if faults.apply(cfg, route) then return end
    return token.handle(cfg, ver)
  end
  if route == "not_found" then
    return http.error(404, "ResourceNotFound", "No route matches " .. method .. " " .. ngx.var.uri .. ".")
  end
  if route == "method_not_allowed" then
    local allow = {}
    for m in pairs(extra) do allow[#allow + 1] = m end
    table.sort(allow)
    return http.error(405, "MethodNotAllowed", "The method " .. method .. " is not allowed here.",
      { Allow = table.concat(allow, ", ") })
  end

  ctx.api = true
  local d = tonumber(cfg.delay) or 0
  if d > 0 then ngx.sleep(d) end
  local who = authenticate(cfg)
  if not who then return end
  local wait = throttle(cfg, ctx.client)
  if wait then
    stats.incr("throttled")
    return http.error(429, "TooManyRequests", "Rate limit is exceeded. Try again in " .. wait
      .. " seconds.", { ["Retry-After"] = tostring(wait) })
  end
  if faults.apply(cfg, route) then return end
  return api[route](cfg, arg)
end


return M
