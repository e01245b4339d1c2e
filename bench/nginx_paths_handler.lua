--- Inside nginx (bench/nginx_paths.lua writes the config): the same API requests over each
-- candidate path, measured from the worker itself.
--
--   /run?variant=V&kind=K&n=N&c=C   N requests, C at a time (light threads of this request)
--   -> JSON { wall, rps, p50, p99, max (ms), loop_cpu_us (event-loop thread CPU per request), errors }
--
-- Variants:
--   thread      ngx.run_worker_thread -> mde.transport.ngx_thread (raw body back), then core.decode
--               in the worker's VM: what mde.transport.ngx does
--   thread_tables  the same, but decoded in the thread's VM and the tables copied back
--               (bench/nginx_paths_thread.lua)
--   subreq      ngx.location.capture to an internal proxy_pass location (upstream keepalive,
--               proxy_ssl_verify on), then core.decode
--   cosocket    a minimal hand-written HTTP/1.1 client on ngx.socket.tcp (keepalive pool,
--               sslhandshake with verify), then core.decode: a LOWER BOUND only, not a candidate
--   blocking    mde.transport.curl in the worker's VM (blocks the event loop: the contrast)
--   client      the whole library: mde.new (default transport = mde.transport.ngx) + client:request
-- Kinds: small (GET the agent list, ~1.4 KB), history (POST history of one session, ~1 KB),
-- big (POST history of bulk-4096, one page of 4,096 records, ~2.2 MB).

local ffi = require "ffi"
local cjson = require "cjson.safe"
local core = require "mde.core"

ffi.cdef [[
struct mde_bench_rusage { long ut_s, ut_us, st_s, st_us; long rest[14]; };
int getrusage(int who, struct mde_bench_rusage *ru);
]]
local RUSAGE_THREAD = 1
local ru = ffi.new("struct mde_bench_rusage")

-- CPU seconds of the calling thread (nginx's event loop)
local function thread_cpu()
  ffi.C.getrusage(RUSAGE_THREAD, ru)
  return tonumber(ru.ut_s) + tonumber(ru.ut_us) / 1e6 + tonumber(ru.st_s) + tonumber(ru.st_us) / 1e6
end

-- sub-millisecond wall clock (ngx.now has millisecond resolution)
local now = core.now

local M = {}

local CONF -- { base_url, host, port, ca_file, token }, from the query of /setup

local KINDS = {
  small = { method = "GET", path = "/api/DeviceAuthenticatedScanAgents" },
  history = { method = "POST", path = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId",
              body = '{"SessionIds":["5e510000000000000000000000000001"]}' },
  big = { method = "POST", path = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId?$top=4096",
          body = '{"ScanDefinitionIds":["bulk-4096"]}' },
}


local function core_req(k, decode)
  return {
    method = k.method, url = CONF.base_url .. k.path, body = k.body, bearer = CONF.token,
    headers = k.body and { "Accept: application/json", "Content-Type: application/json" }
      or { "Accept: application/json" },
    ca_file = CONF.ca_file, timeout = 30, connect_timeout = 10, decode = decode,
  }
end


local function check_body(status, body)
  if status ~= 200 then return nil, "status " .. tostring(status) end
  if type(body) ~= "table" then return nil, "body not decoded" end
  return true
end


local blocking_handle
local client

local VARIANTS = {}

function VARIANTS.thread_tables(k)
  local ok, resp, facts = ngx.run_worker_thread("default", "nginx_paths_thread", "send", core_req(k))
  if not ok then return nil, resp end
  if not resp then return nil, facts.message end
  return check_body(resp.status, resp.body)
end

function VARIANTS.thread(k)
  local ok, resp, facts = ngx.run_worker_thread("default", "mde.transport.ngx_thread", "send", core_req(k))
  if not ok then return nil, resp end
  if not resp then return nil, facts.message end
  return check_body(resp.status, core.decode(resp.body))
end

function VARIANTS.subreq(k)
  local res = ngx.location.capture("/_mde_proxy", {
    method = k.method == "POST" and ngx.HTTP_POST or ngx.HTTP_GET,
    body = k.body, ctx = {},
    vars = { mde_path = k.path, mde_auth = "Bearer " .. CONF.token,
             mde_ctype = k.body and "application/json" or "" },
  })
  if res.truncated then return nil, "truncated" end
  return check_body(res.status, core.decode(res.body))
end

function VARIANTS.blocking(k)
  if not blocking_handle then blocking_handle = core.new() end
  local resp, facts = blocking_handle:perform(core_req(k))
  if not resp then return nil, facts.message end
  return check_body(resp.status, resp.body)
end

function VARIANTS.client(k)
  if not client then
    client = assert(require("mde").new{ token = CONF.token, base_url = CONF.base_url, ca_file = CONF.ca_file,
                                        rate_limit = false, retries = 0 })
  end
  local path = k.path
  local resp, err = client:request(k.method, path, { body = k.body })
  if not resp then return nil, tostring(err) end
  return check_body(resp.status, resp.body)
end


-- cosocket: just enough HTTP/1.1 for these responses (Content-Length or chunked). Bench only.
local function read_body(sock, headers)
  local len = tonumber(headers["content-length"])
  if len then return sock:receive(len) end
  if (headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    local parts = {}
    for _ = 1, 1e6 do
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local size = tonumber(line:match("^%x+"), 16)
      if not size then return nil, "bad chunk" end
      if size == 0 then
        sock:receive("*l")
        return table.concat(parts)
      end
      local data
      data, err = sock:receive(size)
      if not data then return nil, err end
      parts[#parts + 1] = data
      sock:receive("*l")
    end
  end
  return nil, "no length"
end

function VARIANTS.cosocket(k)
  local sock = ngx.socket.tcp()
  sock:settimeouts(10000, 30000, 30000)
  local ok, err = sock:connect(CONF.host, CONF.port)
  if not ok then return nil, err end
  if sock:getreusedtimes() == 0 then
    ok, err = sock:sslhandshake(nil, "localhost", true)
    if not ok then return nil, err end
  end
  local req = k.method .. " " .. k.path .. " HTTP/1.1\r\nHost: " .. CONF.host .. ":" .. CONF.port
    .. "\r\nAccept: application/json\r\nAuthorization: Bearer " .. CONF.token
    .. (k.body and ("\r\nContent-Type: application/json\r\nContent-Length: " .. #k.body) or "")
    .. "\r\n\r\n" .. (k.body or "")
  ok, err = sock:send(req)
  if not ok then return nil, err end
  local line
  line, err = sock:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
  local headers = {}
  for _ = 1, 200 do
    local h
    h, err = sock:receive("*l")
    if not h then return nil, err end
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local body
  body, err = read_body(sock, headers)
  if not body then return nil, err end
  sock:setkeepalive(60000, 64)
  return check_body(status, core.decode(body))
end


local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  local i = math.ceil(#sorted * p)
  if i < 1 then i = 1 end
  return sorted[i]
end


function M.setup()
  local a = ngx.req.get_uri_args()
  CONF = { base_url = a.base_url, host = a.host, port = tonumber(a.port), ca_file = a.ca_file, token = a.token }
  client = nil
  ngx.say("ok")
end


function M.run()
  local a = ngx.req.get_uri_args()
  local fn = VARIANTS[a.variant]
  local k = KINDS[a.kind]
  if not fn or not k then return ngx.exit(400) end
  local n, c = tonumber(a.n) or 100, tonumber(a.c) or 10
  local lat, errors, next_i = {}, {}, 0
  local cpu0, t0 = thread_cpu(), now()
  local function worker()
    for _ = 1, n do
      next_i = next_i + 1
      if next_i > n then return end
      local s = now()
      local ok, err = fn(k)
      lat[#lat + 1] = (now() - s) * 1000
      if not ok then errors[tostring(err)] = (errors[tostring(err)] or 0) + 1 end
    end
  end
  local threads = {}
  for i = 1, c do threads[i] = ngx.thread.spawn(worker) end
  for i = 1, c do ngx.thread.wait(threads[i]) end
  local wall = now() - t0
  local cpu = thread_cpu() - cpu0
  table.sort(lat)
  ngx.say(cjson.encode{
    variant = a.variant, kind = a.kind, n = n, c = c, wall = wall, rps = n / wall,
    p50 = percentile(lat, 0.5), p99 = percentile(lat, 0.99), max = lat[#lat] or 0,
    loop_cpu_us = cpu / n * 1e6, errors = errors,
  })
end


--- Event-loop CPU of decoding one big page in this VM vs. copying the decoded tables out of
-- a worker thread (the two places the JSON can be decoded).
function M.decode_cost()
  local n = tonumber(ngx.req.get_uri_args().n) or 20
  local ok, resp = ngx.run_worker_thread("default", "mde.transport.ngx_thread", "send", core_req(KINDS.big))
  assert(ok and resp and resp.status == 200, "fetch failed")
  local raw = resp.body
  local c0 = thread_cpu()
  for _ = 1, n do assert(core.decode(raw)) end
  local decode = (thread_cpu() - c0) / n
  ngx.say(cjson.encode{ bytes = #raw, decode_ms = decode * 1000 })
end


return M
