-- luacheck: globals ngx
--- Fault injection (control key `faults`). See spec/server/README.md for every field.
local data = require "mdesrv.data"
local seeds = require "mdesrv.seeds"
local http = require "mdesrv.http"
local state = require "mdesrv.state"
local stats = require "mdesrv.stats"

local M = {}

local dict = state.dict

M.API_ROUTES = {
  history_by_session = true, history_by_session_get = true, history_by_definition = true,
  definitions = true, definition = true, create_definition = true, update_definition = true,
  batch_delete = true, agents = true, agent = true,
}

local MALFORMED = '{"@odata.context":"https://api.securitycenter.microsoft.com/api/$metadata",'
  .. '"value":[{"orgId":"x",,"ScanStatus":"Success"'

local HTML = '<html>\r\n<head><title>%d Bad Gateway</title></head>\r\n<body>\r\n'
  .. '<center><h1>%d Bad Gateway</h1></center>\r\n<hr><center>Microsoft-Azure-Application-Gateway/v2</center>\r\n'
  .. '</body>\r\n</html>\r\n'

local huge_cache = {}


local function matches(f, route, method, hostname)
  local r = f.route or "*"
  local ok
  if r == "all" then ok = true
  elseif r == "*" then ok = M.API_ROUTES[route] == true
  elseif type(r) == "table" then
    ok = false
    for _, x in ipairs(r) do if x == route then ok = true break end end
  else ok = (r == route) end
  if not ok then return false end
  if f.method and f.method:upper() ~= method then return false end
  if f.host and f.host:lower() ~= hostname then return false end
  if f.uri and not ngx.var.request_uri:find(f.uri, 1, true) then return false end
  return true
end


--- Does fault number i fire for this (matching) request? Counters are shared by all workers.
local function fires(f, i)
  local ver = dict:get("faults_ver") or 0
  local n = dict:incr("fault:" .. ver .. ":" .. i, 1, 0)
  local skip = tonumber(f.skip) or 0
  if n <= skip then return false end
  local m = n - skip
  if f.count then return m <= tonumber(f.count) end
  if f.every then return m % tonumber(f.every) == 0 end
  return true
end


local function huge_body(size)
  size = math.floor(tonumber(size) or 10 * 1024 * 1024)
  local b = huge_cache[size]
  if b then return b end
  local head = '{"@odata.context":"https://api.securitycenter.microsoft.com/api/$metadata","value":[],"pad":"'
  local tail = '"}'
  local pad = size - #head - #tail
  if pad < 0 then pad = 0 end
  b = head .. string.rep("x", pad) .. tail
  huge_cache = { [size] = b }                   -- keep one cached size per worker
  return b
end


local function hostname_of(host)
  return ((host:match("^(%[[^%]]*%])") or host:match("^([^:]*)") or host)):lower()
end


--- Send Content-Length larger than the body, then close the connection.
local function truncated(f)
  local body = f.body or '{"@odata.context":"https://api.securitycenter.microsoft.com/api/$metadata",'
    .. '"value":[{"orgId":"f3c1a2b4-5d6e-4f70-8a9b-0c1d2e3f4a5b","ScanDefinitionIds":"4ad8d4'
  local claimed = #body + (tonumber(f.missing) or 1000)
  ngx.status = tonumber(f.status) or 200       -- for the log phase; the raw socket writes the rest
  local ok, sock = pcall(ngx.req.socket, true)
  if ok and sock then
    local head = "HTTP/1.1 " .. ngx.status .. " OK\r\nContent-Type: " .. http.JSON
      .. "\r\nContent-Length: " .. claimed .. "\r\nrequest-id: " .. (ngx.ctx.req_id or "")
      .. "\r\nConnection: keep-alive\r\n\r\n"
    sock:send(head .. body)
    return ngx.exit(ngx.HTTP_OK)             -- closes the raw connection
  end
  -- HTTP/2 (no raw socket): send the short body and abort the stream
  ngx.header["Content-Type"] = http.JSON
  ngx.header["Content-Length"] = claimed
  ngx.print(body)
  ngx.flush(true)
  return ngx.exit(444)
end


--- Apply the first firing fault for this request, if any.
-- Returns true when the response has been sent (the handler must stop), false otherwise
-- (no fault, a delay-only fault, or a fault that only changes the content type).
function M.apply(cfg, route)
  local list = cfg.faults
  if type(list) ~= "table" or list[1] == nil then return false end
  local method = ngx.req.get_method()
  local hostname = hostname_of(ngx.var.http_host or "")
  for i, f in ipairs(list) do
    if type(f) == "table" and matches(f, route, method, hostname) and fires(f, i) then
      return M.fire(f, route)
    end
  end
  return false
end


function M.fire(f, route)
  local ctx = ngx.ctx
  stats.incr("faults_fired")
  stats.incr("fault_route:" .. route)
  ctx.fault = f.mode or (f.status and tostring(f.status)) or (f.delay and "delay") or "fault"
  if f.delay and tonumber(f.delay) > 0 then ngx.sleep(tonumber(f.delay)) end
  local mode, status = f.mode, tonumber(f.status)
  local headers = {}
  if type(f.headers) == "table" then for k, v in pairs(f.headers) do headers[k] = v end end
  if f.retry_after ~= nil then headers["Retry-After"] = tostring(f.retry_after) end

  if mode == nil and status == nil and f.body == nil then
    return false                                    -- delay only: carry on normally
  end
  if mode == "wrong_ctype" then
    ctx.force_ctype = f.content_type or "text/plain; charset=utf-8"
    return false
  end
  if mode == "reset" then
    return ngx.exit(444)
  end
  if mode == "truncated" then
    return truncated(f)
  end
  local ctype = f.content_type
  local body = f.body
  if mode == "malformed" then
    status, body, ctype = status or 200, body or MALFORMED, ctype or http.JSON
  elseif mode == "seed" then
    status, body, ctype = status or 200, seeds.SEED_001, ctype or http.JSON
  elseif mode == "seed000" then
    status, body, ctype = status or 200, seeds.SEED_000, ctype or http.JSON
  elseif mode == "empty" then
    status, body, ctype = status or 200, "", ctype or http.JSON
  elseif mode == "html" then
    status = status or 502
    body, ctype = body or HTML:format(status, status), ctype or "text/html"
  elseif mode == "huge" then
    status, body, ctype = status or 200, huge_body(f.size), ctype or http.JSON
    if f.chunked then
      ngx.status = status
      ngx.header["Content-Type"] = ctype
      ngx.header["request-id"] = ctx.req_id
      for k, v in pairs(headers) do ngx.header[k] = v end
      local step = 65536
      for pos = 1, #body, step do
        ngx.print(body:sub(pos, pos + step - 1))
        local ok = ngx.flush(true)
        if not ok then break end
      end
      return ngx.exit(ngx.HTTP_OK)
    end
  elseif mode == "redirect" then
    status = status or 302
    headers["Location"] = f.location
      or ("https://localhost:" .. ngx.var.server_port .. ngx.var.request_uri)
    body, ctype = body or "", ctype or "text/html"
  elseif mode ~= nil then
    status = status or 500
    body = '{"error":{"code":"InternalServerError","message":"unknown fault mode '
      .. tostring(mode):gsub('[^%w_%-]', '') .. '","target":"' .. (ctx.req_id or "") .. '"}}'
    ctype = http.JSON_PLAIN
  else
    status = status or 500
    if body == nil then
      if route == "token" then
        local err = (status >= 500 or status == 429) and "temporarily_unavailable" or "invalid_request"
        body = data.encode({ error = err,
          error_description = "AADSTS90033: A transient error has occurred (injected fault). Please try again.",
          error_codes = data.array({ 90033 }), timestamp = os.date("!%Y-%m-%d %H:%M:%SZ"),
          trace_id = ctx.req_id, correlation_id = ctx.req_id })
      else
        local code = f.code or http.CODES[status] or "Error"
        local msg = f.message or ("Injected fault: HTTP " .. status)
        ctx.error_code = code
        body = http.error_body(code, msg)
      end
    end
    ctype = ctype or http.JSON_PLAIN
  end
  return http.send(status, body, ctype, headers) or true
end


return M
