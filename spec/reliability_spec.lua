-- Throttling, retries, deadlines, faults and hostile input, against the local server.
local mde = require "mde"
local core = require "mde.core"
local server = require "spec.helpers.server"
local helpers = require "spec.helpers.client"

local SEED_SESSION = "01decc497f4b4ec49a5fc4e12597f8c8"
local SEED_DEF = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae"
local HISTORY_BY_SESSION = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId"

describe("reliability", function()
  local s

  setup(function() s = server.start{} end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  local NONE = helpers.NONE
  local function new(extra) return helpers.new(s, extra) end

  local function events_of(list, kind)
    local out = {}
    for _, e in ipairs(list) do if e.type == kind then out[#out + 1] = e end end
    return out
  end

  describe("pacing", function()
    it("keeps a burst under the limit so the service never answers 429", function()
      s:control{ rate_limit = { { limit = 5, window = 1 } } }
      local events = {}
      local client = new{ rate_limit = { { limit = 5, window = 1 } }, logger = function(e) events[#events + 1] = e end }
      local t0 = core.now()
      for _ = 1, 12 do assert(client:scan_history_by_session(SEED_SESSION)) end
      local elapsed = core.now() - t0
      local st = s:stats()
      assert.equal(0, st.throttled or 0)
      assert.is_true(s:max_calls_in_window(1) <= 5)
      assert.is_true(elapsed >= 2, "12 calls at 5/s took only " .. elapsed .. " s")
      assert.is_true(#events_of(events, "throttle") >= 2)
    end)

    it("keeps separate budgets for token-only clients of different tenants", function()
      local rl = { { limit = 1, window = 60 } }
      local a = new{ token = s:issue_token{}, tenant_id = NONE, client_id = NONE, client_secret = NONE,
                     rate_limit = rl, store = require("mde.store").default(core.now) }
      local b = new{ token = s:issue_token{}, tenant_id = NONE, client_id = NONE, client_secret = NONE,
                     rate_limit = rl, store = require("mde.store").default(core.now) }
      assert(a:scan_history_by_session(SEED_SESSION))
      assert(b:scan_history_by_session(SEED_SESSION))
    end)

    it("fails fast with throttled when the wait would pass the deadline", function()
      local client = new{ rate_limit = { { limit = 1, window = 60 } } }
      assert(client:scan_history_by_session(SEED_SESSION))
      local t0 = core.now()
      local r, err = client:request("POST", HISTORY_BY_SESSION,
        { body = { SessionIds = { SEED_SESSION } }, deadline = 2 })
      assert.is_nil(r)
      assert.equal("throttled", err.kind)
      assert.is_true(err.retry_after > 50)
      assert.is_true(core.now() - t0 < 1)
    end)
  end)

  describe("429", function()
    it("honours Retry-After in seconds", function()
      s:control{ faults = { { route = "history_by_session", status = 429, retry_after = "1", count = 1 } } }
      local events = {}
      local client = new{ logger = function(e) events[#events + 1] = e end }
      local t0 = core.now()
      assert(client:scan_history_by_session(SEED_SESSION))
      assert.is_true(core.now() - t0 >= 1)
      local retry = events_of(events, "retry")[1]
      assert.equal("429", retry.reason)
      assert.is_true(retry.wait >= 1)
      assert.equal(0, s:stats().early_retries or 0)
    end)

    it("honours Retry-After as an HTTP date", function()
      local when = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 2)
      s:control{ faults = { { route = "history_by_session", status = 429, retry_after = when, count = 1 } } }
      local t0 = core.now()
      assert(new():scan_history_by_session(SEED_SESSION))
      assert.is_true(core.now() - t0 >= 0.9)
    end)

    it("backs off without Retry-After", function()
      s:control{ faults = { { route = "history_by_session", status = 429, count = 2 } } }
      assert(new():scan_history_by_session(SEED_SESSION))
      assert.equal(3, s:stats().routes.history_by_session)
    end)

    it("returns throttled with retry_after when Retry-After passes the deadline", function()
      s:control{ faults = { { route = "history_by_session", status = 429, retry_after = "30", count = 1 } } }
      local t0 = core.now()
      local r, err = new{ deadline = 3 }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("throttled", err.kind)
      assert.equal(429, err.status)
      assert.equal(30, err.retry_after)
      assert.is_true(core.now() - t0 < 1)
    end)

    it("holds the next call of the same app until Retry-After has passed", function()
      s:control{ faults = { { route = "history_by_session", status = 429, retry_after = "1", count = 1 } } }
      local client = new{ rate_limit = { { limit = 100, window = 60 } }, retries = 0 }
      local r, err = client:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("throttled", err.kind)
      local t0 = core.now()
      assert(client:scan_history_by_session(SEED_SESSION))
      assert.is_true(core.now() - t0 >= 0.9)
      assert.equal(0, s:stats().early_retries or 0)
    end)
  end)

  describe("retries", function()
    it("retries 5xx, resets and timeouts of safe requests, logging each retry", function()
      for _, f in ipairs{ { status = 500 }, { status = 502 }, { status = 504 }, { mode = "reset" },
                          { mode = "html" }, { delay = 2 } } do
        s:reset()
        -- libcurl itself resends once when a reused connection dies before any answer,
        -- so a reset needs to happen twice in a row to reach our retry
        f.route, f.count = "history_by_session", f.mode == "reset" and 2 or 1
        s:control{ faults = { f } }
        local events = {}
        local client = new{ timeout = 0.5, logger = function(e) events[#events + 1] = e end }
        local sessions = assert(client:scan_history_by_session(SEED_SESSION))
        assert.equal(1, #sessions)
        assert.equal(1, #events_of(events, "retry"), "fault " .. (f.mode or f.status or "delay"))
      end
    end)

    it("does not retry with retries = 0", function()
      s:control{ faults = { { route = "history_by_session", status = 503, count = 1 } } }
      local r, err = new{ retries = 0 }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal(503, err.status)
      assert.equal(1, s:stats().routes.history_by_session)
    end)

    it("gives up after `retries` retries", function()
      s:control{ faults = { { route = "history_by_session", status = 503 } } }
      local r, err = new{ retries = 2 }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("http", err.kind)
      assert.equal(3, s:stats().routes.history_by_session)
    end)

    it("bounds a slow token request by the call's deadline", function()
      s:control{ token_delay = 3 }
      local t0 = core.now()
      local r, err = new{ deadline = 0.8 }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("timeout", err.kind)
      assert.is_true(core.now() - t0 < 1.5, "took " .. (core.now() - t0))
    end)

    it("gives a named call one deadline for all its batches", function()
      s:control{ delay = 1 }
      local ids = {}
      for k = 1, 5 do ids[k] = server.data.synthetic_session_id(k) end
      local t0 = core.now()
      local r, err = new{ batch_size = 1, concurrency = 1, deadline = 2.5 }:scan_history_by_session(ids)
      assert.is_nil(r)
      assert.equal("timeout", err.kind)
      assert.is_true(core.now() - t0 < 3.5, "took " .. (core.now() - t0))
    end)

    it("never lets retries pass the deadline", function()
      s:control{ faults = { { route = "history_by_session", delay = 1 } } }
      local t0 = core.now()
      local r, err = new{ retries = 10, timeout = 0.5, deadline = 2.5 }:scan_history_by_session(SEED_SESSION)
      local elapsed = core.now() - t0
      assert.is_nil(r)
      assert.equal("timeout", err.kind)
      assert.is_true(elapsed < 3.2, "took " .. elapsed)
    end)
  end)

  describe("hostile answers", function()
    local cases = {
      { "malformed JSON", { mode = "malformed" }, "decode" },
      { "the seed's invalid sample", { mode = "seed" }, "decode" },
      { "a truncated body", { mode = "truncated" }, "network" },
      { "JSON sent as text/plain", { mode = "wrong_ctype" }, "decode" },
      { "an empty body", { mode = "empty" }, "decode" },
      { "a body over max_body", { mode = "huge", size = 3 * 1024 * 1024 }, "too_large" },
      { "a chunked body over max_body", { mode = "huge", size = 3 * 1024 * 1024, chunked = true }, "too_large" },
      { "an HTML gateway page", { mode = "html" }, "http" },
    }
    for _, c in ipairs(cases) do
      it("reports " .. c[1] .. " as " .. c[3] .. ", returning nothing half-done", function()
        local f = c[2]
        f.route = "history_by_session"
        s:control{ faults = { f } }
        local r, err = new{ retries = 0, max_body = 1024 * 1024 }:scan_history_by_session(SEED_SESSION)
        assert.is_nil(r)
        assert.equal(c[3], err.kind)
        assert.is_string(tostring(err))
      end)
    end

    it("refuses a redirect to another host without sending the token there", function()
      s:control{ faults = { { route = "history_by_session", mode = "redirect" } } }
      local r, err = new():scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("unsafe_redirect", err.kind)
      assert.equal(0, (s:stats().hosts.localhost or { auth = 0 }).auth)
    end)

    it("follows a redirect on the same host", function()
      s:control{ faults = { { route = "history_by_session", mode = "redirect", status = 307, count = 1,
                              location = s.base_url .. HISTORY_BY_SESSION } } }
      local sessions = assert(new():scan_history_by_session(SEED_SESSION))
      assert.equal(1, #sessions)
    end)

    it("rejects a certificate for another host name", function()
      local client = new{ base_url = "https://127.0.0.1:" .. s.badname_port }
      local r, err = client:request("GET", "/api/DeviceAuthenticatedScanAgents")
      assert.is_nil(r)
      assert.equal("tls", err.kind)
    end)

    it("turns verification off only with insecure = true, warning on every request", function()
      local events = {}
      local client = new{ base_url = "https://127.0.0.1:" .. s.badname_port, insecure = true,
                          token = s:issue_token{}, tenant_id = NONE, client_id = NONE, client_secret = NONE,
                          logger = function(e) events[#events + 1] = e end }
      client:request("GET", "/api/DeviceAuthenticatedScanAgents")
      client:request("GET", "/api/DeviceAuthenticatedScanAgents")
      local warnings = events_of(events, "warning")
      assert.equal(2, #warnings)
      assert.matches("TLS verification is off", warnings[1].message, 1, true)
    end)

    it("reports a refused connection as a network error", function()
      local client = new{ base_url = "https://127.0.0.1:1", token = "x", tenant_id = NONE, client_id = NONE,
                          client_secret = NONE, retries = 1 }
      local r, err = client:request("GET", "/api/DeviceAuthenticatedScanAgents")
      assert.is_nil(r)
      assert.equal("network", err.kind)
    end)
  end)

  describe("bad arguments", function()
    it("gives invalid_argument and sends nothing", function()
      local client = new()
      local calls = {
        function() return client:request(42, "/x") end,
        function() return client:request("GET", nil) end,
        function() return client:request("GET", "/x", { query = "a=b" }) end,
        function() return client:request("GET", "/x", { headers = { Authorization = "Bearer x" } }) end,
        function() return client:request("GET", "/x", { headers = { ["X-A"] = "a\r\nX-B: b" } }) end,
        function() return client:request("POST", "/x", { body = function() end }) end,
        function() return client:request("POST", "/x", { body = { f = print } }) end,
        function() return client:scan_history_by_definition(SEED_DEF, { top = -1 }) end,
        function() return client:scan_history_by_definition(SEED_DEF, "all") end,
        function() return client:scan_definition(7) end,
        function() return client:update_scan_definition("x", "y") end,
        function() return client:delete_scan_definitions({ 1 }) end,
      }
      for i, call in ipairs(calls) do
        local r, err = call()
        assert.is_nil(r, "call " .. i)
        assert.equal("invalid_argument", err.kind, "call " .. i)
      end
      assert.equal(0, s:stats().token.requests)
      assert.equal(0, s:stats().api.total)
    end)

    it("checks every option of mde.new", function()
      local bad = {
        { timeout = math.huge }, { connect_timeout = 0 / 0 }, { deadline = -1 },
        { timeout = -1 }, { retries = 1.5 }, { rate_limit = { { limit = 0, window = 1 } } }, { page_size = 5000 },
        { insecure = "yes" }, { logger = "print" }, { cloud = "moon" }, { region = "mars" },
        { base_url = "ftp://x" }, { certificate = { key_file = "/nonexistent", cert_file = "/nonexistent" } },
        { batch_size = 0 }, { max_body = 0 },
      }
      for _, o in ipairs(bad) do
        o.tenant_id, o.client_id, o.client_secret = "t", "c", "s"
        local c, err = mde.new(o)
        assert.is_nil(c)
        assert.equal("invalid_argument", err.kind)
      end
      local c, err = mde.new{ tenant_id = "t", client_id = "c" }
      assert.is_nil(c)
      assert.matches("no credentials", err.message)
      c, err = mde.new{ token = "x", client_secret = "s", tenant_id = "t", client_id = "c" }
      assert.is_nil(c)
      assert.matches("one kind of credentials", err.message)
    end)
  end)

  describe("soak", function()
    local function rss_kb()
      local f = io.open("/proc/self/status")
      if not f then return 0 end
      local text = f:read("*a")
      f:close()
      return tonumber(text:match("VmRSS:%s*(%d+)")) or 0
    end

    it("keeps every result right and memory flat over 3000 calls with faults", function()
      s:control{ faults = {
        { route = "history_by_session", status = 503, every = 7 },
        { route = "history_by_session", mode = "reset", every = 11 },
      } }
      local client = new{ retries = 4 }
      local ids = { SEED_SESSION, server.data.session_id(1, 0), server.data.session_id(2, 5) }
      local function round(n)
        for i = 1, n do
          local id = ids[i % #ids + 1]
          local r = assert(client:scan_history_by_session(id))
          assert.equal(1, #r)
          assert.equal(id, r[1].SessionIds)
        end
      end
      round(500)
      collectgarbage()
      collectgarbage()
      local rss0, lua0 = rss_kb(), collectgarbage("count")
      round(2500)
      collectgarbage()
      collectgarbage()
      local rss1, lua1 = rss_kb(), collectgarbage("count")
      local st = s:stats()
      assert.is_true((st.faults_fired or 0) > 500, "faults fired: " .. tostring(st.faults_fired))
      assert.is_true(rss1 - rss0 < 4096, ("RSS grew %.0f kB"):format(rss1 - rss0))
      assert.is_true(lua1 - lua0 < 512, ("Lua heap grew %.0f kB"):format(lua1 - lua0))
    end)
  end)
end)
