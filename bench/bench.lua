--- The lua-mde benchmark driver (run it through bench/run.sh, from the repository root).
--
--   lua5.4 bench/bench.lua --dir DIR [--short]
--
-- Everything talks to servers on 127.0.0.1 only:
--   * the bundled MDE-like server (spec/server/: nginx + Lua) makes the data and serves
--     workload 4 (batching, pacing with the server enforcing the same limits, slow answers);
--   * a static nginx (bench/nginx-static.conf.tmpl) serves the bodies of workloads 1-3 as
--     files, so every tool reads the same bytes and the server's per-request cost is small.
-- Each tool runs in its own process: a warm-up, then several measured repetitions; the
-- tables give the median and the min-max of the repetitions, and the ratio of the medians
-- to the floor (bench/floor.c: libcurl with one keep-alive handle + lua-cjson in an embedded
-- Lua 5.4). A tool that is not installed is skipped (and said so); a tool that fails or
-- returns the wrong number of records fails the run: the benchmark is broken.
package.path = "./?.lua;lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local server = require "spec.helpers.server"
local certs = require "spec.helpers.certs"
local core = require "mde.core"

local sh = certs.sh_quote
local CLEAN = certs.CLEAN_ENV
local now = core.now

------------------------------------------------------------------------------------------
-- options

local opt = { short = false }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--short" then opt.short = true
    elseif a == "--dir" then opt.dir = arg[i + 1]; i = i + 1
    elseif a == "--only" then opt.only = arg[i + 1]; i = i + 1
    elseif a == "--serve" then opt.serve = tonumber(arg[i + 1]); i = i + 1
    else error("unknown argument " .. a) end
    i = i + 1
  end
  assert(opt.dir and opt.dir:match("^/tmp/mde%-bench%.[%w]+$"), "--dir /tmp/mde-bench.XXXX is required (bench/run.sh)")
end
local function wanted(w) return not opt.only or opt.only:find(w, 1, true) ~= nil end

-- sizes: full / short
-- sizes: short (CI) / full. W1-W3: `rounds` interleaved rounds, each a process per tool with
-- `warmup` + `reps` repetitions; the slow tools (a TLS handshake per call) do fewer.
local S = opt.short and {
  w1 = { n = 300, reps = 2, warmup = 1, rounds = 3, slow_n = 20, slow_reps = 1, slow_rounds = 1 },
  w2 = { records = 20000, reps = 2, warmup = 1, rounds = 3, slow_reps = 1, slow_rounds = 1 },
  w3 = { records = 200000, reps = 1, warmup = 0, rounds = 3, slow_rounds = 0 },
  w4_n = 300, w4_big = 2000, w4_slow_n = 400, w4_delay = 0.05, w4_ks = { 1, 2, 4, 8 }, w4_reps = 1, w4_tenants = 4,
  w4_counted = 500, w4_counted_ks = { 1, 4 },
  fixup_iters = 15,
} or {
  w1 = { n = 1000, reps = 2, warmup = 1, rounds = 5, slow_n = 100, slow_reps = 1, slow_rounds = 2 },
  w2 = { records = 50000, reps = 2, warmup = 1, rounds = 8, slow_reps = 1, slow_rounds = 2 },
  w3 = { records = 1000000, reps = 1, warmup = 0, rounds = 3, slow_rounds = 0 },
  w4_n = 1000, w4_big = 10000, w4_slow_n = 800, w4_delay = 0.1, w4_ks = { 1, 2, 4, 8, 16 }, w4_reps = 3, w4_tenants = 8,
  w4_counted = 2000, w4_counted_ks = { 1, 4, 8 },
  fixup_iters = 40,
}
local TOP = 1000
local SID = string.format("s%031d", 1)
local W2_DEF = "bulk-" .. S.w2.records
local W3_DEF = "bulk-" .. S.w3.records
local W3_RSS_LIMIT_KB = 64 * 1024

------------------------------------------------------------------------------------------
-- small utilities

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

local write, read = server.write_file, server.read_file

local function exists(path) return read(path) ~= nil end

local function log(fmt, ...)
  io.stderr:write(("[bench %6.1fs] " .. fmt .. "\n"):format(now() - (opt.t0 or now()), ...))
end
opt.t0 = now()

local function median(xs)
  local t = {}
  for i, v in ipairs(xs) do t[i] = v end
  table.sort(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) // 2] end
  return (t[n // 2] + t[n // 2 + 1]) / 2
end

local function minmax(xs)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(xs) do
    if v < lo then lo = v end
    if v > hi then hi = v end
  end
  return lo, hi
end

local function have(cmd)
  local _, ok = capture(cmd .. " >/dev/null 2>&1")
  return ok
end

-- W1-W3 run the tools and the static nginx worker on one CPU: on a small VM, ping-pong
-- between two CPUs costs a cross-CPU wake-up per message, which is slow and very noisy;
-- on one CPU the time is the sum of the work on both sides. BENCH_CPU=none turns it off.
local PIN_CPU = os.getenv("BENCH_CPU") or "0"
if not PIN_CPU:match("^%d+$") or not have("taskset -c " .. PIN_CPU .. " true") then PIN_CPU = nil end
local PIN = PIN_CPU and ("taskset -c " .. PIN_CPU .. " ") or ""

------------------------------------------------------------------------------------------
-- servers

local DIR = opt.dir
local mdesrv            -- the bundled server
local static = {}       -- the static nginx: pid, ports

local function stop_static()
  if not static.pid then return end
  local cmd = read("/proc/" .. static.pid .. "/cmdline") or ""
  if cmd:find(DIR, 1, true) then
    os.execute("kill -QUIT " .. static.pid .. " 2>/dev/null")
    for _ = 1, 300 do
      if not server.alive(static.pid) then break end
      core.sleep(0.01)
    end
    if server.alive(static.pid) then os.execute("kill -KILL " .. static.pid .. " 2>/dev/null") end
  end
  static.pid = nil
end

local function start_static()
  local tmpl = assert(read("bench/nginx-static.conf.tmpl"))
  local files = certs.ensure()
  os.execute("mkdir -p " .. sh(DIR .. "/tmp") .. " " .. sh(DIR .. "/a/pages") .. " " .. sh(DIR .. "/b/pages"))
  local last
  for _ = 1, 40 do
    local a, b = math.random(20000, 32000), math.random(20000, 32000)
    if a ~= b then
      local conf = tmpl:gsub("%${([%w_]+)}", {
        DIR = DIR, PORT_A = a, PORT_B = b, CERT = files.server_cert, KEY = files.server_key,
        AFFINITY = PIN_CPU and ("worker_cpu_affinity 1" .. ("0"):rep(tonumber(PIN_CPU)) .. ";") or "" })
      write(DIR .. "/static.conf", conf)
      local out, ok = capture(CLEAN .. "/usr/sbin/nginx -p " .. sh(DIR) .. " -e " .. sh(DIR .. "/static-error.log")
        .. " -c " .. sh(DIR .. "/static.conf") .. " 2>&1")
      if ok then
        for _ = 1, 500 do
          static.pid = tonumber((read(DIR .. "/static.pid") or ""):match("%d+"))
          if static.pid then break end
          core.sleep(0.005)
        end
        assert(static.pid, "static nginx wrote no pid file")
        static.port_a, static.port_b = a, b
        static.base_a = "https://127.0.0.1:" .. a
        static.base_b = "https://127.0.0.1:" .. b
        return
      end
      last = out .. (read(DIR .. "/static-error.log") or "")
      if not last:find("in use", 1, true) then break end
    end
  end
  error("static nginx did not start: " .. tostring(last))
end

-- the directory must be readable by nginx workers running as nobody
local function publish(dir)
  os.execute("chmod -R a+rX " .. sh(dir))
end

------------------------------------------------------------------------------------------
-- data: fetched from the bundled server (with the static server's Host, so every
-- @odata.nextLink points at the static server) and written as files

local function make_data()
  local token = mdesrv:issue_token{}
  local h = core.new()
  local function fetch(host_port, path, body)
    local resp, facts = h:perform{
      method = "POST", url = mdesrv.base_url .. path, bearer = token, ca_file = mdesrv.ca_file,
      headers = { "Host: 127.0.0.1:" .. host_port, "Content-Type: application/json" },
      body = body, decode = false, timeout = 60,
    }
    assert(resp and resp.status == 200, "data fetch failed: " .. tostring(resp and resp.status or facts.message))
    return resp.body
  end
  local small = fetch(static.port_a, "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId",
    '{"SessionIds":["' .. SID .. '"]}')
  write(DIR .. "/a/small.json", small)
  local function pages(port, sub, def, records)
    local total = 0
    for skip = 0, records - 1, TOP do
      local body = fetch(port, "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId?$top="
        .. TOP .. "&$skip=" .. skip, '{"ScanDefinitionIds":["' .. def .. '"]}')
      write(DIR .. "/" .. sub .. "/pages/" .. skip .. ".json", body)
      total = total + #body
    end
    return total
  end
  local t0 = now()
  local w2_bytes = pages(static.port_a, "a", W2_DEF, S.w2.records)
  local w3_bytes = wanted("3") and pages(static.port_b, "b", W3_DEF, S.w3.records) or 0
  h:close()
  publish(DIR)
  log("data: small %d B, %s %.1f MB, %s %.1f MB (%.1f s)", #small, W2_DEF, w2_bytes / 1e6, W3_DEF,
    w3_bytes / 1e6, now() - t0)
  return { small_bytes = #small, w2_bytes = w2_bytes, w3_bytes = w3_bytes, token = token }
end

------------------------------------------------------------------------------------------
-- running a tool: its own process, the protocol of bench/tools/common.lua

local BROKEN = {}


--- One process of a tool -> { times, cpus, calls, bytes, records, rss_kb } or nil, why
local function run_once(cmd)
  local errf = DIR .. "/tool.err"
  local out, ok = capture("timeout 900 " .. cmd .. " 2>" .. sh(errf))
  local r = { times = {}, cpus = {} }
  for line in out:gmatch("[^\n]+") do
    local t, calls, bytes, records, c = line:match("^rep (%S+) (%d+) (%d+) (%d+) (%S+)$")
    if t then
      r.times[#r.times + 1] = tonumber(t)
      if tonumber(c) >= 0 then r.cpus[#r.cpus + 1] = tonumber(c) end
      r.calls, r.bytes, r.records = tonumber(calls), tonumber(bytes), tonumber(records)
    end
    local rss = line:match("^rss_kb (%-?%d+)$")
    if rss then r.rss_kb = tonumber(rss) end
  end
  if not ok then return nil, "exited with an error: " .. (read(errf) or ""):sub(1, 800) end
  if #r.times == 0 then return nil, "printed no repetition: " .. out:sub(1, 300) .. (read(errf) or ""):sub(1, 300) end
  return r
end

--- Run every tool of a workload `rounds` times, interleaved (a round runs each tool once), so
-- that a slow phase of the machine hits every tool alike. Samples are per-call times
-- (per_call) or whole-workload times.
-- With `ballast` (round -> KB), a tool with a Lua heap (t.heap) starts each round's workload
-- from that much more live data: see heap_kb.
local function run_tools(tools, rounds, per_call, ballast)
  for _, t in ipairs(tools) do t.times, t.cpus, t.rss_kb = {}, {}, nil end
  for round = 1, rounds do
    for _, t in ipairs(tools) do
      if not t.broken and round <= (t.rounds or rounds) then
        local cmd = t.cmd
        if ballast and t.heap then cmd = cmd .. " --ballast " .. ballast(round) end
        local r, why = run_once(cmd)
        if r and t.expect_records and r.records ~= t.expect_records then
          why = ("returned %s records, expected %d"):format(tostring(r.records), t.expect_records)
          r = nil
        end
        if r and t.expect_calls and r.calls ~= t.expect_calls then
          why = ("made %s calls, expected %d"):format(tostring(r.calls), t.expect_calls)
          r = nil
        end
        if not r then
          t.broken = true
          BROKEN[#BROKEN + 1] = t.label .. ": " .. why
          log("BROKEN %s: %s", t.label, why)
        else
          local div = per_call and t.n or 1
          for _, v in ipairs(r.times) do t.times[#t.times + 1] = v / div end
          for _, v in ipairs(r.cpus) do t.cpus[#t.cpus + 1] = v / div end
          if r.rss_kb and r.rss_kb > 0 then t.rss_kb = math.max(t.rss_kb or 0, r.rss_kb) end
          log("round %d %-44s %s", round, t.label, table.concat((function()
            local o = {}
            for i, v in ipairs(r.times) do o[i] = ("%.4g"):format(v / div) end
            return o
          end)(), " "))
        end
      end
    end
  end
end

local LUA_TOOL_ENV = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
local function mde_cmd(lua, cpath, args)
  return PIN .. CLEAN .. LUA_TOOL_ENV .. lua .. " -e " .. sh("package.cpath='" .. cpath .. "/?.so;'..package.cpath")
    .. " bench/tools/mde.lua " .. args
end

------------------------------------------------------------------------------------------
-- the tools and what they need

local TOOLS = {
  luajit = have("luajit -v") and exists("build/luajit/mde/core.so"),
  lua51 = have("lua5.1 -v") and exists("build/lua5.1/mde/core.so") and have("lua5.1 -e 'require\"cjson\"'"),
  luasocket = have("lua5.4 -e 'require\"ssl.https\" require\"cjson\"'"),
  luacurl = have("lua5.1 -e 'require\"curl\" require\"cjson\"'"),
  requests = have("/usr/bin/python3 -c 'import requests'"),
  curl = have("curl --version"),
}

local SKIPPED = {}
local function skip(name, why)
  for _, v in ipairs(SKIPPED) do if v:find(name, 1, true) == 1 then return end end
  SKIPPED[#SKIPPED + 1] = name .. " (" .. why .. ")"
end

------------------------------------------------------------------------------------------
-- workloads 1-3: the tools, run in interleaved rounds

-- A listing collected into one list (W2) grows the Lua heap from almost nothing to ~70 MB, and
-- Lua's collector starts a cycle each time the heap doubles: where the last cycles fall against
-- the end of the listing depends on the heap the listing starts from, and moves a tool's time
-- by up to ±8% (bench/README.md, "Where the time goes"). A tool measured from one heap size is
-- measured at one arbitrary phase of those cycles, so each round of W2 starts every tool with a
-- Lua heap (the floor included) from 1-2 MB more live data, log-uniform over the octave
-- (round r of n: 1024 * 2^((r-1)/n) KB): every phase is sampled alike.
local function heap_kb(rounds)
  return function(round) return math.floor(1024 * 2 ^ ((round - 1) / rounds) + 0.5) end
end

-- mode: small (W1), pages (W2: a list of every record), each (W3: streamed)
-- w = { mode, base, id, n (calls per rep, W1), reps, warmup, rounds, records (W2/W3),
--       slow_n, slow_reps, slow_rounds }
local function workload(ca, w)
  local token = "bench-token"
  local per_call = w.mode == "small"
  local tools = {}
  local function add(t)
    t.n = t.n or (per_call and w.n or nil)
    if per_call then t.expect_records = t.expect_records == nil and t.n or t.expect_records
    elseif t.expect_records == nil then t.expect_records = w.records end
    if t.expect_records == false then t.expect_records = nil end
    tools[#tools + 1] = t
    return t
  end
  local id_arg = per_call and ("--sid " .. SID) or ("--def " .. w.id)
  local function args(n, reps, warmup)
    return ("--base %s --ca %s --token %s --mode %s %s --n %d --reps %d --warmup %d --top %d"):format(
      sh(w.base), sh(ca), token, w.mode, id_arg, n or w.n, reps or w.reps, warmup or w.warmup, TOP)
  end

  local url, body
  if per_call then
    url = w.base .. "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId"
    body = '{"SessionIds":["' .. SID .. '"]}'
  else
    url = w.base .. "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId?$top=" .. TOP
    body = '{"ScanDefinitionIds":["' .. w.id .. '"]}'
  end
  local floor = ("%sbuild/bench/floor --url %s --ca %s --token %s --body %s --mode %s --n %d --reps %d --warmup %d")
    :format(
    PIN, sh(url), sh(ca), token, sh(body), per_call and "small" or "pages", w.n, w.reps, w.warmup)
  local floor_t = add{ label = "floor: C libcurl + lua-cjson", note = "the floor", heap = true,
    cmd = floor .. (w.mode == "pages" and " --keep" or "") }
  add{ label = "C libcurl alone (no decode)", note = "transfer only", cmd = floor .. " --decode none", heap = true,
    expect_records = false }
  local what = ({ small = "scan_history_by_session", pages = "scan_history_by_definition{all=true}",
    each = "client:each" })[w.mode]
  local mde_t = add{ label = "lua-mde, Lua 5.4", note = what, heap = true,
    cmd = mde_cmd("lua5.4", "build/lua5.4", args()) }
  if w.mode ~= "each" then
    add{ label = "lua-mde, Lua 5.4, pacing on", note = "a rate_limit that never binds", heap = true,
      cmd = mde_cmd("lua5.4", "build/lua5.4", args() .. " --variant paced") }
  end
  add{ label = "mde.core handle:perform, Lua 5.4", note = "the C core without the Lua layer", heap = true,
    cmd = mde_cmd("lua5.4", "build/lua5.4", args() .. " --variant core") }
  if TOOLS.luajit then
    add{ label = "lua-mde, LuaJIT", note = what, heap = true, cmd = mde_cmd("luajit", "build/luajit", args()) }
  else
    skip("lua-mde on LuaJIT", "luajit or build/luajit missing")
  end
  if TOOLS.lua51 and w.mode ~= "each" then
    add{ label = "lua-mde, Lua 5.1", note = what, heap = true, cmd = mde_cmd("lua5.1", "build/lua5.1", args()) }
  elseif not TOOLS.lua51 then
    skip("lua-mde on Lua 5.1", "lua5.1, its cjson or build/lua5.1 missing")
  end
  if TOOLS.requests then
    add{ label = "Python requests + json", note = "a Session: keep-alive",
      cmd = PIN .. "/usr/bin/python3 bench/tools/requests_tool.py " .. args() }
  else
    skip("Python requests", "python3-requests not installed")
  end
  if TOOLS.luacurl then
    add{ label = "lua-curl (Lua 5.1) + cjson", note = "one easy handle: keep-alive", heap = true,
      cmd = PIN .. CLEAN .. LUA_TOOL_ENV .. "lua5.1 bench/tools/luacurl.lua " .. args() }
  else
    skip("lua-curl", "Debian lua-curl not installed")
  end
  if TOOLS.luasocket and w.slow_rounds > 0 then
    local n = per_call and w.slow_n or nil
    add{ label = "LuaSocket + LuaSec + cjson (5.4)", note = "a TLS connection per call", n = n, rounds = w.slow_rounds,
      heap = true,
      cmd = PIN .. CLEAN .. LUA_TOOL_ENV .. "lua5.4 bench/tools/luasocket.lua " .. args(n, w.slow_reps, 1) }
  elseif not TOOLS.luasocket then
    skip("LuaSocket+LuaSec", "lua-socket/lua-sec not installed")
  end
  if TOOLS.curl and w.mode ~= "each" and w.slow_rounds > 0 then
    local n = per_call and w.slow_n or (w.records // TOP)
    add{ label = "curl CLI in a loop (no decode)", note = "a process + TLS per call", n = per_call and n or nil,
      rounds = w.slow_rounds, expect_records = false, expect_calls = n,
      cmd = PIN .. ("bench/tools/curl_loop.sh %s %s %s %s %d %d %d %s %d"):format(per_call and "small" or "pages",
        sh(w.base), sh(ca), token, n, w.slow_reps, 1, per_call and SID or w.id, TOP) }
  end
  run_tools(tools, w.rounds, per_call, w.mode == "pages" and heap_kb(w.rounds) or nil)
  return { tools = tools, floor = floor_t, mde = mde_t, per_call = per_call }
end

------------------------------------------------------------------------------------------
-- formatting

local function fmt_time(s)
  if s >= 10 then return ("%.1f s"):format(s) end
  if s >= 1 then return ("%.2f s"):format(s) end
  if s >= 1e-3 then return ("%.1f ms"):format(s * 1e3) end
  return ("%.1f µs"):format(s * 1e6)
end

local OUT = {}
local function say(fmt, ...) OUT[#OUT + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end

local function table_for(title, res, extra_col)
  say("")
  say("### " .. title)
  say("")
  say("| tool | samples | median | min–max | × floor | CPU (median) | × floor CPU | peak RSS |%s",
    extra_col and (" " .. extra_col.title .. " |") or "")
  say("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |%s", extra_col and " ---: |" or "")
  local fm = not res.floor.broken and median(res.floor.times)
  local fc = not res.floor.broken and median(res.floor.cpus)
  for _, t in ipairs(res.tools) do
    local label = t.label .. (t.note and t.note ~= "" and (" <sub>" .. t.note .. "</sub>") or "")
    if t.broken or #t.times == 0 then
      say("| %s | — | BROKEN | | | | | |%s", label, extra_col and " |" or "")
    else
      local m = median(t.times)
      local lo, hi = minmax(t.times)
      local c = median(t.cpus)
      say("| %s | %d%s | %s | %s–%s | %s | %s | %s | %s |%s", label, #t.times,
        res.per_call and (" × " .. t.n) or "", fmt_time(m), fmt_time(lo), fmt_time(hi),
        fm and ("%.2f"):format(m / fm) or "—", c and fmt_time(c) or "—", (c and fc) and ("%.2f"):format(c / fc) or "—",
        t.rss_kb and ("%.0f MB"):format(t.rss_kb / 1024) or "—",
        extra_col and (" " .. extra_col.value(t) .. " |") or "")
    end
  end
end

------------------------------------------------------------------------------------------
-- integer fix-up: decode only vs decode + fix-up on one 1,000-record page, and a small answer

local function fixup_cost()
  local plain = require("cjson").new()
  local out = {}
  for _, what in ipairs{ { "page", DIR .. "/a/pages/0.json", 5 }, { "small", DIR .. "/a/small.json", 2000 } } do
    local text = assert(read(what[2]))
    local check = core.decode(text)
    assert(math.type(check.value[1].NumberOfTargets) == "integer", "core.decode did not fix integers")
    local per = what[3]
    local fs = { plain = plain.decode, core = core.decode,
                 luafix = function(t) return server.fix_ints(plain.decode(t)) end }
    local ts = { plain = {}, core = {}, luafix = {} }
    -- interleaved rounds, so that a busy phase of the machine hits all three alike
    for round = 1, S.fixup_iters + 2 do
      for _, k in ipairs{ "plain", "core", "luafix" } do
        local f = fs[k]
        collectgarbage()
        collectgarbage()
        local t0 = os.clock()
        for _ = 1, per do f(text) end
        if round > 2 then ts[k][#ts[k] + 1] = (os.clock() - t0) / per end
      end
    end
    local r = { bytes = #text, records = #check.value }
    for k, v in pairs(ts) do r[k], r[k .. "_min"] = median(v), (minmax(v)) end
    out[what[1]] = r
  end
  return out
end

------------------------------------------------------------------------------------------
-- workload 4: batching, pacing and concurrency against the bundled server

-- a client of the bundled server (o.tenant_id/client_id/client_secret: another app than the
-- server's own), its token fetched already, so that timings are of the API calls alone
local function w4_client(s, o)
  local mde = require "mde"
  local c = assert(mde.new{
    base_url = s.base_url, authority = s.authority, ca_file = s.ca_file,
    tenant_id = o.tenant_id or s.tenant, client_id = o.client_id or s.client_id,
    client_secret = o.client_secret or s.client_secret,
    rate_limit = o.rate_limit, batch_size = o.batch_size, concurrency = o.concurrency, page_size = o.page_size,
    store = require("mde.store").new(core.now), retries = 3,
  })
  assert(require("mde.auth").token(c, require("mde.pipeline").state[c]))
  return c
end

-- the calls of `route` the server answered 200 between its stats st0 and st (a 429, retried by
-- the client, is counted apart: a target, not a breakage)
local function ok_calls(st0, st, route)
  local function n(x) return ((x.statuses or {})[route] or {})["200"] or 0 end
  return n(st) - n(st0)
end

local function w4_ids(n)
  local ids = {}
  for k = 1, n do ids[k] = string.format("s%031d", k) end
  return ids
end

local function w4_run(s, o, ids, one_per_id)
  local c = w4_client(s, o)
  local st0 = s:stats()
  local t0 = now()
  local got = 0
  if one_per_id then
    for i = 1, #ids do
      local list = assert(c:scan_history_by_session(ids[i]))
      got = got + #list
    end
  else
    local list = assert(c:scan_history_by_session(ids))
    got = #list
    for i = 1, #list do
      if list[i].SessionIds ~= ids[i] then error("workload 4: record " .. i .. " out of order") end
    end
  end
  local wall = now() - t0
  local st = s:stats()
  c:close()
  local calls = ok_calls(st0, st, "history_by_session")
  local ts = {}
  for _, t in ipairs(st.api_times or {}) do if t >= t0 - 0.01 then ts[#ts + 1] = t end end
  return { wall = wall, calls = calls, got = got, throttled = (st.throttled or 0) - (st0.throttled or 0),
           max_window = server.max_in_window(ts, 0.6) }
end

local function workload4()
  local res = { pacing = {}, slow = {} }
  -- (a) pacing at the real limits on a 100x faster clock, enforced by the server too
  local limits = { { limit = 100, window = 0.6 }, { limit = 1500, window = 36 } }
  local function paced(label, n, one, batch)
    mdesrv:reset()
    mdesrv:control{ rate_limit = limits }
    local r = w4_run(mdesrv, { rate_limit = limits, batch_size = batch, concurrency = 4 }, w4_ids(n), one)
    r.label, r.n = label, n
    r.expected = one and n or math.ceil(n / batch)
    if r.got ~= n then BROKEN[#BROKEN + 1] = ("workload 4 %s: %d records for %d IDs"):format(label, r.got, n) end
    if r.calls ~= r.expected then
      BROKEN[#BROKEN + 1] = ("workload 4 %s: %d calls, expected %d"):format(label, r.calls, r.expected)
    end
    log("w4 %-44s calls %d, wall %.2f s, 429s %d, most in 0.6 s %d", label, r.calls, r.wall, r.throttled, r.max_window)
    res.pacing[#res.pacing + 1] = r
  end
  paced(("%d IDs, one call per ID (a loop)"):format(S.w4_n), S.w4_n, true, 50)
  paced(("%d IDs, batch_size 50, concurrency 4"):format(S.w4_n), S.w4_n, false, 50)
  paced(("%d IDs, batch_size 50, concurrency 4"):format(S.w4_big), S.w4_big, false, 50)

  -- (b) a slow server: every answer takes `delay`; K requests in flight
  mdesrv:reset()
  mdesrv:control{ delay = S.w4_delay }
  local ids = w4_ids(S.w4_slow_n)
  local nb = math.ceil(S.w4_slow_n / 50)
  for _, k in ipairs(S.w4_ks) do
    local walls, calls = {}, nil
    for _ = 1, S.w4_reps do
      local r = w4_run(mdesrv, { rate_limit = false, batch_size = 50, concurrency = k }, ids, false)
      walls[#walls + 1] = r.wall
      calls = r.calls
      if r.calls ~= nb then BROKEN[#BROKEN + 1] = ("workload 4 K=%d: %d calls, expected %d"):format(k, r.calls, nb) end
    end
    res.slow[#res.slow + 1] = { k = k, walls = walls, calls = calls }
    log("w4 slow K=%-2d calls %d, wall median %.3f s", k, calls, median(walls))
  end
  -- (c) several tenants: one client each, the same call of every client; with mde.gather
  -- (all in flight at once) and one after the other; the tokens are fetched first
  local names = {}
  for i = 1, S.w4_tenants do names[i] = ("tenant%02d"):format(i) end
  local clients_knob = {}
  for _, t in ipairs(names) do clients_knob["app-" .. t] = { secret = "s", tenant = t } end
  local tenants_knob = { mdesrv.tenant }
  for _, t in ipairs(names) do tenants_knob[#tenants_knob + 1] = t end
  mdesrv:control{ delay = S.w4_delay, tenants = tenants_knob, clients = clients_knob }
  local mde = require "mde"
  local tids = w4_ids(50)
  res.tenants = { n = S.w4_tenants }
  for _, how in ipairs{ "serial", "gather" } do
    local walls = {}
    for _ = 1, S.w4_reps do
      local cs = {}
      for i, t in ipairs(names) do
        cs[i] = w4_client(mdesrv, { tenant_id = t, client_id = "app-" .. t, client_secret = "s", rate_limit = false })
      end
      local t0 = now()
      local lists = {}
      if how == "serial" then
        for i, c in ipairs(cs) do lists[i] = assert(c:scan_history_by_session(tids)) end
      else
        local fns = {}
        for i, c in ipairs(cs) do fns[i] = function() return c:scan_history_by_session(tids) end end
        for i, r in ipairs(assert(mde.gather(fns, { concurrency = S.w4_tenants }))) do lists[i] = assert(r[1], r[2]) end
      end
      walls[#walls + 1] = now() - t0
      for i, c in ipairs(cs) do
        if #lists[i] ~= #tids then
          BROKEN[#BROKEN + 1] = ("workload 4c %s: tenant %d got %d records"):format(how, i, #lists[i])
        end
        c:close()
      end
    end
    res.tenants[how] = walls
    log("w4 tenants %-6s wall median %.3f s", how, median(walls))
  end
  -- (d) one listing whose first page tells the total ($count=true): its pages K at a time
  mdesrv:reset()
  mdesrv:control{ delay = S.w4_delay }
  local def = "bulk-" .. S.w4_counted
  local npages = math.ceil(S.w4_counted / 100)
  res.counted = {}
  for _, k in ipairs(S.w4_counted_ks) do
    local walls, calls = {}, nil
    for _ = 1, S.w4_reps do
      local c = w4_client(mdesrv, { rate_limit = false, concurrency = k, page_size = 100 })
      local st0 = mdesrv:stats()
      local t0 = now()
      local list = assert(c:scan_history_by_definition(def, { all = true, query = { ["$count"] = "true" } }))
      walls[#walls + 1] = now() - t0
      local st = mdesrv:stats()
      calls = ok_calls(st0, st, "history_by_definition")
      if #list ~= S.w4_counted or calls ~= npages then
        BROKEN[#BROKEN + 1] = ("workload 4d K=%d: %d records in %d calls, expected %d in %d"):format(k, #list,
          calls, S.w4_counted, npages)
      end
      c:close()
    end
    res.counted[#res.counted + 1] = { k = k, walls = walls, calls = calls }
    log("w4 counted K=%-2d calls %d, wall median %.3f s", k, calls, median(walls))
  end
  mdesrv:reset()
  return res
end

------------------------------------------------------------------------------------------
-- main

local function main()
  math.randomseed(os.time() ~ (tonumber(tostring(DIR):match("%.(%w+)$"), 36) or 0))
  log("mode: %s; pinned to CPU %s; tools: luajit=%s lua5.1=%s luasocket=%s lua-curl=%s requests=%s curl=%s",
    opt.short and "short" or "full", tostring(PIN_CPU), tostring(TOOLS.luajit), tostring(TOOLS.lua51),
    tostring(TOOLS.luasocket), tostring(TOOLS.luacurl), tostring(TOOLS.requests), tostring(TOOLS.curl))
  mdesrv = server.start{ workers = 1 }
  write(DIR .. "/server.pid", tostring(mdesrv.pid) .. "\n")
  start_static()
  local data = make_data()
  local ca = mdesrv.ca_file
  if opt.serve then
    -- for profiling by hand: the servers and data stay up for opt.serve seconds (at most an hour)
    io.write(("BENCH_BASE_A=%s BENCH_BASE_B=%s BENCH_CA=%s BENCH_MDE_URL=%s BENCH_CONTROL_URL=%s\n"):format(
      static.base_a, static.base_b, ca, mdesrv.base_url, mdesrv.control_url))
    io.flush()
    core.sleep(math.min(opt.serve, 3600))
    return
  end

  local t_start = now()
  local res = {}
  if wanted("1") then
    local w = S.w1
    w.mode, w.base, w.id = "small", static.base_a, SID
    res.w1 = workload(ca, w)
  end
  if wanted("2") then
    local w = S.w2
    w.mode, w.base, w.id, w.n = "pages", static.base_a, W2_DEF, 1
    res.w2 = workload(ca, w)
  end
  if wanted("3") then
    local w = S.w3
    w.mode, w.base, w.id, w.n = "each", static.base_b, W3_DEF, 1
    res.w3 = workload(ca, w)
  end
  local fix = wanted("f") and fixup_cost()
  local w4 = wanted("4") and workload4()

  stop_static()
  mdesrv:stop()

  -- report
  local cpu = (capture("grep -m1 'model name' /proc/cpuinfo") or ""):match(":%s*(.-)%s*$") or "?"
  say("## lua-mde benchmark (%s mode, %s)", opt.short and "short" or "full", os.date("!%Y-%m-%d"))
  say("")
  say("Machine: %s, %s cores, Linux %s; %s; lua-cjson %s; nginx %s. Loopback HTTPS (TLS 1.3, HTTP/1.1). "
    .. "Workloads 1-3: static JSON files served by nginx (one worker, access log off), the bodies the bundled "
    .. "MDE-like server gives; each tool a separate process, %s. Workload 4: the bundled MDE-like server "
    .. "(nginx + Lua). Each sample is one repetition after a warm-up, tools interleaved in rounds; median and "
    .. "min–max of the samples; × floor = median / the floor's median; CPU = the client process's user + "
    .. "system time. Run took %.0f s.",
    cpu, (capture("nproc"):gsub("%s+", "")), (capture("uname -r"):gsub("%s+", "")),
    core.curl_version:match("^(%S+)") or "", require("cjson")._VERSION or "?",
    ((capture("/usr/sbin/nginx -v 2>&1")):match("nginx/(%S+)") or "?"),
    PIN_CPU and ("client and nginx worker pinned to CPU " .. PIN_CPU) or "not pinned", now() - opt.t0)
  if res.w1 then
    table_for(("Workload 1: small calls (the history of one session, a %d-byte answer), time per call")
      :format(data.small_bytes), res.w1)
  end
  if res.w2 then
    local recs = S.w2.records
    table_for(("Workload 2: the history of %d sessions, %d pages of %d records (%.1f MB), fetched and decoded "
      .. "into one list; the tools with a Lua heap start round r of %d from 1024·2^((r-1)/%d) KB of live data "
      .. "(the collector's phase sampled alike)"):format(recs, recs // TOP, TOP, data.w2_bytes / 1e6,
      S.w2.rounds, S.w2.rounds), res.w2,
      { title = "records/s", value = function(t) return ("%.0f"):format(recs / median(t.times)) end })
  end
  if res.w3 then
    table_for(("Workload 3: %d records streamed (%d pages, %.0f MB), one page held at a time"):format(
      S.w3.records, S.w3.records // TOP, data.w3_bytes / 1e6), res.w3)
  end
  if fix then
    say("")
    say("### Integer fix-up (Lua 5.4: Debian's cjson decodes every number as a float), CPU time, "
      .. "median (and min) of %d",
      S.fixup_iters)
    say("")
    say("| body | cjson.decode alone | mde.core.decode (cjson + C fix-up) | fix-up | fix-up share "
      .. "| cjson + a Lua fix-up walk |")
    say("| --- | ---: | ---: | ---: | ---: | ---: |")
    for _, k in ipairs{ "page", "small" } do
      local f = fix[k]
      say("| %s (%d record%s, %.1f KB) | %s (min %s) | %s (min %s) | %s (min %s) | %.0f%% (min %.0f%%) | %s |",
        k == "page" and "one page" or "one small answer", f.records, f.records == 1 and "" or "s", f.bytes / 1024,
        fmt_time(f.plain), fmt_time(f.plain_min), fmt_time(f.core), fmt_time(f.core_min),
        fmt_time(f.core - f.plain), fmt_time(f.core_min - f.plain_min),
        100 * (f.core - f.plain) / f.core, 100 * (f.core_min - f.plain_min) / f.core_min, fmt_time(f.luafix))
    end
  end
  if w4 then
    say("")
    say("### Workload 4a: session IDs with pacing at the real limits on a 100x clock (100 per 0.6 s, 1,500 per 36 s), "
      .. "the server enforcing the same")
    say("")
    say("| run | calls | expected | wall | 429s | most calls in any 0.6 s |")
    say("| --- | ---: | ---: | ---: | ---: | ---: |")
    for _, r in ipairs(w4.pacing) do
      say("| %s | %d | %d | %s | %d | %d |", r.label, r.calls, r.expected, fmt_time(r.wall), r.throttled, r.max_window)
    end
    say("")
    say("### Workload 4b: %d session IDs = %d batches of 50, every answer %.0f ms late; K requests in flight",
      S.w4_slow_n, math.ceil(S.w4_slow_n / 50), S.w4_delay * 1000)
    say("")
    say("| K (concurrency) | calls | wall (median of %d) | min–max | serial / wall | ideal |", S.w4_reps)
    say("| ---: | ---: | ---: | ---: | ---: | ---: |")
    local serial = median(w4.slow[1].walls)
    for _, r in ipairs(w4.slow) do
      local m = median(r.walls)
      local lo, hi = minmax(r.walls)
      say("| %d | %d | %s | %s–%s | %.2f | %d |", r.k, r.calls, fmt_time(m), fmt_time(lo), fmt_time(hi), serial / m,
        math.min(r.k, math.ceil(S.w4_slow_n / 50)))
    end
    local t = w4.tenants
    if t and t.serial and t.gather then
      say("")
      say("### Workload 4c: %d tenants, a client each, the same call (50 session IDs) of every client, "
        .. "every answer %.0f ms late", t.n, S.w4_delay * 1000)
      say("")
      say("| how | wall (median of %d) | min–max | serial / wall |", S.w4_reps)
      say("| --- | ---: | ---: | ---: |")
      local serial_t = median(t.serial)
      for _, how in ipairs{ "serial", "gather" } do
        local lo, hi = minmax(t[how])
        say("| %s | %s | %s–%s | %.2f |", how == "serial" and "one client after the other" or "mde.gather",
          fmt_time(median(t[how])), fmt_time(lo), fmt_time(hi), serial_t / median(t[how]))
      end
    end
    if w4.counted and #w4.counted > 0 then
      local np = math.ceil(S.w4_counted / 100)
      say("")
      say("### Workload 4d: one listing told its total ($count=true), %d records in %d pages of 100, "
        .. "every answer %.0f ms late; `all = true`, K pages in flight", S.w4_counted, np, S.w4_delay * 1000)
      say("")
      say("| K (concurrency) | calls | wall (median of %d) | min–max | serial / wall | ideal |", S.w4_reps)
      say("| ---: | ---: | ---: | ---: | ---: | ---: |")
      local serial_c = median(w4.counted[1].walls)
      for _, r in ipairs(w4.counted) do
        local lo, hi = minmax(r.walls)
        -- (the first page alone, then the rest K at a time)
        local ideal = np / (1 + math.ceil((np - 1) / r.k))
        say("| %d | %d | %s | %s–%s | %.2f | %.2f |", r.k, r.calls, fmt_time(median(r.walls)), fmt_time(lo),
          fmt_time(hi), serial_c / median(r.walls), ideal)
      end
    end
  end

  -- targets
  say("")
  say("### Targets")
  say("")
  local function ratios(r)
    if not r or r.floor.broken or r.mde.broken then return nil end
    return median(r.mde.times) / median(r.floor.times), median(r.mde.cpus) / median(r.floor.cpus)
  end
  local function find(r, label)
    for _, t in ipairs(r and r.tools or {}) do if t.label == label and not t.broken then return t end end
  end
  local r1, c1 = ratios(res.w1)
  if r1 then
    say("- Workload 1 within 1.15x of the floor: %.2fx (CPU %.2fx) — %s", r1, c1, r1 <= 1.15 and "met" or "**missed**")
  end
  local r2, c2 = ratios(res.w2)
  if r2 then
    local mt = median(res.w2.mde.times)
    local py = find(res.w2, "Python requests + json")
    local ls = find(res.w2, "LuaSocket + LuaSec + cjson (5.4)")
    local jit = find(res.w2, "lua-mde, LuaJIT")
    local core_t = find(res.w2, "mde.core handle:perform, Lua 5.4")
    say("- Workload 2 within 1.2x of the floor, integer fix-up included: %.2fx (CPU %.2fx) — %s%s%s%s", r2, c2,
      r2 <= 1.2 and "met" or "**missed**",
      py and ("; Python requests takes %.2fx lua-mde's time on Lua 5.4 (level or behind: %s)%s"):format(
        median(py.times) / mt, median(py.times) / mt >= 0.95 and "met" or "**missed**",
        jit and (", %.2fx on LuaJIT (%s)"):format(median(py.times) / median(jit.times),
          median(py.times) / median(jit.times) >= 0.95 and "met" or "**missed**") or "") or "",
      core_t and ("; the C core alone %.2fx"):format(median(core_t.times) / median(res.w2.floor.times)) or "",
      ls and ("; LuaSocket+LuaSec %.1fx"):format(median(ls.times) / mt) or "")
  end
  if res.w3 and not res.w3.mde.broken then
    local kb = res.w3.mde.rss_kb or 0
    say("- Workload 3 under 64 MB peak RSS: %.1f MB — %s", kb / 1024,
      kb > 0 and kb < W3_RSS_LIMIT_KB and "met" or "**missed**")
  end
  if w4 then
    local zero, exact = true, true
    for _, r in ipairs(w4.pacing) do
      if r.throttled ~= 0 then zero = false end
      if r.calls ~= r.expected then exact = false end
    end
    local last = w4.slow[#w4.slow]
    local serial = median(w4.slow[1].walls)
    local ideal = math.min(last.k, math.ceil(S.w4_slow_n / 50))
    say("- Workload 4: ceil(N / batch_size) calls — %s; zero 429s — %s; K = %d in flight: %.2fx faster than serial "
      .. "(ideal %d)", exact and "met" or "**missed**", zero and "met" or "**missed**", last.k,
      serial / median(last.walls), ideal)
  end
  if #SKIPPED > 0 then
    say("")
    say("Skipped: %s.", table.concat(SKIPPED, "; "))
  end
  local text = table.concat(OUT, "\n") .. "\n"
  io.write(text)
  os.execute("mkdir -p build/bench")
  write("build/bench/results.md", text)
  log("done in %.0f s (measuring %.0f s); tables also in build/bench/results.md", now() - opt.t0, now() - t_start)
end

local ok, err = xpcall(main, debug.traceback)
pcall(stop_static)
if mdesrv then pcall(mdesrv.stop, mdesrv) end
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(2)
end
if #BROKEN > 0 then
  io.stderr:write("bench: BROKEN:\n  ", table.concat(BROKEN, "\n  "), "\n")
  os.exit(1)
end
