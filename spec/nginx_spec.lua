-- lua-mde inside real nginx: examples/openresty/nginx.conf (the example's own handlers),
-- several workers, against the local MDE-like server, on loopback. Requests are driven with
-- the curl CLI (in parallel where it matters).
--
--   make LUA=luajit && lua5.4 /usr/bin/busted spec/nginx_spec.lua
--
-- What it proves: the example serves history (JSON) and failed targets (HTML); errors come
-- back as the documented error objects; a slow API never blocks a worker (20 requests at
-- once through one worker take about 1 s, and /ping keeps answering in milliseconds); every
-- worker shares one token and one rate-limit budget through `lua_shared_dict mde`.
local server = require "spec.helpers.server"
local certs = require "spec.helpers.certs"

local json, fix_ints, data = server.json, server.fix_ints, server.data
local sh, CLEAN = certs.sh_quote, certs.CLEAN_ENV
local ROOT = server.root
local now, sleep, read_file = server.now, server.sleep, server.read_file

local SEED = data.SEED_SESSION_ID
local SEED_DEF = data.DEFINITION_IDS[1]


local capture, write_file = server.capture, server.write_file


local function ensure_core()
  if not read_file(ROOT .. "/build/luajit/mde/core.so") then
    assert(os.execute("cd " .. sh(ROOT) .. " && make -s LUA=luajit >/dev/null"), "make LUA=luajit failed")
  end
end


local function children(pid)
  local out = {}
  for c in (read_file("/proc/" .. pid .. "/task/" .. pid .. "/children") or ""):gmatch("%d+") do
    out[#out + 1] = tonumber(c)
  end
  return out
end


--- nginx with the example's configuration. opts: workers, env (MDE_* values), reuseport,
-- edit (function(conf) -> conf, for the specs of a misconfigured nginx).
-- Changed from examples/openresty/nginx.conf: the port, worker_processes, and an access log of
-- the worker pid of every request (to see which workers served).
local function start_example(api, opts)
  ensure_core()
  local dir = capture("mktemp -d /tmp/mde-nginx-spec.XXXXXX"):gsub("%s+$", "")
  assert(dir:match("^/tmp/mde%-nginx%-spec%."), "mktemp failed")
  assert(os.execute("chmod 0755 " .. sh(dir) .. " && mkdir -p " .. sh(dir .. "/logs") .. " " .. sh(dir .. "/tmp")
    .. " && ln -s " .. sh(ROOT) .. " " .. sh(dir .. "/repo")))

  local conf = assert(read_file(ROOT .. "/examples/openresty/nginx.conf"))
  conf = conf:gsub("worker_processes %d+;", "worker_processes " .. (opts.workers or 1) .. ";")
  conf = conf:gsub("access_log off;",
    "log_format mde_spec '$pid $status $uri $request_time';\n    access_log logs/access.log mde_spec;")
  if opts.edit then conf = opts.edit(conf) end

  local env = {
    MDE_TENANT_ID = api.tenant, MDE_CLIENT_ID = api.client_id, MDE_CLIENT_SECRET = api.client_secret,
    MDE_BASE_URL = api.base_url, MDE_AUTHORITY = api.authority, MDE_CA_FILE = api.ca_file,
  }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local assign = {}
  for k, v in pairs(env) do assign[#assign + 1] = k .. "=" .. sh(v) end

  local port, last
  for _ = 1, 20 do
    port = math.random(40001, 50000)
    local listen = "listen 127.0.0.1:" .. port .. (opts.reuseport and " reuseport" or "") .. ";"
    write_file(dir .. "/nginx.conf", (conf:gsub("listen 127%.0%.0%.1:8080;", listen)))
    local ok = os.execute(CLEAN .. table.concat(assign, " ") .. " nginx -p " .. sh(dir) .. " -e "
      .. sh(dir .. "/logs/error.log") .. " -c " .. sh(dir .. "/nginx.conf") .. server.NGINX_USER
      .. " 2>" .. sh(dir .. "/start.err"))
    if ok == true or ok == 0 then last = nil break end
    last = (read_file(dir .. "/start.err") or "") .. (read_file(dir .. "/logs/error.log") or "")
    if not last:find("in use", 1, true) then break end
  end
  if last then
    os.execute("rm -rf " .. sh(dir))
    error("nginx (example) did not start: " .. last)
  end

  local pid = assert(server.wait_pid(dir .. "/logs/nginx.pid", 3), "no pid file")

  local ex = { port = port, dir = dir, pid = pid, base = "http://127.0.0.1:" .. port }

  function ex.stop()
    if ex.stopped then return end
    ex.stopped = true
    local workers = children(pid)
    os.execute("kill -QUIT " .. pid .. " 2>/dev/null")
    for _ = 1, 300 do
      if not server.alive(pid) then break end
      sleep(0.01)
    end
    if server.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    for _, w in ipairs(workers) do
      local c = read_file("/proc/" .. w .. "/cmdline") or ""
      if server.alive(w) and c:find("^nginx: ") then os.execute("kill -KILL " .. w .. " 2>/dev/null") end
    end
    os.execute("rm -rf " .. sh(dir))
  end

  function ex.error_log()
    return read_file(dir .. "/logs/error.log") or ""
  end

  -- the largest $request_time (ms, nginx's own view) of the requests for uri so far
  function ex.max_request_time(uri)
    local m = 0
    for u, t in (read_file(dir .. "/logs/access.log") or ""):gmatch("%d+ %d+ (%S+) ([%d.]+)") do
      if u == uri and tonumber(t) * 1000 > m then m = tonumber(t) * 1000 end
    end
    return m
  end

  -- the pids of the workers that served requests so far
  function ex.serving_workers(uri)
    local set, n = {}, 0
    for p, u in (read_file(dir .. "/logs/access.log") or ""):gmatch("(%d+) %d+ (%S+)") do
      if (not uri or u == uri) and not set[p] then set[p] = true n = n + 1 end
    end
    return n
  end

  -- wait (bounded) until a worker answers
  for _ = 1, 300 do
    local out = capture(CLEAN .. "curl -s -m 2 " .. sh(ex.base .. "/ping"))
    if out:find("pong", 1, true) then return ex end
    sleep(0.01)
  end
  local log = ex.error_log()
  ex.stop()
  error("nginx (example) is not answering: " .. log)
end


--- GET url -> status, body, seconds
local function get(url)
  local out = capture(CLEAN .. "curl -s -m 60 -w '\\n%{http_code} %{time_total}' " .. sh(url))
  local body, status, t = out:match("^(.*)\n(%d+) ([%d.]+)$")
  assert(status, "curl failed: " .. out)
  return tonumber(status), body, tonumber(t)
end


local function get_json(url)
  local status, body = get(url)
  local v = json.decode(body)
  return status, v ~= nil and fix_ints(v) or body
end


--- All urls at once (curl --parallel). Returns results in url order ({ status, time, body }),
-- the wall time of the whole batch, and, when `ping` is given, the /ping latencies (ms)
-- measured meanwhile (a separate curl sending `ping.count` requests at `ping.rate` per second).
local function parallel(dir, urls, ping)
  local args = {}
  for i, u in ipairs(urls) do
    args[#args + 1] = sh(u) .. " -o " .. sh(dir .. "/out." .. i)
  end
  local cmd = CLEAN .. "curl -s --no-progress-meter -m 120 --parallel --parallel-immediate --parallel-max " .. #urls
    .. " -w '%{urlnum} %{http_code} %{time_total}\\n' " .. table.concat(args, " ")
    .. " >" .. sh(dir .. "/parallel.txt") .. " 2>/dev/null"
  local timed = "s=$(date +%s.%N); " .. cmd .. "; e=$(date +%s.%N); echo \"$s $e\" >" .. sh(dir .. "/wall.txt")
  if ping then
    local purls = {}
    for _ = 1, ping.count do purls[#purls + 1] = sh(ping.url) end
    local pcmd = CLEAN .. "curl -s -m 60 --rate " .. ping.rate .. "/s -o /dev/null -w '%{time_total}\\n' "
      .. table.concat(purls, " ") .. " >" .. sh(dir .. "/pings.txt")
    -- the pings start first and go on past the end of the batch
    timed = "( " .. pcmd .. " ) & sleep " .. (ping.lead or 0.2) .. "; " .. timed .. "; wait"
  end
  os.execute(timed)
  local results = {}
  for n, status, t in (read_file(dir .. "/parallel.txt") or ""):gmatch("(%d+) (%d+) ([%d.]+)") do
    local i = tonumber(n) + 1
    results[i] = { status = tonumber(status), time = tonumber(t), body = read_file(dir .. "/out." .. i) }
  end
  local s, e = (read_file(dir .. "/wall.txt") or ""):match("([%d.]+) ([%d.]+)")
  local pings
  if ping then
    pings = {}
    for t in (read_file(dir .. "/pings.txt") or ""):gmatch("[%d.]+") do pings[#pings + 1] = tonumber(t) * 1000 end
    table.sort(pings)
  end
  return results, tonumber(e) - tonumber(s), pings
end


local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end


local function count_failed(records)
  local n = 0
  for _, r in ipairs(records) do
    for _, t in ipairs(r.ListScannedTargets) do
      if t.ScanStatus ~= "Success" then n = n + 1 end
    end
  end
  return n
end


describe("lua-mde in nginx", function()
  local api

  setup(function()
    api = server.start{ workers = 2 }
  end)

  teardown(function()
    if api then api:stop() end
  end)


  describe("the example (2 workers)", function()
    local ex

    setup(function()
      api:reset()
      ex = start_example(api, { workers = 2, env = { MDE_TIMEOUT = "1", MDE_RETRIES = "1" } })
    end)

    teardown(function()
      if ex then ex.stop() end
    end)

    before_each(function()
      api:control{ faults = {}, delay = 0 }
    end)

    it("serves the scan history of a session as JSON, as the API gave it", function()
      local status, records = get_json(ex.base .. "/history?session=" .. SEED)
      assert.equal(200, status)
      assert.same({ api:session_record(SEED) }, records)
    end)

    it("serves several sessions (comma-separated or repeated)", function()
      local a, b, c = data.session_id(2, 0), data.session_id(2, 1), data.session_id(3, 5)
      local status, records = get_json(ex.base .. "/history?session=" .. a .. "," .. b .. "&session=" .. c)
      assert.equal(200, status)
      assert.same({ api:session_record(a), api:session_record(b), api:session_record(c) }, records)
    end)

    it("answers an empty list for unknown sessions, and 400 without one", function()
      local status, body = get(ex.base .. "/history?session=" .. data.session_id(4, 1))
      assert.equal(200, status)
      assert.equal("[]", body:gsub("%s+$", ""))
      local st, err = get_json(ex.base .. "/history")
      assert.equal(400, st)
      assert.equal("invalid_argument", err.error.kind)
    end)

    it("serves an HTML page listing the failed targets of a scan definition", function()
      local status, page = get(ex.base .. "/failed?definition=" .. SEED_DEF)
      assert.equal(200, status)
      assert.truthy(page:find("<!DOCTYPE html>", 1, true))
      -- expected: every non-successful target of the definition's 41 sessions
      local records = { api:session_record(SEED) }
      for j = 0, 39 do records[#records + 1] = api:session_record(data.session_id(1, j)) end
      local with_failed = 0
      for _, r in ipairs(records) do
        if count_failed{ r } > 0 then with_failed = with_failed + 1 end
      end
      local n = count_failed(records)
      assert.truthy(n > 0)
      assert.truthy(page:find(("<p>%d failed targets in %d sessions.</p>"):format(n, with_failed), 1, true), page)
      local _, rows = page:gsub("<tr><td>", "")
      assert.equal(n, rows)
      assert.truthy(page:find("<td>Host unreachable</td>", 1, true))
    end)

    it("gives 401 as an auth error object, after refreshing the token once", function()
      get(ex.base .. "/history?session=" .. SEED) -- a token in the cache
      local before = api:stats().token.requests
      api:control{ faults = { { route = "history_by_session", status = 401 } } }
      local status, body = get_json(ex.base .. "/history?session=" .. SEED)
      assert.equal(502, status)
      local e = body.error
      assert.equal("auth", e.kind)
      assert.equal(401, e.status)
      assert.equal("Unauthorized", e.code)
      assert.truthy(e.text:find("^mde: auth 401"))
      assert.equal(before + 1, api:stats().token.requests)
    end)

    it("gives 403 as an auth error object naming the permission", function()
      api:control{ faults = { { route = "history_by_session", status = 403 } } }
      local status, body = get_json(ex.base .. "/history?session=" .. SEED)
      assert.equal(502, status)
      assert.equal("auth", body.error.kind)
      assert.equal(403, body.error.status)
      assert.equal("Forbidden", body.error.code)
      assert.truthy(body.error.message:find("Machine.Read.All", 1, true))
    end)

    it("gives 500 as an http error object after the configured retry", function()
      local fired = api:stats().faults_fired
      api:control{ faults = { { route = "history_by_session", status = 500 } } }
      local status, body = get_json(ex.base .. "/history?session=" .. SEED)
      assert.equal(502, status)
      assert.equal("http", body.error.kind)
      assert.equal(500, body.error.status)
      assert.equal("InternalServerError", body.error.code)
      assert.equal(fired + 2, api:stats().faults_fired) -- MDE_RETRIES=1: two attempts
    end)

    it("gives 429 as a throttled error object with retry_after", function()
      api:control{ faults = { { route = "history_by_session", status = 429, retry_after = "1" } } }
      local status, body = get_json(ex.base .. "/history?session=" .. SEED)
      assert.equal(503, status)
      assert.equal("throttled", body.error.kind)
      assert.equal(429, body.error.status)
      assert.equal(1, body.error.retry_after)
    end)

    it("gives a decode error object for invalid JSON", function()
      api:control{ faults = { { route = "history_by_session", mode = "malformed" } } }
      local status, body = get_json(ex.base .. "/history?session=" .. SEED)
      assert.equal(502, status)
      assert.equal("decode", body.error.kind)
      assert.equal(200, body.error.status)
    end)

    it("gives a timeout error object when the API does not answer in time", function()
      api:control{ delay = 2.5 } -- MDE_TIMEOUT=1, MDE_RETRIES=1
      local t0 = now()
      local status, body = get_json(ex.base .. "/history?session=" .. SEED)
      local took = now() - t0
      api:control{ delay = 0 }
      assert.equal(504, status)
      assert.equal("timeout", body.error.kind)
      assert.is_nil(body.error.status)
      assert.truthy(took < 4, "took " .. took)
    end)

    it("keeps nothing of one request in the next: parallel requests get their own sessions", function()
      local urls, ids = {}, {}
      for i = 1, 16 do
        ids[i] = data.synthetic_session_id(1000 + i)
        urls[i] = ex.base .. "/history?session=" .. ids[i]
      end
      local results = parallel(ex.dir, urls)
      for i = 1, 16 do
        assert.equal(200, results[i].status)
        assert.same({ api:session_record(ids[i]) }, fix_ints(json.decode(results[i].body)))
      end
      -- an error does not stick to the worker or the client
      api:control{ faults = { { route = "history_by_session", status = 403, count = 1 } } }
      assert.equal(502, (get(ex.base .. "/history?session=" .. SEED)))
      assert.equal(200, (get(ex.base .. "/history?session=" .. SEED)))
    end)

    it("logs no Lua error", function()
      local log = ex.error_log()
      assert.falsy(log:find("[error]", 1, true), log)
      assert.falsy(log:find("[alert]", 1, true), log)
    end)
  end)


  describe("one worker, API answering after 1 s", function()
    local ex

    setup(function()
      api:reset()
      ex = start_example(api, { workers = 1 })
    end)

    teardown(function()
      api:control{ delay = 0 }
      if ex then ex.stop() end
    end)

    it("runs 20 requests at once in about 1 s, and /ping answers in milliseconds meanwhile", function()
      assert.equal(200, (get(ex.base .. "/history?session=" .. SEED))) -- token fetched, connections warm
      api:control{ delay = 1 }
      local urls, ids = {}, {}
      for i = 1, 20 do
        ids[i] = data.synthetic_session_id(2000 + i)
        urls[i] = ex.base .. "/history?session=" .. ids[i]
      end
      local results, wall, pings = parallel(ex.dir, urls, { url = ex.base .. "/ping", count = 100, rate = 50 })
      for i = 1, 20 do
        assert.equal(200, results[i].status)
        assert.same({ api:session_record(ids[i]) }, fix_ints(json.decode(results[i].body)))
      end
      assert.equal(100, #pings)
      local p50, p99 = percentile(pings, 0.5), percentile(pings, 0.99)
      print(("\n[nginx_spec] 20 concurrent requests through 1 worker, API delay 1 s: %.2f s; "
        .. "/ping meanwhile: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d pings; nginx's own $request_time "
        .. "max %.0f ms)"):format(wall, p50, p99, pings[#pings], #pings, ex.max_request_time("/ping")))
      assert.truthy(wall < 4, "20 requests took " .. wall .. " s")
      assert.truthy(p99 < 100, "/ping p99 " .. p99 .. " ms")
      assert.equal(1, ex.serving_workers())
    end)

    it("sends the batches of one call at once (150 sessions: 3 batches of 50)", function()
      api:control{ delay = 0.5 }
      local ids = {}
      for i = 1, 150 do ids[i] = data.synthetic_session_id(6000 + i) end
      local before = api:stats().routes.history_by_session or 0
      local t0 = now()
      local status, records = get_json(ex.base .. "/history?session=" .. table.concat(ids, ","))
      local took = now() - t0
      assert.equal(200, status)
      assert.equal(150, #records)
      for i = 1, 150 do assert.equal(ids[i], records[i].SessionIds) end
      assert.equal(before + 3, api:stats().routes.history_by_session)
      assert.truthy(took < 1.4, "3 batches one after the other would take 1.5 s; took " .. took)
    end)
  end)


  describe("nginx's worker threads", function()
    it("are waited for when every worker-thread Lua VM is busy", function()
      api:reset()
      local ex = start_example(api, { workers = 1, edit = function(conf)
        return (conf:gsub("lua_shared_dict mde 1m;", "lua_shared_dict mde 1m;\n    lua_worker_thread_vm_pool_size 2;"))
      end })
      finally(function() api:control{ delay = 0 } ex.stop() end)
      assert.equal(200, (get(ex.base .. "/history?session=" .. SEED)))
      api:control{ delay = 0.3 }
      local urls = {}
      for i = 1, 10 do urls[i] = ex.base .. "/history?session=" .. data.synthetic_session_id(5000 + i) end
      local results, wall = parallel(ex.dir, urls)
      for i = 1, 10 do assert.equal(200, results[i].status, results[i].body) end
      -- two at a time: five rounds of 0.3 s
      assert.truthy(wall >= 1.4 and wall < 6, "took " .. wall)
    end)

    it("missing, give an invalid_argument error saying what to add to nginx.conf", function()
      local ex = start_example(api, { workers = 1, edit = function(conf)
        return (conf:gsub("thread_pool default threads=32;", ""))
      end })
      finally(ex.stop)
      local status, body = get_json(ex.base .. "/history?session=" .. SEED)
      assert.equal(400, status)
      assert.equal("invalid_argument", body.error.kind)
      assert.truthy(body.error.message:find("thread_pool default threads=32;", 1, true), body.error.message)
    end)
  end)


  describe("mde.store.ngx, four workers", function()
    local ex
    -- a test location next to the example's (the store's own checks, across workers)
    local LOCATION = [==[
        location = /_store {
            content_by_lua_block {
                local store = assert(require("mde.store.ngx").new("mde"))
                local op = ngx.var.arg_op
                local function now() ngx.update_time() return ngx.now() end
                if op == "incr" then
                    for _ = 1, 1000 do store:incr("spec:n", 1, 0, 60) end
                    ngx.say("ok")
                elseif op == "get" then
                    ngx.say(tostring(store:get(ngx.var.arg_key)))
                elseif op == "section" then
                    local unlock = assert(store:lock("spec:lock", 10))
                    local inside = store:incr("spec:inside", 1, 0)
                    if inside > (store:get("spec:max") or 0) then store:set("spec:max", inside) end
                    ngx.sleep(0.05)
                    store:incr("spec:inside", -1, 0)
                    unlock()
                    ngx.say("ok")
                elseif op == "busy" then
                    store.dict:set("spec:busy", "someone else", 10)
                    local t0 = now()
                    local unlock, err = store:lock("spec:busy", 0.2)
                    ngx.say(tostring(unlock), " ", tostring(err), " ", string.format("%.3f", now() - t0))
                elseif op == "ttl" then
                    store:set("spec:ttl", 42, 0.1)
                    local before = store:get("spec:ttl")
                    ngx.sleep(0.2)
                    ngx.say(tostring(before), " ", tostring(store:get("spec:ttl")))
                elseif op == "missing" then
                    local s, err = require("mde.store.ngx").new("no_such_dict")
                    ngx.say(tostring(s), " ", err)
                end
            }
        }

        location = /ping {]==]

    setup(function()
      ex = start_example(api, { workers = 4, reuseport = true, edit = function(conf)
        return (conf:gsub("location = /ping {", function() return LOCATION end))
      end })
    end)

    teardown(function()
      if ex then ex.stop() end
    end)

    it("adds atomically across workers", function()
      local urls = {}
      for i = 1, 8 do urls[i] = ex.base .. "/_store?op=incr" end
      local results = parallel(ex.dir, urls)
      for i = 1, 8 do assert.equal(200, results[i].status) end
      assert.equal("8000", (select(2, get(ex.base .. "/_store?op=get&key=spec:n")):gsub("%s+$", "")))
      assert.truthy(ex.serving_workers("/_store") > 1)
    end)

    it("locks: one holder at a time across workers", function()
      local urls = {}
      for i = 1, 12 do urls[i] = ex.base .. "/_store?op=section" end
      local results, wall = parallel(ex.dir, urls)
      for i = 1, 12 do assert.equal(200, results[i].status, results[i].body) end
      assert.equal("1", (select(2, get(ex.base .. "/_store?op=get&key=spec:max")):gsub("%s+$", "")))
      assert.truthy(wall >= 12 * 0.05, "took " .. wall)
    end)

    it("waits for a held lock no longer than asked, then says timeout", function()
      local _, body = get(ex.base .. "/_store?op=busy")
      local unlock, err, took = body:match("^(%S+) (%S+) ([%d.]+)")
      assert.equal("nil", unlock)
      assert.equal("timeout", err)
      -- asked for 0.2 s; ngx.now() counts in milliseconds, so allow its resolution below
      assert.truthy(tonumber(took) >= 0.195 and tonumber(took) < 0.5, took)
    end)

    it("expires values", function()
      local _, body = get(ex.base .. "/_store?op=ttl")
      assert.equal("42 nil", (body:gsub("%s+$", "")))
    end)

    it("says which lua_shared_dict is missing", function()
      local _, body = get(ex.base .. "/_store?op=missing")
      assert.truthy(body:find("^nil mde.store.ngx.new: nginx has no lua_shared_dict 'no_such_dict'"), body)
    end)
  end)


  describe("four workers", function()
    local ex

    setup(function()
      api:reset()
      api:control{ rate_limit = { { limit = 10, window = 2 } } }
      ex = start_example(api, { workers = 4, reuseport = true, env = { MDE_RATE_LIMIT = "10/2" } })
    end)

    teardown(function()
      if ex then ex.stop() end
    end)

    it("share one token and one rate-limit budget", function()
      local urls, ids = {}, {}
      for i = 1, 30 do
        ids[i] = data.synthetic_session_id(3000 + i)
        urls[i] = ex.base .. "/history?session=" .. ids[i]
      end
      local results, wall = parallel(ex.dir, urls)
      for i = 1, 30 do
        assert.equal(200, results[i].status, results[i].body)
        assert.same({ api:session_record(ids[i]) }, fix_ints(json.decode(results[i].body)))
      end
      local st = api:stats()
      local workers = ex.serving_workers("/history")
      print(("\n[nginx_spec] 30 requests through %d workers, limit 10 per 2 s: %.2f s, %d token request(s), "
        .. "most API calls in any 2 s: %d, 429s: %d"):format(workers, wall, st.token.requests,
        api:max_calls_in_window(2, st), st.throttled))
      assert.equal(1, st.token.requests)
      assert.equal(30, st.api.total)
      assert.truthy(api:max_calls_in_window(2, st) <= 10)
      assert.equal(0, st.throttled)
      assert.truthy(wall >= 4, "30 calls at 10 per 2 s cannot take less than 4 s, took " .. wall)
      assert.truthy(workers > 1, "only one worker served")
    end)

    it("refresh a revoked token once for all of them", function()
      local before = api:stats().token.requests
      api:control{ revoke_tokens = true, rate_limit = false }
      local urls = {}
      for i = 1, 12 do urls[i] = ex.base .. "/history?session=" .. data.synthetic_session_id(4000 + i) end
      local results = parallel(ex.dir, urls)
      for i = 1, 12 do assert.equal(200, results[i].status, results[i].body) end
      assert.equal(before + 1, api:stats().token.requests)
    end)

    it("logs no Lua error", function()
      local log = ex.error_log()
      assert.falsy(log:find("[error]", 1, true), log)
    end)
  end)
end)
