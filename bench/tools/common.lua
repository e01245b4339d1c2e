--- Shared by the Lua tools of the benchmark (Lua 5.1-5.4, LuaJIT): arguments, the clock,
-- peak RSS and the output protocol the driver (bench/bench.lua) reads:
--   rep SECONDS CALLS BYTES RECORDS CPU one line per measured repetition (CPU: process
--                                       CPU seconds, user + system, of the repetition)
--   rss_kb N                            VmHWM (peak resident set) at the end
local M = {}

M.HISTORY_BY_SESSION = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId"
M.HISTORY_BY_DEFINITION = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId"

--- --name value pairs and --flag switches -> table
function M.args(argv)
  local o = {}
  local i = 1
  while i <= #argv do
    local k = argv[i]:match("^%-%-(.+)$")
    if not k then error("bad argument " .. argv[i]) end
    local v = argv[i + 1]
    if v == nil or v:match("^%-%-") then
      o[k] = true
      i = i + 1
    else
      o[k] = v
      i = i + 2
    end
  end
  o.n = tonumber(o.n or 1000)
  o.reps = tonumber(o.reps or 5)
  o.warmup = tonumber(o.warmup or 1)
  o.top = tonumber(o.top or 1000)
  o.token = o.token or "bench-token"
  M.ballast = M.make_ballast(tonumber(o.ballast or 0))
  return o
end


--- `kb` KB of live strings (60 bytes each: long strings on 5.4, kept out of the string table):
-- the heap a workload starts from, so that the driver can start each round of a tool from a
-- different heap size and sample the phase of the garbage collector's cycles (see bench/README).
function M.make_ballast(kb)
  local t = {}
  for i = 1, math.floor(kb * 1024 / 64) do t[i] = ("%060d"):format(i) end
  return t
end

-- a monotonic clock: the C core's when loadable, else LuaSocket's, else os.clock (CPU)
local clock
do
  local ok, socket = pcall(require, "socket")
  if ok and socket.gettime then clock = socket.gettime end
  if not clock then
    local okc, core = pcall(require, "mde.core")
    if okc and core.now then clock = core.now end
  end
  clock = clock or os.clock
end
M.now = clock

function M.peak_rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return -1 end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or -1
end

--- Run `once` (returning calls, bytes, records) warmup + reps times; print the protocol.
function M.run(o, once)
  for r = 1, o.warmup + o.reps do
    collectgarbage()
    collectgarbage()
    local c0, t0 = os.clock(), clock()
    local calls, bytes, records = once()
    local dt, dc = clock() - t0, os.clock() - c0
    if r > o.warmup then
      io.write(("rep %.6f %d %d %d %.6f\n"):format(dt, calls or 0, bytes or 0, records or 0, dc))
      io.flush()
    end
  end
  io.write(("rss_kb %d\n"):format(M.peak_rss_kb()))
end

--- "@odata.nextLink" from the tail of a raw page (for tools that follow links without decoding)
function M.next_link_raw(s)
  return s:sub(-4096):match('"@odata%.nextLink":"([^"]+)"')
end

--- The workloads of a tool that only knows how to POST: `post(url, body) -> body text`,
-- `decode(text) -> table`. small: o.n calls of the history of one session; pages/each: every
-- page of the history of one definition (pages mode holds the whole listing until the end).
function M.run_posts(o, post, decode)
  M.run(o, function()
    if o.mode == "small" then
      local u = o.base .. M.HISTORY_BY_SESSION
      local body = '{"SessionIds":["' .. o.sid .. '"]}'
      local bytes = 0
      for _ = 1, o.n do
        local s = post(u, body)
        bytes = bytes + #s
        local v = decode(s)
        if #v.value ~= 1 then error("no record") end
      end
      return o.n, bytes, o.n
    end
    local u = o.base .. M.HISTORY_BY_DEFINITION .. "?$top=" .. o.top
    local body = '{"ScanDefinitionIds":["' .. o.def .. '"]}'
    local calls, bytes, records, list = 0, 0, 0, {}
    while u do
      local s = post(u, body)
      calls, bytes = calls + 1, bytes + #s
      local page = decode(s)
      local items = page.value
      records = records + #items
      if o.mode == "pages" then
        for i = 1, #items do list[#list + 1] = items[i] end
      end
      u = page["@odata.nextLink"]
    end
    -- the whole listing was held (pages mode) until here
    if o.mode == "pages" and #list ~= records then error("lost records") end
    return calls, bytes, records
  end)
end


return M
